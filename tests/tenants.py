"""Valid tenants of every shape the schema allows, generated (Hypothesis), for the harness's laws:
the conformant reference senders never FAIL or ERROR, whatever the tenant.

``tenants()`` covers several accepted domains, subdomains, internationalized names (xn--),
63-octet labels and names near 253 octets (with the MX host named when Microsoft's rule would not
give a DNS name), ``+`` and ``'`` in addresses, org and mailbox SMTP AUTH settings, every basic auth
policy, RejectDirectSend, MFA, token lifetimes, every limit, IP connectors with IPv4 and IPv6 ranges
and certificate connectors (wildcards too), and SPF records that overlap the connectors. Every
tenant it draws validates: the strategy builds plain data and loads it as a tenant file would be.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import strategies as st

from fakes.exo.tenant import Tenant

_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
# internationalized labels, as Microsoft 365 takes them: in their A-label form
_IDN = [word.encode("idna").decode() for word in ("büro", "münchen", "société", "köln-süd", "日本")]


def _mostly(usual: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` three times in four (a customer's tenant is mostly Microsoft's defaults), else ``other``."""
    # the simplest draw (which Hypothesis tries first, and shrinks towards) is the usual tenant
    return st.integers(0, 3).flatmap(lambda n: other if n == 3 else st.just(usual))


def _label(max_size: int = 63) -> st.SearchStrategy[str]:
    inner = st.text(_LETTERS + "-", min_size=0, max_size=max(max_size - 2, 0))
    return st.one_of(
        st.sampled_from(_IDN),
        st.text(_LETTERS, min_size=1, max_size=1),
        st.builds(lambda a, mid, b: a + mid + b, st.sampled_from(_LETTERS), inner, st.sampled_from(_LETTERS)),
        st.just("l" * 63),  # the longest a label may be
    ).filter(lambda label: len(label) <= max_size and (label[2:4] != "--" or label.startswith("xn--")))


@st.composite
def _domain(draw: st.DrawFn) -> str:
    labels = draw(st.lists(_label(), min_size=1, max_size=3))
    top = draw(st.sampled_from(["com", "net", "de", "example", "co.uk", "xn--p1ai"]))
    name = ".".join([*labels, top])
    while len(name) > 253:  # a domain name has at most 253 octets
        labels = labels[1:]
        name = ".".join([*labels, top]) if labels else f"x.{top}"
    return name


_LOCAL = st.text(_LETTERS + ".+'_-", min_size=1, max_size=20).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)
_LOOPBACK_V4 = st.one_of(
    st.integers(2, 254).map(lambda n: f"127.0.0.{n}/32"),
    st.integers(0, 255).map(lambda n: f"127.0.{n}.0/24"),
    st.integers(0, 15).map(lambda n: f"127.0.1.{n * 16}/28"),
    st.just("127.0.0.0/8"),
)
_NETWORK = st.one_of(_LOOPBACK_V4, st.sampled_from(["::1/128", "2001:db8::/32", "fd00:1::/48"]))


@st.composite
def tenant_data(draw: st.DrawFn) -> dict[str, Any]:
    """A tenant file's data; ``Tenant.model_validate`` of it always succeeds."""
    first = draw(_domain())
    others = draw(st.lists(st.one_of(_domain(), st.just(f"mail.{first}"), st.just(f"eu.{first}")),
                           max_size=2, unique=True))
    domains = list(dict.fromkeys(d.lower() for d in [first, *others] if len(d) <= 253))
    data: dict[str, Any] = {"schema_version": 1, "tenant": draw(st.from_regex(r"[a-z0-9][a-z0-9-]{0,30}",
                                                                                  fullmatch=True)),
                            "accepted_domains": domains}
    if len(first.replace(".", "-")) > 63 or draw(st.booleans()) and draw(st.booleans()):
        tag = uuid.UUID(int=draw(st.integers(0, 2**32))).hex[:6]
        data["mx"] = f"{data['tenant']}-{tag}.mail.protection.outlook.com"

    apps = []
    if draw(_mostly(True, st.booleans())):  # a device that signs in with a device code
        apps.append({"client_id": str(uuid.UUID(int=draw(st.integers(1, 2**64)))), "name": "Generated device",
                     "disabled": draw(st.booleans()) and draw(st.booleans())})
    if draw(_mostly(True, st.booleans())):  # an app that sends app-only
        apps.append({"client_id": str(uuid.UUID(int=draw(st.integers(2**64, 2**65)))), "name": "Generated service",
                     "secret": draw(st.text(_LETTERS + "~.-_", min_size=8, max_size=40)),
                     "send_as_app": draw(_mostly(True, st.booleans()))})
    app_ids = [app["client_id"] for app in apps]

    addresses = draw(st.lists(st.tuples(_LOCAL, st.sampled_from(domains)), min_size=draw(_mostly(3, st.just(1))),
                              max_size=6,
                              unique_by=lambda pair: (pair[0].lower(), pair[1])))
    mailboxes = []
    for local, domain in addresses:
        box: dict[str, Any] = {"address": f"{local}@{domain}"}
        if len(local) > 64:
            continue
        if draw(_mostly(True, st.booleans())):
            # Entra's passwords: 8 to 256 characters
            box["password"] = draw(st.text(_LETTERS + "!#%-~ ", min_size=8, max_size=40))
        box["smtp_client_authentication"] = draw(_mostly("enabled", st.sampled_from(["disabled", "inherit"])))
        if draw(st.booleans()):
            box["send_as"] = [f"{draw(_LOCAL)}@{draw(st.sampled_from(domains))}"]
        if app_ids and draw(st.booleans()):
            box["apps"] = draw(st.lists(st.sampled_from(app_ids), min_size=1, unique=True))
        box["mfa_required"] = draw(st.booleans()) and draw(st.booleans())
        mailboxes.append(box)
    data["mailboxes"] = mailboxes
    data["apps"] = apps

    data["org"] = {"smtp_client_authentication_disabled": draw(st.booleans()),  # True: since 2020
                   "basic_auth": draw(_mostly("allowed", st.sampled_from(["disabled-by-default", "removed"]))),
                   "reject_direct_send": draw(st.booleans()),
                   "allow_legacy_tls_clients": draw(st.booleans())}
    data["limits"] = {
        "messages_per_minute": draw(_mostly(30, st.integers(1, 60))),
        "recipients_per_day": draw(_mostly(10_000, st.one_of(st.integers(1, 20), st.integers(20, 20_000)))),
        "concurrent_connections_per_mailbox": draw(_mostly(3, st.integers(1, 5))),
        "max_message_size": draw(_mostly(36_700_160, st.one_of(st.integers(1, 50_000),
                                                               st.integers(50_000, 150 * 2**20)))),
        "max_recipients_per_message": draw(_mostly(500, st.integers(1, 1000))),
        "max_header_size": draw(_mostly(256 * 1024, st.integers(1024, 512 * 1024))),
        "max_connections_per_source": draw(_mostly(20, st.integers(1, 40))),
    }
    connectors = []
    for i in range(draw(_mostly(2, st.integers(0, 3)))):
        if draw(st.booleans()):
            ranges = draw(st.lists(_NETWORK, min_size=1, max_size=3, unique=True))
            connectors.append({"name": f"by IP {i}", "sender_ip_ranges": ranges})
        else:
            domain = draw(st.sampled_from(domains))
            name = draw(st.sampled_from([f"relay.{domain}", f"*.{domain}", domain]))
            if len(name) <= 253:
                connectors.append({"name": f"by certificate {i}", "certificate_domain": name,
                                   "require_tls": draw(st.booleans())})
    data["connectors"] = connectors
    ip_ranges = [r for c in connectors for r in c.get("sender_ip_ranges", ()) if ":" not in r]
    spf = draw(st.lists(st.one_of(_LOOPBACK_V4, st.sampled_from(ip_ranges) if ip_ranges else _LOOPBACK_V4),
                        max_size=3, unique=True))
    data["dns"] = {"spf": draw(_mostly(True, st.just(False))), "spf_ip4": spf,
                   "spf_all": draw(st.sampled_from(["~all", "-all", "?all"]))}
    data["identity"] = {
        # Entra's default: a lifetime drawn between 60 and 90 minutes
        "access_token_lifetime": draw(_mostly(3599, st.one_of(st.integers(3600, 5400), st.integers(1, 3600)))),
        "access_token_lifetime_max": draw(_mostly(None, st.sampled_from([5400, 7200]))),
        "refresh_token_lifetime": draw(_mostly(90 * 86400, st.integers(1, 90 * 86400))),
        "device_code_lifetime": draw(_mostly(900, st.integers(1, 900))),
        "polling_interval": draw(_mostly(5, st.integers(1, 5))),
    }
    return data


def tenants() -> st.SearchStrategy[Tenant]:
    return tenant_data().map(lambda data: Tenant.model_validate(data))
