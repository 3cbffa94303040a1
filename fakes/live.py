"""The lab's live view: the sessions as they happen, for the person at the printer.

``LiveSessions`` watches the records and keeps, per session, a summary (source, endpoint, TLS,
AUTH, what was stored, the last reply) and its transcript, for the newest ``KEEP`` sessions
only, each line cut at ``LINE_CHARS`` with its controls escaped: a lab left running for days, or
a peer sending long lines of escape codes, holds no more and forges nothing on the terminal.
Each closed session is also one line for the terminal. ``LiveView`` serves them read-only over
HTTP (aiohttp, as the identity endpoint): a page that reloads itself (no script needed), rendered
off the loop a page of sessions at a time, ``/sessions.json``, and the newest stored messages.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from fakes.exo.observed import (
    AuthOutcome,
    ClientHelloSeen,
    Connect,
    Disconnect,
    Observed,
    ReplySent,
    Stored,
    Tls,
    describe,
)
from fakes.store import MailStore
from fakes.web import WebEndpoint

KEEP = 200  # closed sessions shown
LINES = 300  # transcript lines kept per session
LINE_CHARS = 240  # of each line: a peer's 64 KiB NOOP is kept (and shown) as its start and its length
PAGE = 25  # sessions a page shows, newest first (?page=2 for the next)
# C0 and C1 controls and DEL: a peer's ESC or BEL would clear the terminal or forge a line
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, limit: int = LINE_CHARS) -> str:
    """A peer's text as the terminal and the page show it: controls written as escapes (``\\x1b``),
    and cut at ``limit`` characters with the length of what was left out."""
    cut = text[:limit]
    shown = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", cut)
    return shown if len(text) <= limit else f"{shown}… (+{len(text) - limit} characters)"
_PAGES = Environment(loader=PackageLoader("fakes", "templates"), autoescape=select_autoescape(["html"]))


@dataclass
class LiveSession:
    id: str
    endpoint: str
    peer: str
    started: float
    tls: str | None = None
    sni: str | None = None
    auth: str | None = None  # "LOGIN scanner@contoso.com: success"
    stored: int = 0
    last_reply: str | None = None
    closed: bool = False
    lines: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The session in one line, as the terminal shows it when it closes."""
        when = time.strftime("%H:%M:%S", time.localtime(self.started))
        parts = [when, self.id, self.peer, self.endpoint, self.tls or "plain"]
        if self.auth:
            parts.append(f"AUTH {self.auth}")
        parts.append(f"{self.stored} stored" if self.stored else "nothing stored")
        if self.last_reply:
            parts.append(f"last: {self.last_reply[:80]}")
        return "  ".join(printable(part) for part in parts)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "endpoint": self.endpoint, "peer": self.peer, "started": self.started,
                "tls": self.tls, "sni": self.sni, "auth": self.auth, "stored": self.stored,
                "last_reply": self.last_reply, "closed": self.closed, "lines": list(self.lines)}


class LiveSessions:
    """Summaries kept up to date from the record events (O(1) per event)."""

    def __init__(self, on_closed: Callable[[LiveSession], None] | None = None) -> None:
        self.open: dict[str, LiveSession] = {}
        self.closed: collections.deque[LiveSession] = collections.deque(maxlen=KEEP)
        self.on_closed = on_closed

    def __call__(self, event: Observed) -> None:
        if isinstance(event, Connect):
            self.open[event.session] = LiveSession(event.session, event.endpoint, event.peer[0], event.t)
            return
        session = self.open.get(event.session)
        if session is None:
            return  # DNS queries and identity requests are not sessions
        match event:
            case ReplySent(last=True):
                session.last_reply = printable(event.line)
            case ClientHelloSeen(sni=sni):
                session.sni = printable(sni) if sni else None
            case Tls(version=version):
                session.tls = version
            case AuthOutcome(mechanism=mechanism, user=user, outcome=outcome):
                session.auth = printable(f"{' '.join(x for x in (mechanism, user) if x)}: {outcome}")
            case Stored(copies=copies):
                session.stored += len(copies)
        text = describe(event)
        if text is not None and len(session.lines) < LINES:
            session.lines.append(printable(text))
        if isinstance(event, Disconnect):
            session.closed = True
            del self.open[event.session]
            self.closed.appendleft(session)
            if self.on_closed is not None:
                self.on_closed(session)

    def newest(self, page: int = 1) -> list[LiveSession]:
        """One page of sessions, the open ones first, newest first."""
        start = (max(page, 1) - 1) * PAGE
        ordered = itertools.chain(sorted(self.open.values(), key=lambda s: -s.started), self.closed)
        return list(itertools.islice(ordered, start, start + PAGE))


class LiveView(WebEndpoint):
    """The read-only page."""

    endpoint = "live"

    def __init__(self, sessions: LiveSessions, store: MailStore, tenant: Callable[[], str]) -> None:
        super().__init__()
        self.sessions = sessions
        self.store = store
        self.tenant = tenant

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.page), web.get("/sessions.json", self.json)]

    @staticmethod
    def _page_number(request: web.Request) -> int:
        asked = request.query.get("page", "1")
        return int(asked) if asked.isdigit() and 0 < len(asked) < 7 else 1

    async def page(self, request: web.Request) -> web.Response:
        number = self._page_number(request)
        sessions = [s.as_dict() for s in self.sessions.newest(number)]  # a copy, taken on the loop
        values = {"sessions": sessions, "stored": self.store.recent(50), "tenant": self.tenant(),
                  "now": time.strftime("%H:%M:%S"), "page": number, "more": len(sessions) == PAGE}
        # rendered in a thread: the loop keeps serving SMTP while a page of long transcripts is written
        html = await asyncio.to_thread(_PAGES.get_template("live.html").render, **values)
        return web.Response(text=html, content_type="text/html")

    async def json(self, request: web.Request) -> web.Response:
        return web.json_response([s.as_dict() for s in self.sessions.newest(self._page_number(request))])
