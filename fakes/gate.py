"""One connection budget for every listener, and accept errors logged once an interval.

SMTP counts its connections in the session (``EdgeState.admit``: the one too many hears 421
4.3.2). The other listeners (the identity endpoint, DNS over TCP, the port 465 trap, the live
view) take theirs through a ``Gate``: the same budget, per source and in all, checked when the
connection is accepted, before a byte is read or a TLS handshake begun, so that idle connections
to any of them cannot hold the descriptors SMTP needs. A connection over the budget is closed at
once. The gate stays the transport's protocol and hands everything on to the endpoint's own
(aiohttp's, a ``StreamReaderProtocol``); TLS is started with ``loop.start_tls``, within a
handshake time limit.

``AcceptErrors`` is the loop's exception handler: asyncio reports every failed ``accept()`` at the
descriptor limit (once per queued connection, a backlog's worth per wake-up); it logs the first
and then one line an interval with the count.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fakes.exo.errors import InternalError
from fakes.exo.observed import Disconnect, Refused
from fakes.exo.state import EdgeState
from fakes.record import RecordLog

HANDSHAKE_SECONDS = 10.0  # a client that sends no ClientHello in this long is closed
RESERVED_DESCRIPTORS = 64  # for the store, the records, the listeners themselves
BACKLOG = 4096  # the deepest accept queue: a lab's burst of a thousand devices is served at once
ACCEPT_LOG_INTERVAL = 60.0
log = logging.getLogger("exo-edge")


def descriptor_plan() -> tuple[int | None, int]:
    """(connections the budget may hold, the accept queue) for this process's descriptor limit.
    asyncio accepts up to a queue's length at each wake-up, and a connection turned away still
    holds its descriptor until the loop turns: so the budget leaves room for a whole batch, and a
    small limit gets a short queue. ``None``: no limit to keep below."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None, BACKLOG
    batch = min(BACKLOG, max(8, soft // 8))
    return max(1, soft - RESERVED_DESCRIPTORS - batch), batch


class Gate(asyncio.Protocol):
    """One accepted connection: counted in the budget, or closed at once."""

    def __init__(self, budget: EdgeState, endpoint: str, inner: Callable[[], asyncio.BaseProtocol],
                 records: RecordLog, tls: ssl.SSLContext | None = None,
                 prepare: Callable[[], Awaitable[None]] | None = None) -> None:
        self.budget = budget
        self.endpoint = endpoint
        self.make_inner = inner
        self.prepare = prepare  # awaited before the endpoint takes its first connection (it is made then)
        self.records = records
        self.tls = tls
        self.inner: Any = None  # the endpoint's protocol, once the connection is admitted (and secured)
        self.peer = "?"
        self.admitted = False
        self.early: list[bytes] = []  # plaintext that arrived before the endpoint's protocol took over

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # a listening socket's: always a stream
            transport.close()
            return
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.peer = str(peer[0])
        if self.budget.admit(self.peer) is not None:
            record = self.records.open_session(self.endpoint, peer, transport.get_extra_info("sockname") or ("?", 0))
            record.add(Refused(reason="connection limit", peer=self.peer))
            record.add(Disconnect())
            transport.abort()
            return
        self.admitted = True
        if self.tls is None and self.prepare is None:
            self._hand_over(transport)
            return
        transport.pause_reading()  # until the endpoint (or start_tls) takes the stream: no byte is lost
        asyncio.get_running_loop().create_task(self._begin(transport))

    async def _begin(self, raw: asyncio.Transport) -> None:
        if self.prepare is not None:
            try:
                await self.prepare()
            except Exception:
                log.exception("exo-edge: the %s endpoint could not be made", self.endpoint)
                raw.abort()
                return
            if raw.is_closing():
                return
        if self.tls is None:
            self._hand_over(raw)
            raw.resume_reading()
            return
        await self._secure(raw, self.tls)

    async def _secure(self, raw: asyncio.Transport, tls: ssl.SSLContext) -> None:
        try:
            secured = await asyncio.get_running_loop().start_tls(
                raw, self, tls, server_side=True, ssl_handshake_timeout=HANDSHAKE_SECONDS)
        except (OSError, TimeoutError, ssl.SSLError, ConnectionError, RuntimeError):
            raw.abort()
            return
        if secured is None or secured.is_closing():
            raw.abort()
            return
        self._hand_over(secured)

    def _hand_over(self, transport: asyncio.BaseTransport) -> None:
        self.inner = self.make_inner()
        self.inner.connection_made(transport)
        early, self.early = self.early, []
        for data in early:
            self.inner.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)
        else:  # what came with the handshake's last flight, before start_tls returned
            self.early.append(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.admitted = False
            self.budget.release(self.peer)
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)


class DeferredEndpoint:
    """A listener whose HTTP endpoint (``fakes.web.WebEndpoint``: the identity platform) is made at
    its first connection, so that an edge no device signs in to never loads aiohttp and jinja2.
    The port listens, and the budget counts, from ``start``; the first connection waits for the
    endpoint, later ones find it made."""

    def __init__(self, endpoint: str, make: Callable[[], Any], budget: EdgeState, records: RecordLog,
                 tls: ssl.SSLContext | None) -> None:
        self.endpoint = endpoint
        self.make = make  # -> a WebEndpoint (imports what it needs when called)
        self.budget, self.records, self.tls = budget, records, tls
        self.made: Any = None
        self._handler: Callable[[], asyncio.BaseProtocol] | None = None
        self._making: asyncio.Future[None] | None = None
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Gate(self.budget, self.endpoint, self._protocol, self.records, self.tls,
                         None if self._handler is not None else self._prepare),
            host, port, backlog=descriptor_plan()[1])
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def _prepare(self) -> None:
        if self._making is None:
            self._making = asyncio.ensure_future(self._make())
        await asyncio.shield(self._making)

    async def _make(self) -> None:
        self.made = await asyncio.to_thread(self.make)  # its imports in a thread: the loop serves on
        self._handler = await self.made.setup()

    def _protocol(self) -> asyncio.BaseProtocol:
        if self._handler is None:
            raise InternalError(f"a connection handed to the {self.endpoint} endpoint before it was made")
        return self._handler()

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
        if self._making is not None and not self._making.done():
            self._making.cancel()
        if self.made is not None:
            await self.made.stop()


def stream_protocol(serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]) -> Callable[[], Any]:
    """What ``asyncio.start_server`` makes for each connection, for a gate to hand over to."""

    def make() -> asyncio.StreamReaderProtocol:
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(), serve)

    return make


class AcceptErrors:
    """The loop's exception handler: "socket.accept() out of system resource" logged once an
    interval with how often it happened; everything else as asyncio would."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, interval: float = ACCEPT_LOG_INTERVAL) -> None:
        self.clock = clock
        self.interval = interval
        self.suppressed = 0
        self.logged_at: float | None = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "_start_serving" in repr(context.get("handle")) and isinstance(context.get("exception"), ValueError):
            # asyncio's retries of a listener closed since (one per failed accept): nothing to say
            self.suppressed += 1
            return
        if not message.startswith("socket.accept() out of system resource"):
            loop.default_exception_handler(context)
            return
        now = self.clock()
        if self.logged_at is not None and now - self.logged_at < self.interval:
            self.suppressed += 1
            return
        error = context.get("exception")
        more = f" ({self.suppressed} more since the last report)" if self.suppressed else ""
        log.error("exo-edge: cannot accept connections: %s%s; the edge answers again as descriptors free up",
                  error or "out of descriptors", more)
        self.suppressed = 0
        self.logged_at = now
