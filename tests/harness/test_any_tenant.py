"""Verdicts that hold for every tenant a customer can have: the settings real tenants differ in
make a case SKIP with the setting and the administrator's command, or take their numbers from the
tenant; never a FAIL or ERROR for a conformant sender. And generated tenants over the whole schema
(``tests/tenants.py``): ``EXO_GENERATED_TENANTS`` of them (CI: a few; ``tox -e tenants``: many), on
which the faulty senders are still caught by the case made for each (or it is skipped)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from fakes.edge import Edge, EdgeThread
from fakes.exo.tenant import Tenant, default_tenant
from harness.reference import PROFILES, ReferenceSender
from harness.runner import CaseResult, Runner, Verdict
from harness.scenario import Scenario, load_catalog
from tests.harness.test_verdict_matrix import CAUGHT_BY
from tests.tenants import tenants

CATALOG = {case.id: case for case in load_catalog(Path(__file__).resolve().parents[2] / "scenarios")}
CONFORMANT = sorted(name for name, profile in PROFILES.items() if profile.conformant)
CONTOSO = default_tenant()
# why a case may be skipped: another option's or sign-in's case, or one the tenant cannot host
TENANT_REASONS = ("not applicable: the tenant has no ", "the tenant cannot host it: ")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Edge]:
    with EdgeThread(Edge(CONTOSO, state_dir=tmp_path_factory.mktemp("any-tenant"))) as edge:
        yield edge


def run(edge: Edge, tenant: Tenant, profile: str, *case_ids: str) -> dict[str, CaseResult]:
    runner = Runner(edge, ReferenceSender(PROFILES[profile]), tenant=tenant)
    cases: list[Scenario] = [CATALOG[i] for i in case_ids] if case_ids else list(CATALOG.values())
    return {case.id: runner.run(case) for case in cases}


def contoso(**overrides: Any) -> Tenant:
    return CONTOSO.with_overrides(overrides)


def test_smtp_auth_off_org_wide_skips_submission_with_the_admins_command(lab):
    tenant = contoso(mailboxes={"scanner@contoso.com": {"smtp_client_authentication": "inherit"}})
    for profile in ("submission", "oauth-device"):
        results = run(lab, tenant, profile)
        ran = [r for r in results.values() if r.verdict != Verdict.SKIP]
        assert ran == [] or [r.scenario.id for r in ran] == ["submission/smtp-auth-disabled"], \
            [(r.scenario.id, r.verdict, r.reason) for r in ran]
        reasons = {r.reason for r in results.values() if "SMTP AUTH is off" in r.reason}
        assert reasons, profile
        assert all("Set-CASMailbox -Identity scanner@contoso.com -SmtpClientAuthenticationDisabled $false" in reason
                   for reason in reasons)


def test_reject_direct_send_skips_direct_send_and_says_how_to_allow_it(lab):
    results = run(lab, contoso(org={"reject_direct_send": True}), "direct-send")
    skipped = {cid: r.reason for cid, r in results.items() if cid.startswith("direct-send/")
               and r.verdict == Verdict.SKIP}
    assert set(skipped) == {cid for cid in CATALOG if cid.startswith("direct-send/")} - {
        "direct-send/reject-direct-send"}
    assert all("Set-OrganizationConfig -RejectDirectSend $false" in why for why in skipped.values())
    assert results["direct-send/reject-direct-send"].verdict == Verdict.PASS


def test_basic_auth_removed_skips_the_wrong_password_case_and_the_rest_still_pass(lab):
    results = run(lab, contoso(org={"basic_auth": "removed"}), "submission")
    wrong = results["submission/wrong-credentials-no-storm"]
    assert wrong.verdict == Verdict.SKIP and "org.basic_auth: removed" in wrong.reason
    assert not [cid for cid, r in results.items() if r.verdict in (Verdict.FAIL, Verdict.ERROR)]


@pytest.mark.parametrize("lifetimes", [{"access_token_lifetime": 5400}, {"access_token_lifetime": 600},
                                       {"access_token_lifetime": 3600, "access_token_lifetime_max": 5400}])
def test_clock_jumps_come_from_the_tenants_token_lifetime(lab, lifetimes):
    """Entra's access tokens live 60 to 90 minutes; a jump of a fixed hour left a 90-minute token
    valid, and the conformant device was blamed."""
    tenant = contoso(identity=lifetimes)
    results = run(lab, tenant, "oauth-device", "oauth/expired-token-refused-then-refreshed",
                  "oauth/app-disabled-stops", "oauth/revoked-sign-in-no-storm")
    assert {cid: r.verdict for cid, r in results.items()} == dict.fromkeys(results, Verdict.PASS), \
        {cid: r.reason for cid, r in results.items()}


def test_a_direct_send_source_is_outside_every_connector_even_when_spf_lists_one(lab):
    tenant = contoso(dns={"spf_ip4": ["127.0.0.20/32", "127.0.0.10/32"]})  # the connector's address first
    results = run(lab, tenant, "direct-send", "direct-send/internal-recipient-to-inbox",
                  "direct-send/mx-by-name-port-25-no-auth")
    assert {r.verdict for r in results.values()} == {Verdict.PASS}, {c: r.reason for c, r in results.items()}


def test_one_recipient_a_message_a_sender_that_splits_the_transaction_passes(lab):
    results = run(lab, contoso(limits={"max_recipients_per_message": 1}), "submission",
                  "submission/internal-and-external-recipients")
    result = results["submission/internal-and-external-recipients"]
    assert result.verdict == Verdict.PASS, result.reason
    assert any("452 4.5.3" in line for session in result.transcript for line in session["lines"])


def test_quota_cases_seed_the_tenants_own_limits(lab):
    tenant = contoso(limits={"messages_per_minute": 60, "recipients_per_day": 500})
    results = run(lab, tenant, "submission", "submission/over-30-messages-a-minute",
                  "submission/daily-recipient-limit")
    assert {r.verdict for r in results.values()} == {Verdict.PASS}, {c: r.reason for c, r in results.items()}


def test_long_names_and_quoted_addresses_run_end_to_end(lab):
    """A 63-octet label, a first domain whose MX label would pass 63 octets (the tenant names its
    MX host), ``+`` and ``'`` in addresses."""
    domain = "a" * 30 + "." + "b" * 30 + ".example"  # the MX label would be 69 octets
    tenant = Tenant.model_validate({
        "schema_version": 1, "tenant": "longnames", "accepted_domains": [domain, "l" * 63 + ".example"],
        "mx": "longnames-01.mail.protection.outlook.com",
        "org": {"smtp_client_authentication_disabled": False},
        "mailboxes": [{"address": f"scan+floor3@{domain}", "password": "Kopierer#Etage3"},
                      {"address": f"o'brien@{'l' * 63}.example"}],
        "connectors": [{"name": "printers", "sender_ip_ranges": ["127.0.3.0/24"]}],
        "dns": {"spf_ip4": ["127.0.4.0/24"]},
    })
    for profile in ("submission", "direct-send", "relay-ip"):
        results = run(lab, tenant, profile)
        wrong = {cid: f"{r.verdict}: {r.reason}" for cid, r in results.items()
                 if r.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.NON_STRICT)}
        assert not wrong, (profile, wrong)
        assert any(r.verdict == Verdict.PASS for r in results.values()), profile


# -- generated tenants --------------------------------------------------------------------------

GENERATED = int(os.environ.get("EXO_GENERATED_TENANTS", "3"))


def _acceptable(result: CaseResult) -> bool:
    """PASS; SKIP for another option, sign-in or a tenant reason; INFO for an info case."""
    if result.verdict == Verdict.PASS:
        return True
    if result.verdict == Verdict.SKIP:
        return True
    return result.verdict == Verdict.INFO and result.scenario.severity == "info" and result.exercised


@pytest.mark.timeout(60 + 150 * GENERATED)  # the catalog for seven senders, and the faulty ones, per tenant
@settings(max_examples=GENERATED, deadline=None, database=None, derandomize=True,
          phases=[Phase.generate],  # a failing tenant is shown as drawn: shrinking would rerun the catalog
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(tenant=tenants())
def test_conformant_senders_never_fail_or_error_on_a_generated_tenant(lab, tenant):
    wrong = {}
    for profile in CONFORMANT:
        for cid, result in run(lab, tenant, profile).items():
            if not _acceptable(result):
                wrong[profile, cid] = f"{result.verdict}: {result.reason}"
            if result.verdict == Verdict.SKIP and "case" not in result.reason.split(";")[0]:
                assert result.reason.startswith(TENANT_REASONS), result.reason
    assert not wrong, wrong
    # and each deliberate fault is still caught by the case made for it, or that case is skipped
    for profile, case_id, check in CAUGHT_BY:
        result = run(lab, tenant, profile, case_id)[case_id]
        if result.verdict == Verdict.SKIP:
            continue
        failed = {o.check for o in result.outcomes if o.failed}
        assert check in failed, (profile, case_id, result.verdict, result.reason)


def test_access_token_lifetimes_are_drawn_from_the_tenants_range(lab):
    tenant = contoso(identity={"access_token_lifetime": 3600, "access_token_lifetime_max": 5400})
    lab.reset(tenant)
    try:
        drawn = {lab.on_loop(lab.identity.access_lifetime) for _ in range(50)}
    finally:
        lab.reset(CONTOSO)
    assert min(drawn) >= 3600 and max(drawn) <= 5400 and len(drawn) > 1
