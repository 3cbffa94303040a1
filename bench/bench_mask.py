"""What masking secrets costs as a hostile line grows: the time for a line four times as long, as a
ratio against the line itself, in the same run (a linear mask gives about 4, a quadratic one 16).

The lines are the ones a peer can send without authenticating: ``NOOP`` with a run of base64-looking
text (repeated ``eyJ``, the start of every JWT; repeated JWT headers; plain letters). The mask runs
on the event loop for every record line, so a quadratic mask stalls every endpoint. Prints one JSON
object.

    .venv/bin/python bench/bench_mask.py [--size 65536]
"""

from __future__ import annotations

import argparse
import json
import time

from fakes.exo.secrets import SecretMask

SHAPES = {"eyJ run": "eyJ", "JWT headers": "eyJhbGciOi", "letters": "A", "dotted": "eyJaaaaaaaaaaaaaaaaaaaa."}


def seconds(mask: SecretMask, line: str, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        mask.mask(line)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=65536, help="octets of the shorter line")
    args = parser.parse_args()
    mask = SecretMask()
    mask.add("Scan-2026!", "App-Secret-2026~lab")
    out = {}
    for name, unit in SHAPES.items():
        short = "NOOP " + unit * (args.size // len(unit))
        long = "NOOP " + unit * (4 * args.size // len(unit))
        base, grown = seconds(mask, short), seconds(mask, long)
        out[name] = {"seconds": round(base, 5), "seconds_4x": round(grown, 5), "ratio_4x": round(grown / base, 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
