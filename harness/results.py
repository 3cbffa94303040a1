"""What a case came to: its verdict and the result the reports are written from (light: the
report and the fleet judgement import it without the edge)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.check_base import Outcome
from harness.senders import SenderResult

if TYPE_CHECKING:  # a scenario's model (pydantic) is loaded where scenarios are read
    from harness.scenario import Scenario


class Verdict(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    NON_STRICT = "NON-STRICT"
    INFO = "INFO"
    SKIP = "SKIP"
    ERROR = "ERROR"


NOT_EXERCISED = "not exercised: "  # the reason of an INFO whose judged behaviour never happened
SEVERITY_VERDICT = {"must": Verdict.FAIL, "should": Verdict.NON_STRICT, "info": Verdict.INFO}


@dataclass
class CaseResult:
    scenario: Scenario
    sender: str
    verdict: Verdict
    reason: str
    outcomes: list[Outcome] = field(default_factory=list)
    sender_result: SenderResult | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0
    duration: float = 0.0
    fault: str | None = None  # an ERROR's: "harness", "environment" or "scenario"
    facts: dict[str, Any] = field(default_factory=dict)  # what the sender was seen to do (report.causes)
    dns: list[dict[str, Any]] = field(default_factory=list)  # the sender's DNS queries: name, type, answer
    stored: list[dict[str, Any]] = field(default_factory=list)  # copies stored: folder, mailbox, headers, size
    exercised: bool = True  # False: what the case judges never happened (INFO "not exercised")

    def as_dict(self) -> dict[str, Any]:
        s = self.scenario
        result = self.sender_result
        return {
            "id": s.id, "title": s.title, "option": s.option, "severity": s.severity,
            "verdict": str(self.verdict), "reason": self.reason, "fault": self.fault, "sender": self.sender,
            "reference": [r.model_dump() for r in s.reference], "advice": s.advice,
            "checks": [{"check": o.check, "passed": o.passed, "message": o.message} for o in self.outcomes],
            "sender_result": None if result is None else {
                "exit_code": result.exit_code, "stdout": result.stdout[-4000:], "stderr": result.stderr[-4000:],
                "error": result.error, "duration": round(result.duration, 3), "notes": result.notes,
            },
            "transcript": self.transcript, "facts": self.facts, "dns": self.dns, "stored": self.stored,
            "exercised": self.exercised, "started": self.started,
            "duration": round(self.duration, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], scenario: Scenario, sender: str = "?") -> CaseResult:
        """A result again from ``as_dict``'s form (a results file, a pytest worker's report); the
        one place that reads it back."""
        result = data.get("sender_result")
        return cls(
            scenario, data.get("sender", sender), Verdict(data["verdict"]), data.get("reason", ""),
            [Outcome(c["check"], c["passed"], c["message"]) for c in data.get("checks", [])],
            None if result is None else SenderResult(**result), data.get("transcript", []),
            data.get("started", 0.0), data.get("duration", 0.0), data.get("fault"), data.get("facts", {}),
            data.get("dns", []), data.get("stored", []), data.get("exercised", True))
