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
from pathlib import Path
from struct import error as struct_error
from typing import Any, BinaryIO, NamedTuple

from fakes.exo.errors import ExoEdgeError

log = logging.getLogger(__name__)


class CaptureError(ExoEdgeError, ValueError):
    """The file is not a capture this reader can take (the message says which file and why)."""


class Segment(NamedTuple):
    """A TCP segment or a UDP datagram, as the capture holds it (a tuple: one made per packet)."""

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


# An Ethernet frame carrying IPv4 without options, up to the TCP flags: EtherType, version and
# header length, total length, fragment field, protocol, source, destination, ports, sequence
# number, data offset (and NS), flags
_PLAIN_TCP = struct.Struct("!12xHBxHxxHxBxx4s4sHHI4xBB")


def tcp_over_ipv4(frame: bytes) -> Segment | None:
    """The segment of an Ethernet frame carrying TCP over IPv4 without IP options, read from its
    fixed offsets in one unpacking (the commonest packet by far, at a third of dpkt's cost); None
    for any other frame, or one this cannot read whole (cut short, a fragment, TCP options past the
    frame), which dpkt then takes (``tests/unit/test_capture_reader.py`` holds the two to the same
    answers)."""
    if len(frame) < 54:
        return None
    ethertype, version_length, total, fragment, protocol, src, dst, sport, dport, seq, offset, flags = \
        _PLAIN_TCP.unpack_from(frame)
    # not IPv4 and TCP; more fragments, or not the first (dpkt's way, not ours)
    if ethertype != 0x0800 or version_length != 0x45 or protocol != 6 or fragment & 0x3FFF:
        return None
    end = 14 + total
    data = 34 + (offset >> 4) * 4
    if end > len(frame) or data < 54 or data > end:
        return None
    return Segment(socket.inet_ntoa(src), socket.inet_ntoa(dst), sport, dport, frame[data:end], seq,
                   (offset & 1) << 8 | flags)  # nine flag bits, with NS, as dpkt reads them


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
