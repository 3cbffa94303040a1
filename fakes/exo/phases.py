"""The SMTP session's machine as tables: its phases, which phase takes which command (and the
reply for one out of sequence), the stage each reply answers, and the replies that count as
protocol errors. ``fakes.exo.session`` runs it."""

from __future__ import annotations

import enum

from . import replies as R
from .events import (
    Auth,
    AuthLine,
    ChunkStart,
    Data,
    DataEnd,
    Hello,
    MailFrom,
    MessageBody,
    Noop,
    Quit,
    RcptTo,
    Reset,
    StartTls,
    TlsEstablished,
)
from .replies import Reply

# Exchange's receive connectors: MaxProtocolErrors 5; then the client gets 421 4.7.0.
MAX_PROTOCOL_ERRORS = 5


class Phase(enum.Enum):
    CONNECTED = "connected"  # banner sent, no EHLO yet
    READY = "ready"  # greeted, no transaction
    AUTH_LOGIN_USER = "auth-login-user"
    AUTH_LOGIN_PASSWORD = "auth-login-password"
    AUTH_XOAUTH2 = "auth-xoauth2"
    MAIL = "mail"  # MAIL accepted
    RCPT = "rcpt"  # at least one RCPT accepted
    DATA = "data"  # 354 sent, waiting for the body
    CHUNKING = "chunking"  # BDAT chunks taken, the LAST one still to come
    CLOSED = "closed"

    # a phase is one object for the life of the process: hashed by identity, in C (Enum's own hash
    # is Python code, and the session looks phases up in sets several times a command)
    __hash__ = object.__hash__


# Which phases accept which event; anything else is a sequence error with this reply.
SEQUENCE: dict[type, tuple[frozenset[Phase], Reply]] = {
    MailFrom: (frozenset({Phase.READY}), R.NESTED_MAIL),
    RcptTo: (frozenset({Phase.MAIL, Phase.RCPT}), R.NEED_MAIL),
    Data: (frozenset({Phase.RCPT}), R.NEED_RCPT),
    MessageBody: (frozenset({Phase.DATA}), R.NEED_RCPT),
    DataEnd: (frozenset({Phase.DATA}), R.NEED_RCPT),
    Auth: (frozenset({Phase.READY}), R.BAD_SEQUENCE),  # in a transaction (before EHLO: NEED_HELO)
    StartTls: (frozenset({Phase.READY, Phase.CONNECTED}), R.BAD_SEQUENCE),
}
AUTH_PHASES = frozenset({Phase.AUTH_LOGIN_USER, Phase.AUTH_LOGIN_PASSWORD, Phase.AUTH_XOAUTH2})
# The stage a reply answers, by the event it answers (what records and checks call it).
STAGES: dict[type, str] = {
    Hello: "ehlo", StartTls: "starttls", TlsEstablished: "starttls", Auth: "auth", AuthLine: "auth",
    MailFrom: "mail", RcptTo: "rcpt", Data: "data", ChunkStart: "data", DataEnd: "message",
    MessageBody: "message", Reset: "rset", Noop: "noop", Quit: "quit",
}
# Replies that count toward MAX_PROTOCOL_ERRORS.
PROTOCOL_ERRORS = frozenset({
    R.UNRECOGNIZED_COMMAND, R.SYNTAX_ERROR, R.LINE_TOO_LONG, R.NEED_HELO, R.NEED_MAIL, R.NEED_RCPT,
    R.NESTED_MAIL, R.BDAT_SEQUENCE, R.BAD_SEQUENCE, R.BINARYMIME_NEEDS_BDAT, R.UNSUPPORTED_PARAMETER, R.TLS_ALREADY,
})
