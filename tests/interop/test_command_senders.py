"""Command senders as a QA pipeline writes them: swaks and a Python smtplib app, over the submission cases."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from harness.runner import SEVERITY_VERDICT, Runner, Verdict
from harness.scenario import load_catalog
from harness.senders import CommandSender

pytestmark = pytest.mark.interop
SUBMISSION = [s for s in load_catalog(Path(__file__).resolve().parents[2] / "scenarios") if s.option == "submission"]
SMTPLIB_APP = Path(__file__).resolve().parents[1] / "senders" / "smtplib_sender.py"

SWAKS = (
    'for i in $(seq "$EXO_COUNT"); do {swaks} --server "$EXO_ADDR" --port "$EXO_PORT" '
    '--local-interface "$EXO_SOURCE_ADDR" --helo swaks.lab --tls --tls-verify --tls-ca-path "$EXO_CAFILE" '
    '--tls-sni "$EXO_HOST" --auth LOGIN --auth-user "$EXO_USER" --auth-password "$EXO_PASS" '
    '--from "$EXO_FROM" --to "$EXO_TO" || exit 1; done'
)
# What swaks (2020 release) cannot do, and the cases that say so.
SWAKS_SHORTCOMINGS = {
    "submission/xoauth2-when-basic-auth-disabled": "no XOAUTH2 in this swaks",
    "submission/transient-4xx-retried": "swaks never retries",
    "submission/dropped-connection-retried": "swaks never retries",
    "submission/over-3-concurrent-connections": "swaks never retries",
    "submission/tarpit-waited-out": "swaks waits out the tarpit but never retries the 432",
    "submission/message-size": "swaks ignores EXO_SIZE and never declares SIZE=",
    "submission/certificate-name-verified": "swaks --tls-verify checks the chain, not the name",
    "oauth/device-code-then-xoauth2": "swaks gets no token of its own (no device code flow)",
}
# The smtplib app signs in with a password, or the token it is handed: no OAuth of its own.
SMTPLIB_SHORTCOMINGS = {"oauth/device-code-then-xoauth2"}
CASES = {s.id: s for s in SUBMISSION}
# cases about how a sender uses OAuth: skipped for these senders, which never ask for a token
OAUTH_BEHAVIOUR = {s.id for s in SUBMISSION if s.oauth_behaviour}


def run_catalog(edge, sender) -> dict[str, Verdict]:
    from harness.pytest_plugin import reset

    reset(edge)
    runner = Runner(edge, sender)
    try:
        return {s.id: runner.run(s).verdict for s in SUBMISSION}
    finally:
        reset(edge)


def test_swaks_command_sender_over_the_submission_cases(exo_edge, swaks):
    sender = CommandSender(SWAKS.format(swaks=shlex.quote(swaks)), source_addr="127.0.0.60")
    verdicts = run_catalog(exo_edge, sender)
    assert {case for case, v in verdicts.items() if v == Verdict.SKIP} == OAUTH_BEHAVIOUR
    assert {case for case, v in verdicts.items() if v not in (Verdict.PASS, Verdict.SKIP)} == set(SWAKS_SHORTCOMINGS)
    assert all(verdicts[case] == SEVERITY_VERDICT[CASES[case].severity] for case in SWAKS_SHORTCOMINGS)


def test_python_smtplib_command_sender_passes_the_submission_cases(exo_edge):
    sender = CommandSender(f"{shlex.quote(sys.executable)} {shlex.quote(str(SMTPLIB_APP))}",
                           source_addr="127.0.0.61")
    verdicts = run_catalog(exo_edge, sender)
    assert {case for case, v in verdicts.items() if v == Verdict.SKIP} == OAUTH_BEHAVIOUR
    assert {case: v for case, v in verdicts.items() if v not in (Verdict.PASS, Verdict.SKIP)} == {
        case: SEVERITY_VERDICT[CASES[case].severity] for case in SMTPLIB_SHORTCOMINGS}


def test_a_command_that_cannot_run_is_an_error_not_a_fail(exo_edge):
    verdicts = run_catalog(exo_edge, CommandSender("exit 3"))
    assert set(verdicts.values()) == {Verdict.ERROR}
