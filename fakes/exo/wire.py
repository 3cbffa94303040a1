"""SMTP framing at the edge: bytes in, wire events out, whatever the packet boundaries.

``Framer`` owns where a command line ends, where a message ends (the lone dot after DATA, or
the octet count of ``BDAT n``), dot-unstuffing, and the command-line length limit. It is pure:
``receive(data)`` buffers, ``next_event()`` returns the next whole event or ``NEED_DATA``.
The same byte stream split at any offset yields the same events, except that body bytes may
come in more, smaller ``BodyData`` pieces (their concatenation is the same).

What the framer cannot know it is told: after the session answers DATA with 354, the adapter
calls ``start_data()``. ``BDAT n`` it recognises itself, because the n octets that follow are
the chunk whatever the answer will be (RFC 3030 2): they are never read as commands.
"""

from __future__ import annotations

import re
from enum import Enum

import msgspec

from .errors import InternalError

# XOAUTH2 lines carry a whole access token (1-2 KB, more with many claims); Exchange takes
# them on one line. Anything longer is refused whole.
MAX_COMMAND_LINE = 64 * 1024
_BDAT = re.compile(rb"^BDAT[ \t]+(\d{1,15})(?:[ \t]+(LAST))?[ \t]*$", re.IGNORECASE)
_CRLF = b"\r\n"


class Line(msgspec.Struct, frozen=True):
    """A command line (or an AUTH continuation), without its CRLF."""

    raw: bytes


class LineTooLong(msgspec.Struct, frozen=True):
    """A command line over the limit: discarded whole, up to and including its CRLF."""

    size: int


class ChunkStart(msgspec.Struct, frozen=True):
    """``BDAT <size> [LAST]``: ``size`` octets of message follow, then ``ChunkEnd``."""

    size: int
    last: bool
    raw: bytes


class BodyData(msgspec.Struct, frozen=True):
    """Message octets: dot-unstuffed after DATA, as sent after BDAT."""

    data: bytes


class DataEnd(msgspec.Struct, frozen=True):
    """The lone dot that ends DATA."""


class ChunkEnd(msgspec.Struct, frozen=True):
    size: int
    last: bool


class NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()
WireEvent = Line | LineTooLong | ChunkStart | BodyData | DataEnd | ChunkEnd


class Mode(Enum):
    COMMAND = "command"
    SKIP_LINE = "skip-line"  # discarding an overlong command line up to its CRLF
    DATA = "data"
    CHUNK = "chunk"


class Framer:
    def __init__(self, max_line: int = MAX_COMMAND_LINE) -> None:
        self.max_line = max_line
        self.mode = Mode.COMMAND
        self._buf = bytearray()
        self._pos = 0
        self._line_start = True  # DATA: the next byte begins a line
        self._skipped = 0
        self._chunk_left = 0
        self._chunk: ChunkStart | None = None

    # -- input --------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def start_data(self) -> None:
        """The session said 354: what follows is a message, up to the lone dot."""
        if self.mode is not Mode.COMMAND:
            raise InternalError(f"start_data() in mode {self.mode.value}")
        self.mode = Mode.DATA
        self._line_start = True

    def discard(self) -> int:
        """Drop what is buffered (bytes pipelined after STARTTLS); return how many."""
        dropped = self.buffered
        self._buf.clear()
        self._pos = 0
        return dropped

    # -- output -------------------------------------------------------------------------------

    def next_event(self) -> WireEvent | NeedData:
        while True:
            if self.mode is Mode.COMMAND:
                return self._command()
            if self.mode is Mode.SKIP_LINE:
                event = self._skip()
                if event is None:
                    continue
                return event
            if self.mode is Mode.CHUNK:
                return self._chunk_data()
            return self._data()

    def _take(self, end: int) -> bytes:
        data = bytes(self._buf[self._pos:end])
        self._pos = end
        return data

    def _command(self) -> WireEvent | NeedData:
        end = self._buf.find(_CRLF, self._pos, self._pos + self.max_line + 2)
        if end < 0:
            if self.buffered > self.max_line + 1:  # no CRLF within the limit: refuse the line
                self._skipped = 0
                self.mode = Mode.SKIP_LINE
                return self.next_event()
            return NEED_DATA
        raw = self._take(end)
        self._pos += 2
        match = _BDAT.match(raw)
        if match:
            size, last = int(match[1]), match[2] is not None
            chunk = ChunkStart(size, last, raw)
            self._chunk, self._chunk_left = chunk, size
            self.mode = Mode.CHUNK
            return chunk
        return Line(raw)

    def _skip(self) -> WireEvent | NeedData | None:
        end = self._buf.find(_CRLF, self._pos)
        if end < 0:
            # keep a trailing CR: its LF may come in the next packet
            keep = 1 if self._buf.endswith(b"\r") else 0
            self._skipped += self.buffered - keep
            self._pos = len(self._buf) - keep
            return NEED_DATA
        self._skipped += end - self._pos + 2
        self._pos = end + 2
        self.mode = Mode.COMMAND
        return LineTooLong(self._skipped)

    def _chunk_data(self) -> WireEvent | NeedData:
        if self._chunk is None:
            raise InternalError("expected self._chunk is not None")
        if self._chunk_left == 0:
            chunk, self._chunk = self._chunk, None
            self.mode = Mode.COMMAND
            return ChunkEnd(chunk.size, chunk.last)
        if not self.buffered:
            return NEED_DATA
        take = min(self._chunk_left, self.buffered)
        self._chunk_left -= take
        return BodyData(self._take(self._pos + take))

    def _data(self) -> WireEvent | NeedData:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return NEED_DATA
        if self._line_start and buf[pos] == 0x2E:  # "." at the start of a line
            head = bytes(buf[pos:pos + 3])
            if head == b".\r\n":
                self._pos = pos + 3
                self.mode = Mode.COMMAND
                return DataEnd()
            if b".\r\n".startswith(head):  # "." or ".\r": not decided yet
                return NEED_DATA
            self._pos = pos = pos + 1  # dot-unstuffing (RFC 5321 4.5.2)
            self._line_start = False
            if pos >= len(buf):
                return NEED_DATA
        if buf.find(_CRLF, pos) >= 0:
            # every whole line up to the first that begins with a dot (it may end the message)
            self._line_start = True
            dot = buf.find(b"\r\n.", pos)
            cut = dot + 2 if dot >= 0 else buf.rfind(_CRLF, pos) + 2
            return BodyData(self._take(cut))
        # no line end yet: hand over all but a trailing CR (its LF may follow)
        self._line_start = False
        cut = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
        if cut <= pos:
            return NEED_DATA
        return BodyData(self._take(cut))
