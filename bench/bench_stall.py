"""What a hostile client costs every other client: a second client's NOOP round trip while the
first pipelines 64 KiB NOOP lines of base64-looking text (the worst shape for the secret mask,
sent without authenticating), as a ratio against the same round trip with the first one quiet,
in the same run. Every line is masked and recorded as it arrives; a mask that backtracked, or
work per event that grew with the line, shows as a ratio in the hundreds.

    .venv/bin/python bench/bench_stall.py [--rounds 200] [--lines 10]

Prints one JSON object: the quiet and the flooded round trip (median, 99th percentile, worst) in
milliseconds and their ratios.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from fakes.edge import Edge, EdgeThread

SHAPES = ("eyJ", "eyJhbGciOi", "A")


def round_trips(address: tuple[str, int], rounds: int) -> list[float]:
    with socket.create_connection(address, timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()  # the banner
        out = []
        for _ in range(rounds):
            start = time.perf_counter()
            sock.sendall(b"NOOP\r\n")
            reader.readline()
            out.append((time.perf_counter() - start) * 1000)
        sock.sendall(b"QUIT\r\n")
        return out


def flood(address: tuple[str, int], lines: int, stop: threading.Event) -> int:
    sent = 0
    with socket.create_connection(address, timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        while not stop.is_set():
            unit = SHAPES[sent % len(SHAPES)]
            line = ("NOOP " + unit * (65_000 // len(unit))).encode() + b"\r\n"
            sock.sendall(line * lines)  # pipelined
            for _ in range(lines):
                reader.readline()
            sent += lines
    return sent


def figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 3), "worst_ms": round(ordered[-1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--lines", type=int, default=10, help="64 KiB lines the flooder pipelines at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state, EdgeThread(Edge(state_dir=Path(state))) as edge:
        address = edge.addresses["submission"]
        quiet = round_trips(address, args.rounds)
        stop, sent = threading.Event(), []
        flooder = threading.Thread(target=lambda: sent.append(flood(address, args.lines, stop)))
        flooder.start()
        try:
            time.sleep(0.2)  # the flood under way
            flooded = round_trips(address, args.rounds)
        finally:
            stop.set()
            flooder.join()
    q, f = figures(quiet), figures(flooded)
    print(json.dumps({"quiet": q, "flooded": f, "hostile_lines": sent[0] if sent else 0,
                      "ratio_median": round(f["median_ms"] / q["median_ms"], 2),
                      "ratio_p99": round(f["p99_ms"] / q["p99_ms"], 2)}, indent=None))


if __name__ == "__main__":
    main()
