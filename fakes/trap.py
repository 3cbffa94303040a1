"""Port 465: smtp.office365.com serves nothing there. ``ImplicitTlsTrap`` records what a client
tried (the ClientHello of implicit TLS, plaintext, or silence) and closes."""

from __future__ import annotations

import asyncio

from fakes.exo.observed import Disconnect, Plaintext, Silent
from fakes.exo.state import EdgeState
from fakes.gate import Gate, descriptor_plan, stream_protocol
from fakes.record import RecordLog
from fakes.smtp import Listening
from fakes.tls import hello_message, kept_hello


class ImplicitTlsTrap(Listening):
    """Port 465: smtp.office365.com serves nothing there. Record what the client tried, close."""

    endpoint = "implicit-tls"

    def __init__(self, records: RecordLog, wait: float = 5.0, budget: EdgeState | None = None) -> None:
        self.records = records
        self.wait = wait
        self.budget = budget
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rec = self.records.open_session(self.endpoint, writer.get_extra_info("peername"),
                                        writer.get_extra_info("sockname"))
        try:
            data = await asyncio.wait_for(_read_record(reader), self.wait)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            data = b""
        if data[:1] == b"\x16":
            rec.add(kept_hello(hello_message(data) or data, implicit_tls=True))
        elif data:
            rec.add(Plaintext(first_bytes=data[:64].decode("latin-1")))
        else:
            rec.add(Silent(waited=self.wait))
        writer.close()
        rec.add(Disconnect())

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        if self.budget is None:
            self.server = await asyncio.start_server(self._serve, host, port)
        else:
            budget, serve = self.budget, stream_protocol(self._serve)
            self.server = await asyncio.get_running_loop().create_server(
                lambda: Gate(budget, self.endpoint, serve, self.records), host, port, backlog=descriptor_plan()[1])
        return self.server.sockets[0].getsockname()[:2]


async def _read_record(reader: asyncio.StreamReader) -> bytes:
    """One TLS record (header and body), or whatever plaintext the client sent first."""
    head = await reader.read(5)
    if head[:1] != b"\x16" or len(head) < 5:
        return head
    length = int.from_bytes(head[3:5], "big")
    return head + await reader.readexactly(length)
