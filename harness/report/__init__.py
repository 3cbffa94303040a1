"""Results of a run as files: ``results.json``, ``junit.xml`` and a single-file ``index.html``.

``write_reports(directory, run)`` writes all three; each writer also stands alone. The HTML page is
one self-contained file (Jinja2, autoescaped) that a vendor can attach to a certification ticket.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakes.exo.secrets import SecretMask
from harness.report.causes import COMPARISON, OPTIONS, advise, causes, option_verdicts, seen
from harness.results import CaseResult, Verdict

if TYPE_CHECKING:  # loaded where a run is written, not where a fleet is judged
    from fakes.exo.tenant import Tenant

ORDER = [Verdict.FAIL, Verdict.ERROR, Verdict.NON_STRICT, Verdict.INFO, Verdict.PASS, Verdict.SKIP]


@dataclass
class Run:
    sender: str
    tenant: str
    edge: dict[str, Any]
    results: list[CaseResult] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    secrets: SecretMask = field(default_factory=SecretMask)  # masked in every file written
    catalog: dict[str, Any] = field(default_factory=dict)  # sources, version and digest
    sender_name: str | None = None  # the device or app, as its vendor names it
    sender_version: str | None = None  # its firmware or release
    notes: list[str] = field(default_factory=list)
    tenant_digest: str = ""  # SHA-256 of the tenant used, secrets left out

    @property
    def harness_version(self) -> str:
        try:
            return version("exo-edge")
        except PackageNotFoundError:
            return "unknown"
    @property
    def name(self) -> str:
        return datetime.fromtimestamp(self.started, UTC).strftime("%Y%m%dT%H%M%SZ")

    def summary(self) -> dict[str, int]:
        counts = Counter(str(r.verdict) for r in self.results)
        return {str(v): counts.get(str(v), 0) for v in ORDER}

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.name, "sender": self.sender, "sender_name": self.sender_name,
            "sender_version": self.sender_version, "notes": self.notes, "harness_version": self.harness_version,
            "tenant": self.tenant, "tenant_digest": self.tenant_digest, "catalog": self.catalog, "edge": self.edge,
            "started": self.started, "finished": self.finished, "summary": self.summary(),
            "cases": [r.as_dict() for r in self.results],
        }


def write_json(path: Path, run: Run) -> Path:
    text = json.dumps(run.as_dict(), indent=2, default=str) + "\n"
    path.write_text(run.secrets.mask(text), encoding="utf-8")
    return path


def _transcript_text(result: CaseResult) -> str:
    blocks = []
    for session in result.transcript:
        blocks.append(f"# {session['endpoint']} from {session['peer']} ({session['session']})")
        blocks.extend(session["lines"])
    return "\n".join(blocks)


def write_junit(path: Path, run: Run) -> Path:
    suite = ET.Element("testsuite", name="exo-edge", tests=str(len(run.results)),
                       failures=str(sum(r.verdict == Verdict.FAIL for r in run.results)),
                       errors=str(sum(r.verdict == Verdict.ERROR for r in run.results)),
                       skipped=str(sum(r.verdict == Verdict.SKIP for r in run.results)),
                       timestamp=datetime.fromtimestamp(run.started, UTC).isoformat())
    for result in run.results:
        case = ET.SubElement(suite, "testcase", classname=f"scenarios.{result.scenario.option}",
                             name=result.scenario.id, time=f"{result.duration:.3f}")
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="verdict", value=str(result.verdict))
        ET.SubElement(props, "property", name="sender", value=result.sender)
        if result.verdict == Verdict.FAIL:
            ET.SubElement(case, "failure", message=result.reason).text = result.scenario.advice
        elif result.verdict == Verdict.ERROR:
            ET.SubElement(case, "error", message=result.reason)
        elif result.verdict == Verdict.SKIP:
            ET.SubElement(case, "skipped", message=result.reason)
        if result.transcript:
            ET.SubElement(case, "system-out").text = _transcript_text(result)
    ET.indent(suite)
    text = ET.tostring(suite, encoding="unicode", xml_declaration=True)
    path.write_text(run.secrets.mask(text) + "\n", encoding="utf-8")
    return path


# The sources the catalog quotes by key (EXO-REFERENCE.md), as links a reader can follow.
SOURCES = {
    "MFD": "https://learn.microsoft.com/exchange/mail-flow-best-practices/how-to-set-up-a-multifunction-device-or-"
           "application-to-send-email-using-microsoft-365-or-office-365",
    "MFD (de)": "https://learn.microsoft.com/de-de/exchange/mail-flow-best-practices/how-to-set-up-a-multifunction-"
                "device-or-application-to-send-email-using-microsoft-365-or-office-365",
    "FIX": "https://learn.microsoft.com/exchange/mail-flow-best-practices/fix-issues-with-printers-scanners-and-lob-"
           "applications-that-send-email-using-off",
    "SUB": "https://learn.microsoft.com/exchange/troubleshoot/send-emails/smtp-submission-improvements",
    "OAUTH": "https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-"
             "smtp-application-by-using-oauth",
    "BA2": "https://techcommunity.microsoft.com/blog/exchange/updated-exchange-online-smtp-auth-basic-authentication-"
           "deprecation-timeline/4489835",
    "RDS": "https://techcommunity.microsoft.com/blog/exchange/introducing-more-control-over-direct-send-in-exchange-"
           "online/4408790",
}


def source_link(source: str) -> str | None:
    """Where a reference's source can be read: a catalog key, ``gh:owner/repo#n``, an RFC."""
    if source in SOURCES:
        return SOURCES[source]
    if match := re.fullmatch(r"gh:([\w.-]+/[\w.-]+)#(\d+)", source):
        return f"https://github.com/{match[1]}/issues/{match[2]}"
    if match := re.match(r"RFC (\d+)", source):
        return f"https://www.rfc-editor.org/rfc/rfc{match[1]}"
    return None


def tenant_digest(tenant: Tenant) -> str:
    """SHA-256 of the tenant as the edge served it, without its passwords and client secrets."""
    data = tenant.model_dump(mode="json")
    for box in data.get("mailboxes", []):
        box.pop("password", None)
    for app in data.get("apps", []):
        app.pop("secret", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def write_html(path: Path, run: Run) -> Path:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["source_link"] = source_link
    results = sorted(run.results, key=lambda r: (ORDER.index(r.verdict), r.scenario.id))
    found = causes(run.results)
    by_option = {option: sorted((r for r in run.results if r.scenario.option == option), key=lambda r: r.scenario.id)
                 for option in OPTIONS}
    verdicts = option_verdicts(run.results, found)
    page = env.get_template("report.html").render(
        run=run, results=results, summary=run.summary(), transcript=_transcript_text, causes=found,
        options=verdicts, by_option=by_option, option_titles=OPTIONS, comparison=COMPARISON,
        advice=advise(verdicts, found), seen=seen(run.results),
        cause_of={id(r): c for c in found for r in c.cases}, id=id,
        when=datetime.fromtimestamp(run.started, UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    path.write_text(run.secrets.mask(page), encoding="utf-8")
    return path


def write_reports(directory: Path, run: Run) -> dict[str, Path]:
    """The three files in ``directory``; its parent's ``latest`` then points at it."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": write_json(directory / "results.json", run),
        "junit": write_junit(directory / "junit.xml", run),
        "html": write_html(directory / "index.html", run),
    }
    latest = directory.parent / "latest"
    staged = directory.parent / f".latest-{os.getpid()}"
    staged.unlink(missing_ok=True)
    staged.symlink_to(directory.name, target_is_directory=True)
    staged.replace(latest)  # atomic: a reader never finds it missing
    return paths


def load_run(path: Path) -> Run:
    """A run again from its ``results.json`` (already masked), to render its page anew."""
    from harness.report.compare import load_results
    from harness.scenario import Reference, Scenario

    data = load_results(path)
    results = []
    for case in data["cases"]:
        scenario = Scenario.model_construct(
            id=case["id"], title=case.get("title", case["id"]), option=case.get("option", "any"),
            severity=case.get("severity", "must"), advice=case.get("advice", ""), path="", expect=[],
            reference=[Reference(**r) for r in case.get("reference", [])])
        results.append(CaseResult.from_dict(case, scenario, data.get("sender", "?")))
    return Run(sender=data.get("sender", "?"), tenant=data.get("tenant", "?"), edge=data.get("edge", {}),
               results=results, started=data.get("started", 0.0), finished=data.get("finished"),
               catalog=data.get("catalog", {}), sender_name=data.get("sender_name"),
               sender_version=data.get("sender_version"), notes=data.get("notes", []),
               tenant_digest=data.get("tenant_digest", ""))
