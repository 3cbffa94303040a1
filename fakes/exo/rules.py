"""Who may send what where: the rules of client submission, direct send and connector relay.

Pure functions over a ``Tenant``. The session asks these; nothing here keeps state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from . import replies as R
from .events import Folder
from .names import MODERN_TLS_VERSIONS
from .replies import Reply
from .tenant import Connector, Mailbox, Tenant

RecipientKind = Literal["internal", "unknown-internal", "external"]


def domain_does_not_exist(domain: str) -> bool:
    """The edge's internet: every domain exists but those under .invalid (RFC 2606)."""
    return domain.lower().rstrip(".").endswith(".invalid")


def classify_recipient(tenant: Tenant, address: str) -> RecipientKind:
    if not tenant.is_accepted(address):
        return "external"
    return "internal" if tenant.mailbox(address) else "unknown-internal"


# -- client submission -------------------------------------------------------------------------


def basic_auth_refusal(tenant: Tenant, box: Mailbox | None, password: str) -> Reply | None:
    """The reply for AUTH LOGIN with these credentials, or None when it succeeds."""
    policy = tenant.org.basic_auth
    if policy == "removed":
        return R.BASIC_AUTH_REMOVED
    if policy == "disabled-by-default":
        return R.BASIC_AUTH_DISABLED
    if box is None or box.password is None or box.password != password:
        return R.AUTH_BAD_CREDENTIALS
    return smtp_auth_refusal(tenant, box)


def smtp_auth_refusal(tenant: Tenant, box: Mailbox) -> Reply | None:
    """SMTP AUTH switched off for the mailbox, or for the tenant with the mailbox inheriting."""
    if tenant.smtp_auth_enabled(box):
        return None
    if box.smtp_client_authentication == "disabled":
        return R.AUTH_DISABLED_MAILBOX
    return R.AUTH_DISABLED_TENANT


def send_as_refusal(tenant: Tenant, box: Mailbox, senders: set[str]) -> str | None:
    """The envelope or header sender that is neither the mailbox nor granted Send As, if any."""
    for address in sorted(a for a in senders if a):
        if not tenant.may_send_as(box, address):
            return address
    return None


# -- the MX: direct send and connector relay ---------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """How the MX placed a session: by connector, or as anonymous direct send."""

    connector: Connector | None
    reason: str

    @property
    def is_relay(self) -> bool:
        return self.connector is not None


def attribute(tenant: Tenant, peer_ip: str, certificate_names: tuple[str, ...] | None,
              tls_version: str | None) -> Attribution:
    """Match a certificate connector (TLS 1.2+ with a client certificate) first, then an IP one."""
    if certificate_names:
        for connector in tenant.connectors:
            if connector.matches_certificate(certificate_names):
                if tls_version not in MODERN_TLS_VERSIONS:
                    return Attribution(None, f"certificate matches {connector.name!r} but TLS "
                                             f"{tls_version} is below 1.2")
                return Attribution(connector, f"client certificate matches {connector.name!r}")
    for connector in tenant.connectors:
        if connector.matches_ip(peer_ip):
            return Attribution(connector, f"source address {peer_ip} is in {connector.name!r}")
    if certificate_names:
        return Attribution(None, "client certificate "
                                 f"{', '.join(certificate_names)} matches no connector")
    return Attribution(None, f"source address {peer_ip} is in no connector")


def mx_recipient_refusal(
    tenant: Tenant,
    attribution: Attribution,
    mail_from: str,
    recipient: str,
    presented_certificate: bool,
) -> Reply | None:
    """The MX's answer to RCPT TO, or None to accept it.

    Internal recipients: RejectDirectSend (5.7.68) for anonymous mail from an accepted domain,
    directory-based edge blocking (5.4.1) for addresses without a mailbox. External recipients
    need a matching connector. Without one, mail whose sender domain belongs to the tenant (or
    that presented a client certificate) is a failed tenant attribution, 5.7.64; anything else
    is an anonymous relay attempt, 5.7.54.
    """
    kind = classify_recipient(tenant, recipient)
    sender_accepted = bool(mail_from) and tenant.is_accepted(mail_from)
    if kind != "external":
        if not attribution.is_relay and tenant.org.reject_direct_send and sender_accepted:
            return R.DIRECT_SEND_REJECTED
        if kind == "unknown-internal":
            return R.RECIPIENT_REJECTED
        return None
    if attribution.is_relay:
        return None if sender_accepted else R.RELAY_DENIED_CONNECTOR
    if sender_accepted or presented_certificate:
        return R.RELAY_DENIED_CONNECTOR
    return R.RELAY_NOT_ALLOWED


def mx_folder(kind: RecipientKind, attribution: Attribution, spf_result: str) -> Folder:
    """External mail leaves through Outbound; anonymous mail that does not pass SPF goes to Junk."""
    if kind == "external":
        return "Outbound"
    if not attribution.is_relay and spf_result != "pass":
        return "Junk"
    return "Inbox"
