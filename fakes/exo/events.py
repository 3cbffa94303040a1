"""What goes into a session and what comes out: events (commands and transport facts) and decisions.

Events are small frozen classes named as nouns; a ``Decision`` is the edge's answer to one, as
data: the lines to write, whether to upgrade to TLS or close, and what an accepted message
becomes (``Acceptance``: where each copy is delivered). Refusals are decisions, never exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

from .message import NonDeliveryReport
from .observed import Observed
from .replies import Reply
from .wire import BodyData as BodyData
from .wire import ChunkEnd as ChunkEnd
from .wire import ChunkStart as ChunkStart
from .wire import DataEnd as DataEnd
from .wire import LineTooLong as LineTooLong

Folder = Literal["Inbox", "Sent Items", "Junk", "Outbound"]

# --- events ------------------------------------------------------------------------------------


class Hello(msgspec.Struct, frozen=True):
    verb: Literal["EHLO", "HELO"]
    name: str


class StartTls(msgspec.Struct, frozen=True):
    pass


class TlsEstablished(msgspec.Struct, frozen=True):
    version: str  # as ssl reports it: "TLSv1.2"
    cipher: str = ""
    certificate_names: tuple[str, ...] = ()  # client certificate CN and SANs, when one was sent


class Auth(msgspec.Struct, frozen=True):
    mechanism: str
    initial: str | None = None  # the initial response, base64 as sent


class AuthLine(msgspec.Struct, frozen=True):
    line: str  # a client's answer to a 334, base64 as sent


class MailFrom(msgspec.Struct, frozen=True):
    address: str
    params: tuple[tuple[str, str | None], ...] = ()


class RcptTo(msgspec.Struct, frozen=True):
    address: str
    params: tuple[tuple[str, str | None], ...] = ()


class Data(msgspec.Struct, frozen=True):
    pass


class MessageBody(msgspec.Struct, frozen=True):
    """A whole message after DATA at once: ``BodyData`` then ``DataEnd``, for callers that
    already hold it."""

    content: bytes  # dot-unstuffed, line endings as sent


class Malformed(msgspec.Struct, frozen=True):
    """A command line that is not text the edge can read (not UTF-8), or a BDAT without a size."""

    shown: str  # the line with unreadable bytes escaped, as the records show it
    unreadable: bool = False  # not text at all (Exchange: 'unknown'), rather than a bad argument


class Reset(msgspec.Struct, frozen=True):
    pass


class Noop(msgspec.Struct, frozen=True):
    pass


class Quit(msgspec.Struct, frozen=True):
    pass


class Unknown(msgspec.Struct, frozen=True):
    verb: str


class TimedOut(msgspec.Struct, frozen=True):
    """The client said nothing for the idle timeout."""


class Closed(msgspec.Struct, frozen=True):
    pass


Event = (Hello | StartTls | TlsEstablished | Auth | AuthLine | MailFrom | RcptTo | Data
         | MessageBody | BodyData | DataEnd | ChunkStart | ChunkEnd | LineTooLong | Malformed
         | Reset | Noop | Quit | Unknown | TimedOut | Closed)

# --- decisions ---------------------------------------------------------------------------------


class Delivery(msgspec.Struct, frozen=True):
    """One copy of an accepted message: into a mailbox's folder, or out to the internet."""

    folder: Folder
    mailbox: str | None  # None for Outbound
    recipient: str
    deliver_after: float
    content: NonDeliveryReport | None = None  # an NDR in place of the message itself


class Acceptance(msgspec.Struct, frozen=True):
    message_id: str
    mail_from: str
    recipients: tuple[str, ...]
    content: bytes
    deliveries: tuple[Delivery, ...]
    delayed: bool
    spf: str | None = None


class Decision(msgspec.Struct, frozen=True):
    lines: tuple[str, ...]
    reply: Reply | None = None
    close: bool = False
    start_tls: bool = False
    read_data: bool = False  # a message follows, up to the lone dot (after 354)
    accepted: Acceptance | None = None
    delay: float = 0.0  # seconds the adapter waits before writing (an injected slow edge)
    # what the record should say beyond the reply: the message's facts, AUTH outcome, attribution, SPF
    notes: tuple[Observed, ...] = ()

    @property
    def code(self) -> int | None:
        return int(self.lines[-1][:3]) if self.lines else None


SILENT = Decision(())


@dataclass
class Fault:
    """Something injected at a stage (ehlo, starttls, auth, mail, rcpt, data, message): a reply,
    a dropped connection, or a delay before the ordinary answer."""

    stage: str
    reply: Reply | None = None
    remaining: int | None = 1  # None: always
    close: bool = False
    drop: bool = False
    delay: float = 0.0


@dataclass(frozen=True)
class MidRun:
    """What a scenario has the service do while a sender is at work, once ``after_stored``
    messages of the run are stored (before the last one's 250): revoke a mailbox's sign-in,
    disable an app, require MFA for a mailbox, move the service's clock ahead."""

    after_stored: int = 1
    revoke_sign_in: str | None = None
    disable_app: str | None = None
    require_mfa: str | None = None
    advance_clock: float = 0.0
