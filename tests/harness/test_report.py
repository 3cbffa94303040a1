"""The certification report: one cause for failures that share one, a verdict per option, what a
sender sent shown as text (never as markup), a comparison of two runs, and the page as a browser
shows it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.reference import PROFILES, ReferenceSender
from harness.report import Run, tenant_digest, write_reports
from harness.report.causes import advise, causes, option_verdicts
from harness.runner import Runner, Verdict
from harness.scenario import load_catalog
from harness.senders import CommandSender

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "scenarios")
SUBMISSION = [c for c in CATALOG if c.option == "submission" and c.sign_in == "any"]


@pytest.fixture(scope="module")
def tls10_run(exo_edge, tmp_path_factory):
    from harness.pytest_plugin import reset

    reset(exo_edge)
    runner = Runner(exo_edge, ReferenceSender(PROFILES["tls10-only"]))
    run = Run(sender="reference:tls10-only", tenant="contoso", edge=exo_edge.describe(), secrets=exo_edge.secrets,
              results=[runner.run(c) for c in CATALOG], sender_name="LaserJet M428", sender_version="2.1",
              notes=["bench 3"], tenant_digest=tenant_digest(exo_edge.tenant))
    reset(exo_edge)
    directory = tmp_path_factory.mktemp("reports") / run.name
    return run, write_reports(directory, run)


def test_one_cause_explains_every_failure_of_a_tls_1_0_sender(tls10_run):
    run, _ = tls10_run
    found = causes(run.results)
    failed = [r for r in run.results if r.verdict in (Verdict.FAIL, Verdict.NON_STRICT, Verdict.INFO) and r.exercised]
    assert len(failed) >= 15
    # refused at its first command after TLS, it never sent MAIL: the case about a 5xx to MAIL is
    # not exercised (neither a cause nor a pass)
    assert [r.scenario.id for r in run.results if not r.exercised] == ["submission/permanent-5xx-not-retried"]
    assert [(c.key, len(c.cases)) for c in found] == [("legacy-tls", len(failed))]
    assert found[0].label == "offers only TLSv1: Exchange Online requires TLS 1.2 or later"
    # the advice is that of a case that failed the TLS check itself (rules name checks, not cases)
    assert "tls" in {o.check for o in found[0].source.outcomes if o.failed} and "firmware" in found[0].advice
    verdicts = {o.option: o for o in option_verdicts(run.results, found)}
    assert verdicts["submission"].conforms is False and "TLS 1.2" in verdicts["submission"].because
    assert verdicts["direct-send"].conforms is None  # its cases were not this sender's
    from harness.report.causes import seen

    column = seen(run.results)  # the advisor's column: what the sender was seen to do
    assert column["Device or application server must support TLS"] == "offers TLSv1; STARTTLS"
    assert column["Sends from"] == "127.0.0.42" and column["Sends to"] == "no recipient"  # refused before RCPT
    advice = {a.option: a for a in advise(list(verdicts.values()), found)}
    assert advice["submission"].can_use is False and "opt-in endpoint for legacy TLS" in advice["submission"].why
    for option in ("direct-send", "relay"):  # what a TLS 1.0 device can still use
        assert advice[option].can_use is None and "likely usable: TLS is optional at the MX" in advice[option].why


def test_the_page_has_the_sections_a_ticket_links_to(tls10_run):
    run, paths = tls10_run
    page = paths["html"].read_text()
    for anchor in ('id="summary"', 'id="causes"', 'id="advisor"', 'id="cases"', 'id="cause-legacy-tls"',
                   'id="submission/tls-1.2-or-later"'):
        assert anchor in page
    assert "LaserJet M428</strong> 2.1" in page and "Note: bench 3" in page
    assert run.catalog.get("digest", "") in page and run.tenant_digest in page
    assert (paths["html"].parent.parent / "latest").resolve() == paths["html"].parent.resolve()
    # a case's section: its DNS queries and stored copies with their headers (tls10-only stores none)
    passed = next(r for r in run.results if r.verdict == Verdict.PASS and r.dns)
    assert passed.dns[0]["name"] == "smtp.office365.com" and "DNS queries" in page
    data = json.loads(paths["json"].read_text())
    assert data["sender_version"] == "2.1" and data["tenant_digest"] == run.tenant_digest


HOSTILE = """
import smtplib, os
body = "From: <script>alert(1)</script>@x\\r\\nSubject: <script>alert(2)</script>\\r\\n\\r\\nhi\\r\\n"
print("<script>alert(3)</script>")
with smtplib.SMTP(os.environ["EXO_ADDR"], int(os.environ["EXO_PORT"]), local_hostname="<b>ehlo</b>") as s:
    s.ehlo()
"""


def test_what_a_sender_sent_is_shown_as_text(exo_edge_clean, tmp_path):
    script = tmp_path / "hostile.py"
    script.write_text(HOSTILE)
    (case,) = [c for c in SUBMISSION if c.id == "submission/port-587-not-465"]
    result = Runner(exo_edge_clean, CommandSender(f"{sys.executable} {script}")).run(case)
    run = Run(sender="<img src=x onerror=alert(4)>", tenant="contoso", edge=exo_edge_clean.describe(),
              results=[result], sender_name="<i>Drucker</i>", notes=["<script>alert(5)</script>"])
    page = write_reports(tmp_path / "reports" / run.name, run)["html"].read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and "<i>Drucker" not in page
    assert "&lt;b&gt;ehlo&lt;/b&gt;" in page  # the EHLO name, in the transcript, as text
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page  # what the sender printed, as text
    assert "&lt;img src=x onerror=alert(4)&gt;" in page and "&lt;script&gt;alert(5)&lt;/script&gt;" in page


def _results(tmp_path: Path, name: str, verdicts: dict[str, str]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"run": name, "sender": "command:x", "sender_version": name,
                                "cases": [{"id": case, "verdict": v} for case, v in verdicts.items()]}))
    return path


def test_compare_names_what_broke_and_fails_when_something_did(tmp_path):
    old = _results(tmp_path, "2.1", {"a": "PASS", "b": "FAIL", "c": "PASS", "d": "SKIP"})
    new = _results(tmp_path, "2.2", {"a": "FAIL", "b": "PASS", "c": "PASS", "e": "PASS"})
    exoedge = [sys.executable, "-m", "harness.cli", "report", "--compare"]
    done = subprocess.run([*exoedge, str(old), str(new)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1
    assert "broken    a: PASS -> FAIL" in done.stdout and "fixed     b: FAIL -> PASS" in done.stdout
    assert "new case  e: PASS" in done.stdout and "gone      d: was SKIP" in done.stdout
    assert subprocess.run([*exoedge, str(new), str(new)], capture_output=True, cwd=ROOT).returncode == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    refused = subprocess.run([*exoedge, str(bad), str(new)], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "bad.json: not a results.json of exo-edge" in refused.stderr


def test_the_report_in_headless_chromium(tls10_run, tmp_path, chromium):
    _, paths = tls10_run
    shot = tmp_path / "report.png"
    dom = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          paths["html"].as_uri()], capture_output=True, text=True, timeout=60)
    assert 'id="filters"' in dom.stdout and "hidden" not in dom.stdout.split('id="filters"')[1][:20]
    assert "offers only TLSv1" in dom.stdout and "Option 1: SMTP AUTH client submission" in dom.stdout
    subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600",
                    f"--screenshot={shot}", paths["html"].as_uri()], capture_output=True, timeout=60)
    assert shot.stat().st_size > 10_000  # kept under the test's folder for a person to look at


def test_a_run_renders_again_from_its_results_json(tls10_run):
    _, paths = tls10_run
    before = paths["html"].read_text()
    done = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(paths["json"])], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    again = paths["html"].read_text()
    for part in ('id="cause-legacy-tls"', "offers only TLSv1", "LaserJet M428</strong> 2.1", 'id="advisor"'):
        assert part in before and part in again
