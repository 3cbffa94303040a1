"""SPF evaluation over the lab zone."""

from __future__ import annotations

import pytest

from fakes.exo.spf import check_host
from fakes.exo.tenant import default_tenant
from fakes.exo.zone import Zone, build_zone


@pytest.fixture
def zone() -> Zone:
    return build_zone(default_tenant(), ["127.0.0.1"])


@pytest.mark.parametrize(("ip", "result"), [
    ("127.0.0.10", "pass"), ("127.0.0.20", "pass"), ("127.0.0.11", "softfail"),
    ("40.92.1.1", "pass"),  # through include:spf.protection.outlook.com
    ("2a01:111:f400::1", "pass"), ("::1", "softfail"),
])
def test_contoso_spf(zone, ip, result):
    assert check_host(zone, ip, "contoso.com") == result


def test_a_domain_without_spf_is_none(zone):
    assert check_host(zone, "127.0.0.10", "example.org") == "none"


def test_mechanisms_and_modifiers():
    zone = Zone(apexes=("t.test",))
    zone.add("t.test", "TXT", "v=spf1 a mx -all")
    zone.add("t.test", "A", "127.0.0.5")
    zone.add("t.test", "MX", "0 mx.t.test")
    zone.add("mx.t.test", "A", "127.0.0.6")
    zone.add("r.t.test", "TXT", "v=spf1 redirect=t.test")
    zone.add("loop.t.test", "TXT", "v=spf1 include:loop.t.test -all")
    zone.add("two.t.test", "TXT", "v=spf1 -all")
    zone.add("two.t.test", "TXT", "v=spf1 +all")
    assert check_host(zone, "127.0.0.5", "t.test") == "pass"
    assert check_host(zone, "127.0.0.6", "t.test") == "pass"
    assert check_host(zone, "127.0.0.7", "t.test") == "fail"
    assert check_host(zone, "127.0.0.6", "r.t.test") == "pass"
    assert check_host(zone, "127.0.0.6", "loop.t.test") == "permerror"
    assert check_host(zone, "127.0.0.6", "two.t.test") == "permerror"
