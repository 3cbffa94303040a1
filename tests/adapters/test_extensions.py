"""Every extension the edge advertises is served: this walks the EHLO lists and uses each keyword.

A keyword with no exercise here fails the test, so nothing can be advertised untried.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from tests.helpers import RawClient, message

SCANNER, ALICE = "scanner@contoso.com", "alice@contoso.com"

# the end of a message, as each endpoint words it (smtp.office365.com: 2.0.0 OK; the MX: 2.6.0 Queued)
ACCEPTED = {"submission": "250 2.0.0 OK <", "mx": "250 2.6.0 <"}


def ready(edge, endpoint: str) -> RawClient:
    """A client that may start a transaction: logged in on submission, greeted over TLS at the MX."""
    if endpoint == "submission":
        return RawClient(edge).login()
    return RawClient(edge, "mx", source="127.0.0.10").starttls()


def send(client: RawClient, data: bytes, count: int) -> list[str]:
    return client.send(data).replies(count)


def size(edge, endpoint):
    with ready(edge, endpoint) as client:
        assert send(client, f"MAIL FROM:<{SCANNER}> SIZE=2000\r\n".encode(), 1)[0].startswith("250 2.1.0")
        too_big = f"MAIL FROM:<{SCANNER}> SIZE=999999999\r\n".encode()
        assert send(client, b"RSET\r\n" + too_big, 2)[1].startswith("552 5.3.4")


def pipelining(edge, endpoint):
    with ready(edge, endpoint) as client:
        batch = (f"MAIL FROM:<{SCANNER}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n".encode()
                 + message(SCANNER, ALICE) + b".\r\nNOOP\r\n")
        assert [r[:3] for r in send(client, batch, 5)] == ["250", "250", "354", "250", "250"]


def dsn(edge, endpoint):
    with ready(edge, endpoint) as client:
        batch = (f"MAIL FROM:<{SCANNER}> RET=HDRS ENVID=scan+2B42\r\n"
                 f"RCPT TO:<{ALICE}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{ALICE}\r\n"
                 f"RCPT TO:<bob@contoso.com> NOTIFY=NEVER\r\nDATA\r\n").encode() + message(SCANNER, ALICE) + b".\r\n"
        replies = send(client, batch, 5)
        assert [r[:3] for r in replies] == ["250", "250", "250", "354", "250"], replies
        assert send(client, f"MAIL FROM:<{SCANNER}> RET=MAYBE\r\n".encode(), 1)[0].startswith("501 5.5.4")


def enhanced_status_codes(edge, endpoint):
    with ready(edge, endpoint) as client:
        replies = send(client, f"NOOP\r\nMAIL FROM:<{SCANNER}>\r\nRCPT TO:<nobody>\r\nRSET\r\n".encode(), 4)
        assert all(r[4:5].isdigit() and r.split()[1].count(".") == 2 for r in replies), replies


def starttls(edge, endpoint):
    source = "127.0.0.10" if endpoint == "mx" else "127.0.0.1"
    with RawClient(edge, endpoint, source=source).starttls() as client:
        assert send(client, b"EHLO again\r\n", 1) == ["250 SMTPUTF8"]


def eight_bit_mime(edge, endpoint):
    body = "From: scanner@contoso.com\r\nTo: alice@contoso.com\r\n\r\nGrüße, 8 bit\r\n".encode()
    with ready(edge, endpoint) as client:
        batch = f"MAIL FROM:<{SCANNER}> BODY=8BITMIME\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n".encode() + body + b".\r\n"
        assert send(client, batch, 4)[3].startswith(ACCEPTED[endpoint])
    assert edge.store.messages(mailbox=ALICE)[-1].read().endswith(body)


def binary_mime(edge, endpoint):
    body = b"From: scanner@contoso.com\r\nTo: alice@contoso.com\r\n\r\n\x00\x01\nbinary\r\n.\r\n"
    with ready(edge, endpoint) as client:
        batch = (f"MAIL FROM:<{SCANNER}> BODY=BINARYMIME\r\nRCPT TO:<{ALICE}>\r\n".encode()
                 + b"BDAT %d LAST\r\n" % len(body) + body)
        assert send(client, batch, 3)[2].startswith(ACCEPTED[endpoint])
    assert edge.store.messages(mailbox=ALICE)[-1].read().endswith(body)


def chunking(edge, endpoint):
    body = message(SCANNER, ALICE)
    with ready(edge, endpoint) as client:
        batch = (f"MAIL FROM:<{SCANNER}>\r\nRCPT TO:<{ALICE}>\r\n".encode()
                 + b"BDAT 10\r\n" + body[:10] + b"BDAT %d LAST\r\n" % (len(body) - 10) + body[10:])
        replies = send(client, batch, 4)
        assert replies[2] == "250 2.6.0 CHUNK received OK, 10 octets" and replies[3].startswith(ACCEPTED[endpoint])


def smtputf8(edge, endpoint):
    with ready(edge, endpoint) as client:
        plain = f"MAIL FROM:<{SCANNER}>\r\nRCPT TO:<jürgen@contoso.com>\r\nRSET\r\n".encode()
        assert send(client, plain, 3)[1].startswith("553 5.6.7")
        utf8 = f"MAIL FROM:<{SCANNER}> SMTPUTF8\r\nRCPT TO:<jürgen@contoso.com>\r\n".encode()
        assert send(client, utf8, 2)[1].startswith(("250 2.1.5", "550 5.4.1"))  # accepted, or unknown at the MX


def auth(edge, endpoint):
    b64 = base64.b64encode
    with RawClient(edge).starttls() as client:
        assert send(client, b"AUTH LOGIN " + b64(SCANNER.encode()) + b"\r\n", 1)[0].startswith("334")
        assert send(client, b64(b"Scan-2026!") + b"\r\n", 1)[0].startswith("235 2.7.0")
    token = edge.mint_token(SCANNER)
    payload = b64(f"user={SCANNER}\x01auth=Bearer {token}\x01\x01".encode())
    with RawClient(edge).starttls() as client:
        assert send(client, b"AUTH XOAUTH2 " + payload + b"\r\n", 1)[0].startswith("235 2.7.0")


EXERCISES: dict[str, Callable] = {
    "SIZE": size, "PIPELINING": pipelining, "DSN": dsn, "ENHANCEDSTATUSCODES": enhanced_status_codes,
    "STARTTLS": starttls, "8BITMIME": eight_bit_mime, "BINARYMIME": binary_mime, "CHUNKING": chunking,
    "SMTPUTF8": smtputf8, "AUTH": auth,
}


def ehlo_keywords(client: RawClient) -> list[str]:
    client.send(b"EHLO walker\r\n")
    lines = []
    while (line := client._line()) is not None:
        lines.append(line.decode())
        if line[3:4] == b" ":
            break
    return [line[4:].split(" ")[0] for line in lines[1:]]  # the first line is "HOST Hello [ip]"


def advertised(edge, endpoint: str) -> list[str]:
    """The keywords of the EHLO lists before and after STARTTLS."""
    source = "127.0.0.10" if endpoint == "mx" else "127.0.0.1"
    with RawClient(edge, endpoint, source=source) as client:
        keywords = ehlo_keywords(client)
    with RawClient(edge, endpoint, source=source).starttls() as client:
        keywords += ehlo_keywords(client)
    return sorted(set(keywords))


@pytest.mark.parametrize("endpoint", ["submission", "mx"])
def test_every_advertised_extension_is_served(edge, endpoint):
    keywords = advertised(edge, endpoint)
    assert "CHUNKING" in keywords and "STARTTLS" in keywords
    missing = [k for k in keywords if k not in EXERCISES]
    assert not missing, f"advertised but never exercised: {missing}"
    for keyword in keywords:
        EXERCISES[keyword](edge, endpoint)
