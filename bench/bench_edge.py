"""How much the simulated edge costs per message, as a ratio against stock aiosmtpd in the same run.

Both servers run on 127.0.0.1 in this process's loop thread; one smtplib client sends the same
messages to each over one plaintext connection: to the edge's tenant MX (direct send: parse,
rules, SPF, the SQLite store and the records) and to aiosmtpd with a handler that keeps nothing.
A third figure is the sans-IO session alone (no sockets). Prints one JSON object.

    .venv/bin/python bench/bench_edge.py [--messages 300]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import smtplib
import tempfile
import threading
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP

from fakes.edge import Edge, EdgeThread
from fakes.exo import session as S
from fakes.exo.quota import QuotaLedger
from fakes.exo.tenant import default_tenant

MESSAGE = (b"From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: bench\r\n"
           b"Date: Fri, 27 Nov 2026 02:00:00 +0000\r\nMessage-ID: <b@device.lab>\r\n\r\n" + (b"x" * 76 + b"\r\n") * 26)


class KeepNothing:
    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201 - aiosmtpd's hook signature
        return "250 OK"


def send(host: str, port: int, count: int) -> float:
    with smtplib.SMTP(host, port, local_hostname="bench", source_address=("127.0.0.10", 0)) as client:
        client.ehlo()
        start = time.perf_counter()
        for _ in range(count):
            client.sendmail("scanner@contoso.com", ["alice@contoso.com"], MESSAGE)
        return time.perf_counter() - start


def baseline_server() -> tuple[tuple[str, int], asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    address: list[tuple[str, int]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(
            loop.create_server(lambda: SMTP(KeepNothing(), hostname="baseline"), "127.0.0.1", 0))
        address.append(server.sockets[0].getsockname()[:2])
        ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait()
    return address[0], loop, thread


def sans_io(count: int) -> float:
    tenant = default_tenant()
    ids = itertools.count()
    state = S.EdgeState(tenant, QuotaLedger(tenant.limits), time.time, lambda: f"{next(ids):016X}")
    start = time.perf_counter()
    for _ in range(count):
        session = S.Session(state, "mx", "127.0.0.10")
        for event in (S.Hello("EHLO", "b"), S.MailFrom("scanner@contoso.com"), S.RcptTo("alice@contoso.com"),
                      S.Data(), S.MessageBody(MESSAGE), S.Quit()):
            session.handle(event)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    count = parser.parse_args().messages
    (host, port), loop, thread = baseline_server()
    with tempfile.TemporaryDirectory() as state, EdgeThread(Edge(state_dir=Path(state))) as edge:
        send(host, port, 10)  # warm both up
        mx_host, mx_port = edge.addresses["mx"]
        send(mx_host, mx_port, 10)
        baseline = send(host, port, count)
        edge_time = send(mx_host, mx_port, count)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    model = sans_io(count)
    print(json.dumps({
        "messages": count,
        "edge_over_stock_aiosmtpd": round(edge_time / baseline, 2),
        "sans_io_share_of_edge_time": round(model / edge_time, 3),
        "stock_aiosmtpd_ms_per_message": round(1000 * baseline / count, 3),
        "edge_ms_per_message": round(1000 * edge_time / count, 3),
    }))


if __name__ == "__main__":
    main()
