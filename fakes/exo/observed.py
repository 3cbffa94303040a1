"""What happened, as typed events: the one vocabulary from the wire to the verdict.

The edge writes these to its records file (JSON lines, one event a line, ``kind`` naming its
type); the harness, the live view and the report read them back as these types, and a capture
reader would produce the same. Every event has ``session`` (the connection, DNS question or
identity request it belongs to) and ``t`` (UNIX time); the record log sets both as it keeps an
event. ``describe`` renders one as a transcript line, the same everywhere. Nothing here is a
free-form mapping: a field the vocabulary does not know is an error when a line is read.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Observed(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", forbid_unknown_fields=True):
    session: str = ""
    t: float = 0.0

    @property
    def kind(self) -> str:
        return str(self.__struct_config__.tag)


# --- a connection, from first to last ----------------------------------------------------------


class Connect(Observed, frozen=True, tag="connect"):
    endpoint: str
    peer: tuple[str, int]
    local: tuple[str, int] | None = None


class Refused(Observed, frozen=True, tag="refused"):
    """Over a connection limit: 421 4.3.2 and closed."""

    reason: str
    peer: str


class Abandoned(Observed, frozen=True, tag="abandoned"):
    """The client left before a (tarpitted) reply it was owed."""

    line: str
    waited: float


class ClientHelloSeen(Observed, frozen=True, tag="client_hello"):
    """What the client offered in its ClientHello (or the bytes scapy could not read). The edge
    keeps it as sent (``raw``) and does not take it apart while it serves: whoever reads it does
    (``fakes.tls.read_hello``: the harness, the report, the live view)."""

    legacy_version: str | None = None
    versions: tuple[str, ...] = ()
    cipher_suites: tuple[str, ...] = ()
    sni: str | None = None
    highest_version: str | None = None
    implicit_tls: bool = False  # port 465
    ja4: str | None = None  # its JA4 fingerprint (FoxIO), where the reader computed one (a capture)
    raw: str | None = None  # the ClientHello as sent, base64, until it is read
    unparsed: str | None = None  # hex of the first bytes, when it could not be parsed
    error: str | None = None


class Tls(Observed, frozen=True, tag="tls"):
    version: str
    cipher: str = ""
    client_certificate: tuple[str, ...] | None = None
    hidden: bool = False  # what went inside was not seen (a capture without this connection's keys)


class ServerCertificate(Observed, frozen=True, tag="server_certificate"):
    """The certificate a server presented, as a capture shows it (in the clear up to TLS 1.2,
    with the key log for 1.3): a name a device never trusts, or a TLS-inspecting proxy's issuer,
    is why many a handshake fails."""

    subject: str
    issuer: str
    names: tuple[str, ...] = ()  # its DNS names
    not_after: str = ""  # ISO 8601


class TlsFailed(Observed, frozen=True, tag="tls_failed"):
    reason: str


class LegacyTls(Observed, frozen=True, tag="legacy_tls"):
    """TLS 1.0/1.1 negotiated at submission: the next command gets 4.7.66."""

    value: str


class Discarded(Observed, frozen=True, tag="discarded"):
    """Bytes pipelined after STARTTLS, before the handshake."""

    octets: int
    reason: str


class Command(Observed, frozen=True, tag="command"):
    line: str  # as sent, unreadable bytes escaped, AUTH payloads redacted
    verb: str = ""  # upper case: EHLO, MAIL, BDAT…; "" for a line that is no command
    address: str | None = None  # MAIL and RCPT: the path's address, as given
    params: tuple[str, ...] = ()  # MAIL and RCPT: the parameters' names (SIZE, BODY, SMTPUTF8…)


class AuthResponse(Observed, frozen=True, tag="auth_response"):
    line: str  # always <redacted>


class AuthOutcome(Observed, frozen=True, tag="auth"):
    mechanism: str
    user: str
    outcome: str  # success, failure, cancelled, unsupported
    reason: str = ""


class Attribution(Observed, frozen=True, tag="attribution"):
    """Which inbound connector (if any) the MX attributed the connection to, and why."""

    connector: str | None
    reason: str


class Spf(Observed, frozen=True, tag="spf"):
    value: str


class FaultInjected(Observed, frozen=True, tag="fault"):
    stage: str
    reply: str | None = None
    drop: bool = False
    delay: float = 0.0


class MessageSeen(Observed, frozen=True, tag="message"):
    """The message as the sender sent it, before any judgement."""

    size: int
    via: str  # DATA or BDAT
    chunks: int | None = None
    has_date: bool = False
    has_message_id: bool = False
    has_from: bool = False
    bare_lf: bool = False
    header_bytes: int = 0
    longest_line: int = 0  # only lines over 998 octets are measured


class Copy(msgspec.Struct, frozen=True, array_like=True):
    """One stored copy: ``[folder, mailbox, recipient, deliver_after]`` in the file."""

    folder: str
    mailbox: str | None
    recipient: str
    deliver_after: float


class Stored(Observed, frozen=True, tag="stored"):
    message_id: str
    mail_from: str
    recipients: tuple[str, ...]
    delayed: bool
    copies: tuple[str, ...]
    folders: tuple[Copy, ...]


class ReplySent(Observed, frozen=True, tag="reply"):
    line: str
    code: int
    stage: str = "other"  # what it answers: banner, ehlo, starttls, auth, mail, rcpt, data, message…
    name: str | None = None  # its name in fakes/exo/replies.py, on a reply's last line
    enhanced: str | None = None

    @property
    def last(self) -> bool:
        return self.line[3:4] != "-"


class HarnessFault(Observed, frozen=True, tag="harness_fault"):
    error: str
    traceback: str = ""


class Plaintext(Observed, frozen=True, tag="plaintext"):
    """Port 465 without TLS: the first bytes."""

    first_bytes: str


class Silent(Observed, frozen=True, tag="silent"):
    """Port 465, nothing sent."""

    waited: float


class Disconnect(Observed, frozen=True, tag="disconnect"):
    error: str | None = None


# --- outside SMTP sessions ---------------------------------------------------------------------


class DnsQuery(Observed, frozen=True, tag="dns_query"):
    peer: tuple[str, int]
    transport: str
    name: str
    type: str
    rcode: str
    answers: tuple[str, ...] = ()


class DnsMalformed(Observed, frozen=True, tag="dns_malformed"):
    peer: tuple[str, int]
    size: int
    transport: str


class DhcpRequest(Observed, frozen=True, tag="dhcp"):
    """A device asking for its address by DHCP, with the host name it gave (a capture's): what
    names the device before it says EHLO."""

    address: str  # the address it asked for (or had)
    hostname: str
    mac: str = ""


class IdentityRequest(Observed, frozen=True, tag="identity"):
    """One request to login.microsoftonline.com (or its device login page). ``presented`` and
    ``issued`` name refresh tokens by fingerprint, never the token."""

    peer: str
    endpoint: str
    outcome: str | None = None
    grant_type: str | None = None
    client_id: str | None = None
    scope: str | None = None
    aadsts: int | None = None
    user: str | None = None
    approved: bool | None = None
    flow: str | None = None
    interval: int | None = None
    tenant: str | None = None
    presented: str | None = None
    issued: str | None = None


Record = (Connect | Refused | Abandoned | ClientHelloSeen | Tls | ServerCertificate | TlsFailed | LegacyTls | Discarded
          | Command
          | AuthResponse | AuthOutcome | Attribution | Spf | FaultInjected | MessageSeen | Stored | ReplySent
          | HarnessFault | Plaintext | Silent | Disconnect | DnsQuery | DnsMalformed | DhcpRequest | IdentityRequest)
KINDS: dict[str, type[Observed]] = {
    str(cls.__struct_config__.tag): cls for cls in Observed.__subclasses__()}
BEGINS = (Connect, IdentityRequest, DnsQuery, DnsMalformed, DhcpRequest)  # an event that opens its own session

_DECODER = msgspec.json.Decoder(Record)


class UnknownRecord(ValueError):
    """A records line that is not one of the vocabulary's events (the message names the field)."""


def decode(line: bytes | str) -> Observed:
    """One records line as its event; ``UnknownRecord`` for a line outside the vocabulary."""
    try:
        event: Observed = _DECODER.decode(line)
    except msgspec.ValidationError as exc:
        raise UnknownRecord(str(exc)) from None
    return event


def from_builtins(data: Any) -> Observed:
    """An event from its JSON form already parsed (``{"kind": "reply", ...}``)."""
    try:
        event: Observed = msgspec.convert(data, Record)
    except msgspec.ValidationError as exc:
        raise UnknownRecord(str(exc)) from None
    return event


# --- one line of a transcript ------------------------------------------------------------------



def describe(event: Observed) -> str | None:
    """The event as a transcript line (``C: EHLO printer``, ``S: 250 ...``, ``*  TLS ...``), or
    None for an event a transcript leaves out (the connection itself, a disconnect)."""
    match event:
        case Command(line=line) | AuthResponse(line=line):
            return f"C: {line}"
        case ReplySent(line=line):
            return f"S: {line}"
        case MessageSeen(size=size, via=via):
            return f"C: <message, {size} bytes by {via}>"
        case ClientHelloSeen(unparsed=unparsed, error=error) if unparsed is not None:
            return f"*  ClientHello that could not be read ({error})"
        case ClientHelloSeen(raw=raw, versions=()) if raw is not None:
            return f"*  ClientHello of {len(raw) * 3 // 4} octets"
        case ClientHelloSeen(versions=versions, cipher_suites=suites, sni=sni, ja4=ja4):
            return (f"*  ClientHello: offers {', '.join(versions)}; SNI {sni or 'none'}"
                    + (f"; JA4 {ja4}" if ja4 else "")
                    + (f"; {len(suites)} cipher suites: {', '.join(suites)}" if suites else ""))
        case Tls(version=version, cipher=cipher, client_certificate=names, hidden=hidden):
            return (f"*  TLS {version} {cipher}" + (f"; client certificate {', '.join(names)}" if names else "")
                    + ("; encrypted (no key for it)" if hidden else ""))
        case TlsFailed(reason=reason):
            return f"*  TLS handshake failed: {reason}"
        case ServerCertificate(subject=subject, issuer=issuer, names=names, not_after=until):
            return (f"*  server certificate {subject}" + (f" ({', '.join(names)})" if names else "")
                    + f", issued by {issuer}" + (f", valid until {until}" if until else ""))
        case LegacyTls(value=value):
            return f"*  {value} negotiated: refused at the next command"
        case Discarded(octets=octets, reason=reason):
            return f"*  {octets} octets discarded ({reason})"
        case AuthOutcome(mechanism=mechanism, user=user, outcome=outcome, reason=reason):
            return f"*  AUTH {mechanism} {user or '(no user)'}: {outcome}" + (f" ({reason})" if reason else "")
        case Attribution(connector=connector, reason=reason):
            return f"*  attributed to {connector or 'no connector'} ({reason})"
        case Spf(value=value):
            return f"*  SPF {value}"
        case FaultInjected(stage=stage, reply=reply, drop=drop, delay=delay):
            what = "dropped the connection" if drop else (reply or f"delayed {delay:g} s")
            return f"*  injected at {stage}: {what}"
        case Stored(message_id=message_id, folders=folders):
            places = ", ".join(f"{c.folder}:{c.mailbox or c.recipient}" for c in folders)
            return f"*  stored {message_id} ({places})"
        case HarnessFault(error=error):
            return f"*  the edge failed: {error}"
        case Refused(reason=reason):
            return f"*  refused: {reason}"
        case Abandoned(waited=waited):
            return f"*  the client left during a {waited:g} s wait for its reply"
        case Plaintext(first_bytes=first):
            return f"*  plaintext on the implicit-TLS port: {first!r}"
        case Silent(waited=waited):
            return f"*  nothing sent in {waited:g} s"
        case IdentityRequest(endpoint=endpoint, outcome=outcome, aadsts=aadsts):
            asked = ", ".join(f"{name}={value}" for name, value in (
                ("grant_type", event.grant_type), ("client_id", event.client_id), ("scope", event.scope),
                ("user", event.user)) if value)
            return f"C: {endpoint} {asked}".rstrip() + f"\nS: {outcome}" + (f" (AADSTS{aadsts})" if aadsts else "")
        case DhcpRequest(address=address, hostname=hostname):
            return f"*  DHCP: {hostname} asks for {address}"
        case DnsQuery(name=name, type=qtype, rcode=rcode, answers=answers):
            return f"*  DNS {qtype} {name}: {rcode}" + (f" {', '.join(answers)}" if answers else "")
    return None
