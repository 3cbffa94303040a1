"""The lab's live view over HTTP (aiohttp, as the identity endpoint), read-only: a page that reloads
itself (no script needed), rendered off the loop a page of sessions at a time, ``/sessions.json``,
``/devices.json``, and the newest stored messages. Loaded only when the lab's view is started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from fakes.live import DEVICES, PAGE, LiveSessions
from fakes.store import MailStore
from fakes.web import WebEndpoint

_PAGES = Environment(loader=PackageLoader("fakes", "templates"), autoescape=select_autoescape(["html"]))


class LiveView(WebEndpoint):
    """The read-only page."""

    endpoint = "live"

    def __init__(self, sessions: LiveSessions, store: MailStore, tenant: Callable[[], str]) -> None:
        super().__init__()
        self.sessions = sessions
        self.store = store
        self.tenant = tenant

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.page), web.get("/sessions.json", self.json), web.get("/devices.json", self.devices)]

    @staticmethod
    def _page_number(request: web.Request) -> int:
        asked = request.query.get("page", "1")
        return int(asked) if asked.isdigit() and 0 < len(asked) < 7 else 1

    async def page(self, request: web.Request) -> web.Response:
        number = self._page_number(request)
        newest = self.sessions.newest(number)
        devices = self.sessions.newest_devices()
        values = {"stored": self.store.recent(50), "tenant": self.tenant(),
                  "now": time.strftime("%H:%M:%S"), "page": number, "more": len(newest) == PAGE}

        def render() -> str:  # in a thread: the loop keeps serving SMTP while hellos are read, devices judged
            sessions = [s.read().as_dict() for s in newest]
            judged = [d.as_dict() for d in self.sessions.judged(devices)]
            return _PAGES.get_template("live.html").render(sessions=sessions, devices=judged, **values)

        return web.Response(text=await asyncio.to_thread(render), content_type="text/html")

    async def devices(self, request: web.Request) -> web.Response:
        devices = self.sessions.newest_devices(DEVICES)
        judged = await asyncio.to_thread(self.sessions.judged, devices)
        return web.json_response([d.as_dict() for d in judged])

    async def json(self, request: web.Request) -> web.Response:
        newest = self.sessions.newest(self._page_number(request))
        return web.json_response(await asyncio.to_thread(lambda: [s.read().as_dict() for s in newest]))
