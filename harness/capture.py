"""A packet capture (pcap or pcapng) read as a stream into the edge's typed events, per device.

What a capture taken at a firewall or on the lab's interface can show of a device sending to
Exchange Online: its DNS questions and answers, its TCP connections to 25, 587, 465 and 443 and
how they ended, the SMTP dialogue before STARTTLS (EHLO name, AUTH in the clear, MAIL and RCPT of
direct send, the replies), the TLS ClientHello, the server's choice (ServerHello), alerts in the
clear and who sent them. With the key log the endpoint wrote (``harness.decrypt``), what went
inside TLS is read as well (the AUTH mechanism, the message, Exchange's replies); without it, a
connection's TLS event says it was hidden.

``harness.packets`` reads the segments (dpkt: pcap and pcapng; Ethernet, VLAN tags, IPv4 and
IPv6), dnslib the DNS answers, and scapy the TLS handshake records alone, where dissection is worth
its cost (the key log's records too, through ``harness.decrypt``); TCP is
reassembled per direction (out-of-order segments held, retransmissions trimmed); every event
carries the packet's time. Memory stays bounded: open flows are capped (the oldest given up), a
direction holds at most ``MAX_PENDING`` octets out of order, and only the first octets of a
message body are kept (its facts need its headers).
"""

from __future__ import annotations

import itertools
import logging
import socket
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from struct import error as struct_error

from fakes.exo.commands import command_fact, escaped, parse_command
from fakes.exo.message import message_facts
from fakes.exo.names import SUBMISSION_NAMES, TLS_WIRE_CODES, WELL_KNOWN_PORTS
from fakes.exo.observed import (
    AuthOutcome,
    AuthResponse,
    ClientHelloSeen,
    Command,
    Connect,
    DhcpRequest,
    Disconnect,
    DnsQuery,
    MessageSeen,
    Observed,
    ReplySent,
    ServerCertificate,
    Tls,
    TlsFailed,
)
from fakes.exo.secrets import looks_like_a_secret
from fakes.record import REDACTED, redact_command
from harness.capture_http import SignIns
from harness.decrypt import KeyLog, Opener, first_certificate
from harness.packets import FIN, RST, SYN, Segment, packets

log = logging.getLogger(__name__)

# The ports a device is configured with, by the endpoint each one reaches (a lab on other ports
# names its own: exoedge judge --port submission=2587)
PORTS = {587: "submission", 25: "mx", 465: "implicit-tls", WELL_KNOWN_PORTS["identity"]: "identity"}
MAX_FLOWS = 4096  # open connections followed at once; the oldest is given up past this
MAX_PENDING = 1 << 20  # out-of-order octets held per direction
BODY_KEPT = 64 << 10  # octets of a message kept for its facts (headers, line endings)
_STAGES = {"EHLO": "ehlo", "HELO": "ehlo", "STARTTLS": "starttls", "AUTH": "auth", "MAIL": "mail", "RCPT": "rcpt",
           "DATA": "data", "BDAT": "data", "RSET": "rset", "NOOP": "noop", "QUIT": "quit"}


@dataclass
class Stream:
    """One direction of a TCP connection, reassembled: in-order octets out, however they came."""

    next_seq: int | None = None
    pending: dict[int, bytes] = field(default_factory=dict)
    held: int = 0
    fin_at: int | None = None  # where its FIN is: the stream has ended once everything before it is taken

    @property
    def finished(self) -> bool:
        return self.fin_at is not None and self.next_seq == self.fin_at

    def take(self, seq: int, payload: bytes, syn: bool, fin: bool = False) -> bytes:
        if syn:
            self.next_seq = (seq + 1) % (1 << 32)
            return b""
        if fin:
            self.fin_at = (seq + len(payload)) % (1 << 32)
            if self.next_seq is None and not payload:
                self.next_seq = self.fin_at
        if not payload:
            return b""
        if self.next_seq is None:  # the capture began mid-connection
            self.next_seq = seq
        ahead = (seq - self.next_seq) % (1 << 32)
        if ahead >= 1 << 31:  # it starts before what was taken: a retransmission, trimmed
            payload = payload[(1 << 32) - ahead:]
            if not payload:
                return b""
            seq, ahead = self.next_seq, 0
        if ahead:
            if self.held + len(payload) <= MAX_PENDING and seq not in self.pending:
                self.pending[seq] = payload
                self.held += len(payload)
            return b""
        self.next_seq = (self.next_seq + len(payload)) % (1 << 32)
        if not self.pending:  # in order, as most segments come
            return payload
        out = bytearray(payload)
        while self.next_seq in self.pending:
            chunk = self.pending.pop(self.next_seq)
            self.held -= len(chunk)
            out += chunk
            self.next_seq = (self.next_seq + len(chunk)) % (1 << 32)
        return bytes(out)


class Flow:
    """One TCP connection from a device to port 25, 587, 465 or 443, as events."""

    def __init__(self, session: str, client: tuple[str, int], server: tuple[str, int], t: float,
                 endpoint: str, keys: KeyLog | None = None) -> None:
        self.session, self.client, self.server = session, client, server
        self.endpoint = endpoint
        self.up, self.down = Stream(), Stream()
        self.up_buf, self.down_buf = bytearray(), bytearray()  # the dialogue, in the clear
        self.up_tls, self.down_tls = bytearray(), bytearray()  # TLS records not yet whole
        self.keys = keys
        self.opener: Opener | None = None
        self.sign_ins = SignIns(session, client[0]) if endpoint == "identity" and keys is not None else None
        self.tls = False
        if self.endpoint in ("implicit-tls", "identity"):  # TLS from the first octet
            self._begin_tls()
        self.hello_seen = self.server_seen = self.certificate_seen = False
        self.verbs: list[str] = []  # commands not yet answered (pipelining), oldest first
        self.auth_answers = 0  # client lines owed as answers to a 334
        self.body: bytearray | None = None  # a message after 354 (or in BDAT chunks)
        self.in_data = False  # after a 354: the message until its CRLF.CRLF
        self.body_size = 0
        self.chunk_left = 0
        self.chunk_last = False
        self.starttls_asked = False
        self.mechanism = ""  # of the AUTH being answered
        self.greeted = False
        self.events: list[Observed] = [Connect(session=session, t=t, endpoint=self.endpoint, peer=client,
                                               local=server)]
        self.closed = False
        self.last_t = t
        self.secrets: set[str] = set()

    def _add(self, event: Observed) -> None:
        self.events.append(event)

    # -- client to server ---------------------------------------------------------------------------

    def _begin_tls(self) -> None:
        self.tls = True
        if self.keys is not None:
            self.opener = Opener(self.keys)

    @property
    def readable(self) -> bool:
        """The dialogue can be read: in the clear, or inside TLS opened with its keys."""
        return not self.tls or (self.opener is not None and self.opener.opened)

    def client_data(self, data: bytes, t: float) -> None:
        self._take(data, t, from_client=True)

    def server_data(self, data: bytes, t: float) -> None:
        self._take(data, t, from_client=False)

    def _take(self, data: bytes, t: float, *, from_client: bool) -> None:
        """Octets of one direction: TLS records once TLS began, else lines of the dialogue."""
        if self.tls:
            records = self.up_tls if from_client else self.down_tls
            records += data
            self._tls_records(records, t, from_client=from_client)
        else:
            (self.up_buf if from_client else self.down_buf).extend(data)
            (self._client_lines if from_client else self._server_lines)(t)

    def _client_lines(self, t: float) -> None:
        while self.readable:
            if self.in_data or self.chunk_left:
                if not self._message_octets(t):
                    return
                continue
            end = self.up_buf.find(b"\r\n")
            if end < 0:
                return
            raw = bytes(self.up_buf[:end])
            del self.up_buf[:end + 2]
            self._client_line(raw, t)

    def _client_line(self, raw: bytes, t: float) -> None:
        if self.auth_answers:
            self.auth_answers -= 1
            self._add(AuthResponse(session=self.session, t=t, line=REDACTED))
            return
        shown = escaped(raw)
        if looks_like_a_secret(shown):  # credentials sent as a "command" (an AUTH exchange lost track of)
            self.secrets.add(shown)  # Exchange echoes them in its 500: that reply is redacted too
            self._add(Command(session=self.session, t=t, line=REDACTED))
            self.verbs.append("")
            return
        parsed = parse_command(raw)
        fact = command_fact(redact_command(shown), parsed)
        self._add(Command(session=self.session, t=t, line=fact.line, verb=fact.verb, address=fact.address,
                          params=fact.params))
        verb = fact.verb or raw.split(b" ", 1)[0].decode("ascii", "replace").upper()
        if verb == "BDAT":
            words = raw.split()
            if len(words) >= 2 and words[1].isdigit():
                self.chunk_left, self.chunk_last = int(words[1]), len(words) > 2 and words[2].upper() == b"LAST"
                self.body = self.body if self.body is not None else bytearray()
                if self.chunk_last:  # its one reply answers the whole message (<message>, at its end)
                    if not self.chunk_left:
                        self._message_end(self.body, "BDAT", t)
                    return
        self.verbs.append(verb)
        if verb == "STARTTLS":
            self.starttls_asked = True
        elif verb == "AUTH":
            self.mechanism = fact.line.split(" ")[1].upper() if " " in fact.line else ""

    def _message_octets(self, t: float) -> bool:
        """Take message octets (after 354, or a BDAT chunk); True when the message or chunk ended."""
        body = self.body if self.body is not None else bytearray()
        if self.chunk_left:
            take = bytes(self.up_buf[:self.chunk_left])
            del self.up_buf[:len(take)]
            self.chunk_left -= len(take)
            self._keep(body, take)
            if self.chunk_left:
                return False
            if self.chunk_last:
                self._message_end(body, "BDAT", t)
            return True
        end = self.up_buf.find(b"\r\n.\r\n")
        if end < 0 and self.up_buf.startswith(b".\r\n"):
            end = -2
        if end < 0:
            keep = max(len(self.up_buf) - 4, 0)  # the end mark may be split across segments
            self._keep(body, bytes(self.up_buf[:keep]))
            del self.up_buf[:keep]
            return False
        self._keep(body, bytes(self.up_buf[:end + 2]))
        del self.up_buf[:end + 5]
        self._message_end(body, "DATA", t)
        return True

    def _keep(self, body: bytearray, data: bytes) -> None:
        self.body = body
        self.body_size += len(data)
        room = BODY_KEPT - len(body)
        if room > 0:
            body += data[:room]

    def _message_end(self, body: bytearray, via: str, t: float) -> None:
        content = bytes(body).replace(b"\r\n..", b"\r\n.") if via == "DATA" else bytes(body)
        facts = message_facts(content, size=self.body_size, via=via)
        self._add(MessageSeen(session=self.session, t=t, size=facts.size, via=via, has_date=facts.has_date,
                              has_message_id=facts.has_message_id, has_from=facts.has_from,
                              bare_lf=facts.bare_lf, header_bytes=facts.header_bytes,
                              longest_line=facts.longest_line))
        self.body, self.body_size, self.in_data = None, 0, False
        self.verbs.append("<message>")

    # -- server to client ---------------------------------------------------------------------------

    def _server_lines(self, t: float) -> None:
        while self.readable:
            end = self.down_buf.find(b"\r\n")
            if end < 0:
                return
            line = bytes(self.down_buf[:end]).decode("utf-8", "backslashreplace")
            del self.down_buf[:end + 2]
            self._reply(line, t)

    def _reply(self, line: str, t: float) -> None:
        for secret in self.secrets:
            line = line.replace(secret, REDACTED)
        code = int(line[:3]) if line[:3].isdigit() else 0
        last = line[3:4] != "-"
        if not self.greeted:
            stage = "banner"
        else:
            verb = self.verbs[0] if self.verbs else ""
            stage = "message" if verb == "<message>" else _STAGES.get(verb, "other")
        enhanced = line[4:].split(" ", 1)[0] if last and line[4:5].isdigit() and line[5:6] == "." else None
        self._add(ReplySent(session=self.session, t=t, line=line, code=code, stage=stage, enhanced=enhanced))
        if not last:
            return
        if not self.greeted:
            self.greeted = True
            return
        verb = self.verbs.pop(0) if self.verbs else ""
        if code == 334:
            self.auth_answers += 1
            self.verbs.insert(0, verb)  # the AUTH exchange goes on: its next reply answers it too
        elif verb == "AUTH":  # its outcome, as the server's last reply to it says
            outcome = {235: "success", 504: "unsupported"}.get(code, "failure")
            self._add(AuthOutcome(session=self.session, t=t, mechanism=self.mechanism, user="", outcome=outcome,
                                  reason="" if code == 235 else line))
        elif code == 354 and verb == "DATA":
            self.body, self.in_data = bytearray(), True
        elif verb == "STARTTLS" and code == 220:
            self._begin_tls()
            self.up_buf.clear()  # what a client pipelined after STARTTLS is never read in the clear
            self.down_buf.clear()
            self.verbs.clear()  # the dialogue begins again inside TLS

    # -- TLS ------------------------------------------------------------------------------------------

    def _tls_records(self, buf: bytearray, t: float, *, from_client: bool) -> None:
        while len(buf) >= 5:
            kind, length = buf[0], int.from_bytes(buf[3:5], "big")
            if kind not in (20, 21, 22, 23) or length > 1 << 15:
                buf.clear()  # not TLS (a plaintext client on 465): nothing more to read here
                return
            if len(buf) < 5 + length:
                return
            record = bytes(buf[:5 + length])
            del buf[:5 + length]
            plain = self.opener.record(record, from_client=from_client) if self.opener is not None else None
            if kind == 22 and from_client and not self.hello_seen:
                self.hello_seen = True
                self._add(client_hello(record, self.session, t, implicit=self.endpoint == "implicit-tls"))
            elif kind == 22 and not from_client and not (self.server_seen and self.certificate_seen):
                tls, der = server_flight(record, self.session, t, hidden=self.opener is None or self.opener.failed)
                if tls is not None and not self.server_seen:
                    self.server_seen = True
                    self._add(tls)
                self._certificate(der, t)
            elif kind == 21 and length == 2:  # an alert in the clear (later ones are encrypted)
                who = "the device" if from_client else "the server"
                self._add(TlsFailed(session=self.session, t=t, reason=f"{who} sent alert {alert_name(record)}"))
            if self.opener is not None and self.opener.certificate is not None:  # TLS 1.3's, decrypted
                self._certificate(self.opener.certificate, t)
            if plain and self.sign_ins is not None:  # a sign-in: HTTP, not SMTP
                sign_in = self.sign_ins.device_sent if from_client else self.sign_ins.platform_sent
                for request in sign_in(plain, t):
                    self._add(request)
            elif plain:
                if from_client:
                    self.up_buf += plain
                    self._client_lines(t)
                else:
                    self.down_buf += plain
                    self._server_lines(t)
            elif plain is None and self.server_seen and self.hello_seen and kind == 23:
                buf.clear()  # encrypted from here on, and no key opens it: nothing more is visible
                return

    def _certificate(self, der: bytes | None, t: float) -> None:
        if der is None or self.certificate_seen:
            return
        self.certificate_seen = True
        event = server_certificate(der, self.session, t)
        if event is not None:
            self._add(event)

    def close(self, t: float, error: str | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.hello_seen and not self.server_seen:
            self._add(TlsFailed(session=self.session, t=t,
                                reason="the connection ended before the server chose a TLS version"))
        self._add(Disconnect(session=self.session, t=t, error=error))


def client_hello(record: bytes, session: str, t: float, *, implicit: bool) -> ClientHelloSeen:
    from fakes.tls import ClientHello

    try:
        hello = ClientHello.parse(record)
    except Exception as exc:  # a ClientHello scapy cannot read is still a fact worth keeping
        return ClientHelloSeen(session=session, t=t, unparsed=record[:64].hex(), error=repr(exc),
                               implicit_tls=implicit)
    return ClientHelloSeen(session=session, t=t, legacy_version=hello.legacy_version, versions=hello.versions,
                           cipher_suites=hello.cipher_suites, sni=hello.sni, highest_version=hello.highest_version,
                           implicit_tls=implicit, ja4=ja4(record))


def ja4(record: bytes) -> str | None:
    """The ClientHello's JA4 fingerprint (ja4plus, after FoxIO's specification), or None."""
    from ja4plus.fingerprinters.ja4 import generate_ja4
    from ja4plus.utils.tls_utils import parse_tls_handshake

    try:
        return generate_ja4(parse_tls_handshake(record))
    except Exception:  # a ClientHello it cannot read has no fingerprint, and the rest of it still counts
        return None


def server_flight(record: bytes, session: str, t: float, *, hidden: bool = True) -> tuple[Tls | None, bytes | None]:
    """From a server's handshake record in the clear: the version and suite it chose (its
    ServerHello; TLS 1.3: supported_versions), and its certificate (up to TLS 1.2)."""
    from scapy.layers.tls.crypto.suites import _tls_cipher_suites
    from scapy.layers.tls.handshake import TLSServerHello
    from scapy.layers.tls.record import TLS

    try:
        packet = TLS(record)
    except Exception:
        return None, None
    tls = None
    for message in packet.msg or []:
        if isinstance(message, TLSServerHello):
            version = message.version
            for ext in message.ext or []:
                if type(ext).__name__ == "TLS_Ext_SupportedVersion_SH":
                    version = ext.version
            tls = Tls(session=session, t=t, version=TLS_WIRE_CODES.get(version, f"0x{version:04x}"),
                      cipher=_tls_cipher_suites.get(message.cipher, f"0x{message.cipher:04x}"), hidden=hidden)
    try:
        der = first_certificate(packet)
    except Exception:  # a certificate scapy cannot take apart: the rest of the record still counts
        der = None
    return tls, der


def server_certificate(der: bytes, session: str, t: float) -> ServerCertificate | None:
    """What a certificate says of itself (cryptography reads it): subject, issuer, DNS names, end."""
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            names = tuple(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                          .get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            names = ()
        return ServerCertificate(session=session, t=t, subject=cert.subject.rfc4514_string(),
                                 issuer=cert.issuer.rfc4514_string(), names=names[:20],
                                 not_after=cert.not_valid_after_utc.date().isoformat())
    except ValueError:
        return None


def alert_name(record: bytes) -> str:
    from scapy.layers.tls.record import _tls_alert_description

    if len(record) < 7:
        return "(truncated)"
    return str(_tls_alert_description.get(record[6], f"#{record[6]}"))


# -- the whole capture ----------------------------------------------------------------------------


def events(path: Path, ports: dict[int, str] | None = None, keys: KeyLog | None = None,
           submission_addresses: Iterable[str] = ()) -> Iterator[Observed]:
    """Every event the capture shows, in the order they happened (by packet). ``ports``: the
    endpoint each server port reaches (``PORTS`` by default); ``keys``: the TLS secrets that open
    what went inside (``harness.decrypt.read_keylog``); ``submission_addresses``: where
    smtp.office365.com was (its port 25 is submission), beside what the capture's DNS answers say."""
    ports = ports or PORTS
    flows: OrderedDict[tuple[str, int, str, int], Flow] = OrderedDict()
    ended: OrderedDict[tuple[str, int, str, int], None] = OrderedDict()
    given = frozenset(submission_addresses)
    submission: OrderedDict[str, None] = OrderedDict()  # addresses DNS gave for smtp.office365.com
    ids = itertools.count(1)
    for t, segment in packets(path):
        if segment.udp:
            if (segment.sport, segment.dport) == (68, 67):  # a DHCP client: its host name names the device
                lease = _dhcp(segment, t, next(ids))
                if lease is not None:
                    yield lease
                continue
            if segment.sport == DNS_PORT:
                event = _dns(segment, t, next(ids))
                if event is not None:
                    if event.name.lower() in SUBMISSION_NAMES:  # where smtp.office365.com is, as answered
                        submission.update((address, None) for address in event.answers)
                        while len(submission) > MAX_FLOWS:
                            submission.popitem(last=False)
                    yield event
            continue
        payload, flags = segment.payload, segment.flags
        if segment.dport in ports:
            key, from_client = (segment.src, segment.sport, segment.dst, segment.dport), True
        elif segment.sport in ports:
            key, from_client = (segment.dst, segment.dport, segment.src, segment.sport), False
        else:
            continue
        flow = flows.get(key)
        if not payload and not flags & (SYN | FIN | RST):  # an acknowledgement alone (half of most captures)
            if flow is not None:
                flow.last_t = t
            continue
        if flow is None:
            if key in ended or (not flags & SYN and (not payload or flags & (FIN | RST))):
                continue  # the last packets of a connection that has ended, or one seen only at its end
            if not from_client and not flags & SYN:
                continue  # the server's side of a connection the capture did not see begin
            endpoint = ports[key[3]]
            if endpoint == "mx" and (key[2] in submission or key[2] in given):  # smtp.office365.com:25 is submission
                endpoint = "submission-25"
            flow = flows[key] = Flow(f"c{next(ids):06d}", (key[0], key[1]), (key[2], key[3]), t, endpoint, keys)
            if len(flows) > MAX_FLOWS:
                _, oldest = flows.popitem(last=False)
                oldest.close(t, "given up: too many connections open at once in the capture")
                yield from oldest.events
        flow.last_t = t
        stream = flow.up if from_client else flow.down
        data = stream.take(segment.seq, payload, bool(flags & SYN), bool(flags & FIN))
        if data:
            (flow.client_data if from_client else flow.server_data)(data, t)
        if flags & RST or flow.up.finished or flow.down.finished:
            flow.close(t, "reset" if flags & RST else None)
            del flows[key]
            ended[key] = None  # its remaining packets (the other side's FIN, ACKs) are not a new connection
            if len(ended) > MAX_FLOWS:
                ended.popitem(last=False)
        if flow.closed or len(flow.events) > 1:
            yield from flow.events
            flow.events.clear()
    for flow in flows.values():
        flow.close(flow.last_t, "still open when the capture ended")
        yield from flow.events


DNS_PORT = WELL_KNOWN_PORTS["dns"]


def _dhcp(segment: Segment, t: float, n: int) -> DhcpRequest | None:
    """A DHCP request that names its host (option 12), for the address it asks for (option 50) or has."""

    import dpkt

    try:
        request = dpkt.dhcp.DHCP(segment.payload)
    except (dpkt.dpkt.Error, ValueError, struct_error):
        return None
    options = dict(request.opts)
    name = options.get(dpkt.dhcp.DHCP_OPT_HOSTNAME)
    wanted = options.get(dpkt.dhcp.DHCP_OPT_REQ_IP) or (request.ciaddr.to_bytes(4, "big") if request.ciaddr else b"")
    if not name or len(wanted) != 4:
        return None
    return DhcpRequest(session=f"dhcp{n:06d}", t=t, address=socket.inet_ntoa(wanted),
                       hostname=name.decode("utf-8", "backslashreplace")[:100], mac=request.chaddr[:6].hex(":"))


def _dns(segment: Segment, t: float, n: int) -> DnsQuery | None:
    """A DNS answer, as the edge records a question it answered (the device is the one asking)."""
    from dnslib import QTYPE, RCODE, DNSError, DNSRecord

    try:
        answer = DNSRecord.parse(segment.payload)
    except (DNSError, IndexError, ValueError, UnicodeDecodeError):
        return None
    if not answer.header.qr or not answer.questions:
        return None
    question = answer.q
    return DnsQuery(session=f"dns{n:06d}", t=t, peer=(segment.dst, segment.dport), transport="udp",
                    name=str(question.qname).rstrip(".")[:300], type=str(QTYPE.get(question.qtype, question.qtype)),
                    rcode=str(RCODE.get(answer.header.rcode, answer.header.rcode)),
                    answers=tuple(str(rr.rdata) for rr in answer.rr))
