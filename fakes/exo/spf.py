"""SPF (RFC 7208) evaluated against the lab zone: no resolver, the zone is the whole world.

``check_host(zone, ip, domain)`` returns pass, fail, softfail, neutral, none, permerror or
temperror. A domain outside the zone has no SPF record here: ``none``.
"""

from __future__ import annotations

import ipaddress

from .zone import Zone

QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
MAX_LOOKUPS = 10


class _PermError(Exception):
    pass


def check_host(zone: Zone, ip: str, domain: str) -> str:
    try:
        return _check(zone, ipaddress.ip_address(ip), domain.lower(), [0])
    except _PermError:
        return "permerror"
    except ValueError:
        return "permerror"


def _record(zone: Zone, domain: str) -> str | None:
    records = [t for t in zone.txt(domain) if t.lower().startswith("v=spf1 ") or t.lower() == "v=spf1"]
    if len(records) > 1:
        raise _PermError("more than one SPF record")
    return records[0] if records else None


def _addresses(zone: Zone, name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    answer = zone.lookup(name, "ANY")
    return [ipaddress.ip_address(v) for t, v in answer.records if t in ("A", "AAAA")]


def _count(lookups: list[int]) -> None:
    lookups[0] += 1
    if lookups[0] > MAX_LOOKUPS:
        raise _PermError("too many DNS lookups")


def _check(zone: Zone, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, domain: str,
           lookups: list[int]) -> str:
    record = _record(zone, domain)
    if record is None:
        return "none"
    redirect = None
    for term in record.split()[1:]:
        if term.lower().startswith("redirect="):
            redirect = term.split("=", 1)[1]
            continue
        if "=" in term:  # other modifiers (exp=) change nothing here
            continue
        qualifier = QUALIFIERS.get(term[0])
        if qualifier:
            term = term[1:]
        else:
            qualifier = "pass"
        name, _, arg = term.partition(":")
        name, _, cidr = name.partition("/")
        name = name.lower()
        if name == "all":
            return qualifier
        if name in ("ip4", "ip6"):
            network = ipaddress.ip_network(arg, strict=False)
            if ip.version == network.version and ip in network:
                return qualifier
        elif name == "include":
            _count(lookups)
            result = _check(zone, ip, arg.lower(), lookups)
            if result == "pass":
                return qualifier
            if result in ("none", "permerror"):
                raise _PermError(f"include:{arg} has no usable SPF record")
        elif name == "a":
            _count(lookups)
            target = (arg or domain).lower()
            if ip in _addresses(zone, target):
                return qualifier
        elif name == "mx":
            _count(lookups)
            target = (arg or domain).lower()
            for _, value in zone.lookup(target, "MX").records:
                if ip in _addresses(zone, value.split()[-1]):
                    return qualifier
        else:
            raise _PermError(f"unknown mechanism {name!r}")
    if redirect:
        _count(lookups)
        result = _check(zone, ip, redirect.lower(), lookups)
        return "permerror" if result == "none" else result
    return "neutral"
