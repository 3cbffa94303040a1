"""Built-in reference senders: conformant profiles, and deliberately faulty ones.

Each profile is a ``Behaviour`` (how it connects, secures, authenticates, retries and writes its
message) plus the option it serves and the loopback address it sends from, so the edge tells
them apart. They speak real SMTP with Python's smtplib and look names up in the lab DNS server
with dnslib, as a device would.
"""

from __future__ import annotations

import base64
import contextlib
import smtplib
import ssl
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid
from typing import Literal

from dnslib import QTYPE, DNSRecord

from fakes.exo.names import LEGACY_TLS_VERSIONS
from fakes.exo.scopes import APP_SCOPE
from fakes.exo.tokens import xoauth2_payload
from fakes.tls import SSL_VERSIONS
from harness.device_oauth import OAUTH_SCOPE, DeviceOAuth, Refresh, SignInFailed
from harness.senders import Order, SenderResult

Auth = Literal["login", "login-then-oauth", "xoauth2", "plain", "none", "device-code", "client-credentials", "ropc"]
StartTls = Literal["required", "opportunistic", "never"]



@dataclass(frozen=True)
class Behaviour:
    implicit_tls_465: bool = False
    resolve: bool = True  # look the name up in DNS (else: connect to the IP literal)
    starttls: StartTls = "required"
    tls_min: str = "TLSv1.2"
    tls_max: str = "TLSv1.3"
    verify: bool = True
    auth: Auth = "login-then-oauth"
    client_certificate: bool = False
    retries: int = 3  # after a 4xx or a dropped connection
    backoff: float = 0.1  # seconds, doubled each retry
    storm: int = 0  # retry any failure this many times at once, without a pause
    bare_lf: bool = False
    send_as_other: bool = False  # write noreply@<the ordered sender's domain> as the sender
    oauth_scope: str = OAUTH_SCOPE  # device-code: what it asks the identity platform for
    refresh: Refresh = "ahead"  # device-code: refreshes ahead of expiry, never, or in a loop when refused
    poll_pace: float = 1.0  # device-code: the pause between polls, as a fraction of `interval`
    password_fallback: bool = False  # device-code: signs in with its password when OAuth fails
    poll_through_errors: bool = False  # device-code: keeps polling whatever the platform answers
    authority: str | None = None  # device-code: "common" where it ignores the tenant it was given
    declare_size: bool = True
    patience: float = 10.0  # seconds it waits for a reply (Exchange's tarpit answers errors after about 5)


@dataclass(frozen=True)
class Profile:
    """``source`` is the loopback address it sends from; None: the one the tenant's roles give
    its option (an SPF-listed address for direct send, a connector's for relay), or
    ``source_role`` (a role of ``fakes.exo.lab``) where the profile's fault is where it sends from."""

    name: str
    option: str
    source: str | None
    description: str
    behaviour: Behaviour = Behaviour()
    connector: str | None = None
    fault: str | None = None  # what it does wrong; None for the conformant ones
    source_role: str | None = None

    @property
    def conformant(self) -> bool:
        return self.fault is None


MX = Behaviour(starttls="opportunistic", auth="none", verify=False)
RELAY_CERT = replace(MX, starttls="required", verify=True, client_certificate=True)

_PROFILES = [
    # conformant
    Profile("submission", "submission", "127.0.0.5",
            "587, STARTTLS, TLS 1.2+, AUTH LOGIN (XOAUTH2 once basic auth is refused), verifies the certificate, "
            "retries 4xx with backoff"),
    Profile("submission-oauth", "submission", "127.0.0.6", "587, STARTTLS, TLS 1.2+, XOAUTH2 only",
            replace(Behaviour(), auth="xoauth2")),
    Profile("oauth-device", "submission", "127.0.0.7",
            "gets its own token with a device code (the person at the device signs in on microsoft.com/link), "
            "then 587, STARTTLS, TLS 1.2+, AUTH XOAUTH2; refreshes ahead of expiry and after a 535, asks its "
            "user to sign in again when the refresh token is refused", replace(Behaviour(), auth="device-code")),
    Profile("oauth-app", "submission", "127.0.0.8",
            "an app that sends app-only: client credentials with scope https://outlook.office365.com/.default "
            "(SMTP.SendAsApp), then 587, STARTTLS, TLS 1.2+, AUTH XOAUTH2 as a mailbox that granted it access",
            replace(Behaviour(), auth="client-credentials", oauth_scope=APP_SCOPE)),
    Profile("direct-send", "direct-send", None,
            "the tenant MX on 25, opportunistic STARTTLS, no AUTH, from an SPF-listed address", MX),
    Profile("relay-ip", "relay", None, "the tenant MX on 25 from an address in an IP connector",
            replace(MX, starttls="required", verify=True), connector="ip"),
    Profile("relay-cert", "relay", None,
            "the tenant MX on 25, TLS 1.2+ with a client certificate for the connector's domain", RELAY_CERT,
            connector="certificate"),
    # faulty: submission
    Profile("implicit-tls-465", "submission", "127.0.0.41", "implicit TLS on port 465",
            replace(Behaviour(), implicit_tls_465=True), fault="uses port 465 with implicit TLS"),
    Profile("tls10-only", "submission", "127.0.0.42", "offers TLS 1.0 only",
            replace(Behaviour(), tls_min="TLSv1", tls_max="TLSv1"), fault="TLS 1.0 only"),
    Profile("tls12-max", "submission", "127.0.0.43", "offers TLS 1.2 at most (conformant, but no TLS 1.3)",
            replace(Behaviour(), tls_max="TLSv1.2"), fault="no TLS 1.3"),
    Profile("no-starttls", "submission", "127.0.0.44", "authenticates and sends without STARTTLS",
            replace(Behaviour(), starttls="never"), fault="no STARTTLS"),
    Profile("auth-plain", "submission", "127.0.0.45", "AUTH PLAIN", replace(Behaviour(), auth="plain"),
            fault="AUTH PLAIN"),
    Profile("basic-only", "submission", "127.0.0.46", "AUTH LOGIN only, never OAuth",
            replace(Behaviour(), auth="login"), fault="no OAuth"),
    Profile("no-verify", "submission", "127.0.0.47", "ignores certificate errors",
            replace(Behaviour(), verify=False), fault="does not verify the server certificate"),
    Profile("send-as-other", "submission", "127.0.0.48", "writes noreply@<its domain> as the sender",
            replace(Behaviour(), send_as_other=True), fault="sends as another address"),
    Profile("ip-literal", "submission", "127.0.0.49", "configured with the server's IP address, no DNS, no SNI",
            replace(Behaviour(), resolve=False), fault="IP literal instead of smtp.office365.com"),
    Profile("no-retry", "submission", "127.0.0.50", "gives up at the first 4xx",
            replace(Behaviour(), retries=0), fault="never retries"),
    Profile("retry-storm", "submission", "127.0.0.51", "retries every failure at once, ten times",
            replace(Behaviour(), retries=0, storm=10), fault="retries in a tight loop"),
    Profile("bare-lf", "submission", "127.0.0.52", "ends body lines with a bare LF",
            replace(Behaviour(), bare_lf=True), fault="bare LF line endings"),
    Profile("oauth-wrong-scope", "submission", "127.0.0.53",
            "asks for a Microsoft Graph scope instead of SMTP.Send, then falls back to a password",
            replace(Behaviour(), auth="device-code", oauth_scope="https://graph.microsoft.com/Mail.Send",
                    password_fallback=True),
            fault="asks the identity platform for the wrong scope"),
    Profile("oauth-never-refreshes", "submission", "127.0.0.54",
            "signs in with a device code once and keeps presenting that access token after it expired",
            replace(Behaviour(), auth="device-code", refresh="never"), fault="never refreshes its access token"),
    Profile("oauth-refresh-loop", "submission", "127.0.0.55",
            "retries a refused (revoked) refresh token ten times at once before it asks its user to sign in",
            replace(Behaviour(), auth="device-code", refresh="loop"),
            fault="retries a revoked refresh token in a loop"),
    Profile("oauth-fast-poller", "submission", "127.0.0.56",
            "polls the token endpoint five times as often as the device code's interval allows",
            replace(Behaviour(), auth="device-code", poll_pace=0.2), fault="polls faster than interval"),
    Profile("oauth-stale-refresh", "submission", "127.0.0.58",
            "refreshes its access token, but always with the first refresh token it was given, never the new ones",
            replace(Behaviour(), auth="device-code", refresh="stale"), fault="never stores the rotated refresh token"),
    Profile("oauth-common-authority", "submission", "127.0.0.61",
            "signs in at login.microsoftonline.com/common whatever tenant it is set up for",
            replace(Behaviour(), auth="device-code", authority="common"), fault="uses /common for a single-tenant app"),
    Profile("oauth-ropc", "submission", "127.0.0.60",
            "gets its tokens with its user's password at the token endpoint (ROPC), never a device code",
            replace(Behaviour(), auth="ropc"), fault="signs in with ROPC"),
    Profile("oauth-polls-through-errors", "submission", "127.0.0.59",
            "keeps polling the token endpoint whatever it answers, its app refused included",
            replace(Behaviour(), auth="device-code", poll_through_errors=True),
            fault="polls on after its app is refused"),
    Profile("oauth-app-delegated-scope", "submission", "127.0.0.57",
            "an app that asks client credentials for the delegated scope https://outlook.office.com/SMTP.Send",
            replace(Behaviour(), auth="client-credentials", oauth_scope=OAUTH_SCOPE),
            fault="asks for a delegated scope with client credentials"),
    # faulty: direct send
    Profile("direct-send-ip-literal", "direct-send", None, "direct send to the MX's IP address",
            replace(MX, resolve=False), fault="IP literal instead of the MX host"),
    Profile("direct-send-auth", "direct-send", None, "tries AUTH LOGIN at the MX",
            replace(MX, auth="login"), fault="tries to authenticate at the MX"),
    Profile("direct-send-storm", "direct-send", None, "retries refusals at once, ten times",
            replace(MX, retries=0, storm=10), fault="retries in a tight loop"),
    Profile("direct-send-no-retry", "direct-send", None, "gives up at the first 4xx",
            replace(MX, retries=0), fault="never retries"),
    Profile("direct-send-tls10-strict", "direct-send", None,
            "offers TLS 1.0 only and gives up when the MX refuses the handshake",
            replace(MX, starttls="required", tls_min="TLSv1", tls_max="TLSv1"),
            fault="TLS 1.0 only, and no plain-text retry at the MX"),
    Profile("impatient", "submission", "127.0.0.66",
            "waits 2 seconds for a reply, then gives up on the connection and tries again",
            replace(Behaviour(), patience=2.0), fault="does not wait out Exchange's tarpit"),
    # faulty: relay
    Profile("relay-unlisted-ip", "relay", None, "relays from an address in no connector",
            replace(MX, starttls="required", verify=True), connector="ip", fault="address in no connector",
            source_role="unlisted_source"),
    Profile("relay-storm", "relay", None, "retries refusals at once, ten times",
            replace(MX, starttls="required", verify=True, retries=0, storm=10), connector="ip",
            fault="retries in a tight loop"),
    Profile("relay-no-retry", "relay", None, "gives up at the first 4xx",
            replace(MX, starttls="required", verify=True, retries=0), connector="ip", fault="never retries"),
    Profile("relay-cert-storm", "relay", None, "certificate relay that retries refusals at once, ten times",
            replace(RELAY_CERT, retries=0, storm=10), connector="certificate", fault="retries in a tight loop"),
    Profile("relay-cert-tls11", "relay", None, "client certificate over TLS 1.1",
            replace(RELAY_CERT, tls_min="TLSv1.1", tls_max="TLSv1.1"), connector="certificate",
            fault="certificate relay below TLS 1.2"),
]
PROFILES = {p.name: p for p in _PROFILES}


class _Outcome(Exception):
    def __init__(self, kind: Literal["transient", "permanent", "fatal"], text: str) -> None:
        super().__init__(text)
        self.kind = kind


def resolve(order: Order) -> str:
    """An A lookup of the order's host in the lab DNS server (real UDP)."""
    host, _, port = order.dns.rpartition(":")
    reply = DNSRecord.parse(DNSRecord.question(order.host, "A").send(host, int(port), timeout=3))
    for rr in reply.rr:
        if rr.rtype == QTYPE.A:
            return str(rr.rdata)
    raise _Outcome("fatal", f"{order.host} did not resolve")


def sender_address(order: Order, behaviour: Behaviour) -> str:
    if behaviour.send_as_other:
        return "noreply@" + order.sender.rpartition("@")[2]
    return order.sender


def build_message(order: Order, behaviour: Behaviour, index: int) -> bytes:
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = sender_address(order, behaviour)
    message["To"] = ", ".join(order.to)
    message["Subject"] = order.subject if order.count == 1 else f"{order.subject} ({index + 1}/{order.count})"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="device.lab")
    lines = ["Scanned document attached."]
    lines += ["x" * 76] * (order.size // 78)
    message.set_content("\n".join(lines) + "\n")
    data = message.as_bytes()
    if behaviour.bare_lf:
        head, _, body = data.partition(b"\r\n\r\n")
        data = head + b"\r\n\r\n" + body.replace(b"\r\n", b"\n")
    return data


def _context(order: Order, behaviour: Behaviour, server_name: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=order.cafile)
    if not behaviour.verify or server_name is None:
        ctx.check_hostname = False
    if not behaviour.verify:
        ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = SSL_VERSIONS[behaviour.tls_min]
        ctx.maximum_version = SSL_VERSIONS[behaviour.tls_max]
    if behaviour.tls_min in LEGACY_TLS_VERSIONS:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if behaviour.client_certificate and order.cert and order.key:
        ctx.load_cert_chain(order.cert, order.key)
    return ctx


def _check(reply: tuple[int, bytes], expect: int = 250) -> None:
    code, text = reply
    if code == expect or (expect == 250 and 200 <= code < 300):
        return
    kind: Literal["transient", "permanent"] = "transient" if 400 <= code < 500 else "permanent"
    raise _Outcome(kind, f"{code} {text.decode(errors='replace')}")


def _xoauth2(client: smtplib.SMTP, order: Order, oauth: DeviceOAuth) -> None:
    """AUTH XOAUTH2 with the device's own token; after a 535 (an expired or revoked token) once
    more with a new one, as a device that refreshes does."""
    try:
        token = oauth.access_token()
    except SignInFailed as failed:
        raise _Outcome("permanent", str(failed)) from None
    code, text = client.docmd("AUTH XOAUTH2", xoauth2_payload(order.user, token))
    if code == 535:
        try:
            token = oauth.refused() or ""
        except SignInFailed as failed:
            raise _Outcome("permanent", f"{code} {text.decode(errors='replace')}; {failed}") from None
        if token:
            code, text = client.docmd("AUTH XOAUTH2", xoauth2_payload(order.user, token))
    _check((code, text), 235)


def _authenticate(client: smtplib.SMTP, order: Order, behaviour: Behaviour, oauth: DeviceOAuth | None) -> None:
    if behaviour.auth == "none":
        return
    if behaviour.auth == "plain":
        secret = base64.b64encode(f"\0{order.user}\0{order.password or ''}".encode()).decode()
        _check(client.docmd("AUTH PLAIN", secret), 235)
        return
    if behaviour.auth == "xoauth2":
        _check(client.docmd("AUTH XOAUTH2", xoauth2_payload(order.user, order.token or "")), 235)
        return
    if behaviour.auth in ("device-code", "client-credentials", "ropc") and oauth is not None:
        if behaviour.password_fallback:
            try:
                oauth.access_token()
            except SignInFailed:
                client.login(order.user, order.password or "")
                return
        _xoauth2(client, order, oauth)
        return
    if not client.has_extn("auth"):
        # a naive device sends AUTH LOGIN whether or not the server offered it
        user = base64.b64encode(order.user.encode()).decode()
        _check(client.docmd("AUTH LOGIN", user), 334)
        return
    try:
        client.login(order.user, order.password or "")
    except smtplib.SMTPAuthenticationError as exc:
        error = exc.smtp_error if isinstance(exc.smtp_error, bytes) else exc.smtp_error.encode()
        refused_basic = b"5.7.30" in error or b"basic authentication is disabled" in error
        if behaviour.auth == "login-then-oauth" and refused_basic and order.token:
            _check(client.docmd("AUTH XOAUTH2", xoauth2_payload(order.user, order.token)), 235)
            return
        raise _Outcome("permanent", f"{exc.smtp_code} {error.decode(errors='replace')}") from None
    except smtplib.SMTPException as exc:
        raise _Outcome("permanent", str(exc)) from None


def one_session(order: Order, profile: Profile, message: bytes, *, tls: bool = True,
                oauth: DeviceOAuth | None = None) -> str:
    """One connection that tries to deliver ``message``; raises ``_Outcome`` when it does not."""
    b = profile.behaviour
    addr = resolve(order) if b.resolve else order.addr
    server_name = order.host if b.resolve else None
    source = (order.source_addr, 0)
    timeout = min(profile.behaviour.patience, order.timeout)
    if b.implicit_tls_465:
        client: smtplib.SMTP = smtplib.SMTP_SSL(timeout=timeout, source_address=source,
                                                context=_context(order, b, server_name))
        client._host = server_name or addr  # type: ignore[attr-defined]
        client.connect(addr, order.ports.get(465, 465))
    else:
        client = smtplib.SMTP(timeout=timeout, source_address=source, local_hostname="device.lab")
        client.connect(addr, order.port)
        client._host = server_name or addr  # type: ignore[attr-defined]
    with client:
        _check(client.ehlo())
        if tls and b.starttls != "never" and (b.starttls == "required" or client.has_extn("starttls")):
            client.starttls(context=_context(order, b, server_name))
            _check(client.ehlo())
        _authenticate(client, order, b, oauth)
        options = [f"SIZE={len(message)}"] if b.declare_size and client.has_extn("size") else []
        pending, replies = list(order.to), []
        while pending:  # one transaction, and one more for recipients over the limit a message
            _check(client.mail(sender_address(order, b), options))
            accepted, later = 0, []
            for rcpt in pending:
                code, text = client.rcpt(rcpt)
                if 200 <= code < 300:
                    accepted += 1
                elif code == 452 and accepted:  # 4.5.3 too many recipients: the next transaction's
                    later.append(rcpt)
                elif len(order.to) == 1 or 400 <= code < 500:
                    _check((code, text))
            if not accepted:
                raise _Outcome("permanent", "no recipient accepted")
            code, text = client.data(message)
            _check((code, text))
            replies.append(text.decode(errors="replace"))
            pending = later
        with contextlib.suppress(smtplib.SMTPServerDisconnected):
            client.quit()
        return "; ".join(replies)


def deliver(order: Order, profile: Profile, message: bytes, log: list[str], oauth: DeviceOAuth | None = None,
            stopped: threading.Event | None = None) -> bool:
    """Deliver one message as the profile does: retries, backoff, storms, opportunistic TLS;
    ``stopped``, once set, ends a backoff at once and the message's tries with it."""
    stopped = stopped or threading.Event()
    b = profile.behaviour
    attempts = 1 + max(b.retries, b.storm)
    tls = True
    for attempt in range(attempts):
        try:
            log.append(f"delivered: {one_session(order, profile, message, tls=tls, oauth=oauth)}")
            return True
        except _Outcome as outcome:
            log.append(f"attempt {attempt + 1}: {outcome.kind}: {outcome}")
            if b.storm:
                continue
            if outcome.kind != "transient" or attempt >= b.retries:
                return False
        except ssl.SSLError as exc:
            log.append(f"attempt {attempt + 1}: TLS failed: {exc}")
            if b.starttls == "opportunistic" and tls:
                tls = False  # fall back to plaintext, as MX-to-MX senders do
                continue
            if not b.storm:
                return False
            continue
        except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            log.append(f"attempt {attempt + 1}: connection lost: {exc}")
            if b.storm:
                continue
            if attempt >= b.retries:
                return False
        except smtplib.SMTPException as exc:
            log.append(f"attempt {attempt + 1}: {exc}")
            if not b.storm:
                return False
            continue
        # the device's backoff, judged by retried_after_transient, or until the device is stopped
        if stopped.wait(b.backoff * 2**attempt):
            log.append("stopped in its backoff")
            return False
    return False


@dataclass
class ReferenceSender:
    profile: Profile
    # set by ``stop``: the pauses the profile's device takes (between messages, between polls) end at once
    stopped: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    def stop(self) -> None:
        """Stop the device where it waits: it sends nothing more and gives up its sign-in."""
        self.stopped.set()

    @property
    def name(self) -> str:
        return f"reference:{self.profile.name}"

    @property
    def option(self) -> str:
        return self.profile.option

    @property
    def connector(self) -> str | None:
        return self.profile.connector

    @property
    def source_addr(self) -> str | None:
        return self.profile.source

    @property
    def source_role(self) -> str | None:
        return self.profile.source_role

    manual = False  # a program, never a person at a device

    @property
    def sign_in(self) -> str:
        """How it signs in: "oauth" (its own tokens for a mailbox: it runs the OAuth cases, and only
        those), "app" (app-only, client credentials) or "password" (or a token it is handed)."""
        return {"device-code": "oauth", "ropc": "oauth", "client-credentials": "app"}.get(self.profile.behaviour.auth,
                                                                                          "password")

    def send(self, order: Order) -> SenderResult:
        start = time.monotonic()
        log: list[str] = []
        delivered = 0
        b = self.profile.behaviour
        oauth = DeviceOAuth(order, b.oauth_scope, b.refresh, b.poll_pace, app_only=b.auth == "client-credentials",
                            poll_through_errors=b.poll_through_errors, ropc=b.auth == "ropc", authority=b.authority,
                            log=log, stopped=self.stopped) if self.sign_in != "password" else None
        for index in range(order.count):
            # the pace the order asks of the device between messages, or until the device is stopped
            if index and order.interval and self.stopped.wait(order.interval):
                log.append("stopped before its next message")
                break
            try:
                delivered += deliver(order, self.profile, build_message(order, b, index), log, oauth, self.stopped)
            except _Outcome as outcome:
                log.append(f"{outcome.kind}: {outcome}")
            except OSError as exc:
                log.append(f"could not connect: {exc}")
        code = 0 if delivered == order.count else 1
        return SenderResult(code, "\n".join(log), "", None, time.monotonic() - start)
