"""The lab's live view: the sessions as they happen, for the person at the printer.

``LiveSessions`` watches the records and keeps, per session, a summary (source, endpoint, TLS,
AUTH, what was stored, the last reply) and its transcript, for the newest ``KEEP`` sessions
only: a lab left running for days holds no more. Each closed session is also one line for the
terminal. ``LiveView`` serves them read-only over HTTP (aiohttp, as the identity endpoint): a page
that reloads itself (no script needed), ``/sessions.json``, and the newest stored messages.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from fakes.store import MailStore
from fakes.web import WebEndpoint

KEEP = 200  # closed sessions shown
LINES = 300  # transcript lines kept per session
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
        return "  ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "endpoint": self.endpoint, "peer": self.peer, "started": self.started,
                "tls": self.tls, "sni": self.sni, "auth": self.auth, "stored": self.stored,
                "last_reply": self.last_reply, "closed": self.closed, "lines": self.lines}


class LiveSessions:
    """Summaries kept up to date from the record events (O(1) per event)."""

    def __init__(self, on_closed: Callable[[LiveSession], None] | None = None) -> None:
        self.open: dict[str, LiveSession] = {}
        self.closed: collections.deque[LiveSession] = collections.deque(maxlen=KEEP)
        self.on_closed = on_closed

    def __call__(self, event: dict[str, Any]) -> None:
        kind, sid = event["kind"], event["session"]
        if kind == "connect":
            peer = event.get("peer") or ["?"]
            self.open[sid] = LiveSession(sid, event.get("endpoint", "?"), str(peer[0]), event["t"])
            return
        session = self.open.get(sid)
        if session is None:
            return  # DNS queries and identity requests are not sessions
        text = None
        if kind == "command":
            text = f"C: {event['line']}"
        elif kind == "auth_response":
            text = "C: <redacted>"
        elif kind == "reply":
            text = f"S: {event['line']}"
            if event["line"][3:4] != "-":
                session.last_reply = event["line"]
        elif kind == "client_hello":
            session.sni = event.get("sni")
            text = f"*  ClientHello: offers {', '.join(event.get('versions', []))}; SNI {event.get('sni') or 'none'}"
        elif kind == "tls":
            session.tls = event.get("version")
            text = f"*  TLS {event.get('version')} {event.get('cipher')}"
        elif kind == "auth":
            who = " ".join(str(x) for x in (event.get("mechanism"), event.get("user")) if x)
            session.auth = f"{who}: {event.get('outcome')}"
        elif kind == "message":
            text = f"C: <message, {event.get('size')} bytes by {event.get('via', 'DATA')}>"
        elif kind == "stored":
            session.stored += len(event.get("copies", []))
            text = f"*  stored {len(event.get('copies', []))} cop(ies): {event.get('folders')}"
        elif kind in ("tls_failed", "refused", "harness_fault", "fault"):
            text = f"*  {kind}: {event.get('reason') or event.get('error') or event.get('reply') or ''}"
        if text is not None and len(session.lines) < LINES:
            session.lines.append(text)
        if kind == "disconnect":
            session.closed = True
            del self.open[sid]
            self.closed.appendleft(session)
            if self.on_closed is not None:
                self.on_closed(session)

    def newest(self) -> list[LiveSession]:
        return [*sorted(self.open.values(), key=lambda s: -s.started), *self.closed]


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

    async def page(self, request: web.Request) -> web.Response:
        html = _PAGES.get_template("live.html").render(
            sessions=self.sessions.newest(), stored=self.store.recent(50), tenant=self.tenant(),
            now=time.strftime("%H:%M:%S"))
        return web.Response(text=html, content_type="text/html")

    async def json(self, request: web.Request) -> web.Response:
        return web.json_response([s.as_dict() for s in self.sessions.newest()])
