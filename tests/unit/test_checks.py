"""Each check over hand-built observations (no sockets): it passes what conforms, fails what does
not with a sentence that says why, and stays out (``None``) where it does not apply."""

from __future__ import annotations

import itertools
import re
from typing import Any

import msgspec
import pytest

from fakes.exo.commands import command_fact, parse_command
from fakes.exo.observed import from_builtins
from fakes.store import StoredMessage
from harness import checks as C
from harness.observation import Observation

HOST = "smtp.office365.com"
_clock = itertools.count(1)


def ev(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, **fields}


def session(sid: str, endpoint: str, *events: dict[str, Any], peer: str = "127.0.0.5") -> list[dict[str, Any]]:
    out = [{"session": sid, "t": float(next(_clock)), "kind": "connect", "endpoint": endpoint,
            "peer": [peer, 40000], "local": ["127.0.0.1", 587]}]
    for event in events:
        out.append({"session": sid, "t": float(next(_clock)), **event})
    out.append({"session": sid, "t": float(next(_clock)), "kind": "disconnect", "error": None})
    return out


def cmd(line: str) -> dict[str, Any]:
    """A command as the edge records it: with its verb, and MAIL's or RCPT's address and parameters."""
    fact = command_fact(line, parse_command(line.encode()))
    return {key: value for key, value in msgspec.to_builtins(fact).items() if key not in ("session", "t")}


def reply(line: str, stage: str = "other") -> dict[str, Any]:
    """A reply as the edge records it: with the stage it answers and its enhanced code."""
    word = line[4:].split(" ", 1)[0]
    enhanced = word if re.fullmatch(r"\d\.\d{1,3}\.\d{1,3}", word) else None
    return ev("reply", line=line, code=int(line[:3]), stage=stage, enhanced=enhanced)


def stored(folder: str, mailbox: str | None, sid: str = "s1", *, delayed: bool = False, kind: str = "message"):
    return StoredMessage(id="x", session=sid, endpoint="submission", message_id="m", mail_from="a@b.example",
                         recipient=mailbox or "p@example.org", mailbox=mailbox, folder=folder, kind=kind,
                         stored_at=1.0, deliver_after=2.0 if delayed else 1.0, spf=None, size=10, path="/dev/null")


def observe(*sessions: list[dict[str, Any]], dns: list[dict[str, Any]] = (), stored_copies=(),
            host: str = HOST) -> Observation:
    events = [from_builtins(e) for s in sessions for e in s] + [from_builtins(e) for e in dns]
    return Observation.build(events, list(stored_copies), host)


GOOD_SUBMISSION = session(
    "s1", "submission",
    reply("220 AM0PR01CA0001.outlook.office365.com Microsoft ESMTP MAIL Service ready", "banner"),
    cmd("EHLO device"), reply("250 SMTPUTF8", "ehlo"),
    cmd("STARTTLS"), reply("220 2.0.0 SMTP server ready", "starttls"),
    ev("client_hello", versions=["TLSv1.3", "TLSv1.2"], highest_version="TLSv1.3", sni=HOST, cipher_suites=[]),
    ev("tls", version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", client_certificate=None),
    cmd("EHLO device"), reply("250 SMTPUTF8", "ehlo"),
    cmd("AUTH LOGIN <redacted>"), ev("auth_response", line="<redacted>"),
    ev("auth", mechanism="LOGIN", user="scanner@contoso.com", outcome="success", reason="password"),
    reply("235 2.7.0 Authentication successful", "auth"),
    cmd("MAIL FROM:<scanner@contoso.com> SIZE=300"), reply("250 2.1.0 Sender OK", "mail"),
    cmd("RCPT TO:<alice@contoso.com>"), reply("250 2.1.5 Recipient OK", "rcpt"), cmd("DATA"),
    reply("354 Start mail input; end with <CRLF>.<CRLF>", "data"),
    ev("message", size=300, via="DATA", has_date=True, has_message_id=True, has_from=True, bare_lf=False,
       longest_line=0),
    reply("250 2.6.0 <m@device> [InternalId=1] Queued mail for delivery", "message"), cmd("QUIT"),
    reply("221 2.0.0 Service closing transmission channel", "quit"),
)
DNS_LOOKUP = [{"session": "dns000001", "t": 0.5, "kind": "dns_query", "name": HOST, "type": "A", "rcode": "NOERROR",
               "peer": ["127.0.0.5", 53000], "transport": "udp"}]


def edit(events: list[dict[str, Any]], old: dict[str, Any] | None, new: list[dict[str, Any]]) -> list[dict]:
    """``events`` with the first one equal to ``old`` (ignoring t) replaced by ``new`` (None: appended)."""
    out = []
    done = old is None
    for e in events:
        core = {k: v for k, v in e.items() if k not in ("session", "t")}
        if not done and core == old:
            out += [{"session": e["session"], "t": e["t"], **n} for n in new]
            done = True
        else:
            out.append(e)
    assert done, f"{old} not found"
    return out


def outcome(check: C._Check, obs: Observation) -> bool | None:
    result = check.evaluate(obs)
    assert result.message, "every outcome says why"
    return result.passed


def test_connected():
    assert outcome(C.Connected(), observe(GOOD_SUBMISSION)) is True
    assert outcome(C.Connected(), observe()) is False


def test_port():
    assert outcome(C.Port(), observe(GOOD_SUBMISSION)) is True
    trap = session("s2", "implicit-tls", ev("client_hello", implicit_tls=True, versions=["TLSv1.3"]))
    assert outcome(C.Port(), observe(trap)) is False
    assert outcome(C.Port(allowed=[587]), observe(session("s3", "submission-25"))) is False
    assert outcome(C.Port(), observe()) is None


def test_dns_name():
    assert outcome(C.DnsName(), observe(GOOD_SUBMISSION)) is True  # SNI names the host
    hello = next(e for e in GOOD_SUBMISSION if e["kind"] == "client_hello")
    no_sni = edit(GOOD_SUBMISSION, {k: v for k, v in hello.items() if k not in ("session", "t")},
                  [hello | {"sni": None}])
    assert outcome(C.DnsName(), observe(no_sni)) is False
    assert outcome(C.DnsName(), observe(no_sni, dns=DNS_LOOKUP)) is True  # looked up instead
    assert outcome(C.DnsName(), observe()) is None


def test_starttls_before_auth():
    assert outcome(C.StartTlsBeforeAuth(), observe(GOOD_SUBMISSION)) is True
    plain = session("s2", "submission", cmd("EHLO d"), cmd("AUTH LOGIN <redacted>"), cmd("MAIL FROM:<a@b.example>"))
    assert outcome(C.StartTlsBeforeAuth(), observe(plain)) is False
    assert outcome(C.StartTlsBeforeAuth(), observe(session("s3", "submission", cmd("EHLO d")))) is None


def test_tls():
    assert outcome(C.Tls(), observe(GOOD_SUBMISSION)) is True
    assert outcome(C.Tls(minimum="TLSv1.3"), observe(GOOD_SUBMISSION)) is True
    old = session("s2", "submission", ev("client_hello", versions=["TLSv1"], highest_version="TLSv1"),
                  ev("tls", version="TLSv1", cipher="x", client_certificate=None))
    assert outcome(C.Tls(), observe(old)) is False
    assert outcome(C.Tls(offered_minimum="TLSv1.2"), observe(old)) is False
    assert outcome(C.Tls(), observe(session("s3", "mx", cmd("EHLO d")))) is False
    assert outcome(C.Tls(required=False), observe(session("s3", "mx", cmd("EHLO d")))) is True


HELLO = ev("client_hello", versions=["TLSv1.2", "TLSv1.3"], highest_version="TLSv1.3")


@pytest.mark.parametrize("reason", ["TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE",
                                    "SSLV3_ALERT_CERTIFICATE_EXPIRED", "UNEXPECTED_EOF_WHILE_READING",
                                    "the client closed during the TLS handshake"])
def test_certificate_verified(reason):
    """Credited only for the client's own refusal."""
    refused = session("s2", "submission", cmd("STARTTLS"), HELLO, ev("tls_failed", reason=reason))
    assert outcome(C.CertificateVerified(), observe(refused)) is True
    assert outcome(C.CertificateVerified(), observe(GOOD_SUBMISSION)) is False  # went on to AUTH


@pytest.mark.parametrize("events", [
    (cmd("EHLO device"), cmd("QUIT")),  # never started TLS
    (cmd("STARTTLS"), HELLO, ev("tls_failed", reason="UNSUPPORTED_PROTOCOL")),  # a version, not the certificate
    (cmd("STARTTLS"), HELLO, ev("tls_failed", reason="NO_SHARED_CIPHER")),
    (cmd("STARTTLS"), ev("tls_failed", reason="UNEXPECTED_EOF_WHILE_READING")),  # closed before its ClientHello
    (cmd("STARTTLS"), HELLO, ev("tls", version="TLSv1.3", cipher="x", client_certificate=None), cmd("QUIT")),
], ids=["no-tls", "version", "cipher", "no-hello", "handshake-then-nothing"])
def test_certificate_verified_is_not_exercised_without_a_refusal_to_credit(events):
    assert outcome(C.CertificateVerified(), observe(session("s2", "submission", *events))) is None
    assert outcome(C.CertificateVerified(), observe()) is None


def auth_session(mechanism: str, result: str) -> list[dict[str, Any]]:
    return session("s2", "submission", ev("tls", version="TLSv1.3", cipher="x", client_certificate=None),
                   ev("auth", mechanism=mechanism, user="u", outcome=result, reason="why"))


def test_auth_mechanism():
    assert outcome(C.AuthMechanism(succeeded=True), observe(GOOD_SUBMISSION)) is True
    assert outcome(C.AuthMechanism(), observe(auth_session("PLAIN", "unsupported"))) is False
    assert outcome(C.AuthMechanism(succeeded=True), observe(auth_session("LOGIN", "failure"))) is False
    assert outcome(C.AuthMechanism(), observe(session("s3", "submission"))) is None
    assert outcome(C.AuthMechanism(succeeded=True), observe(session("s3", "submission"))) is False


def test_no_auth():
    mx = session("s2", "mx", cmd("EHLO d"), cmd("MAIL FROM:<a@b.example>"), reply("250 2.1.0 Sender OK", "mail"))
    assert outcome(C.NoAuth(), observe(mx)) is True
    assert outcome(C.NoAuth(), observe(session("s4", "mx", cmd("EHLO d"), cmd("QUIT")))) is None
    assert outcome(C.NoAuth(), observe(session("s3", "mx", cmd("AUTH LOGIN <redacted>")))) is False
    assert outcome(C.NoAuth(), observe()) is None


def test_reply():
    assert outcome(C.ReplyCheck(code=235, enhanced="2.7.0", stage="auth"), observe(GOOD_SUBMISSION)) is True
    assert outcome(C.ReplyCheck(code=235, stage="mail"), observe(GOOD_SUBMISSION)) is False  # wrong stage
    assert outcome(C.ReplyCheck(code=550, enhanced="5.7.60"), observe(GOOD_SUBMISSION)) is False
    assert outcome(C.ReplyCheck(code=550, enhanced="5.7.60", seen=False), observe(GOOD_SUBMISSION)) is True
    assert outcome(C.ReplyCheck(code=250, enhanced="2.6.0", stage="message"), observe(GOOD_SUBMISSION)) is True


def test_stored():
    copies = [stored("Inbox", "alice@contoso.com"), stored("Sent Items", "scanner@contoso.com")]
    obs = observe(GOOD_SUBMISSION, stored_copies=copies)
    assert outcome(C.Stored(folder="Inbox", mailbox="alice@contoso.com", count=1), obs) is True
    assert outcome(C.Stored(folder="Inbox", mailbox="bob@contoso.com"), obs) is False
    assert outcome(C.Stored(folder="Junk", count=0), obs) is True
    twice = observe(GOOD_SUBMISSION, stored_copies=[*copies, stored("Inbox", "alice@contoso.com")])
    assert outcome(C.Stored(folder="Inbox", count=1), twice) is False
    assert outcome(C.Stored(folder="Inbox", delayed=True), obs) is False
    late = observe(GOOD_SUBMISSION, stored_copies=[stored("Inbox", "alice@contoso.com", delayed=True)])
    assert outcome(C.Stored(folder="Inbox", delayed=True), late) is True
    elsewhere = observe(GOOD_SUBMISSION, stored_copies=[stored("Inbox", "alice@contoso.com", sid="other")])
    assert outcome(C.Stored(folder="Inbox"), elsewhere) is False  # another session's copy is not this case's


def test_retried_after_transient():
    first = session("s1", "submission", cmd("MAIL FROM:<a@b.example>"), reply("250 2.1.0 Sender OK", "mail"),
                    cmd("RCPT TO:<c@d.example>"), reply("451 4.7.500 Server busy", "rcpt"))
    retry = session("s2", "submission", cmd("MAIL FROM:<a@b.example>"), reply("250 2.1.0 Sender OK", "mail"))
    assert outcome(C.RetriedAfterTransient(), observe(first, retry)) is True
    assert outcome(C.RetriedAfterTransient(), observe(first)) is False
    assert outcome(C.RetriedAfterTransient(within=0.5), observe(first, retry)) is False  # too late
    assert outcome(C.RetriedAfterTransient(), observe(GOOD_SUBMISSION)) is None


def test_no_retry_after_permanent():
    first = session("s1", "submission", cmd("MAIL FROM:<a@b.example>"), reply("550 5.1.8 Access denied", "mail"))
    again = session("s2", "submission", cmd("MAIL FROM:<a@b.example>"), reply("550 5.1.8 Access denied", "mail"))
    assert outcome(C.NoRetryAfterPermanent(), observe(first)) is True
    assert outcome(C.NoRetryAfterPermanent(), observe(first, again)) is False
    assert outcome(C.NoRetryAfterPermanent(max_attempts=2), observe(first, again)) is True
    assert outcome(C.NoRetryAfterPermanent(), observe(GOOD_SUBMISSION)) is None


def test_no_auth_storm():
    failures = [auth_session("LOGIN", "failure") for _ in range(5)]
    for i, s in enumerate(failures):
        for e in s:
            e["session"] = f"f{i}"
    assert outcome(C.NoAuthStorm(), observe(*failures[:1])) is True
    assert outcome(C.NoAuthStorm(), observe(*failures)) is False
    assert outcome(C.NoAuthStorm(), observe(GOOD_SUBMISSION)) is None


@pytest.mark.parametrize(("facts", "expected"), [
    ({}, None),
    ({"has_date": False}, "no Date header"),
    ({"bare_lf": True}, "bare LF"),
    ({"longest_line": 1200}, "a line of 1200 octets"),
    ({"size": 2_000_000}, "without declaring SIZE="),
])
def test_well_formed(facts, expected):
    message = {"kind": "message", "size": 300, "via": "DATA", "has_date": True, "has_message_id": True,
               "has_from": True, "bare_lf": False, "longest_line": 0}
    events = edit(GOOD_SUBMISSION, {k: v for k, v in message.items()}, [message | facts])
    if "size" in facts:
        events = edit(events, cmd("MAIL FROM:<scanner@contoso.com> SIZE=300"),
                      [cmd("MAIL FROM:<scanner@contoso.com>")])
    result = C.WellFormed().evaluate(observe(events))
    if expected is None:
        assert result.passed is True
    else:
        assert result.passed is False and expected in result.message
    assert C.WellFormed().evaluate(observe(session("s9", "submission"))).passed is None


def identity_event(endpoint: str, outcome: str, **fields: Any) -> dict[str, Any]:
    return {"session": f"idp{next(_clock)}", "t": float(next(_clock)), "kind": "identity", "endpoint": endpoint,
            "outcome": outcome, "peer": "127.0.0.5", **fields}


def test_oauth_device_flow():
    grant = "urn:ietf:params:oauth:grant-type:device_code"
    smtp = "https://outlook.office365.com/SMTP.Send offline_access"
    signed_in = [identity_event("devicecode", "ok", scope=smtp),
                 identity_event("token", "authorization_pending", grant_type=grant),
                 identity_event("token", "ok", grant_type=grant)]
    assert outcome(C.OAuthDeviceFlow(), observe(GOOD_SUBMISSION, dns=signed_in)) is True
    # Microsoft grants a Graph scope (or a bare SMTP.Send, which is Graph's): a token SMTP refuses
    for graph in ("https://graph.microsoft.com/Mail.Send", "SMTP.Send offline_access"):
        for_graph = [{**signed_in[0], "scope": graph}, *signed_in[1:]]
        assert outcome(C.OAuthDeviceFlow(), observe(GOOD_SUBMISSION, dns=for_graph)) is False
    assert outcome(C.OAuthDeviceFlow(), observe(GOOD_SUBMISSION)) is False  # a password, no token asked for
    refused = [identity_event("devicecode", "invalid_scope", aadsts=70011, scope="https://graph.microsoft.com/x")]
    assert outcome(C.OAuthDeviceFlow(), observe(GOOD_SUBMISSION, dns=refused)) is False
    never = [identity_event("devicecode", "ok"), identity_event("token", "authorization_pending", grant_type=grant)]
    assert outcome(C.OAuthDeviceFlow(), observe(GOOD_SUBMISSION, dns=never)) is False


DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def at(t: float, endpoint: str, outcome: str, **fields: Any) -> dict[str, Any]:
    return {"session": f"idp{t}", "t": t, "kind": "identity", "endpoint": endpoint, "outcome": outcome,
            "peer": "127.0.0.5", **fields}


def test_oauth_polling_pace():
    def polls(*times: float, interval: int = 5) -> list[dict[str, Any]]:
        return [at(0.0, "devicecode", "ok", flow="f1", interval=interval),
                *(at(t, "token", "authorization_pending", grant_type=DEVICE_GRANT, flow="f1") for t in times)]

    assert outcome(C.OAuthPollingPace(), observe(GOOD_SUBMISSION, dns=polls(0.1, 5.2, 10.3))) is True
    assert outcome(C.OAuthPollingPace(), observe(GOOD_SUBMISSION, dns=polls(0.1, 5.2, 6.0))) is False
    # forgiven: network jitter within the tolerance
    assert outcome(C.OAuthPollingPace(), observe(GOOD_SUBMISSION, dns=polls(0.1, 5.06))) is True
    assert outcome(C.OAuthPollingPace(), observe(GOOD_SUBMISSION, dns=polls(0.1))) is None  # one poll: no pace
    # polls for two codes are judged each on its own: 1 s between the last of one and the first of the other
    other = [at(5.5, "devicecode", "ok", flow="f2", interval=5),
             at(6.1, "token", "authorization_pending", grant_type=DEVICE_GRANT, flow="f2")]
    assert outcome(C.OAuthPollingPace(), observe(GOOD_SUBMISSION, dns=polls(0.1, 5.2) + other)) is True


def test_oauth_refreshed():
    signed = [at(0.0, "devicecode", "ok"), at(1.0, "token", "ok", grant_type=DEVICE_GRANT)]
    refreshed = signed + [at(9.0, "token", "ok", grant_type="refresh_token")]
    assert outcome(C.OAuthRefreshed(), observe(GOOD_SUBMISSION, dns=refreshed)) is True
    assert outcome(C.OAuthRefreshed(), observe(GOOD_SUBMISSION, dns=signed)) is False  # never refreshed
    again = refreshed + [at(10.0, "devicecode", "ok")]  # asked the person again though refreshing worked
    assert outcome(C.OAuthRefreshed(), observe(GOOD_SUBMISSION, dns=again)) is False
    refused = signed + [at(9.0, "token", "invalid_grant", grant_type="refresh_token", aadsts=50173)]
    assert outcome(C.OAuthRefreshed(), observe(GOOD_SUBMISSION, dns=refused)) is False


def test_oauth_sign_in_again():
    refused = [at(0.0, "devicecode", "ok"), at(1.0, "token", "ok", grant_type=DEVICE_GRANT),
               at(9.0, "token", "invalid_grant", grant_type="refresh_token", aadsts=50173)]
    again = refused + [at(9.5, "devicecode", "ok")]
    assert outcome(C.OAuthSignInAgain(), observe(GOOD_SUBMISSION, dns=again)) is True
    assert outcome(C.OAuthSignInAgain(), observe(GOOD_SUBMISSION, dns=refused)) is False  # gave up silently
    loop = refused + [at(9.0 + i / 10, "token", "invalid_grant", grant_type="refresh_token") for i in range(1, 4)]
    assert outcome(C.OAuthSignInAgain(), observe(GOOD_SUBMISSION, dns=loop + [at(9.9, "devicecode", "ok")])) is False
    assert outcome(C.OAuthSignInAgain(max_retries=3), observe(GOOD_SUBMISSION,
                                                              dns=loop + [at(9.9, "devicecode", "ok")])) is True
    assert outcome(C.OAuthSignInAgain(), observe(GOOD_SUBMISSION, dns=refused[:2])) is None  # nothing refused


def test_oauth_app_only():
    granted = [at(0.0, "token", "ok", grant_type="client_credentials", scope="https://outlook.office365.com/.default")]
    assert outcome(C.OAuthAppOnly(), observe(GOOD_SUBMISSION, dns=granted)) is True
    assert outcome(C.OAuthAppOnly(), observe(GOOD_SUBMISSION)) is False
    refused = [at(0.0, "token", "invalid_scope", grant_type="client_credentials", aadsts=70011)]
    assert outcome(C.OAuthAppOnly(), observe(GOOD_SUBMISSION, dns=refused)) is False
    person = granted + [at(1.0, "devicecode", "ok")]
    assert outcome(C.OAuthAppOnly(), observe(GOOD_SUBMISSION, dns=person)) is False


def test_oauth_scope():
    def asked(scope: str, grant: str | None = None) -> list[dict[str, Any]]:
        return [at(0.0, "devicecode" if grant is None else "token", "ok", scope=scope, grant_type=grant)]

    smtp = "https://outlook.office.com/SMTP.Send offline_access"
    assert outcome(C.OAuthScope(), observe(GOOD_SUBMISSION, dns=asked(smtp))) is True
    for accepted in ("https://outlook.office365.com/SMTP.Send offline_access", "https://outlook.office.com/.default",
                     "https://outlook.office.com/smtp.send https://outlook.office.com/IMAP.AccessAsUser.All openid"):
        assert outcome(C.OAuthScope(), observe(GOOD_SUBMISSION, dns=asked(accepted))) is True, accepted
    assert outcome(C.OAuthScope(), observe(GOOD_SUBMISSION, dns=asked("SMTP.Send offline_access"))) is False
    assert outcome(C.OAuthScope(), observe(GOOD_SUBMISSION, dns=asked("https://outlook.office.com/.default",
                                                                        "client_credentials"))) is True
    graph = "https://graph.microsoft.com/Mail.Send"
    assert outcome(C.OAuthScope(), observe(GOOD_SUBMISSION, dns=asked(graph))) is False
    assert outcome(C.OAuthScope(), observe(GOOD_SUBMISSION, dns=asked(smtp + " https://graph.microsoft.com/User.Read"))
                   ) is False
    app = "https://outlook.office365.com/.default"
    assert outcome(C.OAuthScope(), observe(GOOD_SUBMISSION, dns=asked(app, "client_credentials"))) is True
    assert outcome(C.OAuthScope(), observe(GOOD_SUBMISSION, dns=asked(smtp, "client_credentials"))) is False
    assert outcome(C.OAuthScope(), observe(GOOD_SUBMISSION)) is None


def test_oauth_refresh_token_kept():
    def refreshes(*presented: str) -> list[dict[str, Any]]:
        events = [at(0.0, "devicecode", "ok", client_id="d"), at(1.0, "token", "ok", grant_type=DEVICE_GRANT,
                                                                 client_id="d", issued="r1")]
        for i, token in enumerate(presented, start=2):
            events.append(at(float(i), "token", "ok", grant_type="refresh_token", client_id="d", presented=token,
                             issued=f"r{i}"))
        return events

    assert outcome(C.OAuthRefreshTokenKept(), observe(GOOD_SUBMISSION, dns=refreshes("r1", "r2", "r3"))) is True
    assert outcome(C.OAuthRefreshTokenKept(), observe(GOOD_SUBMISSION, dns=refreshes("r1", "r1", "r1"))) is False
    # one refresh: nothing rotated yet to keep
    assert outcome(C.OAuthRefreshTokenKept(), observe(GOOD_SUBMISSION, dns=refreshes("r1"))) is None


def test_oauth_no_password_grant():
    device = [at(0.0, "devicecode", "ok"), at(1.0, "token", "ok", grant_type=DEVICE_GRANT)]
    assert outcome(C.OAuthNoPasswordGrant(), observe(GOOD_SUBMISSION, dns=device)) is True
    ropc = [at(0.0, "token", "ok", grant_type="password")]
    assert outcome(C.OAuthNoPasswordGrant(), observe(GOOD_SUBMISSION, dns=ropc)) is False
    assert outcome(C.OAuthNoPasswordGrant(), observe(GOOD_SUBMISSION)) is None  # never asked for a token


def test_oauth_tenant_authority():
    own = [at(0.0, "devicecode", "ok", tenant="contoso.com"), at(1.0, "token", "ok", tenant="contoso.com")]
    assert outcome(C.OAuthTenantAuthority(), observe(GOOD_SUBMISSION, dns=own)) is True
    common = [at(0.0, "devicecode", "invalid_request", aadsts=50194, tenant="common")]
    assert outcome(C.OAuthTenantAuthority(), observe(GOOD_SUBMISSION, dns=common)) is False
    assert outcome(C.OAuthTenantAuthority(), observe(GOOD_SUBMISSION)) is None


def test_oauth_stops_when_refused():
    signed = [at(0.0, "devicecode", "ok"), at(1.0, "token", "ok", grant_type=DEVICE_GRANT)]
    refused = signed + [at(9.0, "token", "unauthorized_client", grant_type="refresh_token", aadsts=7000112)]
    stopped = refused + [at(9.1, "devicecode", "unauthorized_client", aadsts=7000112)]
    assert outcome(C.OAuthStopsWhenRefused(), observe(GOOD_SUBMISSION, dns=stopped)) is True
    loop = refused + [at(9 + i / 10, "token", "unauthorized_client", grant_type="refresh_token") for i in range(1, 6)]
    assert outcome(C.OAuthStopsWhenRefused(), observe(GOOD_SUBMISSION, dns=loop)) is False
    assert outcome(C.OAuthStopsWhenRefused(max_requests=5), observe(GOOD_SUBMISSION, dns=loop)) is True
    assert outcome(C.OAuthStopsWhenRefused(), observe(GOOD_SUBMISSION, dns=signed)) is None


def test_waits_for_replies():
    tarpitted = reply("432 4.3.2 Concurrent connections limit exceeded. [Hostname=H]", "message")
    waited = session("w1", "submission", cmd("EHLO device"), reply("250 SMTPUTF8", "ehlo"), tarpitted)
    left = session("w2", "submission", cmd("EHLO device"), reply("250 SMTPUTF8", "ehlo"),
                   ev("abandoned", line=tarpitted["line"], waited=5.0))
    assert outcome(C.WaitsForReplies(), observe(waited)) is True
    assert outcome(C.WaitsForReplies(), observe(waited, left)) is False
    assert outcome(C.WaitsForReplies(), observe(GOOD_SUBMISSION)) is None  # no error to wait for


def test_every_check_has_a_test_here():
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert set(C.CHECKS) <= tested, set(C.CHECKS) - tested


# Parameters a check needs to be built at all; every other check is built with its defaults.
_PARAMS: dict[str, dict[str, Any]] = {"reply": {"code": 250}}
EHLO_QUIT = session("s9", "submission",
                    reply("220 AM0PR01CA0001.outlook.office365.com Microsoft ESMTP MAIL Service ready", "banner"),
                    cmd("EHLO device"), reply("250 SMTPUTF8", "ehlo"), cmd("QUIT"),
                    reply("221 2.0.0 Service closing transmission channel", "quit"))


@pytest.mark.parametrize("name", sorted(C.CHECKS))
def test_a_sender_that_only_says_ehlo_and_quit_passes_no_check(name):
    """No verdict without exercise: each check, over a sender that connected, said EHLO and QUIT,
    either did not apply (and says why) or failed; none passes."""
    check = C.CHECKS[name](**_PARAMS.get(name, {}))
    result = check.evaluate(observe(EHLO_QUIT))
    if name == "connected":
        assert result.passed is True  # it did connect: the one fact this sender shows
        return
    if name == "reply" or name == "port":
        return  # judge a reply's presence or a port: facts, not behaviour (see their own tests)
    assert result.passed is not True, result.message
    assert result.message
