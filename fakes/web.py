"""What the edge's HTTP endpoints share (the identity platform, the lab's live view): one aiohttp
site, whose keep-alive connections are dropped when it stops; ``stop`` may be called any number
of times."""

from __future__ import annotations

import asyncio
import ssl
import weakref
from typing import Any

from aiohttp import web


class WebEndpoint:
    tls_context: ssl.SSLContext | None = None

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
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

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        app = web.Application(middlewares=[self._remember_transport])
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=self.tls_context).start()
        bound = self._runner.addresses[0]
        return bound[0], bound[1]

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            for transport in list(self._transports):
                transport.abort()
