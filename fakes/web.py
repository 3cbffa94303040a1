"""What the edge's HTTP endpoints share (the identity platform, the lab's live view): one aiohttp
site, whose keep-alive connections are dropped when it stops; ``stop`` may be called any number
of times."""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import Callable
from typing import Any

from aiohttp import web

from fakes.exo.errors import InternalError
from fakes.exo.state import EdgeState
from fakes.gate import Gate, descriptor_plan
from fakes.record import RecordLog


class WebEndpoint:
    tls_context: ssl.SSLContext | None = None
    endpoint = "web"

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        # the edge's connection budget: connections are admitted (and TLS begun) through a gate
        self.budget: tuple[EdgeState, RecordLog] | None = None
        # the connections of clients that keep theirs open (HTTP keep-alive): dropped at stop
        self._transports: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()

    def routes(self) -> list[web.RouteDef]:  # pragma: no cover - every endpoint overrides
        raise NotImplementedError

    @web.middleware
    async def _remember_transport(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.transport is not None:
            self._transports.add(request.transport)
        response: web.StreamResponse = await handler(request)
        return response

    async def setup(self) -> Callable[[], asyncio.BaseProtocol]:
        """The application, ready: what makes each connection's protocol (for a ``Gate``)."""
        app = web.Application(middlewares=[self._remember_transport])
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        if self._runner.server is None:
            raise InternalError("expected the aiohttp runner to be set up")
        return self._runner.server

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        handler = await self.setup()
        if self.budget is None:
            runner = self._runner
            if runner is None:
                raise InternalError("expected the aiohttp runner to be set up")
            await web.TCPSite(runner, host, port, ssl_context=self.tls_context).start()
            bound = runner.addresses[0]
            return bound[0], bound[1]
        state, records = self.budget
        tls = self.tls_context
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Gate(state, self.endpoint, handler, records, tls), host, port, backlog=descriptor_plan()[1])
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            for transport in list(self._transports):
                transport.abort()
