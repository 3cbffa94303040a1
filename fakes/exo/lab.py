"""The parts a harness casts from a tenant: who submits, who receives, where a device sends from.

``roles(tenant)`` names every address a conformance run needs, from the tenant's optional ``lab:``
block or, where that says nothing, by rule from the tenant itself (the first mailbox with a
password submits, the next mailbox receives, the SPF record and the connectors say which
addresses direct send and relay come from). A role the tenant cannot fill is ``None``, with the
reason in ``missing``; a case that needs it is skipped with that reason, never run against
made-up data. Scenario files name roles as ``{internal}``, ``{submitter}`` and so on.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import ExoEdgeError
from .names import PLACEHOLDER
from .tenant import Mailbox, Tenant

EXTERNAL = "partner@example.org"  # RFC 2606: a domain outside every tenant
# Loopback addresses tried, in order, for a source in no connector and no SPF record.
_SPARE_SOURCES = tuple(f"127.0.0.{n}" for n in range(200, 255))

ROLE_DESCRIPTIONS = {  # each reads after "the tenant has no"
    "domain": "accepted domain",
    "mx_host": "MX host",
    "submitter": "mailbox with a password to submit with (lab.submitter)",
    "send_as": "address the submitter may send as (lab.send_as, or the submitter's send_as)",
    "foreign_sender": "address of its own that the submitter may not send as (lab.foreign_sender)",
    "internal": "second mailbox to receive mail (lab.internal)",
    "internal_2": "third mailbox to receive mail (lab.internal_2)",
    "external": "recipient outside the tenant (lab.external)",
    "mx_sender": "sender address for direct send and relay (lab.mx_sender)",
    "certificate_domain": "certificate connector (connectors[].certificate_domain)",
    "spf_source": "address of this host in its SPF record and in no connector, to send direct send from "
                  "(dns.spf_ip4)",
    "ip_connector_source": "address of this host in an IP connector (connectors[].sender_ip_ranges)",
    "unlisted_source": "address of this host outside every connector and the SPF record (lab.unlisted_source)",
    "device_app": "app a device signs in as with a device code (apps[] with SMTP.Send and no secret)",
    "service_app": "app that sends app-only (apps[] with a secret and send_as_app)",
    "app_mailbox": "mailbox that grants the service app FullAccess (mailboxes[].apps)",
    "non_app_mailbox": "mailbox that does not grant the service app FullAccess",
}
ROLE_NAMES = frozenset(ROLE_DESCRIPTIONS)


@dataclass(frozen=True)
class Roles:
    domain: str
    mx_host: str
    submitter: Mailbox | None
    send_as: str | None
    foreign_sender: str | None
    internal: str | None
    internal_2: str | None
    external: str
    mx_sender: str
    certificate_domain: str | None
    spf_source: str | None
    ip_connector_source: str | None
    unlisted_source: str | None
    device_app: str | None
    service_app: str | None
    app_mailbox: str | None
    non_app_mailbox: str | None

    def value(self, name: str) -> str | None:
        if name not in ROLE_NAMES:
            raise KeyError(name)
        value = getattr(self, name)
        return value.address if isinstance(value, Mailbox) else value

    def placeholders(self) -> dict[str, str | None]:
        return {name: self.value(name) for name in sorted(ROLE_NAMES)}


def placeholders_in(data: Any) -> set[str]:
    """Every ``{role}`` named in strings (and mapping keys) of ``data``."""
    found: set[str] = set()
    if isinstance(data, str):
        found.update(PLACEHOLDER.findall(data))
    elif isinstance(data, dict):
        for key, value in data.items():
            found |= placeholders_in(key) | placeholders_in(value)
    elif isinstance(data, list | tuple):
        for item in data:
            found |= placeholders_in(item)
    return found


class MissingRole(ExoEdgeError, LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"the tenant has no {ROLE_DESCRIPTIONS.get(name, name)}")


def cast(data: Any, roles: Roles) -> Any:
    """``data`` with every ``{role}`` replaced by the tenant's address; ``MissingRole`` when the
    tenant has none for a role it names."""
    if isinstance(data, str):
        def fill(match: re.Match[str]) -> str:
            value = roles.value(match[1])
            if value is None:
                raise MissingRole(match[1])
            return value
        return PLACEHOLDER.sub(fill, data)
    if isinstance(data, dict):
        return {cast(key, roles): cast(value, roles) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [cast(item, roles) for item in data]
    return data


def _loopback_hosts(networks: tuple[Any, ...], limit: int = 256) -> Iterator[str]:
    """Loopback host addresses in ``networks``, the first ``limit`` of each (a device of this host
    can send from any of them)."""
    for net in networks:
        if net.version == 4 and net.is_loopback:
            hosts = (net.network_address,) if net.prefixlen == 32 else itertools.islice(net.hosts(), limit)
            yield from (str(host) for host in hosts)


def _in_connector(tenant: Tenant, address: str) -> bool:
    return any(c.matches_ip(address) for c in tenant.connectors)


def _listed(tenant: Tenant, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in net for net in tenant.dns.spf_ip4) or _in_connector(tenant, address)


def roles(tenant: Tenant) -> Roles:
    lab = tenant.lab
    with_password = [box for box in tenant.mailboxes if box.password]
    able = [box for box in with_password if tenant.smtp_auth_enabled(box)]  # preferred: they can submit
    submitter = tenant.mailbox(lab.submitter) if lab.submitter else next(iter(able or with_password), None)
    others = [box.address for box in tenant.mailboxes if submitter is None or box.address != submitter.address]
    internal = lab.internal or (others[0] if others else None)
    internal_2 = lab.internal_2 or next((a for a in others if a != internal), None)
    domain = tenant.accepted_domains[0]
    send_as = lab.send_as or (submitter.send_as[0] if submitter and submitter.send_as else None)
    foreign = lab.foreign_sender
    if foreign is None and submitter is not None:
        foreign = next((f"{name}@{domain}" for name in ("ceo", "finance", "ceo-office")
                        if not tenant.may_send_as(submitter, f"{name}@{domain}")), None)
    certificate = next((c.certificate_domain for c in tenant.connectors if c.certificate_domain), None)
    ip_connector = lab.ip_connector_source or next(
        (a for c in tenant.connectors for a in _loopback_hosts(c.sender_ip_ranges)), None)
    # direct send comes from the SPF record but from no connector's range (or the MX would relay)
    spf_source = lab.spf_source or (next((a for a in _loopback_hosts(tenant.dns.spf_ip4)
                                          if not _in_connector(tenant, a)), None) if tenant.dns.spf else None)
    unlisted = lab.unlisted_source or next((a for a in _SPARE_SOURCES if not _listed(tenant, a)), None)
    service = next((app.client_id for app in tenant.apps if app.secret and app.send_as_app and not app.disabled),
                   None)
    return Roles(
        domain=domain,
        mx_host=tenant.mx_host,
        submitter=submitter,
        send_as=send_as,
        foreign_sender=foreign,
        internal=internal,
        internal_2=internal_2,
        external=lab.external or EXTERNAL,
        mx_sender=lab.mx_sender or (submitter.address if submitter else f"printer@{domain}"),
        # a wildcard connector (*.contoso.com) is matched by any name under it
        certificate_domain=f"relay.{certificate[2:]}" if certificate and certificate.startswith("*.")
        else certificate,
        spf_source=spf_source,
        ip_connector_source=ip_connector,
        unlisted_source=unlisted,
        device_app=next((app.client_id for app in tenant.apps
                         if not app.secret and not app.disabled and "SMTP.Send" in app.delegated_scopes), None),
        service_app=service,
        app_mailbox=next((box.address for box in sorted(tenant.mailboxes, key=lambda b: not tenant.smtp_auth_enabled(b))
                          if service and service in box.apps), None),
        non_app_mailbox=next((box.address for box in tenant.mailboxes if service and service not in box.apps), None),
    )


# -- what a case needs of the tenant ---------------------------------------------------------
#
# A case names what it needs (``needs:`` in its file, else what its option always needs); each
# need reads the tenant as the case will run it (its overrides applied) and, when the tenant
# cannot host the case, says which setting prevents it and how an administrator changes it. The
# case is then SKIP with that reason, never run to a verdict the tenant decided.

NEEDS = {
    "smtp_auth": "SMTP AUTH on for the mailbox that signs in",
    "basic_auth": "basic authentication for SMTP AUTH not removed",
    "direct_send": "direct send not rejected (RejectDirectSend off)",
    "mfa_not_required": "the mailbox that signs in not yet under a multi-factor requirement",
    "refresh_outlives_access": "refresh tokens that outlive access tokens (and the case's clock jump)",
    "device_code_time": "time to sign in with a device code (its lifetime over a few polling intervals)",
    "message_fits": "a message size limit the case's message fits in",
    "daily_room": "room in the daily recipient limit for every recipient the case sends to",
}
OPTION_NEEDS = {"submission": ("smtp_auth", "message_fits", "daily_room"),
                "direct-send": ("direct_send", "message_fits", "daily_room"),
                "relay": ("message_fits", "daily_room"), "any": ("message_fits", "daily_room")}
SIGN_IN_NEEDS = {"oauth": ("device_code_time",)}


@dataclass(frozen=True)
class Demand:
    """What one case asks of the tenant: the mailbox that signs in (if any), and its traffic."""

    user: str | None = None
    recipients: int = 1  # recipients the case sends to, over all its messages
    message_size: int = 0  # octets of body the case adds
    clock_jump: float = 0.0  # seconds the service's clock moves ahead mid-case


def _smtp_auth(tenant: Tenant, demand: Demand) -> str | None:
    box = tenant.mailbox(demand.user) if demand.user else None
    if box is None or tenant.smtp_auth_enabled(box):
        return None
    fix = f"Set-CASMailbox -Identity {box.address} -SmtpClientAuthenticationDisabled $false"
    if box.smtp_client_authentication == "disabled":
        return (f"SMTP AUTH is off for {box.address} (mailboxes[].smtp_client_authentication: disabled); "
                f"an administrator turns it on with {fix}")
    return (f"SMTP AUTH is off organisation-wide (org.smtp_client_authentication_disabled: true) and no mailbox "
            f"with a password has it on; an administrator turns it on for the device's mailbox with {fix}")


def _basic_auth(tenant: Tenant, demand: Demand) -> str | None:
    if tenant.org.basic_auth != "removed":
        return None
    return ("basic authentication for SMTP AUTH is removed (org.basic_auth: removed): a password is refused "
            "with 550 5.7.30 before it is checked, so a wrong one cannot be told apart; sign in with OAuth")


def _direct_send(tenant: Tenant, demand: Demand) -> str | None:
    if not tenant.org.reject_direct_send:
        return None
    return ("the tenant rejects direct send (org.reject_direct_send: true), as Microsoft advises for tenants "
            "that do not use it; an administrator allows it with Set-OrganizationConfig -RejectDirectSend $false")


def _mfa_not_required(tenant: Tenant, demand: Demand) -> str | None:
    box = tenant.mailbox(demand.user) if demand.user else None
    if box is None or not box.mfa_required:
        return None
    return (f"Conditional Access already requires multi-factor authentication for {box.address} "
            "(mailboxes[].mfa_required: true): the case adds that requirement mid-run, so nothing would change")


def _refresh_outlives_access(tenant: Tenant, demand: Demand) -> str | None:
    identity = tenant.identity
    needed = max(longest_access_token(tenant), demand.clock_jump) + CLOCK_MARGIN
    if identity.refresh_token_lifetime > needed:
        return None
    return (f"refresh tokens live {identity.refresh_token_lifetime} s (identity.refresh_token_lifetime), no longer "
            f"than the {needed:g} s the case needs them to outlive its access tokens: a refresh cannot be exercised")


def _device_code_time(tenant: Tenant, demand: Demand) -> str | None:
    identity = tenant.identity
    if identity.device_code_lifetime > 3 * identity.polling_interval + CLOCK_MARGIN:
        return None
    return (f"device codes live {identity.device_code_lifetime} s (identity.device_code_lifetime) with a polling "
            f"interval of {identity.polling_interval} s: no time for a person to sign in (Microsoft's: 900 s, 5 s)")


def _message_fits(tenant: Tenant, demand: Demand) -> str | None:
    limit = tenant.limits.max_message_size
    if limit >= demand.message_size + MESSAGE_ROOM:
        return None
    return (f"limits.max_message_size={limit} leaves no room for the case's message ({demand.message_size} octets "
            f"of body and its headers); an administrator raises it with Set-Mailbox -MaxSendSize")


def _daily_room(tenant: Tenant, demand: Demand) -> str | None:
    limit = tenant.limits.recipients_per_day
    if limit >= demand.recipients:
        return None
    return (f"limits.recipients_per_day={limit} is below the {demand.recipients} recipients the case sends to: "
            "the limit itself would refuse it")


CLOCK_MARGIN = 60.0  # seconds a clock jump goes past a token's lifetime, and other lifetimes must outlast
MESSAGE_ROOM = 16 * 1024  # octets of headers and structure around a case's body
_UNMET = {"smtp_auth": _smtp_auth, "basic_auth": _basic_auth, "direct_send": _direct_send,
          "mfa_not_required": _mfa_not_required, "refresh_outlives_access": _refresh_outlives_access,
          "device_code_time": _device_code_time, "message_fits": _message_fits, "daily_room": _daily_room}


def unmet(needs: tuple[str, ...] | list[str], tenant: Tenant, demand: Demand) -> str | None:
    """Why ``tenant`` cannot host a case with these needs (the first need it fails), or None."""
    for need in needs:
        reason = _UNMET[need](tenant, demand)
        if reason is not None:
            return reason
    return None


def longest_access_token(tenant: Tenant) -> int:
    identity = tenant.identity
    return identity.access_token_lifetime_max or identity.access_token_lifetime


def past_token_lifetime(tenant: Tenant) -> float:
    """A clock jump that expires every access token the tenant's identity platform issues (the
    longest of its range)."""
    return longest_access_token(tenant) + CLOCK_MARGIN
