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
import re
from dataclasses import dataclass
from typing import Any

from .tenant import Mailbox, Tenant

EXTERNAL = "partner@example.org"  # RFC 2606: a domain outside every tenant
_PLACEHOLDER = re.compile(r"\{([a-z_0-9]+)\}")
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
    "spf_source": "address of this host in its SPF record to send direct send from (dns.spf_ip4)",
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
        found.update(_PLACEHOLDER.findall(data))
    elif isinstance(data, dict):
        for key, value in data.items():
            found |= placeholders_in(key) | placeholders_in(value)
    elif isinstance(data, list | tuple):
        for item in data:
            found |= placeholders_in(item)
    return found


class MissingRole(LookupError):
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
        return _PLACEHOLDER.sub(fill, data)
    if isinstance(data, dict):
        return {cast(key, roles): cast(value, roles) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [cast(item, roles) for item in data]
    return data


def _loopback_in(networks: tuple[Any, ...]) -> str | None:
    """The first loopback host address in ``networks`` (a device of this host can send from it)."""
    for net in networks:
        if net.version == 4 and net.is_loopback:
            return str(net.network_address if net.prefixlen == 32 else next(net.hosts()))
    return None


def _listed(tenant: Tenant, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    nets = [*tenant.dns.spf_ip4, *(n for c in tenant.connectors for n in c.sender_ip_ranges)]
    return any(ip in net for net in nets)


def roles(tenant: Tenant) -> Roles:
    lab = tenant.lab
    with_password = [box for box in tenant.mailboxes if box.password]
    able = [box for box in with_password if tenant.smtp_auth_enabled(box)]
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
        (a for c in tenant.connectors if (a := _loopback_in(c.sender_ip_ranges))), None)
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
        spf_source=lab.spf_source or (_loopback_in(tenant.dns.spf_ip4) if tenant.dns.spf else None),
        ip_connector_source=ip_connector,
        unlisted_source=unlisted,
        device_app=next((app.client_id for app in tenant.apps
                         if not app.secret and not app.disabled and "SMTP.Send" in app.delegated_scopes), None),
        service_app=service,
        app_mailbox=next((box.address for box in tenant.mailboxes if service and service in box.apps), None),
        non_app_mailbox=next((box.address for box in tenant.mailboxes if service and service not in box.apps), None),
    )
