"""No verdict without exercise: a sender that does nothing useful gets no PASS anywhere, and an
option is never failed for what the harness could not judge."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from fakes.exo.lab import roles
from harness.reference import PROFILES, ReferenceSender
from harness.report.causes import causes, option_verdicts
from harness.runner import CaseResult, Runner, Verdict
from harness.scenario import load_catalog
from harness.senders import Order, PythonSender

CATALOG = load_catalog(Path(__file__).resolve().parents[2] / "scenarios")


def ehlo_quit(order: Order) -> int:
    """Connects, says EHLO and QUIT, and is done: the sender that should earn no PASS."""
    with smtplib.SMTP(order.addr, order.port, local_hostname="idle.lab", timeout=10,
                      source_address=(order.source_addr or "127.0.0.1", 0)) as client:
        client.ehlo()
    return 0


@pytest.mark.parametrize(("option", "connector"), [("submission", None), ("direct-send", None), ("relay", "ip")])
def test_a_sender_that_only_says_ehlo_and_quit_gets_no_pass(exo_edge_clean, option, connector):
    sender = PythonSender(f"{__name__}:ehlo_quit", option=option, connector=connector,
                          source_addr=roles(exo_edge_clean.tenant).ip_connector_source if connector else None)
    runner = Runner(exo_edge_clean, sender)
    results = {case.id: runner.run(case) for case in CATALOG}
    passed = sorted(cid for cid, r in results.items() if r.verdict == Verdict.PASS)
    assert passed == []
    ran = [r for r in results.values() if r.verdict != Verdict.SKIP]
    assert ran, "the sender ran no case of its option"
    idle = {cid for cid, r in results.items() if not r.exercised}
    assert all(results[cid].verdict == Verdict.INFO and results[cid].reason.startswith("not exercised: ")
               for cid in idle)
    if option == "submission":  # the four cases that passed it before
        assert {"submission/certificate-verified", "submission/certificate-name-verified",
                "submission/certificate-not-expired", "submission/permanent-5xx-not-retried"} <= idle


def test_a_sender_that_never_starts_tls_gets_no_pass_on_a_certificate_case(exo_edge_clean):
    runner = Runner(exo_edge_clean, ReferenceSender(PROFILES["no-starttls"]))
    for case in [c for c in CATALOG if c.id.startswith("submission/certificate-")]:
        result = runner.run(case)
        assert result.verdict != Verdict.PASS, (case.id, result.reason)
        assert not result.exercised
        assert "never started TLS" in result.reason


def _result(case_id: str, verdict: Verdict, reason: str, *, exercised: bool = True) -> CaseResult:
    (scenario,) = [c for c in CATALOG if c.id == case_id]
    return CaseResult(scenario, "manual", verdict, reason, exercised=exercised)


def test_an_option_whose_cases_all_erred_is_not_judged_with_the_reason_once():
    never = "environment: the sender never connected to the edge"
    results = [_result(c.id, Verdict.ERROR, never) for c in CATALOG if c.option == "submission"]
    (submission, direct, relay) = option_verdicts(results, causes(results))
    assert submission.conforms is None
    assert submission.because == f"{len(results)} ERROR: {never}"
    assert direct.conforms is None and relay.conforms is None


def test_an_option_with_errors_beside_passes_is_not_judged_and_one_fail_is_no():
    ok = _result("submission/tls-1.3", Verdict.PASS, "negotiated TLSv1.3")
    erred = _result("submission/message-size", Verdict.ERROR, "harness fault: boom")
    idle = _result("submission/certificate-verified", Verdict.INFO, "not exercised: never started TLS",
                   exercised=False)
    (verdict, *_) = option_verdicts([ok, erred, idle], causes([ok, erred, idle]))
    assert verdict.conforms is None and "1 ERROR: harness fault: boom" in verdict.because
    (verdict, *_) = option_verdicts([ok, idle], causes([ok, idle]))
    assert verdict.conforms is True and "1 not exercised: never started TLS" in verdict.because
    failed = _result("submission/port-587-not-465", Verdict.FAIL, "port: tried port 465")
    (verdict, *_) = option_verdicts([ok, erred, failed], causes([ok, erred, failed]))
    assert verdict.conforms is False


def test_the_harness_changes_the_running_edge_only_on_the_edges_loop(exo_edge_clean, monkeypatch):
    """A case's tenant, quota, faults, TLS and mid-run steps reach the edge through ``Edge.apply``
    and ``Edge.reset``, run on its loop: never set from the harness's thread while sessions run."""
    import threading

    edge = exo_edge_clean
    seen: list[tuple[str, str]] = []
    for owner, names in ((edge, ("set_tenant", "clear_faults", "configure_tls", "during")),
                         (edge.state.ledger, ("seed", "reset")), (edge.identity, ("reset",)), (edge.store, ("clear",))):
        for name in names:
            original = getattr(owner, name)

            def spy(*args, _original=original, _name=name, **kwargs):  # noqa: ANN002, ANN003, ANN202
                seen.append((_name, threading.current_thread().name))
                return _original(*args, **kwargs)

            monkeypatch.setattr(owner, name, spy)
    runner = Runner(edge, ReferenceSender(PROFILES["submission"]))
    for case_id in ("submission/over-30-messages-a-minute", "submission/over-3-concurrent-connections",
                    "submission/tls-1.2-or-later"):
        (case,) = [c for c in CATALOG if c.id == case_id]
        assert runner.run(case).verdict == Verdict.PASS
    assert {"set_tenant", "seed", "configure_tls", "during"} <= {name for name, _ in seen}
    assert {thread for _, thread in seen} == {"exo-edge"}, seen
