"""The verdict matrix: every catalog case against every reference profile, over real sockets.

Every case must be passed by a conformant profile and failed by at least one faulty profile
(where a fault exists), so no check is one that cannot fail; and each fault must be caught by
the case written for it, by the check named for it, with the verdict its severity gives
(a "must" case FAILs). ``tox -e mutation`` disables each check in turn and shows this go red.
"""

from __future__ import annotations

import collections
from pathlib import Path

import msgspec
import pytest

from fakes.exo.observed import decode
from harness.checks import CHECKS
from harness.observation import Observation
from harness.reference import PROFILES, ReferenceSender
from harness.runner import SEVERITY_VERDICT, CaseResult, Runner, Verdict
from harness.scenario import load_catalog

# the matrix (every profile, every case) is built once, in the first test's setup: minutes, mostly
# the senders' own pace
pytestmark = pytest.mark.timeout(900)
CATALOG = load_catalog(Path(__file__).resolve().parents[2] / "scenarios")
NOT_PASSED = {Verdict.FAIL, Verdict.NON_STRICT, Verdict.INFO}
# Cases about the edge itself, which no sender behaviour can fail.
NO_FAULT_POSSIBLE: set[str] = set()
# Each deliberate fault: the case that exists to catch it, and the check of that case that must fail
# (a fault may be caught by more than one case).
CAUGHT_BY = [  # (profile, case, check)
    ("implicit-tls-465", "submission/port-587-not-465", "port"),
    ("tls10-only", "submission/legacy-tls-refused", "tls"),
    ("tls12-max", "submission/tls-1.3", "tls"),
    ("no-starttls", "submission/starttls-before-auth", "starttls_before_auth"),
    ("auth-plain", "submission/auth-login-or-xoauth2", "auth_mechanism"),
    ("basic-only", "submission/xoauth2-when-basic-auth-disabled", "auth_mechanism"),
    ("no-verify", "submission/certificate-verified", "certificate_verified"),
    ("send-as-other", "submission/sender-is-the-mailbox", "reply"),
    ("ip-literal", "submission/dns-name-not-ip", "dns_name"),
    ("no-retry", "submission/dropped-connection-retried", "retried_after_transient"),
    ("retry-storm", "submission/wrong-credentials-no-storm", "no_auth_storm"),
    ("bare-lf", "submission/message-well-formed", "well_formed"),
    ("oauth-wrong-scope", "oauth/device-code-then-xoauth2", "oauth_device_flow"),
    ("oauth-wrong-scope", "oauth/token-for-exchange-not-graph", "oauth_scope"),
    ("oauth-never-refreshes", "oauth/access-token-expires-mid-run", "oauth_refreshed"),
    ("oauth-refresh-loop", "oauth/revoked-sign-in-no-storm", "oauth_sign_in_again"),
    ("oauth-fast-poller", "oauth/polling-honours-interval", "oauth_polling_pace"),
    ("oauth-app-delegated-scope", "oauth/app-only-send-as-app", "oauth_app_only"),
    ("direct-send-ip-literal", "direct-send/mx-by-name-port-25-no-auth", "dns_name"),
    ("direct-send-auth", "direct-send/mx-by-name-port-25-no-auth", "no_auth"),
    ("direct-send-storm", "direct-send/external-recipient-refused", "no_retry_after_permanent"),
    ("direct-send-no-retry", "direct-send/transient-retried", "retried_after_transient"),
    ("direct-send-tls10-strict", "direct-send/legacy-tls-device-still-delivers", "stored"),
    ("relay-unlisted-ip", "relay/ip-connector-relays-externally", "stored"),
    ("relay-storm", "relay/ip-not-in-connector-refused", "no_retry_after_permanent"),
    ("relay-no-retry", "relay/transient-failure-retried", "retried_after_transient"),
    ("relay-cert-tls11", "relay/certificate-connector-tls-1.2", "tls"),
    ("relay-cert-storm", "relay/wrong-certificate-domain-refused", "no_retry_after_permanent"),
    ("oauth-refresh-loop", "oauth/app-disabled-stops", "oauth_stops_when_refused"),
    ("oauth-stale-refresh", "oauth/rotated-refresh-token-kept", "oauth_refresh_token_kept"),
    ("oauth-polls-through-errors", "oauth/public-client-flows-off-stops", "oauth_stops_when_refused"),
    ("oauth-ropc", "oauth/device-code-not-password", "oauth_no_password_grant"),
    ("oauth-common-authority", "oauth/tenant-authority-not-common", "oauth_tenant_authority"),
    ("impatient", "submission/tarpit-waited-out", "waits_for_replies"),
]


class _Keeping(Runner):
    """A runner that keeps what it observed of the last case (to judge it again, mutated)."""

    last: Observation | None = None

    def observe(self, mark: int, expected_host: str) -> Observation:
        self.last = super().observe(mark, expected_host)
        return self.last


OBSERVED: dict[tuple[str, str], Observation] = {}


@pytest.fixture(scope="module")
def results(exo_edge) -> dict[tuple[str, str], CaseResult]:
    from harness.pytest_plugin import reset

    reset(exo_edge)
    out = {}
    for name, profile in PROFILES.items():
        runner = _Keeping(exo_edge, ReferenceSender(profile))
        for scenario in CATALOG:
            runner.last = None
            result = runner.run(scenario)
            out[(name, scenario.id)] = result
            if runner.last is not None:
                OBSERVED[(name, scenario.id)] = runner.last
            assert result.verdict != Verdict.ERROR, (name, scenario.id, result.reason)
    reset(exo_edge)
    return out


def _free_form(value: object) -> bool:
    """Whether a value holds a mapping anywhere: what the vocabulary's types leave no room for."""
    if isinstance(value, dict):
        return True
    if isinstance(value, msgspec.Struct):
        return any(_free_form(getattr(value, name)) for name in value.__struct_fields__)
    if isinstance(value, list | tuple):
        return any(_free_form(item) for item in value)
    return False


def test_the_records_of_the_whole_catalog_read_back_as_typed_events(results, exo_edge):
    """Every line the edge wrote while every profile ran the whole catalog is one of the
    vocabulary's events (fakes/exo/observed.py), with no field left as a free-form mapping."""
    exo_edge.records.flush()
    kinds: collections.Counter[str] = collections.Counter()
    for number, line in enumerate(exo_edge.records.path.read_bytes().splitlines(), 1):
        event = decode(line)  # UnknownRecord, naming the field, for anything else
        assert not _free_form(event), f"records.jsonl:{number}: {line[:300]!r}"
        kinds[event.kind] += 1
    assert {"connect", "client_hello", "tls", "tls_failed", "command", "auth_response", "auth", "reply", "message",
            "stored", "fault", "attribution", "spf", "dns_query", "identity", "abandoned", "disconnect"} <= set(kinds)


@pytest.fixture(scope="module")
def matrix(results) -> dict[tuple[str, str], Verdict]:
    return {key: result.verdict for key, result in results.items()}


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


@pytest.mark.parametrize(("profile", "case_id", "check"), CAUGHT_BY)
def test_each_fault_is_caught_by_its_case_and_check_with_the_severitys_verdict(results, profile, case_id, check):
    result = results[(profile, case_id)]
    failed = [o.check for o in result.outcomes if o.failed]
    assert check in failed, (profile, case_id, result.reason)
    assert result.verdict == SEVERITY_VERDICT[result.scenario.severity], (profile, case_id, result.verdict)


def test_every_faulty_profile_is_named_here():
    assert {name for name, p in PROFILES.items() if not p.conformant} == {profile for profile, _, _ in CAUGHT_BY}


def _red(verdicts: dict[tuple[str, str], Verdict], failed: dict[tuple[str, str], set[str]]) -> list[str]:
    """What would turn the matrix red: a fault no longer caught by its case and check, or a case
    no faulty profile fails any more."""
    red = [f"{profile} no longer caught by {case}/{check}" for profile, case, check in CAUGHT_BY
           if check not in failed[(profile, case)]]
    red += [f"{s.id} failed by no faulty profile" for s in CATALOG if s.id not in NO_FAULT_POSSIBLE
            and not any(verdicts[(n, s.id)] in NOT_PASSED for n, p in PROFILES.items() if not p.conformant)]
    return red


@pytest.mark.parametrize("check", sorted({c.check for s in CATALOG for c in s.expect}))
def test_disabling_any_check_turns_the_matrix_red(results, check):
    """The mutation smoke in short: every result judged again from what was observed, with
    ``check`` passing whatever it sees; some fault must then go uncaught (``tox -e mutation``
    does the same through the whole suite)."""
    verdicts, failed = {}, {}
    for key, result in results.items():
        obs = OBSERVED.get(key)
        if obs is None:  # skipped before anything ran
            verdicts[key], failed[key] = result.verdict, set()
            continue
        outcomes = [CHECKS[o.check].model_construct().outcome(True, "disabled") if o.check == check else o
                    for o in result.outcomes]
        assert result.sender_result is not None
        verdicts[key] = Runner.verdict(result.scenario, obs, outcomes, result.sender_result)[0]
        failed[key] = {o.check for o in outcomes if o.failed}
    assert not _red({k: r.verdict for k, r in results.items()},
                    {k: {o.check for o in r.outcomes if o.failed} for k, r in results.items()})
    assert _red(verdicts, failed), f"with {check} disabled the verdict matrix stays green: no case relies on it"
