"""A packet capture (pcap or pcapng) read as a stream of TCP segments and UDP datagrams.

dpkt reads the file (pcap and pcapng; Ethernet with VLAN tags, Linux cooked, raw IP, loopback;
IPv4 and IPv6); the commonest frame by far, Ethernet carrying TCP over IPv4, is read from its fixed
offsets instead, at a third of the cost, and held to dpkt's answers by a test. The records of a
classic pcap file (a 16-octet header each) are cut from the file a megabyte at a time, also held
to dpkt's reading by a test: dpkt makes an object of each record's header, a quarter of a big
capture's judging. A packet cut short or not IP is passed over; a damaged record ends the reading
with a warning.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error
from typing import Any, BinaryIO

from fakes.exo.errors import ExoEdgeError

log = logging.getLogger(__name__)


class CaptureError(ExoEdgeError, ValueError):
    """The file is not a capture this reader can take (the message says which file and why)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """A TCP segment or a UDP datagram, as the capture holds it."""

    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes
    seq: int = 0
    flags: int = 0  # TCP's: SYN 0x02, FIN 0x01, RST 0x04
    udp: bool = False


SYN, FIN, RST = 0x02, 0x01, 0x04


def packets(path: Path) -> Iterator[tuple[float, Segment]]:
    """(time, segment) for each TCP or UDP packet over IPv4 or IPv6 in a pcap or pcapng file, read
    as a stream (dpkt: Ethernet with VLAN tags, Linux cooked, raw IP, BSD loopback); a packet cut
    short or not IP is passed over."""
    import dpkt

    links = {dpkt.pcap.DLT_EN10MB: dpkt.ethernet.Ethernet, dpkt.pcap.DLT_LINUX_SLL: dpkt.sll.SLL,
             276: dpkt.sll2.SLL2, dpkt.pcap.DLT_NULL: dpkt.loopback.Loopback,
             dpkt.pcap.DLT_LOOP: dpkt.loopback.Loopback}
    raw_ip = {dpkt.pcap.DLT_RAW, 12, 14, 101}
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the last packet
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read it ({exc.strerror})") from None
    with handle:
        header = handle.read(24)
        records: Iterator[tuple[float, bytes]]
        if len(header) == 24 and header[:4] in PCAP_ORDER:
            datalink = struct.unpack_from(PCAP_ORDER[header[:4]] + "I", header, 20)[0]
            records = pcap_records(handle, header[:4])
        else:
            handle.seek(0)
            try:
                reader = dpkt.pcap.UniversalReader(handle)
            except (ValueError, dpkt.dpkt.Error, struct_error) as exc:
                raise CaptureError(f"{path}: not a pcap or pcapng capture ({exc})") from None
            datalink, records = reader.datalink(), iter(reader)
        link = links.get(datalink)
        if link is None and datalink not in raw_ip:
            raise CaptureError(f"{path}: link type {datalink} is not one this reader takes "
                               "(Ethernet, Linux cooked, raw IP, loopback)")
        ethernet = link is dpkt.ethernet.Ethernet
        while True:
            try:
                t, frame = next(records)
            except StopIteration:
                return
            except (dpkt.dpkt.Error, ValueError, struct_error) as exc:  # a cut-off last record, a damaged block
                log.warning("%s: stopped reading at a damaged record (%s)", path, exc)
                return
            if ethernet and (segment := tcp_over_ipv4(frame)) is not None:  # most packets: no objects made
                yield float(t), segment
                continue
            segment = segment_of(frame, link)
            if segment is not None:
                yield float(t), segment


# A classic pcap file's magic: the byte order of its headers; the nanosecond kind's fractions
PCAP_ORDER = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}
NANOSECONDS = (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
MAX_RECORD = 1 << 20  # a record longer than any link's frame: the file is damaged there
_CHUNK = 1 << 20


def pcap_records(handle: BinaryIO, magic: bytes) -> Iterator[tuple[float, bytes]]:
    """(time, frame) of each record of a classic pcap file, read on from just after its file
    header. A record cut off by the end of the file gives what there is of it, as dpkt does; a
    record header cut off, or one claiming more than ``MAX_RECORD`` octets, raises ValueError."""
    record = struct.Struct(PCAP_ORDER[magic] + "III")  # seconds, their fraction, octets captured
    divisor = 1e9 if magic in NANOSECONDS else 1e6
    buffer, at = b"", 0
    while True:
        if at + 16 > len(buffer):
            buffer, at = buffer[at:] + handle.read(_CHUNK), 0
            if len(buffer) < 16:
                if buffer:
                    raise ValueError(f"the last record's header is cut off after {len(buffer)} octets")
                return
        seconds, fraction, length = record.unpack_from(buffer, at)
        if length > MAX_RECORD:
            raise ValueError(f"a record claims {length} octets")
        end = at + 16 + length
        if end > len(buffer):
            buffer, at = buffer[at:] + handle.read(max(_CHUNK, length + 16)), 0
            end = 16 + length
        yield seconds + fraction / divisor, buffer[at + 16:end]
        if end > len(buffer):
            return  # cut off by the end of the file
        at = end


_TCP_PORTS_SEQ = struct.Struct("!HHI")


def tcp_over_ipv4(frame: bytes) -> Segment | None:
    """The segment of an Ethernet frame carrying TCP over IPv4, read from its fixed offsets (the
    commonest packet by far, at a third of dpkt's cost); None for any other frame, or one this
    cannot read whole (cut short, a fragment, options past the frame), which dpkt then takes
    (``tests/unit/test_capture_reader.py`` holds the two to the same answers)."""
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4 or frame[23] != 6:
        return None
    if frame[20] & 0x3F or frame[21]:  # more fragments, or not the first: dpkt's way, not ours
        return None
    tcp = 14 + (frame[14] & 0x0F) * 4
    end = 14 + int.from_bytes(frame[16:18], "big")
    if tcp < 34 or tcp + 20 > len(frame) or end > len(frame):
        return None
    data = tcp + (frame[tcp + 12] >> 4) * 4
    if data < tcp + 20 or data > end:
        return None
    sport, dport, seq = _TCP_PORTS_SEQ.unpack_from(frame, tcp)
    flags = (frame[tcp + 12] & 1) << 8 | frame[tcp + 13]  # nine bits, with NS, as dpkt reads them
    return Segment(socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34]), sport, dport, frame[data:end],
                   seq, flags)


def segment_of(frame: bytes, link: Any) -> Segment | None:
    """The TCP segment or UDP datagram of a frame, as dpkt reads it (``link``: its class for the
    capture's link type; None for raw IP); None for a frame cut short, not IP, or neither."""
    import dpkt

    try:
        ip = _ip(frame, link, dpkt)
        if ip is None:
            return None
        layer = ip.data
        family = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
        src, dst = socket.inet_ntop(family, ip.src), socket.inet_ntop(family, ip.dst)
        if isinstance(layer, dpkt.tcp.TCP):
            return Segment(src, dst, layer.sport, layer.dport, bytes(layer.data), layer.seq, layer.flags)
        if isinstance(layer, dpkt.udp.UDP):
            return Segment(src, dst, layer.sport, layer.dport, bytes(layer.data), udp=True)
    except (dpkt.dpkt.Error, ValueError, struct_error):
        pass  # cut short by the snap length, or not what it says it is
    return None


def _ip(frame: bytes, link: Any, dpkt: Any) -> Any:
    """The IP layer of a frame (None when it carries none)."""
    if link is None:  # raw IP: the version nibble says which
        return (dpkt.ip6.IP6 if frame[:1] and frame[0] >> 4 == 6 else dpkt.ip.IP)(frame)
    layer = link(frame).data
    return layer if isinstance(layer, dpkt.ip.IP | dpkt.ip6.IP6) else None
