"""The lab DNS server over real UDP and TCP, queried with dnspython."""

from __future__ import annotations

import socket

import pytest

# dnspython comes with the test extras; without them (`pytest -m scenario` after the README's
# first command) this module is skipped rather than breaking collection.
pytest.importorskip("dns.message")
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

from tests.conftest import overrides


def ask(edge, name: str, rtype: str, *, tcp: bool = False) -> dns.message.Message:
    host, port = edge.addresses["dns"]
    query = dns.message.make_query(name, rtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, host, port=port, timeout=5)


def values(response: dns.message.Message) -> list[str]:
    return sorted(rdata.to_text() for rrset in response.answer for rdata in rrset)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_every_zone_name_answers(edge, tcp):
    for name in ("smtp.office365.com", "smtp-legacy.office365.com", "contoso-com.mail.protection.outlook.com"):
        response = ask(edge, name, "A", tcp=tcp)
        assert response.rcode() == dns.rcode.NOERROR and values(response) == ["127.0.0.1"]
        assert response.flags & dns.flags.AA and not response.flags & dns.flags.RA
    assert values(ask(edge, "contoso.com", "MX", tcp=tcp)) == ["0 contoso-com.mail.protection.outlook.com."]
    assert values(ask(edge, "contoso.com", "TXT", tcp=tcp)) == [
        '"v=spf1 ip4:127.0.0.10 ip4:127.0.0.20 include:spf.protection.outlook.com ~all"'
    ]
    spf = values(ask(edge, "spf.protection.outlook.com", "TXT", tcp=tcp))
    assert spf and spf[0].startswith('"v=spf1 ip4:40.92.0.0/15')


def test_names_outside_the_zone_are_refused_never_resolved(edge):
    for name in ("example.org", "google.com", "outlook.com"):
        response = ask(edge, name, "A")
        assert response.rcode() == dns.rcode.REFUSED and not response.answer


def test_a_missing_name_inside_the_zone_does_not_exist(edge):
    assert ask(edge, "nothing-here.contoso.com", "A").rcode() == dns.rcode.NXDOMAIN
    response = ask(edge, "smtp.office365.com", "MX")  # the name exists, that type does not
    assert response.rcode() == dns.rcode.NOERROR and not response.answer


def test_spf_follows_the_tenant(edge):
    overrides(edge, dns={"spf": False})
    assert values(ask(edge, "contoso.com", "TXT")) == []
    overrides(edge, dns={"spf": True, "spf_ip4": ["127.0.0.0/28"], "spf_all": "-all"})
    assert values(ask(edge, "contoso.com", "TXT")) == [
        '"v=spf1 ip4:127.0.0.0/28 include:spf.protection.outlook.com -all"'
    ]


def test_garbage_is_dropped_and_counted_and_the_server_keeps_answering(edge):
    host, port = edge.addresses["dns"]
    assert edge.dns is not None
    before = edge.dns.dropped
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (b"", b"\x00", b"\xff" * 40, bytes(range(256))):
            sock.sendto(junk, (host, port))
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"\x00\x05hello")
        assert sock.recv(10) == b""  # dropped: the TCP connection is closed without an answer
    response = ask(edge, "smtp.office365.com", "A")
    assert values(response) == ["127.0.0.1"]
    assert edge.dns.dropped - before >= 4


def test_queries_are_recorded_with_source_name_type_and_answer(edge):
    mark = edge.records.mark()
    ask(edge, "smtp.office365.com", "A", tcp=True)
    (event,) = [e for e in edge.records.window(mark) if e.kind == "dns_query"]
    assert event.peer[0] == "127.0.0.1" and event.transport == "tcp"
    assert (event.name, event.type, event.rcode, list(event.answers)) == (
        "smtp.office365.com", "A", "NOERROR", ["127.0.0.1"])


def test_an_edge_on_ipv6_loopback_publishes_aaaa(tmp_path):
    from fakes.edge import Edge, EdgeThread

    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with EdgeThread(Edge(state_dir=tmp_path, host="::1")) as v6:
        host, port = v6.addresses["dns"]
        response = dns.query.udp(dns.message.make_query("smtp.office365.com", "AAAA"), host, port=port, timeout=5)
        assert values(response) == ["::1"]
        assert values(dns.query.tcp(dns.message.make_query("smtp.office365.com", "A"), host, port=port,
                                    timeout=5)) == []


def raw_query(edge, *packets: bytes) -> bytes:
    """Send UDP packets to the lab DNS server from one socket; the first answer that comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for packet in packets:
            sock.sendto(packet, edge.addresses["dns"])
        return sock.recv(4096)


def test_a_packet_that_is_itself_a_response_is_never_answered(edge):
    response = dns.message.make_response(dns.message.make_query("contoso.com", "A"))
    query = dns.message.make_query("contoso.com", "MX")
    # answered in order: had the response been answered, that answer would come back first
    first = dns.message.from_wire(raw_query(edge, response.to_wire(), query.to_wire()))
    assert first.id == query.id and values(first) == ["0 contoso-com.mail.protection.outlook.com."]


def test_a_name_over_255_octets_gets_formerr(edge, caplog):
    header = dns.message.make_query("x.example", "A").to_wire()[:12]
    name = b"".join(bytes([63]) + b"a" * 63 for _ in range(5)) + b"\x00"
    answer = raw_query(edge, header + name + b"\x00\x01\x00\x01")
    assert dns.message.from_wire(answer).rcode() == dns.rcode.FORMERR
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("rtype", ["AXFR", "IXFR"])
def test_zone_transfers_are_refused(edge, rtype):
    assert ask(edge, "contoso.com", rtype, tcp=True).rcode() == dns.rcode.REFUSED


def test_a_wildcard_bind_needs_an_advertised_address(tmp_path):
    from fakes.edge import Edge

    with pytest.raises(ValueError, match="--advertise"):
        Edge(state_dir=tmp_path, host="0.0.0.0")
    edge = Edge(state_dir=tmp_path, host="0.0.0.0", advertise="192.0.2.25")
    assert edge.zone.lookup("smtp.office365.com", "A").records == (("A", "192.0.2.25"),)
    edge.close()
