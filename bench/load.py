"""Load on the edge against stock aiosmtpd, both measured in the same run, as ratios.

Each server runs in a process of its own (the edge as ``exoedge serve``, the baseline as
``bench/baseline_server.py``: aiosmtpd, a handler that keeps nothing, the same STARTTLS and AUTH
LOGIN shape); this process is the load: asyncio clients (aiosmtplib) on loopback only, bounded in
messages and in time. Workloads:

- ``printer``: a new connection per message: STARTTLS, AUTH LOGIN, one message, QUIT;
- ``app``: connections kept: STARTTLS and AUTH once, then message after message;
- ``mx``: direct send to the MX, plain, connections kept;
- ``memory``: the app workload for ``--messages`` messages, the edge's resident size sampled;
- ``hold``: ``--connections`` connections opened and held idle, then all send one message;
- ``burst``: ``--connections`` devices, each from an address of its own, arrive within
  ``--within`` seconds, each STARTTLS, AUTH LOGIN, one message, QUIT, while the live view (the
  edge's) is read every 2 s; the time from connect to each 250, and whether every message was
  stored, against the baseline taking the same burst;
- ``idle``: the edge's resident size once it serves, and after one message of each shape.

The edge serves the bundled tenant with its quotas raised (a load test is not a throttling test);
every other rule is applied, every event recorded, every message fsynced before its 250. The
edge's CPU time and resident size are its process's and its children's (the store's writer).
Prints one JSON object per workload.

    python bench/load.py --workload app --messages 4000 --clients 20 [--rounds 2]
    python bench/load.py --workload memory --messages 100000
    python bench/load.py --workload hold --connections 1000
    python bench/load.py --workload burst --connections 1000 --within 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiosmtplib
import yaml

from fakes.exo.tenant import default_tenant

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "scanner@contoso.com", "Scan-2026!"
MESSAGE = (b"From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: load\r\n"
           b"Date: Fri, 27 Nov 2026 02:00:00 +0000\r\nMessage-ID: <{n}@bench.lab>\r\n\r\n" + (b"x" * 76 + b"\r\n") * 11)
DEADLINE = 600.0  # seconds: no workload runs longer


def _loaded_tenant(directory: Path) -> Path:
    """The bundled tenant with its quotas raised out of a load test's way."""
    data = default_tenant().model_dump(mode="json", exclude_none=True)
    data["limits"] |= {"messages_per_minute": 10_000_000, "recipients_per_day": 1_000_000_000,
                       "concurrent_connections_per_mailbox": 100_000, "max_connections_per_source": 100_000}
    path = directory / "tenant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def server(command: list[str]) -> Any:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        yield process, json.loads(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


def _tree(pid: int) -> list[int]:
    """The process and its children (the edge's store writer), theirs too."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += _tree(int(child))
    return found


def rss_mib(pid: int) -> float:
    """The resident size of the process and its children, summed."""
    total = 0
    for member in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """The CPU time so far of the process and its children (every thread's, user and system)."""
    ticks = 0
    for member in _tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Load:
    def __init__(self, cafile: Path) -> None:
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.sent = itertools.count()

    def _message(self) -> bytes:
        return MESSAGE.replace(b"{n}", str(next(self.sent)).encode())

    async def _session(self, address: tuple[str, int], *, tls: bool, source: str) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=address[0], port=address[1], start_tls=False, use_tls=False,
                                 local_hostname="bench.lab", source_address=(source, 0), timeout=60)
        await client.connect()
        if tls:
            await client.starttls(tls_context=self.context, server_hostname="smtp.office365.com")
            await client.login(USER, PASSWORD)
        return client

    async def printer(self, address: tuple[str, int], messages: int, clients: int) -> int:
        todo = itertools.count()

        async def device(n: int) -> None:
            while next(todo) < messages:
                client = await self._session(address, tls=True, source="127.0.0.5")
                await client.sendmail(USER, ["alice@contoso.com"], self._message())
                await client.quit()

        await asyncio.gather(*(device(n) for n in range(clients)))
        return messages

    async def kept(self, address: tuple[str, int], messages: int, clients: int, *, tls: bool) -> int:
        todo = itertools.count()
        source = "127.0.0.5" if tls else "127.0.0.10"  # the MX: an SPF-listed address (direct send)

        async def app() -> None:
            client = await self._session(address, tls=tls, source=source)
            sender = USER if tls else "printer@contoso.com"
            while next(todo) < messages:
                await client.sendmail(sender, ["alice@contoso.com"], self._message())
            await client.quit()

        await asyncio.gather(*(app() for _ in range(clients)))
        return messages

    async def hold(self, address: tuple[str, int], connections: int) -> dict[str, int]:
        """``connections`` connections opened and held (each said EHLO), then each sends one message."""
        sources = [f"127.0.2.{n}" for n in range(1, 255)]
        opened = await asyncio.gather(*(self._session(address, tls=False, source=sources[n % len(sources)])
                                        for n in range(connections)), return_exceptions=True)
        held = [c for c in opened if isinstance(c, aiosmtplib.SMTP)]

        async def send(client: aiosmtplib.SMTP) -> None:
            await client.sendmail("printer@contoso.com", ["alice@contoso.com"], self._message())
            await client.quit()

        sent = await asyncio.gather(*(send(c) for c in held), return_exceptions=True)
        errors = sorted({f"{type(e).__name__}: {e}"[:120] for e in [*opened, *sent] if isinstance(e, BaseException)})
        return {"connections": connections, "held": len(held), "open_errors": len(opened) - len(held),
                "send_errors": sum(isinstance(s, BaseException) for s in sent), "errors": errors[:5]}


    async def burst(self, address: tuple[str, int], devices: int, within: float,
                    live: tuple[str, int] | None) -> dict[str, Any]:
        """``devices`` devices arriving evenly over ``within`` seconds, each from its own address,
        each one printer-style message; the seconds from its connect to its 250."""
        took: list[float] = []
        errors: list[str] = []
        done = asyncio.Event()

        async def device(n: int) -> None:
            await asyncio.sleep(n * within / devices)  # the burst's shape: arrivals spread evenly
            started = time.perf_counter()
            try:
                client = await self._session(address, tls=True, source=f"127.1.{n // 250}.{n % 250 + 1}")
                await client.sendmail(USER, ["alice@contoso.com"], self._message())
                took.append(time.perf_counter() - started)
                await client.quit()
            except Exception as exc:  # counted and named: a burst that loses a device says so
                errors.append(f"{type(exc).__name__}: {exc}"[:120])

        async def watch() -> list[float]:  # a person with the live view open: a page every 2 s
            import aiohttp

            reads: list[float] = []
            async with aiohttp.ClientSession() as http:
                while not done.is_set():
                    started = time.perf_counter()
                    for path in ("/", "/devices.json"):
                        async with http.get(f"http://{live[0]}:{live[1]}{path}") as page:
                            await page.read()
                    reads.append(time.perf_counter() - started)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), 2.0)
            return reads

        watcher = asyncio.ensure_future(watch()) if live else None
        await asyncio.gather(*(device(n) for n in range(devices)))
        done.set()
        reads = await watcher if watcher else []
        took.sort()
        return {"devices": devices, "served": len(took), "errors": len(errors), "first_errors": errors[:3],
                "p50_s": round(statistics.median(took), 3) if took else None,
                "p99_s": round(took[min(len(took) - 1, int(len(took) * 0.99))], 3) if took else None,
                "max_s": round(took[-1], 3) if took else None,
                "live_reads": len(reads), "live_read_max_s": round(max(reads), 3) if reads else None}


def stored(state: Path) -> int:
    """Messages in the edge's store (read beside it: SQLite readers never block its writer)."""
    with contextlib.closing(sqlite3.connect(f"file:{state / 'store' / 'store.sqlite'}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(DISTINCT message_id) FROM messages WHERE kind = 'message'").fetchone()[0])


def files_caught_up(state: Path) -> float:
    """Wait until the edge has written the .eml file of every content it stored (it writes them
    once it is quiet), so that none of its work falls in the baseline's turn; the seconds waited."""
    start, messages = time.perf_counter(), state / "store" / "messages"
    with contextlib.closing(sqlite3.connect(f"file:{state / 'store' / 'store.sqlite'}?mode=ro", uri=True)) as db:
        contents = int(db.execute("SELECT count(*) FROM contents").fetchone()[0])
    while sum(1 for _ in messages.iterdir()) < contents and time.perf_counter() - start < DEADLINE:
        time.sleep(0.05)
    return time.perf_counter() - start


async def timed(work: Any) -> float:
    start = time.perf_counter()
    await asyncio.wait_for(work, DEADLINE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=["printer", "app", "mx", "memory", "hold", "burst", "idle"],
                        default="app")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--within", type=float, default=10.0, help="seconds the burst's arrivals spread over")
    parser.add_argument("--rounds", type=int, default=2, help="baseline and edge interleaved, the best of each")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as work:
        state = Path(work) / "edge"
        tenant = _loaded_tenant(Path(work))
        edge_cmd = [sys.executable, "-m", "harness.cli", "serve", "--state-dir", str(state), "--tenant", str(tenant)]
        if args.workload == "burst":
            edge_cmd += ["--live-port", "0"]
        with server(edge_cmd) as (edge, where):
            load = Load(state / "ca.pem")
            report: dict[str, Any] = {"workload": args.workload}
            if args.workload == "idle":
                report["edge_rss_mib_idle"] = round(rss_mib(edge.pid), 1)
                asyncio.run(load.printer(_address(where["submission"]), 1, 1))
                asyncio.run(load.kept(_address(where["mx"]), 1, 1, tls=False))
                report["edge_rss_mib_after_one_each"] = round(rss_mib(edge.pid), 1)
            elif args.workload == "burst":
                with server([sys.executable, str(ROOT / "bench" / "baseline_server.py"), "--state-dir",
                             str(state)]) as (_baseline, base_where):
                    base = asyncio.run(load.burst(_address(base_where["submission"]), args.connections,
                                                  args.within, None))
                    ours = asyncio.run(load.burst(_address(where["submission"]), args.connections, args.within,
                                                  _address(where["live"])))
                report |= {"edge": ours, "baseline": base, "stored": stored(state),
                           "p99_ratio": round(base["p99_s"] / ours["p99_s"], 2) if ours["p99_s"] else None,
                           "edge_rss_mib": round(rss_mib(edge.pid), 1)}
            elif args.workload == "hold":
                report |= asyncio.run(load.hold(_address(where["mx"]), args.connections))
                report["edge_rss_mib"] = round(rss_mib(edge.pid), 1)
            elif args.workload == "memory":
                samples, step = [], max(args.messages // 10, 1)

                async def run() -> None:
                    for _ in range(0, args.messages, step):
                        await load.kept(_address(where["submission"]), step, args.clients, tls=True)
                        samples.append(round(rss_mib(edge.pid), 1))

                report["seconds"] = round(asyncio.run(timed(run())), 1)
                report |= {"messages": args.messages, "edge_rss_mib_every_tenth": samples}
            else:
                with server([sys.executable, str(ROOT / "bench" / "baseline_server.py"), "--state-dir",
                             str(state)]) as (baseline, base_where):
                    endpoint = "mx" if args.workload == "mx" else "submission"
                    targets = {"baseline": _address(base_where[endpoint]), "edge": _address(where[endpoint])}

                    def work(target: tuple[str, int]) -> Any:
                        if args.workload == "printer":
                            return load.printer(target, args.messages, args.clients)
                        return load.kept(target, args.messages, args.clients, tls=args.workload == "app")

                    best = {"baseline": float("inf"), "edge": float("inf")}
                    cpu = {"baseline": float("inf"), "edge": float("inf")}  # server CPU seconds a run, the least
                    pids = {"baseline": baseline.pid, "edge": edge.pid}
                    asyncio.run(timed(work(targets["baseline"])))  # warm up both
                    asyncio.run(timed(work(targets["edge"])))
                    files_after = 0.0  # the longest the edge took to write its .eml files after a run
                    for _ in range(args.rounds):
                        for name in ("baseline", "edge"):
                            files_after = max(files_after, files_caught_up(state))
                            before = cpu_seconds(pids[name])
                            best[name] = min(best[name], asyncio.run(timed(work(targets[name]))))
                            cpu[name] = min(cpu[name], cpu_seconds(pids[name]) - before)
                    before = cpu_seconds(edge.pid)
                    files_after = max(files_after, files_caught_up(state))
                    files_cpu = cpu_seconds(edge.pid) - before  # the last round's files, written after it
                    rate = {name: args.messages / seconds for name, seconds in best.items()}
                    report |= {"messages": args.messages, "clients": args.clients,
                               "ratio": round(rate["edge"] / rate["baseline"], 2),
                               "baseline_msg_per_s": round(rate["baseline"]),
                               "edge_msg_per_s": round(rate["edge"]),
                               "edge_files_written_after_s": round(files_after, 2),
                               # CPU per message, every thread of the server's (the load's own is not
                               # counted): steadier than rates on a shared machine
                               "baseline_cpu_ms_per_msg": round(cpu["baseline"] * 1000 / args.messages, 3),
                               "edge_cpu_ms_per_msg": round(cpu["edge"] * 1000 / args.messages, 3),
                               "edge_files_cpu_ms_per_msg": round(files_cpu * 1000 / args.messages, 3),
                               "cpu_ratio": round(cpu["baseline"] / cpu["edge"], 2),
                               "edge_rss_mib": round(rss_mib(edge.pid), 1)}
            print(json.dumps(report), flush=True)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


if __name__ == "__main__":
    main()
