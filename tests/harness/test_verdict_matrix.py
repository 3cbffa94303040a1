"""The verdict matrix: every catalog case against every reference profile, over real sockets.

Every case must be passed by a conformant profile and failed by at least one faulty profile
(where a fault exists), so no check is one that cannot fail; and each fault must be caught by
the case written for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.reference import PROFILES, ReferenceSender
from harness.runner import Runner, Verdict
from harness.scenario import load_catalog

CATALOG = load_catalog(Path(__file__).resolve().parents[2] / "scenarios")
NOT_PASSED = {Verdict.FAIL, Verdict.NON_STRICT, Verdict.INFO}
# Cases about the edge itself, which no sender behaviour can fail.
NO_FAULT_POSSIBLE: set[str] = set()
# Each deliberate fault, and the case that exists to catch it.
CAUGHT_BY = {
    "implicit-tls-465": "submission/port-587-not-465",
    "tls10-only": "submission/legacy-tls-refused",
    "tls12-max": "submission/tls-1.3",
    "no-starttls": "submission/starttls-before-auth",
    "auth-plain": "submission/auth-login-or-xoauth2",
    "basic-only": "submission/xoauth2-when-basic-auth-disabled",
    "no-verify": "submission/certificate-verified",
    "send-as-other": "submission/sender-is-the-mailbox",
    "ip-literal": "submission/dns-name-not-ip",
    "no-retry": "submission/dropped-connection-retried",
    "retry-storm": "submission/wrong-credentials-no-storm",
    "bare-lf": "submission/message-well-formed",
    "direct-send-ip-literal": "direct-send/mx-by-name-port-25-no-auth",
    "direct-send-auth": "direct-send/mx-by-name-port-25-no-auth",
    "direct-send-storm": "direct-send/external-recipient-refused",
    "direct-send-no-retry": "direct-send/transient-retried",
    "relay-unlisted-ip": "relay/ip-connector-relays-externally",
    "relay-storm": "relay/ip-not-in-connector-refused",
    "relay-no-retry": "relay/transient-failure-retried",
    "relay-cert-tls11": "relay/certificate-connector-tls-1.2",
    "relay-cert-storm": "relay/wrong-certificate-domain-refused",
}


@pytest.fixture(scope="module")
def matrix(exo_edge) -> dict[tuple[str, str], Verdict]:
    from harness.pytest_plugin import reset

    reset(exo_edge)
    verdicts = {}
    for name, profile in PROFILES.items():
        runner = Runner(exo_edge, ReferenceSender(profile))
        for scenario in CATALOG:
            result = runner.run(scenario)
            verdicts[(name, scenario.id)] = result.verdict
            assert result.verdict != Verdict.ERROR, (name, scenario.id, result.reason)
    reset(exo_edge)
    return verdicts


def test_conformant_profiles_pass_every_case_of_their_option(matrix):
    for name, profile in PROFILES.items():
        if not profile.conformant:
            continue
        for scenario in CATALOG:
            verdict = matrix[(name, scenario.id)]
            assert verdict in (Verdict.PASS, Verdict.SKIP), (name, scenario.id, verdict)


def test_every_case_is_passed_by_some_profile(matrix):
    for scenario in CATALOG:
        assert any(matrix[(name, scenario.id)] == Verdict.PASS for name in PROFILES), scenario.id


def test_every_case_is_failed_by_some_faulty_profile(matrix):
    for scenario in CATALOG:
        if scenario.id in NO_FAULT_POSSIBLE:
            continue
        failing = [name for name, p in PROFILES.items() if not p.conformant
                   and matrix[(name, scenario.id)] in NOT_PASSED]
        assert failing, f"{scenario.id}: no faulty profile fails it; its checks cannot fail"


@pytest.mark.parametrize("profile", sorted(CAUGHT_BY))
def test_each_fault_is_caught_by_its_case(matrix, profile):
    assert matrix[(profile, CAUGHT_BY[profile])] in NOT_PASSED


def test_every_faulty_profile_is_named_here():
    assert {name for name, p in PROFILES.items() if not p.conformant} == set(CAUGHT_BY)
