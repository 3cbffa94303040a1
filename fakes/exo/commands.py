"""Command lines into session events: verbs, paths and their parameters.

``parse_command(raw)`` reads one command line (bytes, without CRLF) as the edge does: UTF-8
text (RFC 6531), or ``Malformed`` with the unreadable bytes escaped; a verb the edge serves
becomes its event, anything else ``Unknown``. Paths are ``<address>`` with ESMTP parameters.
"""

from __future__ import annotations

import re

from . import replies as R
from .events import (
    Auth,
    Data,
    Event,
    Hello,
    MailFrom,
    Malformed,
    Noop,
    Quit,
    RcptTo,
    Reset,
    StartTls,
    Unknown,
)
from .observed import Command
from .replies import Reply

# ESMTP parameters of the advertised extensions (SIZE, 8BITMIME/BINARYMIME, SMTPUTF8, DSN, AUTH).
_BODY_TYPES = frozenset({"7BIT", "8BITMIME", "BINARYMIME"})
_NOTIFY = re.compile(r"^(NEVER|(SUCCESS|FAILURE|DELAY)(,(SUCCESS|FAILURE|DELAY))*)$", re.I)
_XTEXT = re.compile(r"^([!-*,-<>-~]|\+[0-9A-F]{2})+$")
_PATH = re.compile(r"^(?P<kw>FROM|TO)\s*:\s*(?P<addr><[^>]*>|[^\s<>]+)\s*(?P<params>.*)$", re.I)
MALFORMED_PATH = "<malformed>"
BARE_MAIL = "<bare>"  # MAIL with nothing after it


def escaped(raw: bytes) -> str:
    """A line as the records show it: UTF-8, with any other byte as ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")


def parse_path(keyword: str, arg: str) -> tuple[str, tuple[tuple[str, str | None], ...]] | None:
    """``FROM:<a@b> SIZE=10`` -> ``("a@b", (("SIZE", "10"),))``; None when malformed."""
    match = _PATH.match(arg)
    if not match or match["kw"].upper() != keyword:
        return None
    address = match["addr"].strip("<>")
    params = []
    for word in match["params"].split():
        key, sep, value = word.partition("=")
        params.append((key.upper(), value if sep else None))
    return address, tuple(params)


def parse_command(raw: bytes) -> Event:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Malformed(escaped(raw), unreadable=True)
    word, _, arg = line.strip().partition(" ")
    verb, arg = word.upper(), arg.strip()
    if verb in ("EHLO", "HELO"):
        return Hello(verb, arg)  # type: ignore[arg-type]
    if verb == "MAIL":
        if not arg:
            return MailFrom(BARE_MAIL)
        path = parse_path("FROM", arg)
        return MailFrom(*path) if path else MailFrom(MALFORMED_PATH)
    if verb == "RCPT":
        path = parse_path("TO", arg)
        return RcptTo(*path) if path else RcptTo(MALFORMED_PATH)
    if verb == "AUTH":
        words = arg.split()
        return Auth(words[0] if words else "", words[1] if len(words) > 1 else None)
    if verb == "BDAT":  # a well-formed BDAT never gets here: the framer took it
        return Malformed(line)
    simple: dict[str, type[Data | Reset | Noop | Quit | StartTls]] = {
        "DATA": Data, "RSET": Reset, "NOOP": Noop, "QUIT": Quit, "STARTTLS": StartTls}
    if verb in simple:
        takes_no_argument = verb in ("DATA", "RSET", "STARTTLS")
        return Malformed(line) if arg and takes_no_argument else simple[verb]()
    return Unknown(word)


_VERBS: dict[type, str] = {MailFrom: "MAIL", RcptTo: "RCPT", Auth: "AUTH", Data: "DATA", Reset: "RSET",
                           Noop: "NOOP", Quit: "QUIT", StartTls: "STARTTLS"}
# Verbs clients send that the edge does not serve (RFC 5321 and extensions, Exchange's own): named in
# the record as a verb. Any other word is not a command, and may be a password a client lost track
# of: its verb stays empty (an upper-cased copy would slip past the mask, which knows the secret's case)
OTHER_VERBS = frozenset({"VRFY", "EXPN", "HELP", "ETRN", "TURN", "ATRN", "SEND", "SOML", "SAML", "LHLO", "XCLIENT",
                         "XFORWARD", "XEXCH50", "X-EXPS", "X-ANONYMOUSTLS", "X-LINK2STATE"})


def command_fact(line: str, parsed: Event) -> Command:
    """A command as the records keep it: the line as shown, its verb, and for MAIL and RCPT the
    address and the parameters' names, read once here so that no reader parses the line again."""
    if isinstance(parsed, Hello):
        return Command(line=line, verb=parsed.verb)
    if isinstance(parsed, MailFrom | RcptTo):
        address = None if parsed.address in (BARE_MAIL, MALFORMED_PATH) else parsed.address
        return Command(line=line, verb=_VERBS[type(parsed)], address=address,
                       params=tuple(key.upper() for key, _ in parsed.params))
    if isinstance(parsed, Unknown):
        verb = parsed.verb.upper()
        return Command(line=line, verb=verb if verb in OTHER_VERBS else "")
    return Command(line=line, verb=_VERBS.get(type(parsed), ""))


def valid_helo_name(name: str) -> bool:
    """The EHLO/HELO name as Exchange checks it: an address literal, or a name without an empty
    label (``MacBook..`` is refused; a trailing dot, a bare word or an underscore are not)."""
    name = name.strip()
    if not name or name.startswith("["):
        return True
    return all(name.removesuffix(".").split("."))


def mail_parameter_refusal(params: dict[str, str | None]) -> Reply | None:
    """MAIL FROM parameters: SIZE, BODY, SMTPUTF8, RET and ENVID (DSN), AUTH (RFC 4954)."""
    for key, value in params.items():
        if key == "SIZE":
            ok = value is not None and value.isdigit() and len(value) <= 15
        elif key == "BODY":
            ok = value is not None and value.upper() in _BODY_TYPES
        elif key == "SMTPUTF8":
            ok = value is None
        elif key == "RET":
            ok = value is not None and value.upper() in ("FULL", "HDRS")
        elif key == "ENVID":
            ok = value is not None and len(value) <= 100 and bool(_XTEXT.match(value))
        elif key == "AUTH":
            ok = value is not None
        else:
            return R.UNSUPPORTED_PARAMETER
        if not ok:
            return R.SYNTAX_ERROR
    return None


def rcpt_parameter_refusal(params: dict[str, str | None]) -> Reply | None:
    """RCPT TO parameters: NOTIFY and ORCPT (DSN, RFC 3461)."""
    for key, value in params.items():
        if key == "NOTIFY":
            ok = value is not None and bool(_NOTIFY.match(value))
        elif key == "ORCPT":
            ok = value is not None and ";" in value and bool(_XTEXT.match(value.partition(";")[2] or "-"))
        else:
            return R.UNSUPPORTED_PARAMETER
        if not ok:
            return R.SYNTAX_ERROR
    return None
