"""What the edge reads from a message body and what it writes into one.

``MessageBuffer`` collects a message as it arrives (after DATA or over BDAT chunks), keeping at
most the size limit but counting every octet. Header parsing (From, Message-ID, Date), the
bare-LF test, the headers the edge adds on acceptance, and the one non-delivery report per
message that it writes back to a sender. Pure functions over bytes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import HeaderParser
from email.utils import format_datetime, getaddresses, make_msgid

import msgspec

from .observed import MessageSeen

_FOLDING = re.compile(r"\r?\n[ \t]+")
# The part of a message an NDR sends back: its headers, cut at this many octets.
NDR_RETURNED_HEADERS = 16 * 1024

Content = bytes | bytearray


def has_bare_lf(content: Content) -> bool:
    """An LF without its CR before it (counted at C speed: a regex over 35 MB takes a second)."""
    return content.count(b"\n") != content.count(b"\r\n")


def longest_line_over(content: Content, limit: int = 998) -> int:
    """The length of the longest line when one is longer than ``limit`` octets, else 0.

    Looks at windows of ``limit`` + 1 octets for a CR or LF, so a message of short lines costs a
    few C-level searches per kilobyte rather than one step per line."""
    longest, pos, size = 0, 0, len(content)
    while pos + limit < size:
        end = pos + limit + 1
        brk = max(content.rfind(b"\r", pos, end), content.rfind(b"\n", pos, end))
        if brk >= 0:
            pos = brk + 1
            continue
        stops = [i for i in (content.find(b"\r", end), content.find(b"\n", end)) if i >= 0]
        stop = min(stops) if stops else size
        longest = max(longest, stop - pos)
        pos = stop
    return longest


class MessageBuffer:
    """A message as it arrives: every octet counted, at most ``limit`` + 1 of them kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.data = bytearray()

    def add(self, data: bytes) -> None:
        self.size += len(data)
        room = self.limit + 1 - len(self.data)
        if room > 0:
            self.data += data[:room]

    @property
    def over_limit(self) -> bool:
        return self.size > self.limit


def header_block(content: Content) -> Content:
    """The header block (up to and including the CRLF before the empty line), or all of it."""
    end = content.find(b"\r\n\r\n")
    return content if end < 0 else content[: end + 2]


class Headers(msgspec.Struct, frozen=True):
    from_addresses: tuple[str, ...]
    message_id: str | None
    date: str | None
    subject: str | None
    header_bytes: int


def _unfold(value: str | None) -> str | None:
    """A header value on one line (RFC 5322 2.2.3), without surrounding blanks."""
    return None if value is None else _FOLDING.sub(" ", str(value)).strip()


# A header block of nothing but fields ("Name: value", CRLF) and their folded lines: read by
# splitting lines. Anything else (bare CR or LF, a line that is no field, a Unix "From " line,
# a separator str.splitlines would also cut at) goes to the email package's parser, whose answers
# the fast reading is held to (tests/unit/test_headers.py)
_PLAIN_BLOCK = re.compile(r"(?:[\041-\071\073-\176]+:[^\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]*\r\n"
                          r"(?:[ \t][^\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]*\r\n)*)*")
_READ = ("from", "message-id", "date", "subject")


def _fields(block: str) -> dict[str, list[str]]:
    """The fields of ``block`` the edge reads, by lower-case name, each value as the email
    package's compat32 policy gives it (folds kept, CRLF at the end taken off)."""
    if _PLAIN_BLOCK.fullmatch(block) is None:
        parsed = HeaderParser(policy=policy.compat32).parsestr(block)
        return {name: [str(v) for v in parsed.get_all(name, [])] for name in _READ}
    fields: dict[str, list[str]] = {name: [] for name in _READ}
    values: list[str] | None = None
    for line in block.split("\r\n")[:-1]:
        if line[0] in " \t":
            if values is not None:
                values[-1] += "\r\n" + line
            continue
        name, value = line.split(":", 1)
        values = fields.get(name.lower())
        if values is not None:
            values.append(value.lstrip(" \t"))
    return fields


@functools.lru_cache(maxsize=1024)  # a device sends as the same From, message after message
def _addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(addr.lower() for _, addr in getaddresses(list(values)) if addr)


def read_headers(content: Content) -> Headers:
    """The headers the edge reads. Header bytes are UTF-8 (RFC 6532); others are replaced."""
    head = header_block(content)
    fields = _fields(bytes(head).decode("utf-8", "replace"))
    message_id = _unfold(next(iter(fields["message-id"]), None))
    return Headers(
        from_addresses=_addresses(tuple(fields["from"])),
        message_id=message_id or None,
        date=_unfold(next(iter(fields["date"]), None)),
        subject=_unfold(next(iter(fields["subject"]), None)),
        header_bytes=len(head),
    )


def message_facts(content: Content, headers: Headers | None = None, *, size: int | None = None,
                  via: str = "DATA", chunks: int | None = None) -> MessageSeen:
    """What a conformance check needs to know about a message as the sender sent it (``headers``:
    its ``read_headers``, when the caller has them already; ``size``: all the octets sent, when
    ``content`` kept only those up to a limit)."""
    headers = headers or read_headers(content)
    return MessageSeen(
        size=len(content) if size is None else size, via=via, chunks=chunks,
        has_date=headers.date is not None,
        has_message_id=headers.message_id is not None,
        has_from=bool(headers.from_addresses),
        bare_lf=has_bare_lf(content),
        header_bytes=headers.header_bytes,
        # only lines over RFC 5322's 998 octets are measured (0: none is longer)
        longest_line=longest_line_over(content),
    )


def new_message_id(host: str, unique: str) -> str:
    return f"<{unique}@{host}>"


def prepend_headers(content: Content, headers: list[tuple[str, str]]) -> bytes:
    """The message with ``headers`` in front: one copy of it, as bytes."""
    block = b"".join(f"{name}: {value}\r\n".encode() for name, value in headers)
    return block + content


@dataclass(frozen=True)
class Failure:
    """One recipient an accepted message could not reach: its enhanced status and the text."""

    recipient: str
    status: str  # the enhanced code, 5.1.10
    text: str


@dataclass(frozen=True)
class NonDeliveryReport:
    """The one NDR of a message for all its failed recipients, rendered when it is stored
    (off the event loop), quoting at most ``NDR_RETURNED_HEADERS`` octets of the headers."""

    postmaster: str
    to: str
    failures: tuple[Failure, ...]
    original_headers: bytes
    now: float
    host: str

    @property
    def recipients(self) -> str:
        return ", ".join(f.recipient for f in self.failures)

    def render(self) -> bytes:
        """A multipart/report DSN (RFC 3464) as Exchange Online writes one to the sender."""
        report = MIMEMultipart("report", report_type="delivery-status")
        report["From"] = f"Microsoft Outlook <{self.postmaster}>"
        report["To"] = self.to
        report["Subject"] = "Undeliverable: message"
        report["Date"] = format_datetime(datetime.fromtimestamp(self.now, UTC))
        report["Message-ID"] = make_msgid(domain=self.host)
        report.attach(MIMEText("".join(
            f"Your message to {f.recipient} couldn't be delivered.\n"
            f"Remote server returned '550 {f.status} {f.text}'\n\n" for f in self.failures
        )))
        fields = Message()
        fields["Reporting-MTA"] = f"dns;{self.host}"
        parts: list[Message | str] = [fields]
        for failure in self.failures:
            recipient_fields = Message()
            recipient_fields["Final-Recipient"] = f"rfc822;{failure.recipient}"
            recipient_fields["Action"] = "failed"
            recipient_fields["Status"] = failure.status
            recipient_fields["Diagnostic-Code"] = f"smtp;550 {failure.status} {failure.text}"
            parts.append(recipient_fields)
        delivery_status = Message()
        delivery_status.set_type("message/delivery-status")
        delivery_status.set_payload(parts)
        report.attach(delivery_status)
        headers = Message()
        headers.set_type("text/rfc822-headers")
        headers.set_payload(self.original_headers[:NDR_RETURNED_HEADERS].decode("utf-8", "replace"))
        report.attach(headers)
        return report.as_bytes(policy=policy.SMTP)
