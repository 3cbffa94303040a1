"""The lab DNS server: dnslib packets over UDP and TCP, answered from ``fakes.exo.zone``.

Bound only to the address it is given (port 0 unless told, 53 when a lab asks). Authoritative
only: names outside the zone get REFUSED and nothing is ever recursed, so it cannot serve as an
open resolver or an amplifier; zone transfers are REFUSED too. A packet dnslib cannot parse is
dropped and counted, and so is a packet that is itself a response (QR=1): answering those would
let one spoofed packet set the server talking to itself. A name it cannot encode back (over 255
octets) gets FORMERR. Every query
is recorded (source address, name, type, answer) so a scenario can tell a device that looked
``smtp.office365.com`` up from one configured with an IP literal.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A, DNSError, DNSHeader, DNSRecord
from dnslib.label import DNSLabelError

from fakes.exo.observed import DnsMalformed, DnsQuery
from fakes.exo.state import EdgeState
from fakes.exo.zone import TTL, Zone
from fakes.gate import Gate, descriptor_plan, stream_protocol
from fakes.record import RecordLog

log = logging.getLogger(__name__)
ZONE_TRANSFERS = frozenset({QTYPE.AXFR, QTYPE.IXFR})


def _rdata(rtype: str, value: str) -> object:
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "MX":
        preference, host = value.split()
        return MX(host, int(preference))
    if rtype == "TXT":
        # one TXT string holds at most 255 bytes: split longer records into several strings
        data = value.encode()
        return TXT([data[i : i + 255] for i in range(0, len(data), 255)])
    raise ValueError(f"no rdata for {rtype}")


def _pack(reply: DNSRecord, request: DNSRecord) -> tuple[bytes, str | None]:
    """The reply on the wire; FORMERR, header only, when its question cannot be encoded back."""
    try:
        return reply.pack(), None
    except (DNSError, DNSLabelError):
        header = DNSHeader(id=request.header.id, qr=1, aa=0, ra=0, rcode=RCODE.FORMERR)
        return DNSRecord(header).pack(), "FORMERR"


class DnsServer:
    """UDP and TCP on the same address and port."""

    def __init__(self, zone: Callable[[], Zone], records: RecordLog, budget: EdgeState | None = None) -> None:
        self.zone = zone
        self.records = records
        self.budget = budget  # TCP connections count in the edge's one budget
        self.dropped = 0
        self.answered = 0
        self._ids = itertools.count(1)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    # -- answering ----------------------------------------------------------------------------

    def answer(self, packet: bytes, peer: tuple[str, int], transport: str) -> bytes | None:
        try:
            request = DNSRecord.parse(packet)
        except (DNSError, IndexError, ValueError, UnicodeDecodeError):
            self.dropped += 1
            self.records.add(DnsMalformed(peer=(peer[0], peer[1]), size=len(packet), transport=transport),
                             f"dns{next(self._ids):06d}")
            return None
        if request.header.qr:  # a response, not a question: never answered
            self.dropped += 1
            return None
        reply = request.reply()
        reply.header.ra = 0  # no recursion, ever
        if request.header.opcode != 0 or len(request.questions) != 1:
            reply.header.rcode = RCODE.NOTIMP if request.header.opcode != 0 else RCODE.FORMERR
            return _pack(reply, request)[0]
        question = request.q
        name = str(question.qname).rstrip(".")
        qtype = QTYPE.get(question.qtype, str(question.qtype))
        answers: tuple[tuple[str, str], ...] = ()
        if question.qtype in ZONE_TRANSFERS:
            rcode = "REFUSED"
        else:
            result = self.zone().lookup(name, qtype)
            rcode, answers = result.rcode, result.records
        reply.header.rcode = getattr(RCODE, rcode)
        reply.header.aa = int(rcode != "REFUSED")
        for rtype, value in answers:
            reply.add_answer(RR(question.qname, getattr(QTYPE, rtype), rdata=_rdata(rtype, value), ttl=TTL))
        packed, refused = _pack(reply, request)
        self.answered += 1
        self.records.add(DnsQuery(peer=(peer[0], peer[1]), transport=transport, name=name[:300], type=qtype,
                                  rcode=refused or rcode, answers=tuple(v for _, v in answers)),
                         f"dns{next(self._ids):06d}")
        return packed

    # -- serving ------------------------------------------------------------------------------

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        if self.budget is None:
            self._tcp = await asyncio.start_server(self._serve_tcp, host, port)
        else:
            budget, serve = self.budget, stream_protocol(self._serve_tcp)
            self._tcp = await loop.create_server(lambda: Gate(budget, "dns", serve, self.records), host, port,
                                                 backlog=descriptor_plan()[1])
        bound = self._tcp.sockets[0].getsockname()[:2]
        try:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, bound[1])
            )
        except BaseException:
            await self.stop()
            raise
        return bound

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            server, self._tcp = self._tcp, None
            server.close()
            await server.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 10), "big")
                packet = await asyncio.wait_for(reader.readexactly(size), 10)
                reply = self.answer(packet, peer, "tcp")
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = self.server.answer(data, addr, "udp")
        except Exception:  # never let one packet stop the server
            self.server.dropped += 1
            log.exception("DNS answer failed for a packet from %s", addr)
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)
