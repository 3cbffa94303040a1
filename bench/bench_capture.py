"""Judging a big capture: time against reading the same file's packets alone (dpkt taking them
apart: the floor) and against tshark reading it with its SMTP and TLS dissectors (where tshark is
installed: Debian's package), and peak memory for a capture four times as long (flat: a ratio near
1), each measured in a process of its own in the same run. Prints one JSON object.

The capture is made here: devices doing direct send in the clear (every line of the dialogue is a
packet to reassemble and read), one connection after another from a few hundred addresses.

    .venv/bin/python bench/bench_capture.py [--packets 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = ("10.0.0.1", 25)
DIALOGUE = [
    (False, b"220 mx.example Microsoft ESMTP MAIL Service ready\r\n"), (True, b"EHLO printer.lab\r\n"),
    (False, b"250-mx.example Hello\r\n250 SMTPUTF8\r\n"), (True, b"MAIL FROM:<scanner@contoso.com>\r\n"),
    (False, b"250 2.1.0 Sender OK\r\n"), (True, b"RCPT TO:<alice@contoso.com>\r\n"),
    (False, b"250 2.1.5 Recipient OK\r\n"), (True, b"DATA\r\n"), (False, b"354 Start mail input\r\n"),
    (True, b"From: scanner@contoso.com\r\nSubject: scan\r\n\r\npage\r\n.\r\n"),
    (False, b"250 2.6.0 Queued mail for delivery\r\n"), (True, b"QUIT\r\n"), (False, b"221 2.0.0 Bye\r\n"),
]


def session_frames(client: tuple[str, int]) -> list[bytes]:
    from scapy.layers.inet import IP, TCP  # the capture is built with scapy (not in the judging process)
    from scapy.layers.l2 import Ether

    seq = {True: 1000, False: 5000}
    frames = []

    def frame(from_client: bool, flags: str, payload: bytes = b"") -> None:
        (src, sport), (dst, dport) = (client, SERVER) if from_client else (SERVER, client)
        packet = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst) / TCP(
            sport=sport, dport=dport, flags=flags, seq=seq[from_client])
        frames.append(bytes(packet / payload if payload else packet))
        seq[from_client] += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    frame(True, "S")
    frame(False, "SA")
    for from_client, data in DIALOGUE:
        frame(from_client, "PA", data)
    frame(True, "FA")
    return frames


def make_capture(path: Path, packets: int, devices: int = 300) -> int:
    """A capture of about ``packets`` packets; the number written."""
    from scapy.utils import PcapWriter

    templates = [session_frames((f"10.1.{n // 250}.{n % 250 + 1}", 40000)) for n in range(devices)]
    written, t, n = 0, 1_800_000_000.0, 0
    with PcapWriter(str(path), linktype=1) as writer:
        writer.write_header(None)
        while written < packets:
            frames = templates[n % devices]
            port = 1024 + n // devices % 60000  # a new connection: another client port
            for data in frames:
                patched = bytearray(data)
                at = 34 if patched[26:30] != bytes(map(int, SERVER[0].split("."))) else 36  # client's port field
                patched[at:at + 2] = port.to_bytes(2, "big")
                writer.write_packet(bytes(patched), sec=int(t), usec=int(t % 1 * 1e6))
                t += 0.0005
            written += len(frames)
            n += 1
    return written


def measure(mode: str, path: Path) -> dict[str, float]:
    """In this process: the time to read or judge ``path``, and the peak resident size."""
    start = time.perf_counter()
    if mode == "read":
        from harness.packets import packets

        count = sum(1 for _ in packets(path))
        extra = {"packets": count}
    else:
        from harness.fleet import group, judge, read

        events, _ = read(path)
        judged = [judge(device) for device in group(events).values()]
        extra = {"devices": len(judged), "would_fail": sum(j.verdict == "would fail" for j in judged)}
    return {"seconds": time.perf_counter() - start,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}


def in_process_of_its_own(mode: str, path: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--measure", mode, str(path)], capture_output=True, text=True,
                          check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def tshark_seconds(path: Path) -> float | None:
    """tshark reading ``path`` with its dissectors, printing the SMTP commands and replies and the
    TLS handshakes it finds (the fields a judgement needs); None where tshark is not installed."""
    tshark = shutil.which("tshark")
    if tshark is None:
        return None
    start = time.perf_counter()
    subprocess.run([tshark, "-r", str(path), "-n", "-Y", "smtp or tls", "-T", "fields", "-e", "ip.src",
                    "-e", "smtp.req.command", "-e", "smtp.response.code", "-e", "tls.handshake.type"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000, help="packets in the smaller capture")
    parser.add_argument("--rounds", type=int, default=3, help="judging and tshark, interleaved: the best of each")
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        small, big = Path(tmp) / "small.pcap", Path(tmp) / "big.pcap"
        written = make_capture(small, args.packets)
        written_big = make_capture(big, 4 * args.packets)
        floor = in_process_of_its_own("read", small)
        judged = in_process_of_its_own("judge", small)
        judged_big = in_process_of_its_own("judge", big)
        tshark = tshark_seconds(small)
        for _ in range(args.rounds - 1):  # interleaved, the best of each: this machine's speed wanders
            again = in_process_of_its_own("judge", small)
            judged = again if again["seconds"] < judged["seconds"] else judged
            other = tshark_seconds(small)
            tshark = min(tshark, other) if tshark and other else tshark
    print(json.dumps({
        "packets": written, "packets_4x": written_big, "devices": judged["devices"],
        "read_s": round(floor["seconds"], 2), "judge_s": round(judged["seconds"], 2),
        "judge_over_read": round(judged["seconds"] / floor["seconds"], 2),
        "judge_packets_per_s": round(written / judged["seconds"]),
        "tshark_s": round(tshark, 2) if tshark else None,
        "judge_over_tshark": round(judged["seconds"] / tshark, 2) if tshark else None,
        "peak_rss_mib": round(judged["peak_rss_mib"], 1), "peak_rss_mib_4x": round(judged_big["peak_rss_mib"], 1),
        "rss_ratio_4x": round(judged_big["peak_rss_mib"] / judged["peak_rss_mib"], 2),
    }))


if __name__ == "__main__":
    main()
