"""``pytest -m scenario`` as a QA pipeline runs it: verdicts become pytest outcomes and JUnit properties."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.scenario import load_catalog

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = load_catalog(ROOT / "scenarios")
CASE = """\
title: {title}
option: {option}
severity: {severity}
reference:
  - source: MFD
    text: x
{extra}expect:
  - check: {check}
advice: do better
"""


def catalog(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nexo_scenarios = scenarios\nexo_catalog_mode = replace\n")
    cases = {
        "submission/delivers": dict(title="delivers", option="submission", severity="must", check="connected",
                                    extra=""),
        "submission/tls13": dict(title="tls 1.3", option="submission", severity="should", extra="",
                                 check="tls\n    minimum: TLSv1.3"),
        "submission/plain-auth": dict(title="plain", option="submission", severity="must", extra="",
                                      check="auth_mechanism\n    allowed: [PLAIN]"),
        "direct-send/inbox": dict(title="inbox", option="direct-send", severity="must", extra="",
                                  check="connected"),
    }
    for case_id, fields in cases.items():
        path = pytester.path / "scenarios" / f"{case_id}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(CASE.format(**fields))


def test_verdicts_become_pytest_outcomes_and_junit_properties(pytester):
    catalog(pytester)
    result = pytester.runpytest_subprocess("-m", "scenario", "--exo-sender", "reference:tls12-max",
                                           "--junitxml", "junit.xml", "--exo-report", "out", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*exo-edge report: *index.html", "*FAIL: plain (submission/plain-auth)*",
                                 "*[[]BAD[]] auth_mechanism: tried AUTH LOGIN*", "*What to change: do better*"])
    junit = ET.parse(pytester.path / "junit.xml").getroot()
    verdicts = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
                for case in junit.iter("testcase")}
    assert verdicts["submission/tls13"]["verdict"] == "NON-STRICT"
    assert verdicts["submission/delivers"]["verdict"] == "PASS"
    (report,) = [d for d in (pytester.path / "out").iterdir() if d.name != "latest"]
    assert (pytester.path / "out" / "latest").resolve() == report.resolve()
    results = json.loads((report / "results.json").read_text())
    assert results["summary"]["FAIL"] == 1 and results["summary"]["NON-STRICT"] == 1
    assert "<html" in (report / "index.html").read_text()


def test_a_sender_that_never_connects_is_an_error_not_a_failure(pytester):
    catalog(pytester)
    result = pytester.runpytest_subprocess("-m", "scenario", "--exo-sender", "command:true", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=3, skipped=1)
    result.stdout.fnmatch_lines(["*the sender never connected to the edge*"])


def test_a_bad_scenario_is_a_collection_error_naming_file_line_and_key(pytester):
    catalog(pytester)
    (pytester.path / "scenarios" / "submission" / "bad.yaml").write_text(
        CASE.format(title="bad", option="submission", severity="must", extra="", check="stored\n    folder: Attic"))
    result = pytester.runpytest_subprocess("-m", "scenario", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*bad.yaml:9: expect[[]0[]].folder='Attic': Input should be*"])
    assert result.ret != 0


def test_a_bad_sender_spec_is_a_usage_error(pytester):
    catalog(pytester)
    result = pytester.runpytest_subprocess("-m", "scenario", "--exo-sender", "reference:nope", "-p",
                                           "no:cacheprovider")
    result.stderr.fnmatch_lines(["*no reference profile 'nope'*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_exoedge_run_exits_non_zero_on_a_fail(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--sender", "reference:auth-plain", "--scenarios",
         str(ROOT / "scenarios"), "--case", "auth-login-or-xoauth2", "--case", "tls-1.3", "--report",
         str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL       submission/auth-login-or-xoauth2" in run.stdout
    assert "PASS       submission/tls-1.3" in run.stdout
    assert list(tmp_path.glob("*/index.html"))


def test_under_xdist_each_worker_has_its_edge_and_one_report_holds_every_case(pytester):
    pytest.importorskip("xdist")
    catalog(pytester)
    result = pytester.runpytest_subprocess("-n", "2", "-m", "scenario", "--exo-sender", "reference:tls12-max",
                                           "--exo-report", "out", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    report = pytester.path / "out" / "latest" / "results.json"
    cases = json.loads(report.read_text())["cases"]
    assert sorted(c["id"] for c in cases) == ["direct-send/inbox", "submission/delivers", "submission/plain-auth",
                                              "submission/tls13"]
    assert {c["id"]: c["verdict"] for c in cases}["submission/tls13"] == "NON-STRICT"
    # what the workers saw the sender do reaches the report's causes
    assert all(c["facts"]["tls_offered"] == ["TLSv1.2"] for c in cases if c["id"].startswith("submission/"))


def test_the_catalog_collects_with_only_the_package_installed():
    """The README's first command installs no test extras: no ini option or import of the
    project may need them when a user runs ``pytest -m scenario`` in the checkout."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:timeout", "-p", "no:xdist", "-p", "no:cacheprovider",
         "-m", "scenario", "--collect-only", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "INTERNALERROR" not in done.stdout and "scenarios/submission/port-587-not-465" in done.stdout


def test_in_a_users_own_repository_the_bundled_catalog_runs(pytester):
    """No scenarios/ of its own: `pytest -m scenario` runs the catalog that ships with exo-edge."""
    pytester.makepyfile(test_app="def test_app():\n    assert True\n")
    result = pytester.runpytest_subprocess("-m", "scenario", "-k", "port-587 or send-as-denied",
                                           "--exo-sender", "reference:submission", "--exo-report", "out",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, deselected=len(BUNDLED) - 2 + 1)  # the other cases and test_app
    report = pytester.path / "out" / "latest" / "results.json"
    data = json.loads(report.read_text())
    assert data["catalog"]["sources"] == ["bundled"] and len(data["catalog"]["digest"]) == 64
    assert sorted(c["id"] for c in data["cases"]) == ["submission/port-587-not-465", "submission/send-as-denied"]


def test_a_users_catalog_adds_to_the_bundled_one_and_replaces_a_case_by_its_id(pytester):
    mine = pytester.path / "mine" / "submission"
    mine.mkdir(parents=True)
    (mine / "my-own-case.yaml").write_text(CASE.format(title="mine", option="submission", severity="must",
                                                       check="connected", extra=""))
    (mine / "port-587-not-465.yaml").write_text(CASE.format(title="my port case", option="submission",
                                                            severity="must", check="connected", extra=""))
    result = pytester.runpytest_subprocess("-m", "scenario", "--exo-scenarios", "mine", "--collect-only", "-q",
                                           "-p", "no:cacheprovider")
    lines = [line for line in result.outlines if "::" in line]
    assert any("mine/submission/my-own-case.yaml" in line for line in lines)
    port = [line for line in lines if line.endswith("submission/port-587-not-465")]
    assert len(port) == 1 and "mine/" in port[0]  # the user's case, not the bundled one
    assert len(lines) == len(BUNDLED) + 1  # the bundled catalog's cases, one replaced, one added


def test_asking_for_scenarios_and_finding_none_is_a_usage_error(pytester):
    result = pytester.runpytest_subprocess("-m", "scenario", "-k", "no-such-case", "--exo-sender",
                                           "reference:submission", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: no scenario was collected: looked in *scenarios*-k expressions"])


def test_pytest_m_scenario_collects_with_only_the_package_installed():
    """After the README's first command (no test extras) ``pytest -m scenario`` in the checkout
    collects: modules that need a test extra skip at collection and say which."""
    import os

    extras = ("msal", "requests", "dns", "selenium", "aiosmtplib", "xdist", "pytest_timeout", "build")
    code = ("import sys\n"
            f"for name in {extras!r}: sys.modules[name] = None  # as if never installed\n"
            "import pytest\n"
            "sys.exit(pytest.main(['-m', 'scenario', '--collect-only', '-q', '-rs', '-p', 'no:cacheprovider',"
            " '-p', 'harness.pytest_plugin']))\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "scenarios/submission/port-587-not-465.yaml" in done.stdout
    assert "MSAL is a test extra" in done.stdout
