"""One scenario = apply its tenant state to the running edge, make the sender send, judge.

``Runner(edge, sender).run(scenario)`` returns a ``CaseResult`` with a verdict:
PASS, FAIL (a ``must`` check failed), NON-STRICT (a ``should`` check failed), INFO (an ``info``
check failed), SKIP (not this sender's option) or ERROR (the harness, the environment or the
scenario broke, or the sender never connected: never the sender's FAIL). Applying a scenario
costs milliseconds: the edge is reconfigured in place, never restarted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any

from fakes.edge import CaseSetup, Edge, QuotaUse
from fakes.exo.errors import ConfigError
from fakes.exo.events import Fault, MidRun
from fakes.exo.lab import Demand, MissingRole, Roles, roles, unmet
from fakes.exo.names import IDENTITY_HOST, WELL_KNOWN_PORTS
from fakes.exo.observed import Connect, Disconnect, DnsQuery, Observed, describe
from fakes.exo.tenant import Tenant
from fakes.store import StoredMessage
from harness.checks import Outcome
from harness.observation import Observation, sender_facts
from harness.results import NOT_EXERCISED, SEVERITY_VERDICT, CaseResult, Verdict
from harness.scenario import Scenario
from harness.senders import Order, Sender, SenderResult

# Where a sender of each option sends from, as a role of the tenant (fakes.exo.lab); a sender
# that names its own address or role keeps it.
SOURCE_ROLES = {("direct-send", None): "spf_source", ("relay", "ip"): "ip_connector_source",
                ("relay", "certificate"): "unlisted_source", ("relay", None): "ip_connector_source"}
# why a case is not for a sender, by (the case's sign_in, the sender's)
_CASES = {"any": "a case for senders handed a password or a token", "oauth": "an OAuth case for devices that "
          "get their own tokens for a mailbox", "app": "an app-only case (client credentials)"}
_SENDERS = {"password": "this sender signs in with a password or a token it is handed",
            "oauth": "this sender gets its own tokens for a mailbox", "app": "this sender sends app-only"}
SIGN_IN_SKIPS = {(case, sender): f"{_CASES[case]}; {_SENDERS[sender]}" for case in _CASES for sender in _SENDERS}


def _need(lab: Roles, role: str) -> str:
    value = lab.value(role)
    if value is None:
        raise MissingRole(role)
    return value


log = logging.getLogger(__name__)
def transcript(obs: Observation) -> list[dict[str, Any]]:
    """Each connection as the report shows it: seconds since it opened, C:/S: lines and what the
    edge noted (the TLS boundary with version, cipher and SNI; the ClientHello's offer), each
    line as ``describe`` renders it (the live view's too)."""
    out = []
    for session in obs.sessions:
        opened = session.events[0].t
        lines = [f"{event.t - opened:7.3f} {text}" for event in session.events
                 if not isinstance(event, Connect | Disconnect) and (text := describe(event))]
        out.append({"session": session.id, "endpoint": session.endpoint, "peer": session.peer, "lines": lines})
    if obs.identity:  # what the sender asked login.microsoftonline.com, in order
        lines = [line for event in obs.identity for line in (describe(event) or "").splitlines()]
        out.append({"session": "identity", "endpoint": "identity", "peer": obs.identity[0].peer, "lines": lines})
    return out


SHOWN_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")


def stored_summary(copy: StoredMessage) -> dict[str, Any]:
    """A stored copy as the report shows it: where it went, its size, and its main headers."""
    try:
        head = copy.head(16384).split(b"\r\n\r\n", 1)[0]
    except OSError:
        head = b""
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head)
    return {"folder": copy.folder, "mailbox": copy.mailbox, "recipient": copy.recipient, "kind": copy.kind,
            "size": copy.size, "headers": {name: str(parsed[name]) for name in SHOWN_HEADERS if parsed[name]}}


class Runner:
    def __init__(self, edge: Edge, sender: Sender, *, tenant: Tenant | None = None, work_dir: Path | None = None,
                 manual_idle: float = 10.0, manual_wait: float | None = None) -> None:
        self.edge = edge
        self.sender = sender
        self.tenant = tenant or edge.tenant
        self.work_dir = work_dir or edge.state_dir / "senders"
        self.manual_idle = manual_idle
        self.manual_wait = manual_wait  # a person's device: how long each case waits (None: the case's timeout)
        self._client_certificates: dict[str, tuple[Path, Path]] = {}

    # -- applying a scenario ------------------------------------------------------------------

    def _tenant(self, scenario: Scenario) -> Tenant:
        """The tenant as the case runs it: the scenario's overrides over the run's tenant."""
        if not scenario.tenant:
            return self.tenant
        return self.tenant.with_overrides(scenario.tenant, source=f"{scenario.path}: tenant")

    @staticmethod
    def setup(scenario: Scenario, tenant: Tenant) -> CaseSetup:
        """What the case changes at the edge, every number taken from ``tenant``."""
        return CaseSetup(
            tenant=tenant,
            quota=tuple(QuotaUse(seed.mailbox, *seed.use(tenant)) for seed in scenario.quota),
            faults=tuple(Fault(stage=spec.stage, reply=spec.reply.reply() if spec.reply else None,
                               remaining=None if spec.times == "always" else spec.times, drop=spec.drop,
                               delay=spec.delay) for spec in scenario.faults),
            tls_versions=tuple(scenario.edge.tls_versions) if scenario.edge.tls_versions else None,
            certificate=scenario.edge.certificate,
            tarpit=scenario.edge.tarpit,
            during=tuple(MidRun(**{**step.model_dump(), "advance_clock": step.seconds(tenant)})
                         for step in scenario.during),
        )

    @staticmethod
    def demand(scenario: Scenario, tenant: Tenant, order: Order) -> Demand:
        seeded = sum(seed.use(tenant)[0] for seed in scenario.quota)
        return Demand(user=order.user if scenario.option in ("submission", "any") else None,
                      recipients=order.count * len(order.to) + seeded, message_size=order.size,
                      clock_jump=scenario.clock_jump(tenant))

    def _restore(self) -> None:
        self.edge.reset(self.tenant)

    def order(self, scenario: Scenario, tenant: Tenant) -> Order:
        """What the sender is asked to do, every address taken from the roles of the tenant the
        device was set up for (a scenario may change the tenant under it: a connector that no
        longer lists its address, say); ``MissingRole`` when there is no one for a part."""
        send, edge, lab = scenario.send, self.edge, roles(self.tenant)
        option = scenario.option if scenario.option != "any" else self.sender.option
        endpoint = "submission" if option == "submission" else "mx"
        addr, port = edge.addresses[endpoint]
        user = send.user or _need(lab, "submitter")
        # the ports a device of this option may try (587, 25, 465), mapped to the edge's
        listeners = ("submission", "submission-25", "implicit-tls") if endpoint == "submission" else ("mx",)
        ports = {WELL_KNOWN_PORTS[name]: edge.addresses[name][1] for name in listeners}
        if scenario.sign_in == "app":  # an app sends as a mailbox that granted it FullAccess
            user = send.user or _need(lab, "app_mailbox")
        sender = send.sender or (user if endpoint == "submission" else lab.mx_sender)
        box = tenant.mailbox(user)
        password = send.password if send.password is not None else (box.password if box else None)
        cert = key = None
        if option == "relay" and (scenario.connector or self.sender.connector) != "ip":
            cert, key = self._client_certificate(_need(lab, "certificate_domain"))
        default_to = _need(lab, "external") if option == "relay" else _need(lab, "internal")
        dns_host, dns_port = edge.addresses["dns"]
        identity_host, identity_port = edge.addresses["identity"]
        client_id, client_secret = lab.device_app or "", None
        if scenario.sign_in == "oauth":
            client_id = _need(lab, "device_app")
        elif scenario.sign_in == "app":
            client_id = _need(lab, "service_app")
            app = tenant.app(client_id)
            client_secret = app.secret if app else None
        return Order(
            host=tenant.mx_host if endpoint == "mx" else edge.hostname(endpoint), addr=addr, port=port,
            ports=ports, dns=f"{dns_host}:{dns_port}",
            sender=sender, to=tuple(send.to) or (default_to,), subject=send.subject, user=user,
            password=password, token=edge.mint_token(user) if send.token and box else None,
            cafile=str(edge.ca.cert_path), cert=str(cert) if cert else None, key=str(key) if key else None,
            source_addr=self._source(option, lab), count=send.count, size=send.size, timeout=scenario.timeout,
            identity=f"{identity_host}:{identity_port}", authority=f"https://{IDENTITY_HOST}/{lab.domain}",
            client_id=client_id, client_secret=client_secret, interval=send.interval, sign_in=scenario.sign_in,
        )

    def _source(self, option: str, lab: Roles) -> str:
        own = self.sender.source_addr
        if own:
            return own
        role = getattr(self.sender, "source_role", None) or SOURCE_ROLES.get((option, self.sender.connector))
        return _need(lab, role) if role else "127.0.0.1"

    def _client_certificate(self, name: str) -> tuple[Path, Path]:
        if name not in self._client_certificates:
            self._client_certificates[name] = self.edge.ca.client_certificate(name, self.work_dir)
        return self._client_certificates[name]

    # -- running one --------------------------------------------------------------------------

    def run(self, scenario: Scenario) -> CaseResult:
        """One case, judged. A fault of the harness itself is that case's ERROR, never a crash
        of the whole run (which must still write its reports)."""
        started = time.time()
        clock = time.monotonic()
        try:
            return self._masked(self._run(scenario, started, clock))
        except Exception as exc:
            log.exception("harness fault in %s", scenario.id)
            return self._masked(CaseResult(scenario, self.sender.name, Verdict.ERROR,
                                           f"harness fault: {type(exc).__name__}: {exc}", started=started,
                                           duration=time.monotonic() - clock, fault="harness"))

    def _run(self, scenario: Scenario, started: float, clock: float) -> CaseResult:
        if not scenario.applies_to(self.sender.option, self.sender.connector):
            wanted = scenario.option + (f" ({scenario.connector} connector)" if scenario.connector else "")
            mine = self.sender.option + (f" ({self.sender.connector} connector)" if self.sender.connector else "")
            return CaseResult(scenario, self.sender.name, Verdict.SKIP,
                              f"a {wanted} case; this sender uses {mine}", started=started)
        sign_in = self.sender.sign_in  # None: unknown (a command), so it runs
        if sign_in is not None and not scenario.applies_to(self.sender.option, self.sender.connector, sign_in):
            return CaseResult(scenario, self.sender.name, Verdict.SKIP, SIGN_IN_SKIPS[scenario.sign_in, sign_in],
                              started=started)
        try:
            scenario = scenario.cast(roles(self.tenant))
            tenant = self._tenant(scenario)
            order = self.order(scenario, tenant)
        except MissingRole as missing:
            return CaseResult(scenario, self.sender.name, Verdict.SKIP, f"not applicable: {missing}",
                              started=started)
        except ConfigError as exc:
            return CaseResult(scenario, self.sender.name, Verdict.ERROR, f"invalid scenario: {exc}",
                              started=started, fault="scenario")
        why_not = unmet(scenario.required(), tenant, self.demand(scenario, tenant, order))
        if why_not is not None:
            return CaseResult(scenario, self.sender.name, Verdict.SKIP, f"the tenant cannot host it: {why_not}",
                              started=started)
        try:
            self.edge.apply(self.setup(scenario, tenant))
            self.edge.secrets.add(order.password)  # tokens are masked by their shape
            mark = self.edge.records.mark()
            result = self.sender.send(order)
            manual = self.sender.manual
            budget = self.manual_wait if manual and self.manual_wait is not None else scenario.timeout
            self._wait(mark, budget - (time.monotonic() - clock), manual=manual)
            expected_host = order.host
            obs = self.observe(mark, expected_host)
            outcomes = [check.evaluate(obs) for check in scenario.expect]
        finally:
            self._restore()
        verdict, reason, fault = self.verdict(scenario, obs, outcomes, result)
        return CaseResult(scenario, self.sender.name, verdict, reason, outcomes, result, transcript(obs),
                          started, time.monotonic() - clock, fault, sender_facts(obs),
                          [{"name": e.name, "type": e.type, "rcode": e.rcode, "answers": list(e.answers),
                            "transport": e.transport} for e in obs.dns if isinstance(e, DnsQuery)],
                          [stored_summary(m) for m in obs.stored],
                          exercised=not (verdict == Verdict.INFO and reason.startswith(NOT_EXERCISED)))

    def observe(self, mark: int, expected_host: str) -> Observation:
        """What the edge saw of the sessions begun since ``mark``, with the copies they stored."""
        events = self.edge.records.window(mark)
        sessions = sorted({e.session for e in events if isinstance(e, Connect)})
        return Observation.build(events, self.edge.store.messages(sessions=sessions), expected_host)

    def _masked(self, case: CaseResult) -> CaseResult:
        """The result with every secret of the run masked (what a sender printed included)."""
        mask = self.edge.secrets
        result = case.sender_result
        if result is not None:
            case.sender_result = replace(result, stdout=mask.mask(result.stdout), stderr=mask.mask(result.stderr),
                                         error=mask.mask(result.error) if result.error else None,
                                         notes=mask.mask_data(result.notes))
        case.reason = mask.mask(case.reason)
        case.outcomes = [replace(o, message=mask.mask(o.message)) for o in case.outcomes]
        case.transcript = mask.mask_data(case.transcript)
        return case

    def _wait(self, mark: int, budget: float, *, manual: bool) -> None:
        """Until every connection of the window has closed. A device in a lab is given more: it
        must connect at all, and may come back to retry, so the window stays open until nothing
        has happened for ``manual_idle`` seconds (or the scenario's timeout)."""
        deadline = time.monotonic() + max(budget, 0.5)

        def quiet(events: list[Observed]) -> bool:
            opened = {e.session for e in events if isinstance(e, Connect)}
            closed = {e.session for e in events if isinstance(e, Disconnect)}
            if manual and not opened:
                return False
            return opened <= closed

        records = self.edge.records
        records.wait_for(quiet, max(deadline - time.monotonic(), 0), since=mark)
        while manual and time.monotonic() < deadline:
            seen = records.mark()
            settled = records.wait_for(lambda events: len(events) > 0, min(self.manual_idle,
                                       max(deadline - time.monotonic(), 0)), since=seen)
            if not settled:
                break  # idle long enough: the device is done
            records.wait_for(quiet, max(deadline - time.monotonic(), 0), since=mark)

    @staticmethod
    def verdict(scenario: Scenario, obs: Observation, outcomes: list[Outcome],
                 result: SenderResult) -> tuple[Verdict, str, str | None]:
        """The verdict, why, and for an ERROR whose fault it is: harness, environment or scenario."""
        if obs.harness_faults:
            return Verdict.ERROR, f"harness fault: {obs.harness_faults[0].error}", "harness"
        if result.error:
            return Verdict.ERROR, f"environment: the sender could not run: {result.error}", "environment"
        if not obs.sessions:
            return Verdict.ERROR, "environment: the sender never connected to the edge", "environment"
        if scenario.oauth_behaviour and not obs.identity:
            return (Verdict.SKIP, "not applicable: the sender never asked login.microsoftonline.com for a token "
                                  "(whether it should is judged by oauth/device-code-then-xoauth2)", None)
        failed = [o for o in outcomes if o.failed]
        if failed:
            reason = "; ".join(f"{o.check}: {o.message}" for o in failed)
            return SEVERITY_VERDICT[scenario.severity], reason, None
        idle = [o for o in outcomes if o.not_exercised]
        if idle:  # no verdict without exercise: what the case judges never happened
            return Verdict.INFO, NOT_EXERCISED + "; ".join(f"{o.check}: {o.message}" for o in idle), None
        return Verdict.PASS, "; ".join(o.message for o in outcomes if o.passed), None
