"""The observation log: what every connection to the edge did, as JSON lines, as it happens.

Each connection gets a ``SessionRecord``; its events (connect, ClientHello, TLS, commands and
replies, AUTH outcome, message stored, disconnect, harness faults) are appended to one JSON-lines
file; the newest ``IN_MEMORY`` of them are also kept in memory, for the harness's windows.
Every event has ``session``, ``t`` and ``kind``. Lines are written through a buffer, flushed when
the harness reads, at each session's end, every ``FLUSH_EVERY`` events, at close, and by the running
edge every ``FLUSH_INTERVAL`` seconds (so the file is never more than a second behind); a file left
with a partial last line by a killed edge is cut back to its last whole line when it is opened
again, so it always parses line by line.
Secrets never reach it: AUTH payloads are replaced before an event is written.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
from msgspec.structs import astuple

from fakes.exo.errors import ExoEdgeError
from fakes.exo.observed import BEGINS, Connect, Disconnect, Observed, decode

REDACTED = "<redacted>"
# msgspec's JSON: the same text as json.dumps(ensure_ascii=False), several times faster
_ENCODE = msgspec.json.Encoder(enc_hook=str).encode

_CONTAINERS = frozenset({tuple, list, dict})
_OURS = frozenset({"kind", "session", "t"})  # the vocabulary's own words and ids: never a secret, never masked
# Events kept in memory for the harness (a scenario's window is a few hundred, a hundred messages'
# worth is a few thousand); all are on disk. Bounded by count and by the size of their lines: a
# peer sending 64 KiB lines fills the window with fewer events, never more memory.
IN_MEMORY = 10_000
IN_MEMORY_OCTETS = 8 << 20


class WindowLost(ExoEdgeError, RuntimeError):
    """A window began before the oldest event still in memory (more happened than IN_MEMORY)."""
FLUSH_EVERY = 256
PENDING_OCTETS = 32 << 20  # records kept in memory while the file cannot be written (a full disk)
log = logging.getLogger("exo-edge")
FLUSH_INTERVAL = 0.5  # seconds: the running edge flushes what is buffered this often


def repair_partial_line(path: Path) -> int:
    """Cut a JSON-lines file back to its last newline; how many octets were cut."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return 0
        block, end = 65536, size
        while end > 0:
            start = max(end - block, 0)
            handle.seek(start)
            chunk = handle.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        handle.truncate(keep)
        return size - keep


def redact_command(line: str) -> str:
    """``AUTH LOGIN c2Nhbm5lcg==`` -> ``AUTH LOGIN <redacted>``; other commands as they are."""
    parts = line.split(None, 2)
    if parts and parts[0].upper() == "AUTH" and len(parts) > 2:
        return f"{parts[0]} {parts[1]} {REDACTED}"
    return line


class RecordLog:
    """All sessions of one edge. Thread-safe: the edge's loop writes, the harness reads."""

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time,
                 mask: Callable[[str], str] | None = None, in_memory: int = IN_MEMORY,
                 in_memory_octets: int = IN_MEMORY_OCTETS) -> None:
        self.path = path
        self.clock = clock
        self.mask = mask  # replaces known secrets in each line before it is kept or written
        self._lock = threading.Lock()
        # the newest events, for the harness's windows; every event is in the file
        self._events: collections.deque[Observed] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()  # each kept event's line, in octets
        self._octets = 0
        self._limits = (in_memory, in_memory_octets)
        self._dropped = 0  # events that have left memory (still on disk)
        self._fd: int | None = None
        self._pending: collections.deque[bytes] = collections.deque()  # lines not yet in the file
        self._pending_octets = 0
        self.unwritable: OSError | None = None  # why the file takes nothing now (a full disk)
        self.lost = 0  # lines given up while the file could not be written (past PENDING_OCTETS)
        self._mid_line = False  # a failed write left the file inside a line
        self._ids = itertools.count(1)
        self._changed = threading.Condition(self._lock)
        self._unflushed = 0
        self._waiting = 0  # threads in wait_for or wait_written: told of each change, none else to tell
        self._watchers: list[Callable[[Observed], None]] = []  # told of each event as it is kept
        self.repaired = 0  # octets of a partial last line cut when the file was opened
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.repaired = repair_partial_line(path)
            # readable by its owner only, from its creation; written with os.write, so that a full
            # disk costs nothing but a retry (a buffered file's state after ENOSPC is unknown)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def open_session(self, endpoint: str, peer: tuple[str, int], local: tuple[str, int],
                     session_id: str | None = None, *, held: bool = False) -> SessionRecord:
        """A new session's record (its Connect kept); ``held``: one whose events reach the log
        together, at each ``commit``."""
        sid = session_id or f"s{next(self._ids):05d}"
        record = (HeldRecord if held else SessionRecord)(self, sid, endpoint)
        record.add(Connect(endpoint=endpoint, peer=(peer[0], peer[1]), local=(local[0], local[1])))
        return record

    def add(self, event: Observed, session: str) -> None:
        """Keep ``event`` as happening now in ``session``."""
        self.append(msgspec.structs.replace(event, session=session, t=self.clock()))

    def append(self, event: Observed) -> None:
        self.extend((event,))

    def extend(self, events: Sequence[Observed]) -> None:
        """Keep ``events``, in their order, as one batch: one pass of the mask over all their text
        tells whether any needs masking or cutting (most batches: none), one hold of the lock."""
        if not events:
            return
        mask = self.mask or _unmasked
        texts: list[str] = []
        for event in events:
            for value in astuple(event):  # the session id too (a form of a secret there: the slow path)
                if value.__class__ is str:
                    texts.append(value)
                elif value.__class__ in _CONTAINERS:
                    texts.extend(_strings(value))
        joined = "\0".join(texts)
        kept: Sequence[Observed]
        lines: Sequence[bytes]
        if len(joined) > VALUE_KEPT and max(map(len, texts)) > VALUE_KEPT or mask(joined) != joined:
            kept, lines = zip(*(_kept_masked(event, mask) for event in events), strict=True)
        else:  # kept as they came, encoded as they are (the same JSON as their builtins')
            kept, lines = events, [_ENCODE(event) for event in events]
        with self._changed:
            self._keep(kept, lines)
            if self._waiting:
                self._changed.notify_all()
        for watcher in self._watchers:
            for event in kept:
                watcher(event)

    def _keep(self, events: Sequence[Observed], lines: Sequence[bytes]) -> None:
        """In memory (the newest, within the limits) and on their way to the file, as one chunk;
        the lock held."""
        sizes = [len(line) for line in lines]
        self._events.extend(events)
        self._sizes.extend(sizes)
        self._octets += sum(sizes)
        count, octets = self._limits
        while len(self._events) > 1 and (len(self._events) > count or self._octets > octets):
            self._events.popleft()
            self._octets -= self._sizes.popleft()
            self._dropped += 1
        if self._fd is not None:
            chunk = b"\n".join(lines) + b"\n"
            self._pending.append(chunk)
            self._pending_octets += len(chunk)
            self._unflushed += len(lines)
            # a file that cannot be written is tried again by the running edge's timer alone; a
            # session's end (the last event of its batch) reaches the file with it
            if self.unwritable is None and (self._unflushed >= FLUSH_EVERY or isinstance(events[-1], Disconnect)):
                self._flush()

    def watch(self, watcher: Callable[[Observed], None]) -> None:
        """Call ``watcher`` with every event from now on, as kept (masked), in the appending thread."""
        self._watchers.append(watcher)

    def unwatch(self, watcher: Callable[[Observed], None]) -> None:
        self._watchers.remove(watcher)

    def _flush(self) -> None:
        """Write what is pending. A file that takes nothing (a full disk, a read-only directory)
        keeps the lines in memory, up to ``PENDING_OCTETS``, and says so once; every later flush
        tries again, and the edge goes on answering meanwhile."""
        if self._fd is None or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            if written:
                self._mid_line = not data[:written].endswith(b"\n")
            rest, head = data[written:], b""
            if self._mid_line:  # the file ends inside a line: its end is kept, whatever else goes
                end = rest.find(b"\n") + 1
                head, rest = rest[:end], rest[end:]
            if len(rest) > PENDING_OCTETS:  # whole lines, the oldest first
                cut = rest.find(b"\n", len(rest) - PENDING_OCTETS) + 1
                self.lost += rest[:cut].count(b"\n")
                rest = rest[cut:]
            self._pending.append(head + rest)
            self._pending_octets = len(head) + len(rest)
            if self.unwritable is None:
                log.error("exo-edge: cannot write the records to %s (%s); the edge keeps answering and keeps "
                          "up to %d MiB of them in memory until it can", self.path, exc.strerror or exc,
                          PENDING_OCTETS >> 20)
            self.unwritable = exc
            return
        self._pending_octets = 0
        self._mid_line = False
        if self.unwritable is not None:
            log.error("exo-edge: the records are written to %s again%s", self.path,
                      f"; {self.lost} lines were lost meanwhile" if self.lost else "")
            self.unwritable = None
        self._unflushed = 0
        if self._waiting:
            self._changed.notify_all()

    def wait_written(self, timeout: float) -> bool:
        """Block until every event kept so far is in the file (by whoever flushes: the running
        edge, a session's end), without flushing; False if ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._unflushed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wait(left)
            return True

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _since(self, since: int) -> list[Observed]:
        """Events from absolute position ``since`` on, of those still in memory."""
        start = max(since - self._dropped, 0)
        events = self._events
        return [events[i] for i in range(start, len(events))]  # indexing near the end is cheap

    def events(self, since: int = 0) -> list[Observed]:
        with self._lock:
            self._flush()
            return self._since(since)

    def window(self, since: int = 0) -> list[Observed]:
        """The events of the sessions that began after ``since`` (and DNS queries made since):
        a late event of an older session (its disconnect, say) is not part of the window."""
        with self._lock:
            self._flush()
            if since < self._dropped:
                raise WindowLost(f"the window from event {since} began before the {self._dropped} events that have "
                                 f"left memory (records keep the newest {self._limits[0]}, {self._limits[1]} octets at "
                                 "most; all are on disk)")
            return _window(self._since(since))

    def mark(self) -> int:
        """A position to read from later: ``log.events(since=log.mark())``."""
        with self._lock:
            self._flush()
            return self._dropped + len(self._events)

    def wait_for(self, predicate: Callable[[list[Observed]], bool], timeout: float,
                 since: int = 0) -> bool:
        """Block until ``predicate(window(since))`` holds, or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(_window(self._since(since))):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wait(left)
            return True

    def _wait(self, timeout: float) -> None:
        """Wait (the lock held) until an event is kept or the file written, or ``timeout``."""
        self._waiting += 1
        try:
            self._changed.wait(timeout)
        finally:
            self._waiting -= 1

    def sessions(self, since: int = 0) -> dict[str, list[Observed]]:
        out: dict[str, list[Observed]] = {}
        for event in self.events(since):
            out.setdefault(event.session, []).append(event)
        return out

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                self._flush()
                os.close(self._fd)
                self._fd = None
                self._unflushed = 0


# A value longer than this is kept as its start: the mask's work per event is bounded whatever a
# peer sends (a 64 KiB NOOP, a 256 KB form field). The cut goes back to the last character that
# cannot be part of a token, so no half of a secret is kept where the mask could not know it.
VALUE_KEPT = 4096
_TOKEN_TAIL = re.compile(r"[A-Za-z0-9+/=_.%~-]+$")


def _unmasked(text: str) -> str:
    return text


def kept(value: str) -> str:
    """A record's string value, cut to ``VALUE_KEPT`` characters with a note of what was left out."""
    if len(value) <= VALUE_KEPT:
        return value
    start = _TOKEN_TAIL.sub("", value[:VALUE_KEPT])
    return f"{start}… (+{len(value) - len(start)} characters not kept)"


def _kept_masked(event: Observed, mask: Callable[[str], str]) -> tuple[Observed, bytes]:
    """An event whose values are cut and masked (never the JSON around them: a secret may look
    like a number), and its line; in memory exactly as on disk."""
    data = {key: value if key in _OURS else _masked(value, mask) for key, value in msgspec.to_builtins(event).items()}
    encoded = _ENCODE(data)
    return decode(encoded), encoded


def _masked(value: Any, mask: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return mask(kept(value))
    if isinstance(value, list | tuple):
        return [_masked(item, mask) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item, mask) for key, item in value.items()}
    return value


def _strings(value: Any) -> Iterator[str]:
    """Every string in a record's value (a list's, a mapping's)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _window(events: list[Observed]) -> list[Observed]:
    began = {e.session for e in events if isinstance(e, BEGINS)}
    return [e for e in events if e.session in began]


class SessionRecord:
    def __init__(self, log: RecordLog, session_id: str, endpoint: str) -> None:
        self.log = log
        self.id = session_id
        self.endpoint = endpoint

    def add(self, event: Observed) -> None:
        self.log.add(event, self.id)


class HeldRecord(SessionRecord):
    """A connection's record that holds its events, each timed as it happens, until ``commit``
    hands them to the log together: the SMTP connection commits before each write to its client
    and before each wait, so the log has every event before the client hears the reply it led to."""

    def __init__(self, log: RecordLog, session_id: str, endpoint: str) -> None:
        super().__init__(log, session_id, endpoint)
        self._held: list[Observed] = []

    def add(self, event: Observed) -> None:
        self._held.append(msgspec.structs.replace(event, session=self.id, t=self.log.clock()))

    def commit(self) -> None:
        if self._held:
            held, self._held = self._held, []
            self.log.extend(held)
