"""smtp.office365.com on a real socket, driven by Python's smtplib: every reply of the reference."""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import sqlite3
import ssl
from pathlib import Path

import pytest

from fakes.exo import replies as R
from fakes.exo.observed import decode
from fakes.exo.tokens import TokenAuthority, generate_issuer_key, xoauth2_payload
from fakes.tls import read_hello
from tests.conftest import overrides
from tests.helpers import SUFFIX, Device, client_context, message, submit

BANNER = re.compile(
    r"^[A-Z0-9]+\.outlook\.office365\.com Microsoft ESMTP MAIL Service ready at "
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000 \[[0-9A-F]{16}\]$"
)


def test_banner_names_an_exchange_online_server(edge):
    with Device(edge) as device:
        code, _, text = device.banner.partition(" ")
        assert code == "220" and BANNER.match(text), device.banner


def test_ehlo_lists_exactly_the_reference_extensions_before_and_after_tls(edge):
    with Device(edge) as device:
        code, text = device.ehlo()
        lines = text.decode().split("\n")
        assert code == 250 and lines[0].endswith("Hello [127.0.0.1]")
        assert tuple(lines[1:]) == R.SUBMISSION_EXTENSIONS_PLAIN
        code, text = device.starttls(context=client_context(edge))
        assert (code, text) == (220, b"2.0.0 SMTP server ready")
        code, text = device.ehlo()
        assert tuple(text.decode().split("\n")[1:]) == R.SUBMISSION_EXTENSIONS_TLS
        assert "AUTH LOGIN XOAUTH2" in text.decode() and "STARTTLS" not in text.decode()


def test_mail_before_starttls_is_refused_with_5_7_3(edge):
    with Device(edge) as device:
        device.ehlo()
        reply = device.reply("MAIL FROM:<scanner@contoso.com>")
        assert reply.startswith("451 5.7.3 STARTTLS is required to send mail [")
        assert SUFFIX.search(reply)


def test_mail_without_auth_after_tls_is_refused_with_5_7_57(edge):
    with Device(edge) as device:
        device.secure()
        reply = device.reply("MAIL FROM:<scanner@contoso.com>")
        assert reply.startswith("530 5.7.57 Client not authenticated to send mail. [")
        assert SUFFIX.search(reply)


@pytest.mark.parametrize("mechanism", ["PLAIN", "CRAM-MD5", "NTLM"])
def test_mechanisms_not_advertised_get_5_7_4(edge, mechanism):
    with Device(edge) as device:
        device.secure()
        reply = device.reply(f"AUTH {mechanism}")
        assert reply.startswith("504 5.7.4 Unrecognized authentication type [")


def test_wrong_password_gets_the_5_7_139_credentials_text(edge):
    with Device(edge) as device:
        device.secure()
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            device.login("scanner@contoso.com", "wrong")
        assert info.value.smtp_code == 535
        assert info.value.smtp_error.decode().startswith(
            "5.7.139 Authentication unsuccessful, the user credentials were incorrect. [")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def login_reply(edge, user, password):
    """AUTH LOGIN with the username as initial response, as smtplib and most devices send it."""
    with Device(edge) as device:
        device.secure()
        code, text = device.docmd("AUTH LOGIN", b64(user))
        assert (code, text) == (334, b"UGFzc3dvcmQ6")
        code, text = device.docmd(b64(password))
        return f"{code} {text.decode()}"


def test_smtp_auth_disabled_for_the_tenant(edge):
    # alice inherits the org's SmtpClientAuthenticationDisabled=true
    reply = login_reply(edge, "alice@contoso.com", "Alice-2026!")
    assert reply.startswith("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
                            "disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled")
    assert SUFFIX.search(reply)


def test_smtp_auth_disabled_for_the_mailbox_overrides_an_enabled_org(edge):
    overrides(edge, org={"smtp_client_authentication_disabled": False},
              mailboxes={"scanner@contoso.com": {"smtp_client_authentication": "disabled"}})
    assert "disabled for the Mailbox." in login_reply(edge, "scanner@contoso.com", "Scan-2026!")
    assert login_reply(edge, "alice@contoso.com", "Alice-2026!") == "235 2.7.0 Authentication successful"


def test_basic_auth_disabled_by_default_and_removed(edge):
    overrides(edge, org={"basic_auth": "disabled-by-default"})
    reply = login_reply(edge, "scanner@contoso.com", "Scan-2026!")
    assert reply.startswith("535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [")
    overrides(edge, org={"basic_auth": "removed"})
    reply = login_reply(edge, "scanner@contoso.com", "Scan-2026!")
    assert reply == "550 5.7.30 Basic authentication is not supported for Client Submission."


def xoauth2(device, user, token, two_step=False):
    payload = xoauth2_payload(user, token)
    if two_step:
        code, text = device.docmd("AUTH XOAUTH2")
        assert (code, text) == (334, b"")
        code, text = device.docmd(payload)
    else:
        code, text = device.docmd("AUTH XOAUTH2", payload)
    return f"{code} {text.decode()}"


@pytest.mark.parametrize("two_step", [False, True], ids=["initial-response", "two-step"])
@pytest.mark.parametrize("basic_auth", ["allowed", "disabled-by-default", "removed"])
def test_xoauth2_with_a_minted_token_works_whatever_the_basic_auth_policy(edge, two_step, basic_auth):
    overrides(edge, org={"basic_auth": basic_auth})
    token = edge.mint_token("scanner@contoso.com")
    with Device(edge) as device:
        device.secure()
        assert xoauth2(device, "scanner@contoso.com", token, two_step) == "235 2.7.0 Authentication successful"
        assert device.mail("scanner@contoso.com")[0] == 250
        assert device.rcpt("alice@contoso.com")[0] == 250
        assert device.send_data(message("scanner@contoso.com", "alice@contoso.com")).startswith("250 2.0.0 OK <")
    assert [m.folder for m in edge.store.messages(mailbox="alice@contoso.com")] == ["Inbox"]


def _bad_tokens(edge):
    other = TokenAuthority(generate_issuer_key(), edge.tokens.tenant_id)
    now = edge.state.clock()
    return {
        "expired": edge.mint_token("scanner@contoso.com", expires_in=-10),
        "wrong scope": edge.tokens.mint(now=now, mailbox="scanner@contoso.com", scopes=("Mail.Read",)),
        "another user": edge.mint_token("alice@contoso.com"),
        "foreign signature": other.mint(now=now, mailbox="scanner@contoso.com"),
        "wrong audience": edge.tokens.mint(now=now, mailbox="scanner@contoso.com",
                                           audience="https://graph.microsoft.com"),
        "app without grant": edge.mint_token(app_id="11111111-2222-3333-4444-555555555555"),
        "not a jwt": "not-a-token",
    }


def test_bad_expired_or_wrongly_scoped_tokens_get_5_7_3(edge):
    for name, token in _bad_tokens(edge).items():
        with Device(edge) as device:
            device.secure()
            reply = xoauth2(device, "scanner@contoso.com", token)
            assert reply.startswith("535 5.7.3 Authentication unsuccessful ["), name
            assert SUFFIX.search(reply), name


def test_app_only_token_for_a_mailbox_that_granted_the_app(edge):
    token = edge.mint_token(app_id="00000000-0000-0000-0000-00000000a11c")
    with Device(edge) as device:
        device.secure()
        assert xoauth2(device, "scanner@contoso.com", token) == "235 2.7.0 Authentication successful"


def test_malformed_xoauth2_data(edge):
    with Device(edge) as device:
        device.secure()
        reply = device.reply("AUTH XOAUTH2 " + base64.b64encode(b"user=x").decode())
        assert reply.startswith("501 5.5.124 Invalid XOAUTH2 auth data")


def test_send_as_denied_at_end_of_data(edge):
    reply = submit(edge, sender="ceo@contoso.com")
    assert reply.startswith("554 5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as ")
    assert "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process " \
           "message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message. [" in reply
    assert SUFFIX.search(reply)
    assert edge.store.messages() == []


def test_send_as_denied_when_only_the_header_from_is_someone_else(edge):
    reply = submit(edge, body=message("ceo@contoso.com", "alice@contoso.com"))
    assert reply.startswith("554 5.2.252 SendAsDenied; ")


def test_send_as_granted_delivers_and_keeps_a_sent_items_copy(edge):
    reply = submit(edge, sender="reception@contoso.com", to=("alice@contoso.com", "partner@example.org"))
    assert re.fullmatch(r"250 2\.0\.0 OK <m1@device\.test> \[Hostname=[A-Z0-9]+\.[a-z0-9]+\.prod\.outlook\.com\]",
                        reply), reply
    placed = {(m.mailbox, m.folder, m.recipient) for m in edge.store.messages()}
    assert placed == {
        ("alice@contoso.com", "Inbox", "alice@contoso.com"),
        ("scanner@contoso.com", "Sent Items", "scanner@contoso.com"),
        (None, "Outbound", "partner@example.org"),
    }


def test_unknown_internal_recipient_bounces_with_an_ndr(edge):
    assert submit(edge, to=("ghost@contoso.com",)).startswith("250 2.0.0 OK <")
    ndr = [m for m in edge.store.messages(mailbox="scanner@contoso.com", folder="Inbox")]
    assert len(ndr) == 1 and ndr[0].kind == "ndr"
    text = ndr[0].read().decode()
    assert "Status: 5.1.10" in text and "RESOLVER.ADR.RecipientNotFound" in text


def test_fourth_concurrent_session_gets_432_at_end_of_data(edge):
    devices = [Device(edge).secure() for _ in range(4)]
    try:
        for device in devices:
            device.login("scanner@contoso.com", "Scan-2026!")
        replies = []
        for i, device in enumerate(devices):
            device.mail("scanner@contoso.com")
            device.rcpt("alice@contoso.com")
            replies.append(device.send_data(message("scanner@contoso.com", "alice@contoso.com", f"c{i}")))
    finally:
        for device in devices:
            device.close()
    assert [r[:12] for r in replies[:3]] == ["250 2.0.0 OK"] * 3
    assert re.fullmatch(r"432 4\.3\.2 Concurrent connections limit exceeded\. Visit https://aka\.ms/concurrent_sending "
                        r"for more information\. \[Hostname=[A-Z0-9]+\.[a-z0-9]+\.prod\.outlook\.com\]", replies[3])
    assert len(edge.store.messages(mailbox="alice@contoso.com")) == 3


def test_daily_recipient_limit_seeded_at_9998(edge):
    edge.on_loop(lambda: edge.state.ledger.seed("scanner@contoso.com", now=edge.state.clock(),
                                                recipients_today=9_998))
    reply = submit(edge, to=("alice@contoso.com", "bob@contoso.com", "x@example.org"))
    assert reply.startswith("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException [")
    assert submit(edge, to=("alice@contoso.com", "bob@contoso.com")).startswith("250 2.0.0 OK <")
    assert submit(edge, to=("alice@contoso.com",)).startswith("554 5.2.0")


def test_over_30_messages_a_minute_is_accepted_but_delayed(edge):
    edge.on_loop(lambda: edge.state.ledger.seed("scanner@contoso.com", now=edge.state.clock(),
                                                messages_this_minute=30))
    assert submit(edge).startswith("250 2.0.0 OK <")
    inbox = edge.store.messages(mailbox="alice@contoso.com", folder="Inbox")
    assert len(inbox) == 1 and inbox[0].delayed
    sent = edge.store.messages(mailbox="scanner@contoso.com", folder="Sent Items")
    assert len(sent) == 1 and not sent[0].delayed
    stored = [e for e in edge.records.events() if e.kind == "stored"]
    assert stored[-1].delayed is True


def test_size_declared_over_the_limit_is_refused_at_mail(edge):
    with Device(edge) as device:
        device.secure()
        device.login("scanner@contoso.com", "Scan-2026!")
        reply = device.reply(f"MAIL FROM:<scanner@contoso.com> SIZE={36_700_161}")
        assert reply.startswith("552 5.3.4 Message size exceeds fixed maximum message size [")


def test_body_over_the_limit_is_refused_at_end_of_data(edge):
    overrides(edge, limits={"max_message_size": 2000})
    body = message("scanner@contoso.com", "alice@contoso.com") + b"x" * 76 + b"\r\n"
    body += (b"y" * 76 + b"\r\n") * 40
    assert submit(edge, body=body).startswith("552 5.3.4 ")
    assert edge.store.messages() == []


def test_too_many_recipients_in_one_message(edge):
    overrides(edge, limits={"max_recipients_per_message": 2})
    reply = submit(edge, to=("alice@contoso.com", "bob@contoso.com", "x@example.org"))
    assert reply.startswith("452 4.5.3 Too many recipients [")


def test_bare_lf_in_the_body_is_refused_with_5_6_11(edge):
    with Device(edge) as device:
        device.secure()
        device.login("scanner@contoso.com", "Scan-2026!")
        device.mail("scanner@contoso.com")
        device.rcpt("alice@contoso.com")
        assert device.docmd("DATA")[0] == 354
        device.send(b"From: scanner@contoso.com\r\nSubject: lf\r\n\r\nline one\nline two\r\n.\r\n")
        code, text = device.getreply()
        assert code == 550 and text.decode().startswith("5.6.11 SMTPSEND.BareLinefeedsAreIllegal;")
    assert edge.store.messages() == []


def test_unknown_command_gets_5_3_3(edge):
    with Device(edge) as device:
        reply = device.reply("XYZZY")  # the verb's length, never the verb
        assert reply.startswith("500 5.3.3 Unrecognized command 'Length: 5' [")
        assert SUFFIX.search(reply)


def test_records_show_tls_login_and_no_secret(edge):
    token = edge.mint_token("scanner@contoso.com")
    mark = edge.records.mark()
    submit(edge)
    with Device(edge) as device:
        device.secure()
        xoauth2(device, "scanner@contoso.com", token)
    events = edge.records.window(mark)
    auth = [e for e in events if e.kind == "auth"]
    assert [(a.mechanism, a.outcome) for a in auth] == [("LOGIN", "success"), ("XOAUTH2", "success")]
    assert {e.version for e in events if e.kind == "tls"} <= {"TLSv1.2", "TLSv1.3"}
    on_disk = edge.records.path.read_text()
    for secret in ("Scan-2026!", base64.b64encode(b"Scan-2026!").decode(), token[:40],
                   xoauth2_payload("scanner@contoso.com", token)[:40]):
        assert secret not in on_disk
    assert all(decode(line) for line in on_disk.encode().splitlines())  # every line is one of the types


def test_a_store_failure_is_a_451_not_a_250_and_a_recorded_harness_fault(tmp_path):
    from fakes.edge import Edge, EdgeThread

    with EdgeThread(Edge(state_dir=tmp_path)) as broken:
        with sqlite3.connect(broken.store.db_path) as other:  # the store's table of contents is gone
            other.execute("DROP TABLE contents")
        reply = submit(broken)
        assert reply.startswith("451 4.3.0 ")
        assert any(e.kind == "harness_fault" for e in broken.records.events())


def test_a_message_whose_eml_cannot_be_written_is_still_stored_and_read_from_its_blob(tmp_path, caplog):
    """The 250 waits for the one durable copy (the blob); the .eml follows, and where it cannot
    be written the copy is read from the store all the same."""
    from fakes.edge import Edge, EdgeThread

    with EdgeThread(Edge(state_dir=tmp_path)) as lab:
        lab.store.messages_dir.rmdir()  # the .eml directory is gone
        assert submit(lab).startswith("250 2.0.0 ")
        lab.store.files_written()  # the files' thread has tried, and said so
        assert "not written" in caplog.text
        (copy, *_) = lab.store.messages()
        assert not Path(copy.path).exists() and b"Subject:" in copy.read() and copy.read().startswith(copy.head(40))


def test_a_client_that_vanishes_mid_data_stores_nothing(edge):
    mark = edge.records.mark()
    with Device(edge) as device:
        device.secure()
        device.login("scanner@contoso.com", "Scan-2026!")
        device.mail("scanner@contoso.com")
        device.rcpt("alice@contoso.com")
        device.docmd("DATA")
        device.send(b"From: scanner@contoso.com\r\n\r\nhalf a mess")
        device.sock.shutdown(socket.SHUT_RDWR)
    assert edge.records.wait_for(lambda ev: any(e.kind == "disconnect" for e in ev), 5, since=mark)
    assert edge.store.messages() == []


def test_sni_is_recorded(edge):
    mark = edge.records.mark()
    with Device(edge) as device:
        device.secure()
    hello = [read_hello(e) for e in edge.records.window(mark) if e.kind == "client_hello"]
    assert hello and hello[0].sni == "smtp.office365.com"


def test_certificate_is_for_smtp_office365_com(edge):
    ctx = client_context(edge)
    with Device(edge) as device:
        device.ehlo()
        device.starttls(context=ctx)
        cert = device.sock.getpeercert()
    names = [v for k, v in cert["subjectAltName"]]
    assert names == ["smtp.office365.com", "smtp-legacy.office365.com", "outlook.com"]
    assert dict(rdn[0] for rdn in cert["subject"])["commonName"] == "outlook.com"  # as Exchange Online's
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED  # the handshake checked that name
    with Device(edge) as device:  # and a client that expects another name refuses it
        device.ehlo()
        device._host = "smtp.gmail.com"
        with pytest.raises(ssl.SSLCertVerificationError):
            device.starttls(context=client_context(edge))


def test_submission_to_a_domain_that_does_not_exist_bounces_with_5_4_310(edge):
    assert submit(edge, to=("partner@nowhere.invalid",)).startswith("250 2.0.0 OK <")
    (ndr,) = edge.store.messages(mailbox="scanner@contoso.com", folder="Inbox")
    assert ndr.kind == "ndr" and "Status: 5.4.310" in ndr.read().decode()


def test_an_injected_delay_holds_the_reply_back(edge):
    import time

    from fakes.exo.events import Fault

    edge.on_loop(lambda: edge.inject(Fault(stage="ehlo", delay=0.3)))
    with Device(edge) as device:
        start = time.monotonic()
        assert device.ehlo()[0] == 250
        waited = time.monotonic() - start
    assert waited >= 0.3  # the edge really waited before answering


def test_credentials_sent_as_stray_commands_never_reach_the_records(edge):
    password = base64.b64encode(b"Scan-2026!").decode()
    with Device(edge) as device:
        device.ehlo()
        assert device.reply("AUTH LOGIN").startswith("504 5.7.4")  # not offered before STARTTLS
        reply = device.reply(password)  # the device goes on with the LOGIN exchange regardless
        # named by its length, as Exchange does (never echoed)
        assert reply.startswith(f"500 5.3.3 Unrecognized command 'Length: {len(password)}'")
    on_disk = edge.records.path.read_text()
    assert password.upper() not in on_disk and password not in on_disk and "Scan-2026!" not in on_disk


@pytest.mark.parametrize("verb", ["EHLO", "HELO"])
def test_an_ehlo_name_with_an_empty_label_is_501_5_5_4_invalid_domain_name(edge, verb):
    with Device(edge) as device:
        assert device.reply(f"{verb} MacBook..").startswith("501 5.5.4 Invalid domain name [")
        for fine in ("Brother_MFC-L8900", "printer", "scan.contoso.com.", "[127.0.0.1]"):  # as devices send them
            assert device.reply(f"{verb} {fine}").startswith("250"), fine


def test_the_tarpit_delays_error_replies_only_and_records_a_client_that_left(tmp_path):
    """Exchange answers an error about 5 s after the command; the lab edge does the same (here
    0.5 s), on a timer: a success is not delayed, and a client that hangs up first is on record."""
    import time

    from fakes.edge import Edge, EdgeThread
    from tests.helpers import RawClient

    with EdgeThread(Edge(state_dir=tmp_path, tarpit=0.5)) as slow:
        with RawClient(slow) as client:
            started = time.monotonic()
            reply = client.send(b"XYZZY\r\n").replies(1)[0]
            assert time.monotonic() - started >= 0.5 and reply.startswith("500 5.3.3 ")
            assert client.send(b"NOOP\r\n").replies(1)[0].startswith("250")
        mark = slow.records.mark()
        with RawClient(slow) as client:
            client.send(b"XYZZY\r\n")
        # the client closed before its reply: the edge records the reply it never heard
        assert slow.records.wait_for(lambda events: any(e.kind == "abandoned" for e in events), 5, since=mark)


def test_starttls_or_auth_inside_a_transaction_is_a_bad_sequence_not_send_hello_first(edge):
    with Device(edge) as device:
        device.secure()
        device.login("scanner@contoso.com", "Scan-2026!")
        assert device.mail("scanner@contoso.com")[0] == 250
        assert device.reply("AUTH LOGIN").startswith("503 5.5.2 Already authenticated")
    with Device(edge, "mx", source="127.0.0.10") as device:
        device.ehlo()
        assert device.mail("scanner@contoso.com")[0] == 250
        assert device.reply("STARTTLS").startswith("503 5.5.1 Bad sequence of commands [")
        assert device.reply("AUTH LOGIN").startswith("503 5.5.1 Bad sequence of commands [")
