"""Instructions a message: the edge's serving process against stock aiosmtpd's, under the same load,
counted by valgrind (callgrind), in one run, as a ratio.

A rate on a shared two-core machine moves with the machine (aiosmtpd alone served the app load at
1,584 to 2,688 messages a second on one day here); the instructions a server executes for the
same messages do not (two runs of the same code agree within 0.5%). Each server runs under
callgrind with its counting switched on only for the measured messages (after a warm-up of
``--warm-up`` messages, and once the edge has written the .eml files of those) and read once they
are served (the edge's once it has written their .eml files too: work of theirs, done after
them); the edge's holds its store writer's too (a process of its own, under callgrind as well, so
its batches are as large as they are beside an edge at full speed). Neither holds the kernel's
work (system calls, the store's fsync: ``load.py``'s CPU figures do).

    python bench/instructions.py --workload app [--messages 600] [--clients 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from load import ROOT, Load, _address, _loaded_tenant, _tree, files_caught_up, server, timed

# the edge's store writer, a process it starts, is counted too
CALLGRIND = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes", "-q"]


def counted(pids: list[int], out: Path, mark: str) -> int:
    """The instructions ``pids`` executed since their counts were last zeroed (and zero them again)."""
    total = 0
    for pid in pids:
        subprocess.run(["callgrind_control", "--dump=" + mark, str(pid)], check=True, capture_output=True)
        for path in out.parent.glob(f"{out.name}.{pid}*"):
            text = path.read_text(errors="replace")
            if f"\ndesc: Trigger: dump {mark}\n" in text:
                found = re.search(r"^summary:\s+(\d+)", text, re.M)
                total += int(found.group(1)) if found else 0
                path.unlink()
                break
        else:
            raise RuntimeError(f"callgrind wrote no dump marked {mark!r} for process {pid} under {out.parent}")
    return total


def measure(command: list[str], work: Any, warm_up: Any, messages: int, state: Path, out: Path,
            *, edge: bool) -> int:
    """One server under callgrind: warmed up uncounted, then ``work`` counted."""
    with server([*CALLGRIND, f"--callgrind-out-file={out}.%p", *command]) as (process, where):
        asyncio.run(timed(warm_up(where)))
        if edge:
            files_caught_up(state)
        pids = _tree(process.pid)  # the server, and the edge's store writer
        for pid in pids:
            subprocess.run(["callgrind_control", "--instr=on", str(pid)], check=True, capture_output=True)
        counted(pids, out, "before")  # zeroes the counts: switching them on is not the load's
        asyncio.run(timed(work(where)))
        if edge:
            files_caught_up(state)  # the .eml files of the messages are work of theirs, done after them
        total = counted(pids, out, "load")
        if not total:
            raise RuntimeError(f"callgrind counted no instructions for {' '.join(command)}")
        return round(total / messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["printer", "app", "mx"], default="app")
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--warm-up", type=int, default=60)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("bench/instructions.py needs valgrind (Debian: apt-get install valgrind)")
    endpoint = "mx" if args.workload == "mx" else "submission"
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = Path(scratch)
        state = work_dir / "edge"
        tenant = _loaded_tenant(work_dir)
        edge_cmd = [sys.executable, "-m", "harness.cli", "serve", "--state-dir", str(state), "--tenant", str(tenant)]

        def load_of(messages: int, clients: int) -> Any:
            def run(where: dict[str, str]) -> Any:
                load, target = Load(state / "ca.pem"), _address(where[endpoint])
                if args.workload == "printer":
                    return load.printer(target, messages, clients)
                return load.kept(target, messages, clients, tls=args.workload == "app")
            return run

        work, warm_up = load_of(args.messages, args.clients), load_of(args.warm_up, min(args.clients, args.warm_up))
        edge = measure(edge_cmd, work, warm_up, args.messages, state, work_dir / "edge.cg", edge=True)
        # the baseline serves with the edge's certificate (written by the edge as it started)
        base_cmd = [sys.executable, str(ROOT / "bench" / "baseline_server.py"), "--state-dir", str(state)]
        baseline = measure(base_cmd, work, warm_up, args.messages, state, work_dir / "base.cg", edge=False)
    print(json.dumps({
        "workload": args.workload, "messages": args.messages, "clients": args.clients,
        "baseline_ir_per_msg": baseline, "edge_ir_per_msg": edge, "ratio": round(baseline / edge, 2),
    }), flush=True)


if __name__ == "__main__":
    main()
