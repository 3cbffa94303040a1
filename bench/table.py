"""Every ratio in one table: the load workloads against stock aiosmtpd (printer, app, MX) as rates
and as instructions a message (``instructions.py``, valgrind), the fleet burst, the edge's
resident size idle and after ``--memory-messages`` messages, and judging a capture against tshark.
Each row is its benchmark run in a process of its own, in this one run.

    python bench/table.py [--messages 3000] [--instruction-messages 600] [--memory-messages 100000]
                          [--devices 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True,
                          check=False, cwd=HERE.parent)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--instruction-messages", type=int, default=600, help="messages each server is counted over")
    parser.add_argument("--memory-messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--packets", type=int, default=250_000)
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []  # what, aiosmtpd (or the reference), exo-edge, ratio or target
    for workload, target in (("printer", ">= 1.0"), ("app", ">= 0.9"), ("mx", ">= 0.9")):
        r = run("load.py", "--workload", workload, "--messages", str(args.messages))
        rows.append((f"{workload}, msg/s", str(r.get("baseline_msg_per_s", r.get("error"))),
                     str(r.get("edge_msg_per_s", "")),
                     f"{r.get('ratio', '')} (target {target}); CPU a message {r.get('cpu_ratio', '')}"))
    for workload in ("printer", "app", "mx"):  # the same loads, counted: what the machine's noise does not move
        r = run("instructions.py", "--workload", workload, "--messages", str(args.instruction_messages))
        rows.append((f"{workload}, instructions a message", str(r.get("baseline_ir_per_msg", r.get("error"))),
                     str(r.get("edge_ir_per_msg", "")), f"{r.get('ratio', '')} (aiosmtpd's / the edge's)"))
    r = run("load.py", "--workload", "burst", "--connections", str(args.devices), "--within", "10")
    edge, base = r.get("edge", {}), r.get("baseline", {})
    rows.append((f"burst of {args.devices} devices in 10 s, p99 to 250 (s)", str(base.get("p99_s", r.get("error"))),
                 f"{edge.get('p99_s', '')} (served {edge.get('served', '')}, stored {r.get('stored', '')})",
                 f"{r.get('p99_ratio', '')} (aiosmtpd's p99 / the edge's)"))
    r = run("load.py", "--workload", "idle")
    rows.append(("RSS idle (MiB)", "", str(r.get("edge_rss_mib_idle", r.get("error"))), "target < 60"))
    r = run("load.py", "--workload", "memory", "--messages", str(args.memory_messages))
    samples = r.get("edge_rss_mib_every_tenth") or [r.get("error")]
    rows.append((f"RSS after {args.memory_messages:,} messages (MiB)", "", str(samples[-1]), "target < 100"))
    r = run("bench_capture.py", "--packets", str(args.packets))
    rows.append((f"judging {r.get('packets', args.packets):,} packets (s)", f"tshark {r.get('tshark_s')}",
                 str(r.get("judge_s", r.get("error"))), f"{r.get('judge_over_tshark', '')} (the edge's / tshark's)"))
    widths = [max(len(row[i]) for row in rows + [("", "", "", "")]) for i in range(4)]
    header = ("", "aiosmtpd", "exo-edge", "ratio")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
