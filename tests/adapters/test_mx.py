"""The tenant MX on a real socket: direct send (options 2) and connector relay (option 3).

Each simulated device has its own loopback source address: 127.0.0.10 is in contoso's SPF record,
127.0.0.11 is not, 127.0.0.20 is in the IP connector "Lab printers by IP".
"""

from __future__ import annotations

import re
import ssl

import pytest

from fakes.exo import replies as R
from fakes.tls import read_hello
from tests.conftest import overrides
from tests.helpers import MX_SUFFIX, Device, client_context, message

IN_SPF, NOT_IN_SPF, CONNECTOR_IP = "127.0.0.10", "127.0.0.11", "127.0.0.20"


def direct_send(edge, source: str, sender: str, to: tuple[str, ...], *, tls: bool = False,
                body: bytes | None = None, context: ssl.SSLContext | None = None) -> list[str]:
    """One MX session; the replies to MAIL, each RCPT and the end of DATA."""
    replies = []
    with Device(edge, "mx", source=source) as device:
        device.ehlo()
        if tls or context is not None:
            device.starttls(context=context or client_context(edge))
            device.ehlo()
        code, text = device.mail(sender)
        replies.append(f"{code} {text.decode()}")
        accepted = 0
        for rcpt in to:
            code, text = device.rcpt(rcpt)
            replies.append(f"{code} {text.decode()}")
            accepted += code == 250
        if accepted:
            replies.append(device.send_data(body or message(sender, to[0])))
    return replies


def test_mx_banner_and_ehlo_offer_no_auth(edge):
    with Device(edge, "mx") as device:
        assert re.match(r"^220 [A-Z0-9]+\.mail\.protection\.outlook\.com Microsoft ESMTP MAIL Service ready at "
                        r"\w{3}, \d{1,2} \w{3} \d{4} [\d:]{8} \+0000 \[[0-9A-F]{16}\]$", device.banner)
        code, text = device.ehlo()
        assert tuple(text.decode().split("\n")[1:]) == R.MX_EXTENSIONS_PLAIN
        assert "AUTH" not in text.decode()
        device.starttls(context=client_context(edge))
        code, text = device.ehlo()
        assert tuple(text.decode().split("\n")[1:]) == R.MX_EXTENSIONS_TLS
        assert device.reply("AUTH LOGIN").startswith("504 5.7.4 Unrecognized authentication type [")


def test_direct_send_from_an_spf_address_lands_in_the_inbox(edge):
    replies = direct_send(edge, IN_SPF, "scanner@contoso.com", ("alice@contoso.com",))
    assert replies[0] == "250 2.1.0 Sender OK" and replies[1] == "250 2.1.5 Recipient OK"
    assert replies[2].startswith("250 2.6.0 ")
    (copy,) = edge.store.messages(mailbox="alice@contoso.com")
    assert (copy.folder, copy.spf) == ("Inbox", "pass")
    assert b"Authentication-Results: spf=pass (sender IP is 127.0.0.10) smtp.mailfrom=contoso.com" in copy.read()
    assert edge.store.messages(folder="Sent Items") == []  # direct send keeps no Sent Items copy


def test_direct_send_from_outside_the_spf_record_lands_in_junk(edge):
    direct_send(edge, NOT_IN_SPF, "scanner@contoso.com", ("alice@contoso.com",))
    (copy,) = edge.store.messages(mailbox="alice@contoso.com")
    assert (copy.folder, copy.spf) == ("Junk", "softfail")


def test_without_an_spf_record_direct_send_lands_in_junk(edge):
    overrides(edge, dns={"spf": False})
    direct_send(edge, IN_SPF, "scanner@contoso.com", ("alice@contoso.com",))
    (copy,) = edge.store.messages(mailbox="alice@contoso.com")
    assert (copy.folder, copy.spf) == ("Junk", "none")


def test_direct_send_needs_no_mailbox_for_the_sender(edge):
    direct_send(edge, IN_SPF, "mfp-3rd-floor@contoso.com", ("alice@contoso.com",))
    assert [m.folder for m in edge.store.messages(mailbox="alice@contoso.com")] == ["Inbox"]


def test_direct_send_to_an_external_recipient_is_refused_at_rcpt(edge):
    replies = direct_send(edge, IN_SPF, "scanner@contoso.com", ("partner@example.org",))
    assert replies[1].startswith("550 5.7.64 TenantAttribution; Relay Access Denied [")
    assert MX_SUFFIX.search(replies[1])
    replies = direct_send(edge, IN_SPF, "printer@example.net", ("partner@example.org",))
    assert replies[1].startswith("550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain [")
    assert edge.store.messages() == []


def test_unknown_recipient_in_an_accepted_domain_is_refused_by_edge_blocking(edge):
    replies = direct_send(edge, IN_SPF, "scanner@contoso.com", ("ghost@contoso.com",))
    assert replies[1].startswith("550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [")


def test_reject_direct_send_refuses_anonymous_mail_from_an_accepted_domain(edge):
    overrides(edge, org={"reject_direct_send": True})
    replies = direct_send(edge, IN_SPF, "scanner@contoso.com", ("alice@contoso.com",))
    assert replies[1].startswith("550 5.7.68 TenantInboundAttribution; Direct Send not allowed for this "
                                 "organization from unauthorized sources [")
    # a sender outside the accepted domains is not what RejectDirectSend looks at
    replies = direct_send(edge, IN_SPF, "alerts@vendor.example", ("alice@contoso.com",))
    assert replies[1] == "250 2.1.5 Recipient OK"
    # and a connector-matched session is not direct send
    replies = direct_send(edge, CONNECTOR_IP, "scanner@contoso.com", ("alice@contoso.com",))
    assert replies[1] == "250 2.1.5 Recipient OK"


def test_starttls_is_optional_at_the_mx(edge):
    direct_send(edge, IN_SPF, "scanner@contoso.com", ("alice@contoso.com",), tls=False)
    direct_send(edge, IN_SPF, "scanner@contoso.com", ("bob@contoso.com",), tls=True)
    assert len(edge.store.messages()) == 2


def test_a_failed_handshake_then_plaintext_is_still_served(edge):
    with Device(edge, "mx", source=IN_SPF) as device:
        device.ehlo()
        with pytest.raises(ssl.SSLError):
            device.starttls(context=ssl.create_default_context())  # does not trust the lab CA
    replies = direct_send(edge, IN_SPF, "scanner@contoso.com", ("alice@contoso.com",))
    assert replies[-1].startswith("250 2.6.0")


def test_a_message_without_a_from_header_is_refused(edge):
    replies = direct_send(edge, IN_SPF, "scanner@contoso.com", ("alice@contoso.com",),
                          body=b"Subject: no from\r\n\r\nbody\r\n")
    assert replies[-1].startswith("550 5.7.512 Access denied, message must be RFC 5322 section 3.6.2 compliant [")


def test_ip_connector_relays_to_the_internet(edge):
    mark = edge.records.mark()
    replies = direct_send(edge, CONNECTOR_IP, "scanner@contoso.com", ("partner@example.org", "alice@contoso.com"),
                          tls=True)
    assert replies[1] == replies[2] == "250 2.1.5 Recipient OK"
    placed = {(m.folder, m.recipient) for m in edge.store.messages()}
    assert placed == {("Outbound", "partner@example.org"), ("Inbox", "alice@contoso.com")}
    notes = [e for e in edge.records.window(mark) if e.kind == "attribution"]
    assert notes and notes[-1].connector == "Lab printers by IP"


def test_ip_connector_still_needs_a_sender_in_an_accepted_domain(edge):
    replies = direct_send(edge, CONNECTOR_IP, "alerts@vendor.example", ("partner@example.org",))
    assert replies[1].startswith("550 5.7.64 TenantAttribution; Relay Access Denied [")


def test_an_address_outside_every_connector_is_refused_relay(edge):
    replies = direct_send(edge, "127.0.0.21", "scanner@contoso.com", ("partner@example.org",), tls=True)
    assert replies[1].startswith("550 5.7.64 TenantAttribution; Relay Access Denied [")


def relay_context(edge, tmp_path, name: str, version: str | None = None) -> ssl.SSLContext:
    cert, key = edge.ca.client_certificate(name, tmp_path)
    ctx = client_context(edge, version)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_certificate_connector_relays_with_a_matching_client_certificate(edge, tmp_path):
    mark = edge.records.mark()
    replies = direct_send(edge, "127.0.0.30", "scanner@contoso.com", ("partner@example.org",),
                          context=relay_context(edge, tmp_path, "relay.contoso.com"))
    assert replies[1] == "250 2.1.5 Recipient OK" and replies[2].startswith("250 2.6.0")
    assert [m.folder for m in edge.store.messages()] == ["Outbound"]
    events = edge.records.window(mark)
    tls = next(e for e in events if e.kind == "tls")
    assert tls.client_certificate == ("relay.contoso.com",)
    assert any(e.kind == "attribution" and e.connector == "Lab relay by certificate" for e in events)


def test_a_certificate_for_another_domain_is_refused_relay(edge, tmp_path):
    replies = direct_send(edge, "127.0.0.30", "scanner@contoso.com", ("partner@example.org",),
                          context=relay_context(edge, tmp_path, "relay.fabrikam.com"))
    assert replies[1].startswith("550 5.7.64 TenantAttribution; Relay Access Denied [")


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1"])
def test_the_mx_refuses_tls_1_0_and_1_1_at_the_handshake_and_takes_the_plain_retry(edge, tmp_path, version):
    """Since 2021 the MX no longer accepts TLS 1.0/1.1 connections (MC229914); TLS stays
    opportunistic there, so the sender that retries without it is served."""
    mark = edge.records.mark()
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS"):
        direct_send(edge, "127.0.0.30", "scanner@contoso.com", ("partner@example.org",),
                    context=relay_context(edge, tmp_path, "relay.contoso.com", version))
    assert edge.records.wait_for(lambda events: any(e.kind == "disconnect" for e in events), 5, since=mark)
    events = edge.records.window(mark)
    assert [e.kind for e in events if e.kind in ("tls", "tls_failed")] == ["tls_failed"]
    assert read_hello(next(e for e in events if e.kind == "client_hello")).highest_version == version
    replies = direct_send(edge, IN_SPF, "scanner@contoso.com", ("alice@contoso.com",))  # again, in the clear
    assert replies[-1].startswith("250 2.6.0")


def test_a_relayed_message_that_later_fails_bounces_to_the_sending_mailbox(edge):
    replies = direct_send(edge, CONNECTOR_IP, "scanner@contoso.com", ("someone@nowhere.invalid",), tls=True)
    assert replies[-1].startswith("250 2.6.0")  # accepted first: the failure comes later, as an NDR
    (ndr,) = edge.store.messages(mailbox="scanner@contoso.com")
    assert (ndr.folder, ndr.kind) == ("Inbox", "ndr")
    text = ndr.read().decode()
    assert "Status: 5.4.310" in text
    assert "DNS domain nowhere.invalid does not exist [Message=InfoDomainNonexistent]" in text
    assert edge.store.messages(folder="Outbound") == []


def test_an_ndr_for_a_sender_outside_the_tenant_leaves_through_outbound(edge):
    overrides(edge, connectors=[{"name": "printers", "sender_ip_ranges": ["127.0.0.20/32"]}])
    direct_send(edge, CONNECTOR_IP, "scanner@contoso.com", ("a@nowhere.invalid",), tls=True)
    direct_send(edge, CONNECTOR_IP, "mfp@contoso.com", ("b@nowhere.invalid",), tls=True)
    outbound = edge.store.messages(folder="Outbound")
    assert [(m.kind, m.recipient) for m in outbound] == [("ndr", "b@nowhere.invalid")]
    assert b"To: mfp@contoso.com" in outbound[0].read()


def test_an_internal_fault_is_a_451_4_3_0_and_a_recorded_harness_fault(edge):
    def broken_spf(ip: str, domain: str) -> str:
        raise RuntimeError("SPF evaluation broke")

    original = edge.state.spf
    edge.state.spf = broken_spf
    try:
        mark = edge.records.mark()
        replies = direct_send(edge, IN_SPF, "scanner@contoso.com", ("alice@contoso.com",))
    finally:
        edge.state.spf = original
    assert replies[-1].startswith("451 4.3.0 ")
    assert not replies[-1].startswith("500 Error")
    faults = [e for e in edge.records.window(mark) if e.kind == "harness_fault"]
    assert faults and "SPF evaluation broke" in faults[0].error
    assert edge.store.messages() == []


def test_a_tls_1_0_device_that_retries_in_the_clear_passes_the_legacy_case_and_a_strict_one_fails(edge):
    """The catalog case as the guide means it: direct send does not need TLS, so a TLS 1.0 device
    that sends again without STARTTLS delivers; one that gives up does not."""
    from dataclasses import replace
    from pathlib import Path

    from harness.reference import MX, PROFILES, Profile, ReferenceSender
    from harness.runner import Runner, Verdict
    from harness.scenario import load_catalog

    (case,) = [c for c in load_catalog(Path(__file__).resolve().parents[2] / "scenarios")
               if c.id == "direct-send/legacy-tls-device-still-delivers"]
    retrying = Profile("direct-send-tls10", "direct-send", None, "TLS 1.0 only, then plain",
                       replace(MX, tls_min="TLSv1", tls_max="TLSv1"))
    result = Runner(edge, ReferenceSender(retrying)).run(case)
    assert result.verdict == Verdict.PASS, result.reason
    refused = [e for e in edge.records.events() if e.kind == "tls_failed"]
    assert refused, "the MX never refused the TLS 1.0 handshake"
    strict = Runner(edge, ReferenceSender(PROFILES["direct-send-tls10-strict"])).run(case)
    assert strict.verdict == Verdict.FAIL and "stored" in [o.check for o in strict.outcomes if o.failed]


def test_a_bare_mail_at_the_mx_is_501_5_5_4_unrecognized_parameter(edge):
    with Device(edge, "mx", source=IN_SPF) as device:
        device.ehlo()
        assert device.reply("MAIL").startswith("501 5.5.4 Unrecognized parameter [")
