"""A ClientHello read by dpkt (the fast way, for the live view and the harness) says what scapy's
full dissection says: the legacy version, the versions offered, the SNI, every suite in order
(names where both libraries know one), for every hello Python's TLS stack makes from TLS 1.0 to 1.3,
with and without a server name; one that neither reads is kept as a fact with the reason."""

from __future__ import annotations

import itertools
import ssl

import pytest

from fakes.tls import ClientHello, kept_hello, read_hello

RANGES = [(lo, hi) for lo, hi in itertools.combinations_with_replacement(["TLSv1", "TLSv1_1", "TLSv1_2", "TLSv1_3"], 2)]


def hello(lo: str, hi: str, ciphers: str | None, sni: str | None) -> bytes | None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        context.minimum_version, context.maximum_version = getattr(ssl.TLSVersion, lo), getattr(ssl.TLSVersion, hi)
        if ciphers:
            context.set_ciphers(ciphers)
    except (ssl.SSLError, ValueError):
        return None
    into, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        context.wrap_bio(into, out, server_hostname=sni).do_handshake()
    except ssl.SSLWantReadError:
        pass
    except ssl.SSLError:  # this OpenSSL will not offer that range
        return None
    return out.read() or None


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")  # old devices' versions, on purpose
@pytest.mark.parametrize(("lo", "hi"), RANGES)
@pytest.mark.parametrize("ciphers", [None, "ALL:@SECLEVEL=0", "AES128-SHA:@SECLEVEL=0"])
@pytest.mark.parametrize("sni", ["smtp.office365.com", None])
def test_dpkt_reads_a_hello_as_scapy_does(lo, hi, ciphers, sni):
    record = hello(lo, hi, ciphers, sni)
    if record is None:
        pytest.skip(f"this OpenSSL makes no hello for {lo}..{hi} {ciphers}")
    fast, full = ClientHello._parse_dpkt(record[5:]), ClientHello._parse_scapy(record[5:])
    assert (fast.legacy_version, fast.versions, fast.sni, fast.highest_version) == \
        (full.legacy_version, full.versions, full.sni, full.highest_version)
    assert len(fast.cipher_suites) == len(full.cipher_suites)
    for mine, theirs in zip(fast.cipher_suites, full.cipher_suites, strict=True):
        assert mine == theirs or mine.startswith("0x") or theirs.startswith("0x") or "ARIA" in mine + theirs
    assert ClientHello.parse(record) == fast


def test_a_hello_cut_short_is_kept_as_unread_with_the_reason():
    record = hello("TLSv1_2", "TLSv1_3", None, "smtp.office365.com")
    assert record is not None
    assert read_hello(kept_hello(record)).versions == ("TLSv1.3", "TLSv1.2")
    cut = read_hello(kept_hello(record[:200]))  # neither dpkt nor scapy reads it: a fact kept all the same
    assert cut.versions == () and cut.unparsed == record[:64].hex() and cut.error


def test_the_hello_is_taken_from_the_records_as_sent_whole_split_or_cut():
    from fakes.tls import MAX_HELLO, hello_message

    record = hello("TLSv1_2", "TLSv1_3", None, "smtp.office365.com")
    assert record is not None
    message = record[5:]
    assert hello_message(record) == message
    assert hello_message(record + b"\x14\x03\x03\x00\x01\x01") == message  # what follows is not the hello's
    half = len(message) // 2  # one message over two records, as a client may send it
    split = (b"\x16\x03\x01" + half.to_bytes(2, "big") + message[:half]
             + b"\x16\x03\x01" + (len(message) - half).to_bytes(2, "big") + message[half:])
    assert hello_message(split) == message
    assert hello_message(record[:100]) == message[:95]  # a hello cut short is kept as far as it came
    assert hello_message(b"EHLO printer\r\n") is None and hello_message(b"") is None
    assert len(hello_message(b"\x16\x03\x01\x40\x00" + b"\x01\x00\x3f\xfc" + b"x" * 0x3ffc) or b"") == MAX_HELLO
