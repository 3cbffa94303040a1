"""What large messages cost the edge: peak memory per message, and whether other clients wait.

Runs ``exoedge serve`` in a child process on 127.0.0.1 and reads its memory from /proc:
1. one message of ``--size`` MB of short lines (the worst case for a line-based reader), by
   DATA to the tenant MX: the rise of the peak resident size, as a multiple of the message size;
2. ``--parallel`` such messages at once, while a small client sends one-line messages: its
   median round trip under that load, as a ratio to the same client's median with no load.
Prints one JSON object.

    .venv/bin/python bench/bench_big_messages.py [--size 35] [--parallel 8]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL = b"From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: small\r\n\r\nhi\r\n"


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def writer_pid(pid: int) -> int:
    """The edge's store writer (its one child process)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        if children:
            return int(children[0])
    raise RuntimeError("the edge has no store writer process")


def big_message(size: int, tag: str) -> bytes:
    head = f"From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: big {tag}\r\n\r\n".encode()
    return head + b"0123456\r\n" * ((size - len(head)) // 9)


def send(address: tuple[str, int], body: bytes) -> None:
    with smtplib.SMTP(*address, local_hostname="bench", source_address=("127.0.0.10", 0), timeout=600) as client:
        client.sendmail("scanner@contoso.com", ["alice@contoso.com"], body)


def round_trips(address: tuple[str, int], count: int) -> list[float]:
    times = []
    with smtplib.SMTP(*address, local_hostname="probe", source_address=("127.0.0.11", 0), timeout=600) as client:
        for _ in range(count):
            start = time.perf_counter()
            client.sendmail("scanner@contoso.com", ["alice@contoso.com"], SMALL)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=float, default=35.0, help="message size in MB (default 35)")
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    size = int(args.size * 1_000_000)
    with tempfile.TemporaryDirectory() as state:
        server = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "serve", "--state-dir", state, "--host", "127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            assert server.stdout is not None
            described = json.loads(server.stdout.readline())
            host, port = described["mx"].rsplit(":", 1)
            address = (host, int(port))
            send(address, SMALL)  # warm up
            idle = statistics.median(round_trips(address, 50))
            before, writer = memory(server.pid), writer_pid(server.pid)
            writer_before = memory(writer)
            send(address, big_message(size, "one"))
            one = memory(server.pid)["VmHWM"] - before["VmRSS"]
            writer_one = memory(writer)["VmHWM"] - writer_before["VmRSS"]
            # the large senders in processes of their own, so the probe's times are the edge's
            senders = [multiprocessing.Process(target=send, args=(address, big_message(size, str(i))))
                       for i in range(args.parallel)]
            for sender in senders:
                sender.start()
            loaded = []
            while any(p.is_alive() for p in senders):
                loaded += round_trips(address, 5)
            for sender in senders:
                sender.join()
            peak = memory(server.pid)["VmHWM"] - before["VmRSS"]
            writer_peak = memory(writer)["VmHWM"] - writer_before["VmRSS"]
        finally:
            server.terminate()
            server.wait(10)
    print(json.dumps({
        "message_mb": args.size,
        "one_message_peak_over_size": round(one / size, 2),
        "parallel": args.parallel,
        "parallel_peak_over_total_size": round(peak / (size * args.parallel), 2),
        # the store's writer process (a batch's frame and its decoded contents)
        "writer_one_message_peak_over_size": round(writer_one / size, 2),
        "writer_parallel_peak_over_total_size": round(writer_peak / (size * args.parallel), 2),
        "small_client_round_trip_loaded_over_idle": round(statistics.median(loaded) / idle, 2),
        "small_client_round_trips_under_load": len(loaded),
    }))


if __name__ == "__main__":
    main()
