"""The wire on real sockets: BDAT, pipelining, half-close, framing, hostile input.

Each test ends with a conformant smtplib client that must still be served (``still_served``).
"""

from __future__ import annotations

import time

import pytest

from fakes.edge import Edge, EdgeThread
from tests.conftest import overrides
from tests.helpers import RawClient, message, submit

SCANNER, ALICE = "scanner@contoso.com", "alice@contoso.com"


@pytest.fixture(autouse=True)
def still_served(edge):
    yield
    assert submit(edge).startswith("250 2.0.0 OK"), "a conformant client was not served after the test"


@pytest.fixture
def since(edge) -> int:
    """Where this test's records begin."""
    return edge.records.mark()


def transaction(sender: str = SCANNER, *recipients: str, params: str = "") -> bytes:
    rcpts = recipients or (ALICE,)
    return (f"MAIL FROM:<{sender}>{params}\r\n".encode()
            + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts))


def stored_events(edge: Edge, since: int) -> list[dict]:
    return [e for e in edge.records.window(since) if e.kind == "stored"]


# -- CHUNKING and BINARYMIME (RFC 3030) ----------------------------------------------------------


def test_pipelined_bdat_chunks_make_one_message_on_submission(edge):
    part1, part2 = message(SCANNER, ALICE)[:60], message(SCANNER, ALICE)[60:]
    with RawClient(edge).login() as client:
        client.send(transaction() + b"BDAT %d\r\n" % len(part1) + part1
                    + b"BDAT %d LAST\r\n" % len(part2) + part2)
        replies = client.replies(4)
    assert replies[:3] == ["250 2.1.0 Sender OK", "250 2.1.5 Recipient OK",
                           f"250 2.6.0 CHUNK received OK, {len(part1)} octets"]
    assert replies[3].startswith("250 2.0.0 OK <m1@device.test> [Hostname=")
    inbox, sent = edge.store.messages(folder="Inbox"), edge.store.messages(folder="Sent Items")
    assert len(inbox) == len(sent) == 1
    assert inbox[0].read().endswith(part1 + part2)


def test_bdat_at_the_mx_carries_binary_octets_and_bare_lf(edge):
    body = b"From: scanner@contoso.com\r\nTo: alice@contoso.com\r\n\r\nraw\nbytes \x00\xff\r\n.\r\n"
    with RawClient(edge, "mx", source="127.0.0.10") as client:
        client.send(b"EHLO printer\r\n" + transaction(params=" BODY=BINARYMIME")
                    + b"BDAT %d LAST\r\n" % len(body) + body)
        replies = client.replies(4)
    assert replies[3].startswith("250 2.6.0 "), replies
    (copy,) = edge.store.messages(mailbox=ALICE)
    assert copy.read().endswith(body)


def test_bdat_0_last_ends_the_message(edge):
    body = message(SCANNER, ALICE)
    with RawClient(edge).login() as client:
        client.send(transaction() + b"BDAT %d\r\n" % len(body) + body + b"BDAT 0 LAST\r\n")
        replies = client.replies(4)
    assert replies[2] == f"250 2.6.0 CHUNK received OK, {len(body)} octets"
    assert replies[3].startswith("250 2.0.0 OK <m1@device.test>")


def test_commands_inside_a_chunk_are_message_octets_never_commands(edge, since):
    smuggled = (b"RSET\r\nMAIL FROM:<ceo@contoso.com>\r\nRCPT TO:<alice@contoso.com>\r\nDATA\r\n"
                + message("ceo@contoso.com", ALICE, "smuggled") + b".\r\n")
    body = message(SCANNER, ALICE) + smuggled
    with RawClient(edge).login() as client:
        client.send(transaction() + b"BDAT %d LAST\r\n" % len(body) + body + b"NOOP\r\n")
        replies = client.replies(4)
    assert replies[2].startswith("250 2.0.0 OK <m1@device.test>") and replies[3].startswith("250 2.0.0")
    assert len(stored_events(edge, since)) == 1
    (copy,) = edge.store.messages(folder="Inbox")
    assert copy.mail_from == SCANNER and copy.read().endswith(smuggled)


def test_the_size_limit_holds_across_chunks_and_the_octets_are_still_consumed(edge):
    overrides(edge, limits={"max_message_size": 2000})
    chunk = b"x" * 1500
    with RawClient(edge).login() as client:
        client.send(transaction() + b"BDAT 1500\r\n" + chunk + b"BDAT 1500 LAST\r\n" + chunk + b"NOOP\r\n")
        replies = client.replies(5)
    assert replies[2] == "250 2.6.0 CHUNK received OK, 1500 octets"
    assert replies[3].startswith("552 5.3.4 Message size exceeds fixed maximum message size")
    assert replies[4].startswith("250 2.0.0")
    assert edge.store.messages() == []
    overrides(edge, limits={"max_message_size": 36_700_160})


def test_bdat_outside_a_transaction_is_refused_after_its_octets(edge):
    with RawClient(edge).login() as client:
        client.send(b"BDAT 9\r\nNOOP\r\nXYZ" + b"NOOP\r\n")
        assert [r[:9] for r in client.replies(2)] == ["503 5.5.2", "250 2.0.0"]


def test_data_and_bdat_do_not_mix_and_binarymime_needs_bdat(edge):
    with RawClient(edge).login() as client:
        client.send(transaction() + b"BDAT 4\r\nabcdDATA\r\nRSET\r\n")
        replies = client.replies(5)
        assert replies[3].startswith("503 5.5.1 Bad sequence of commands") and replies[4].startswith("250")
        client.send(transaction(params=" BODY=BINARYMIME") + b"DATA\r\n")
        assert client.replies(3)[2].startswith("503 5.5.1 BODY=BINARYMIME requires BDAT")
    assert edge.store.messages() == []


# -- pipelining and half-close ----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["mx", "submission"])
def test_a_pipelined_session_that_half_closes_gets_every_reply_and_one_copy(edge, endpoint, since):
    source = "127.0.0.10" if endpoint == "mx" else "127.0.0.1"
    with RawClient(edge, endpoint, source=source) as client:
        if endpoint == "submission":
            client.login()
        else:
            client.send(b"EHLO printer\r\n").replies(1)
        client.send(transaction() + b"DATA\r\n" + message(SCANNER, ALICE) + b".\r\nQUIT\r\n")
        client.shutdown_write()
        replies = client.rest()
    final = "250 2.0.0" if endpoint == "submission" else "250 2.6.0"
    assert [r[:9] for r in replies] == ["250 2.1.0", "250 2.1.5", "354 Start", final, "221 2.0.0"]
    assert len(edge.store.messages(mailbox=ALICE)) == 1
    assert len(stored_events(edge, since)) == 1


def test_several_pipelined_transactions_are_answered_in_order(edge):
    batch = b"EHLO printer\r\n" + b"".join(
        transaction() + b"DATA\r\n" + message(SCANNER, ALICE, f"p{i}") + b".\r\n" for i in range(5)
    ) + b"QUIT\r\n"
    with RawClient(edge, "mx", source="127.0.0.10") as client:
        replies = client.send(batch).rest()
    assert len(replies) == 1 + 5 * 4 + 1 and replies[-1].startswith("221")
    assert [r.split()[2] for r in replies if r.startswith("250 2.6.0")] == [f"<p{i}@device.test>" for i in range(5)]


def test_bytes_pipelined_after_starttls_are_discarded(edge, since):
    with RawClient(edge, "mx", source="127.0.0.10") as client:
        client.send(b"EHLO printer\r\nSTARTTLS\r\nMAIL FROM:<injected@contoso.com>\r\n")
        assert client.replies(2)[1].startswith("220 2.0.0")
    # recorded before the 220 was written; never run as a command
    discarded = [e for e in edge.records.window(since) if e.kind == "discarded"]
    assert discarded and discarded[0].octets == len(b"MAIL FROM:<injected@contoso.com>\r\n")
    assert not [e for e in edge.records.window(since) if e.kind == "command" and "injected" in e.line]


# -- DATA framing and headers ------------------------------------------------------------------------


def test_a_long_line_ending_in_a_dot_with_its_crlf_in_the_next_packet(edge):
    head = message(SCANNER, ALICE)
    long_line = b"y" * 70_000 + b"."
    with RawClient(edge, "mx", source="127.0.0.10") as client:
        client.send(b"EHLO printer\r\n" + transaction() + b"DATA\r\n").replies(4)
        client.send(head + long_line)
        client.send(b"\r\n..still the body\r\n.\r\n")
        assert client.replies(1)[0].startswith("250 2.6.0")
    (copy,) = edge.store.messages(mailbox=ALICE)
    assert copy.read().endswith(head + long_line + b"\r\n.still the body\r\n")


def test_a_folded_message_id_is_accepted_once(edge, since):
    body = message(SCANNER, ALICE).replace(b"Message-ID: <m1@device.test>",
                                           b"Message-ID:\r\n <folded.id.with.some.length@device.test>")
    assert submit(edge, body=body).startswith("250 2.0.0 OK <folded.id.with.some.length@device.test>")
    assert len(stored_events(edge, since)) == 1
    assert stored_events(edge, since)[0].message_id == "folded.id.with.some.length@device.test"


def test_a_utf8_message_id_with_smtputf8(edge, since):
    body = ("From: scanner@contoso.com\r\nTo: alice@contoso.com\r\nSubject: Grüße\r\n"
            "Message-ID: <bürodrucker-1@gerät.example>\r\n\r\nHallo\r\n").encode()
    with RawClient(edge).login() as client:
        client.send(transaction(params=" SMTPUTF8 BODY=8BITMIME") + b"DATA\r\n" + body + b".\r\n")
        assert client.replies(4)[3].startswith("250 2.0.0 OK <b\\xfcrodrucker-1@ger\\xe4t.example>")
    assert stored_events(edge, since)[0].message_id == "bürodrucker-1@gerät.example"


def test_a_latin1_command_is_unrecognized_recorded_escaped(edge, since):
    with RawClient(edge) as client:  # a line that is not text: Exchange calls it 'unknown'
        reply = client.send("EHLO Büro-Drucker\r\n".encode("latin-1")).replies(1)[0]
        assert reply.startswith("500 5.3.3 Unrecognized command 'unknown' [")
        assert client.send(b"EHLO printer\r\n").replies(1) == ["250 SMTPUTF8"]
    commands = [e.line for e in edge.records.window(since) if e.kind == "command"]
    assert "EHLO B\\xfcro-Drucker" in commands
    assert not [e for e in edge.records.window(since) if e.kind == "harness_fault"]


def test_a_header_block_over_the_limit_is_refused(edge):
    body = b"From: scanner@contoso.com\r\nTo: alice@contoso.com\r\n" + b"X-Pad: " + b"p" * 900 + b"\r\n"
    body = body * 300 + b"\r\nbody\r\n"
    assert submit(edge, body=body).startswith("552 5.3.4 Header size exceeds fixed maximum size")
    assert edge.store.messages() == []


# -- amplification ------------------------------------------------------------------------------------


def test_a_recipient_named_twice_is_delivered_once(edge):
    assert submit(edge, to=(ALICE,) * 5).startswith("250 2.0.0 OK")
    assert len(edge.store.messages(mailbox=ALICE)) == 1


def test_unknown_recipients_share_one_ndr_with_the_headers_capped(edge):
    ghosts = tuple(f"ghost{i}@contoso.com" for i in range(4))
    body = b"From: scanner@contoso.com\r\n" + b"X-Big: " + b"b" * 200_000 + b"\r\n\r\nbody\r\n"
    assert submit(edge, to=ghosts, body=body).startswith("250 2.0.0 OK")
    (ndr,) = edge.store.messages(mailbox=SCANNER, folder="Inbox")
    text = ndr.read().decode()
    assert all(f"Final-Recipient: rfc822;{g}" in text for g in ghosts)
    assert ndr.size < 40_000


# -- connections ---------------------------------------------------------------------------------------


def test_connections_over_the_per_source_cap_hear_421_4_3_2(edge):
    overrides(edge, limits={"max_connections_per_source": 2})
    mark = edge.records.mark()
    source = "127.0.0.77"  # an address of its own: a connection another test left to the collector counts for 127.0.0.1
    first, second = RawClient(edge, source=source), RawClient(edge, source=source)
    with RawClient(edge, source=source) as third:
        assert third.banner == ("421 4.3.2 The maximum number of concurrent connections has exceeded a limit, "
                                "closing transmission channel")
        assert third.rest() == []
    first_id = first.banner.rsplit("[", 1)[1].rstrip("]")  # the submission banner ends with the session id
    first.send(b"QUIT\r\n").rest()
    first.sock.close()
    assert edge.records.wait_for(
        lambda evs: any(e.kind == "disconnect" and e.session == first_id for e in evs), 10, since=mark)
    with RawClient(edge, source=source) as fourth:
        assert fourth.banner.startswith("220 ")
    second.sock.close()
    overrides(edge, limits={"max_connections_per_source": 20})


def test_an_overlong_auth_answer_is_refused_and_the_session_goes_on(edge):
    with RawClient(edge).starttls() as client:
        assert client.send(b"AUTH LOGIN\r\n").replies(1)[0].startswith("334")
        client.send(b"Q" * 70_000 + b"\r\n")
        assert client.replies(1)[0].startswith("500 5.5.2 Line too long")
        assert client.send(b"QUIT\r\n").replies(1)[0].startswith("221 2.0.0")


def test_repeated_protocol_errors_end_the_session(edge):
    with RawClient(edge) as client:
        replies = client.send(b"XYZZY\r\n" * 8).rest()
    assert [r[:9] for r in replies] == ["500 5.3.3"] * 5 + ["421 4.7.0"]


def test_the_idle_timer_is_reset_by_traffic(tmp_path):
    with EdgeThread(Edge(state_dir=tmp_path, idle_timeout=0.5)) as quick, \
            RawClient(quick, "mx", source="127.0.0.10") as client:
        body = message(SCANNER, ALICE)
        client.send(b"EHLO printer\r\n" + transaction() + b"BDAT %d\r\n" % len(body) + body).replies(4)
        # a long upload: chunk after chunk, each answered, for three times the idle timeout
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            assert client.send(b"BDAT 6\r\nmore\r\n").replies(1)[0].startswith("250 2.6.0 CHUNK received OK")
        assert client.send(b"BDAT 0 LAST\r\n").replies(1)[0].startswith("250 2.6.0 <")
        # then silence: the edge says so and closes
        assert client.rest()[0].startswith("421 4.4.1 Connection timed out. Total session duration: 00:00:0")


def test_connections_over_the_edge_wide_cap_hear_421_4_3_2(edge):
    cap = edge.state.max_connections
    edge.state.max_connections = edge.state.open_connections.total() + 1
    try:
        with RawClient(edge, source="127.0.0.41") as first, RawClient(edge, source="127.0.0.42") as second:
            assert first.banner.startswith("220 ") and second.banner.startswith("421 4.3.2 ")
    finally:
        edge.state.max_connections = cap


def test_replies_are_recorded_with_their_stage_name_and_enhanced_code(edge, since):
    body = message(SCANNER, ALICE)
    with RawClient(edge).login() as client:
        client.send(transaction() + b"BDAT 10\r\n" + body[:10] + b"BDAT %d LAST\r\n" % (len(body) - 10) + body[10:]
                    + b"XYZZY\r\n").replies(5)
    replies = [(e.stage, e.name, e.enhanced) for e in edge.records.window(since)
               if e.kind == "reply" and e.line[3:4] != "-"]
    assert ("mail", "SENDER_OK", "2.1.0") in replies and ("rcpt", "RECIPIENT_OK", "2.1.5") in replies
    assert ("data", "CHUNK_RECEIVED", "2.6.0") in replies and ("message", "SUBMITTED", "2.0.0") in replies
    assert ("auth", "AUTH_OK", "2.7.0") in replies and ("other", "UNRECOGNIZED_COMMAND", "5.3.3") in replies
