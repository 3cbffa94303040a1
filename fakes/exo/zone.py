"""The DNS a lab device sees: what follows from the tenant and the addresses the edge listens on.

- A (and AAAA) for smtp.office365.com, smtp-legacy.office365.com and the tenant MX host;
- MX for each accepted domain, pointing at the MX host;
- TXT SPF for each accepted domain (``v=spf1 ip4:... include:spf.protection.outlook.com ~all``),
  absent when the tenant says ``dns.spf: false``;
- spf.protection.outlook.com itself, so that a resolver can follow the include.

The zone is authoritative for the accepted domains, office365.com and protection.outlook.com:
a name under them that is not listed does not exist (NXDOMAIN); any other name is not ours
(REFUSED), so the lab server is never a resolver for anyone.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .names import IDENTITY_NAMES, SUBMISSION_NAMES
from .tenant import Tenant

# Exchange Online Protection's published ranges (the include's real content, abridged).
EOP_SPF = ("v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/14 ip4:104.47.0.0/17 "
           "ip6:2a01:111:f400::/48 ip6:2a01:111:f403::/49 -all")
APEXES = ("office365.com", "protection.outlook.com", "microsoftonline.com", "microsoft.com")
TTL = 300


@dataclass(frozen=True)
class Answer:
    """``rcode`` is NOERROR, NXDOMAIN or REFUSED; ``records`` are (type, value) pairs."""

    rcode: str
    records: tuple[tuple[str, str], ...] = ()


@dataclass
class Zone:
    apexes: tuple[str, ...]
    records: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def add(self, name: str, rtype: str, value: str) -> None:
        self.records.setdefault(name.lower().rstrip("."), []).append((rtype, value))

    def is_ours(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        return any(name == apex or name.endswith("." + apex) for apex in self.apexes)

    def lookup(self, name: str, rtype: str) -> Answer:
        name = name.lower().rstrip(".")
        if not self.is_ours(name):
            return Answer("REFUSED")
        found = self.records.get(name)
        if found is None:
            return Answer("NXDOMAIN")
        return Answer("NOERROR", tuple(r for r in found if rtype in (r[0], "ANY")))

    def txt(self, name: str) -> list[str]:
        return [value for rtype, value in self.lookup(name, "TXT").records if rtype == "TXT"]


def spf_record(tenant: Tenant) -> str:
    mechanisms = [f"ip4:{net.with_prefixlen if net.prefixlen < 32 else net.network_address}"
                  for net in tenant.dns.spf_ip4]
    return " ".join(["v=spf1", *mechanisms, "include:spf.protection.outlook.com", tenant.dns.spf_all])


def build_zone(tenant: Tenant, addresses: list[str], by_name: dict[str, str] | None = None) -> Zone:
    """The zone for ``tenant`` with the edge's names resolving to ``addresses``, or each name in
    ``by_name`` to its own address (a lab with one address per Microsoft host)."""
    zone = Zone(apexes=(*tenant.accepted_domains, *APEXES))
    by_name = by_name or {}
    for name in (*SUBMISSION_NAMES, *IDENTITY_NAMES, tenant.mx_host):
        for address in [by_name[name]] if name in by_name else addresses:
            rtype = "AAAA" if ipaddress.ip_address(address).version == 6 else "A"
            zone.add(name, rtype, address)
    for domain in tenant.accepted_domains:
        zone.add(domain, "MX", f"0 {tenant.mx_host}")
        if tenant.dns.spf:
            zone.add(domain, "TXT", spf_record(tenant))
    zone.add("spf.protection.outlook.com", "TXT", EOP_SPF)
    return zone
