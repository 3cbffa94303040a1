"""The lab's live view: the sessions as they happen, for the person at the printer.

``LiveSessions`` watches the records and keeps, per session, a summary (source, endpoint, TLS,
AUTH, what was stored, the last reply) and its transcript, for the newest ``KEEP`` sessions
only, each line cut at ``LINE_CHARS`` with its controls escaped: a lab left running for days, or
a peer sending long lines of escape codes, holds no more and forges nothing on the terminal.
Each closed session is also one line for the terminal. ``fakes.live_view.LiveView`` serves them
over HTTP.
"""

from __future__ import annotations

import collections
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fakes.exo.observed import (
    AuthOutcome,
    ClientHelloSeen,
    Command,
    Connect,
    Disconnect,
    Observed,
    ReplySent,
    Stored,
    Tls,
    describe,
)
from fakes.tls import read_hello

KEEP = 200  # closed sessions shown
LINES = 300  # transcript lines kept per session
LINE_CHARS = 240  # of each line: a peer's 64 KiB NOOP is kept (and shown) as its start and its length
PAGE = 25  # sessions a page shows, newest first (?page=2 for the next)
DEVICES = 500  # devices remembered (the least recently seen forgotten first)
DEVICE_EVENTS = 2000  # a device's newest events, what its rolling verdict is judged from
JUDGING_BUDGET = 0.05  # seconds of judging a read of the live view spends at most
# C0 and C1 controls and DEL: a peer's ESC or BEL would clear the terminal or forge a line
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, limit: int = LINE_CHARS) -> str:
    """A peer's text as the terminal and the page show it: controls written as escapes (``\\x1b``),
    and cut at ``limit`` characters with the length of what was left out."""
    cut = text[:limit]
    shown = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", cut)
    return shown if len(text) <= limit else f"{shown}… (+{len(text) - limit} characters)"


@dataclass
class LiveSession:
    id: str
    endpoint: str
    peer: str
    started: float
    tls: str | None = None
    offered: str | None = None  # what the ClientHello offered (shown when no TLS was negotiated)
    sni: str | None = None
    ehlo: str | None = None  # the name it gave, which often names the model
    hello: ClientHelloSeen | None = None  # as the edge kept it: read (sni, offered) when shown
    auth: str | None = None  # "LOGIN scanner@contoso.com: success"
    stored: int = 0
    last_reply: str | None = None
    closed: bool = False
    said: list[Observed] = field(default_factory=list)  # its first events, for the transcript (read when shown)

    @property
    def lines(self) -> list[str]:
        """The transcript: each event as ``describe`` words it, made printable."""
        return [printable(text) for text in map(describe, self.said) if text is not None][:LINES]

    def line(self) -> str:
        """The session in one line, as the terminal shows it when it closes."""
        when = time.strftime("%H:%M:%S", time.localtime(self.started))
        parts = [when, self.id, self.peer, self.endpoint, self.tls_shown]
        if self.auth:
            parts.append(f"AUTH {self.auth}")
        parts.append(f"{self.stored} stored" if self.stored else "nothing stored")
        if self.last_reply:
            parts.append(f"last: {self.last_reply[:80]}")
        return "  ".join(printable(part) for part in parts)

    def read(self) -> LiveSession:
        """Take its ClientHello apart (scapy), once: for the page or the terminal, never per event."""
        hello, self.hello = self.hello, None
        if hello is not None:
            hello = read_hello(hello)
            self.sni = printable(hello.sni) if hello.sni else None
            self.offered = ", ".join(hello.versions) or None
        return self

    @property
    def tls_shown(self) -> str:
        """The TLS version, or what a failed handshake offered, or "plain"."""
        if self.tls:
            return self.tls
        return f"offered {self.offered}, no TLS" if self.offered else "plain"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "endpoint": self.endpoint, "peer": self.peer, "started": self.started,
                "tls": self.tls, "tls_shown": self.tls_shown, "offered": self.offered, "sni": self.sni,
                "ehlo": self.ehlo, "auth": self.auth, "stored": self.stored, "last_reply": self.last_reply,
                "closed": self.closed, "lines": self.lines}


@dataclass
class LiveDevice:
    """A source address the lab has seen, with its newest events for its rolling verdict."""

    address: str
    names: list[str] = field(default_factory=list)
    sessions: int = 0
    last_seen: float = 0.0
    events: collections.deque[Observed] = field(default_factory=lambda: collections.deque(maxlen=DEVICE_EVENTS))
    verdict: str | None = None
    judged_at: int = -1  # the session count its verdict was judged at

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "names": list(self.names), "sessions": self.sessions,
                "last_seen": self.last_seen, "verdict": self.verdict}


class LiveSessions:
    """Summaries kept up to date from the record events (O(1) per event)."""

    def __init__(self, on_closed: Callable[[LiveSession], None] | None = None,
                 judge: Callable[[list[Observed]], str] | None = None) -> None:
        self.open: dict[str, LiveSession] = {}
        self.closed: collections.deque[LiveSession] = collections.deque(maxlen=KEEP)
        self.on_closed = on_closed
        # what a device's events say of it at Exchange Online (the harness's checks, handed in)
        self.judge = judge
        self.devices: collections.OrderedDict[str, LiveDevice] = collections.OrderedDict()

    def _device(self, address: str, t: float) -> LiveDevice:
        device = self.devices.pop(address, None) or LiveDevice(address)
        self.devices[address] = device  # the most recently seen last
        device.last_seen = t
        if len(self.devices) > DEVICES:
            self.devices.popitem(last=False)
        return device

    def __call__(self, event: Observed) -> None:
        if isinstance(event, Connect):
            self.open[event.session] = LiveSession(event.session, event.endpoint, event.peer[0], event.t)
            self._device(event.peer[0], event.t).events.append(event)
            return
        session = self.open.get(event.session)
        if session is None:
            return  # DNS queries and identity requests are not sessions
        device = self.devices.get(session.peer)
        if device is not None:
            device.events.append(event)
        match event:
            case Command(verb="EHLO" | "HELO", line=line) if " " in line:
                session.ehlo = printable(line.split(" ", 1)[1].strip(), 100)
                if device is not None and session.ehlo not in device.names and len(device.names) < 5:
                    device.names.append(session.ehlo)

            case ReplySent(last=True):
                session.last_reply = printable(event.line)
            case ClientHelloSeen():
                session.hello = event
            case Tls(version=version):
                session.tls = version
            case AuthOutcome(mechanism=mechanism, user=user, outcome=outcome):
                session.auth = printable(f"{' '.join(x for x in (mechanism, user) if x)}: {outcome}")
            case Stored(copies=copies):
                session.stored += len(copies)
        if len(session.said) < LINES and not isinstance(event, Disconnect):
            session.said.append(event)
        if isinstance(event, Disconnect):
            if session.tls is None:  # a failed handshake: what it offered is the news (the terminal's line)
                session.read()
            if device is not None:
                device.sessions += 1
            session.closed = True
            del self.open[event.session]
            self.closed.appendleft(session)
            if self.on_closed is not None:
                self.on_closed(session)

    def newest_devices(self, count: int = PAGE) -> list[LiveDevice]:
        """The most recently seen devices, newest first, each with a copy of its events (taken on
        the loop; ``judged`` judges them in a thread)."""
        out = []
        for device in itertools.islice(reversed(self.devices.values()), count):
            copy = LiveDevice(device.address, list(device.names), device.sessions, device.last_seen,
                              verdict=device.verdict, judged_at=device.judged_at)
            if self.judge is not None and device.judged_at != device.sessions:
                copy.events.extend(device.events)
            out.append(copy)
        return out

    def judged(self, devices: list[LiveDevice], budget: float = JUDGING_BUDGET) -> list[LiveDevice]:
        """Each device's rolling verdict, judged anew where it has had a session since (any thread),
        the newest first, for ``budget`` seconds at most: the rest keep the verdict they had (or
        "judging…") until the next read. A page judges a burst's devices a few at a time, and the
        loop, which shares the interpreter with the judging, is never held up long."""
        until = time.perf_counter() + budget
        for copy in devices:
            if self.judge is not None and copy.events:
                if time.perf_counter() > until:
                    copy.verdict = copy.verdict or "judging…"
                    continue
                time.sleep(0)  # the GIL to the loop between devices: a burst's sessions wait for no page
                copy.verdict = self.judge(list(copy.events))
                copy.judged_at = copy.sessions
                kept = self.devices.get(copy.address)
                if kept is not None and kept.sessions == copy.sessions:  # remembered until its next session
                    kept.verdict, kept.judged_at = copy.verdict, copy.sessions
        return devices

    def newest(self, page: int = 1) -> list[LiveSession]:
        """One page of sessions, the open ones first, newest first."""
        start = (max(page, 1) - 1) * PAGE
        ordered = itertools.chain(sorted(self.open.values(), key=lambda s: -s.started), self.closed)
        return list(itertools.islice(ordered, start, start + PAGE))
