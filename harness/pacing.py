"""A lab run paced for a person walking to a printer: the device settings first, then each case
started, retried or skipped from the keyboard, its connections shown as they close.

``Pacing`` reads the person's answers from a stream (the terminal's); without a terminal the run
is unattended: it says so, asks nothing, and uses the waits as given.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from fakes.edge import Edge
from fakes.live import LiveSession, LiveSessions
from harness.runner import CaseResult, Runner, Verdict
from harness.scenario import Scenario


def device_settings(edge: Edge) -> str:
    """What to set on a device to send through this edge, as a person at its web page reads it."""
    tenant = edge.tenant
    box = next((b for b in tenant.mailboxes if b.password and tenant.smtp_auth_enabled(b)), None)
    lines = [
        f"DNS server:        {edge.advertise}" + ("" if edge.addresses["dns"][1] == 53 else
                                                  f" (port {edge.addresses['dns'][1]}: devices need 53)"),
        f"Option 1, SMTP AUTH client submission: server smtp.office365.com, port "
        f"{edge.addresses['submission'][1]}, STARTTLS, TLS 1.2 or later",
        f"    user {box.address if box else '(a mailbox of the tenant file)'}, its password from the tenant file"
        " (or OAuth: client id of the tenant's app, authority https://login.microsoftonline.com/"
        f"{tenant.accepted_domains[0]}, sign in at https://www.microsoft.com/link)",
        f"Option 2, direct send: server {tenant.mx_host}, port {edge.addresses['mx'][1]}, no AUTH, "
        "to mailboxes of the tenant only",
        f"Option 3, relay: server {tenant.mx_host}, port {edge.addresses['mx'][1]}, from an address of a "
        "connector (or with the connector's certificate)",
        f"Trust the lab CA: exoedge ca export --format der --state-dir {edge.state_dir} "
        "(DER .cer for device web pages; --format pem for the rest)",
    ]
    return "\n".join(lines)


@dataclass
class Pacing:
    answers: TextIO | None  # None: unattended (no terminal)
    say: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr, flush=True))
    sessions: LiveSessions = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = LiveSessions(self._closed)

    @classmethod
    def for_terminal(cls) -> Pacing:
        return cls(sys.stdin if sys.stdin is not None and sys.stdin.isatty() else None)

    def _closed(self, session: LiveSession) -> None:
        self.say(f"    {session.line()}")

    def _ask(self, question: str) -> str:
        if self.answers is None:
            return ""
        self.say(question)
        line = self.answers.readline()
        return line.strip().lower() if line else "q"

    def ready(self, settings: str, wait: float) -> None:
        self.say(f"Set on the device:\n{settings}")
        if self.answers is None:
            self.say(f"Unattended (no terminal): each case waits up to {wait:g} s for the device, nothing is asked.")
            return
        self._ask("Press Enter when the device is set up and ready.")

    def run(self, runner: Runner, scenario: Scenario) -> CaseResult:
        """One case: started (or skipped) by the person, then retried as often as they ask."""
        while True:
            answer = self._ask(f"\n{scenario.id}: {scenario.title}\n  Enter: start this case · s: skip it")
            if answer in ("s", "q"):
                return CaseResult(scenario, runner.sender.name, Verdict.SKIP, "skipped by the person at the device",
                                  started=time.time())
            result = runner.run(scenario)
            self.say(f"  {result.verdict}: {result.reason[:200]}")
            if self._ask("  Enter: next case · r: retry this one") != "r":
                return result
