"""ERROR says whose fault it is (harness, environment, scenario), and a run that breaks still
writes what it judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.runner import Runner, Verdict
from harness.scenario import load_catalog
from harness.senders import CommandSender

ROOT = Path(__file__).resolve().parents[2]
CASE = next(c for c in load_catalog(ROOT / "scenarios") if c.id == "submission/port-587-not-465")


class BrokenSender:
    """A sender implementation with a bug: the harness's fault, not the device's."""

    name, option, connector, source_addr, sign_in, manual = "broken", "submission", None, None, None, False

    def send(self, order):  # noqa: ANN001, ANN201
        raise RuntimeError("bug in a sender class")


def test_a_bug_in_the_harness_is_an_error_of_the_harness_and_the_run_goes_on(edge):
    runner = Runner(edge, BrokenSender())
    result = runner.run(CASE)
    assert (result.verdict, result.fault) == (Verdict.ERROR, "harness")
    assert result.reason == "harness fault: RuntimeError: bug in a sender class"
    assert edge.tenant == runner.tenant  # the edge was put back for the next case


def test_a_sender_that_never_connects_is_the_environments(edge):
    result = Runner(edge, CommandSender("true")).run(CASE)
    assert (result.verdict, result.fault) == (Verdict.ERROR, "environment")
    assert "never connected" in result.reason


def test_a_scenario_that_does_not_fit_the_tenant_is_the_scenarios(edge):
    bad = CASE.model_copy(update={"tenant": {"limits": {"messages_per_minute": -1}}})
    result = Runner(edge, CommandSender("true")).run(bad)
    assert (result.verdict, result.fault) == (Verdict.ERROR, "scenario")
    assert "limits.messages_per_minute=-1" in result.reason


def test_an_interrupted_run_still_writes_its_reports(tmp_path):
    (tmp_path / "flaky_sender.py").write_text(
        "calls = []\n"
        "def send(order):\n"
        "    calls.append(order)\n"
        "    if len(calls) == 2:\n"
        "        raise KeyboardInterrupt\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--sender", "python:flaky_sender:send", "--scenarios",
         str(ROOT / "scenarios"), "--case", "submission/", "--report", str(tmp_path / "reports")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode != 0
    results = tmp_path / "reports" / "latest" / "results.json"
    cases = json.loads(results.read_text())["cases"]
    assert len(cases) == 1  # the case judged before the interruption is in the report
    assert (results.parent / "index.html").exists() and (results.parent / "junit.xml").exists()
