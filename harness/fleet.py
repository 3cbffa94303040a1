"""Many devices at once: events (from a capture or the lab's records) grouped by device and judged
with the catalog's checks, for a fleet report.

A device is a source address; its names are the EHLO names it gave (which often name the model).
Each device is judged with the checks a capture can show (``FLEET_CHECKS``); a check that needs
what the capture does not show says so ("not visible in the capture"), never guesses. The first
cause (``harness.report.causes.RULES``) says what would make it fail at Exchange Online, and the
advisor which of Microsoft's options it can still use.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakes.exo.errors import ExoEdgeError
from fakes.exo.names import IDENTITY_NAMES, MINIMUM_TLS, SUBMISSION_HOST, WELL_KNOWN_PORTS
from fakes.exo.observed import (
    AuthOutcome,
    ClientHelloSeen,
    Command,
    Connect,
    DhcpRequest,
    Disconnect,
    DnsMalformed,
    DnsQuery,
    IdentityRequest,
    Observed,
    TlsFailed,
    UnknownRecord,
    decode,
    describe,
)
from fakes.exo.secrets import SecretMask
from fakes.tls import read_hello
from harness import checks as C
from harness.check_base import Outcome
from harness.decrypt import KeyLog
from harness.observation import Observation, sender_facts, without_suffix
from harness.report.causes import RULES, STILL_OPEN

if TYPE_CHECKING:  # the tenant's model (pydantic) is loaded only where a tenant is given
    from fakes.exo.tenant import Tenant

MAX_SESSIONS = 50  # a device's newest connections kept whole for its section; older ones are counted
MAX_DEVICES = 20_000  # devices followed in one judgement; later ones are counted, and the page says so
NOT_VISIBLE = "not visible in the capture"
TLS_CONNECTION = "tls-connection"  # a connection to login.microsoftonline.com, its requests not read
# Failures Exchange Online lives with (it adds a missing Date or Message-ID): listed, never a cause
ADVISORY = frozenset({"well_formed"})
OPTION_NAMES = {"submission": "SMTP AUTH client submission (option 1)", "direct-send": "direct send (option 2)",
                "relay": "SMTP relay through a connector (option 3)"}


class JudgeError(ExoEdgeError, ValueError):
    """What was given to judge is not a capture, a state directory or a records file (the message
    names the file, and the line for a records file)."""


@dataclass
class Device:
    address: str
    names: list[str] = field(default_factory=list)  # EHLO names, in the order first given
    events: list[Observed] = field(default_factory=list)
    sessions: collections.deque[str] = field(default_factory=collections.deque)
    dropped: int = 0  # connections left out of its section (older than MAX_SESSIONS)

    def take(self, event: Observed) -> None:
        if isinstance(event, Connect):
            self.sessions.append(event.session)
            if len(self.sessions) > MAX_SESSIONS:  # the oldest connection leaves the section, whole
                gone = self.sessions.popleft()
                self.events = [e for e in self.events if e.session != gone]
                self.dropped += 1
        if isinstance(event, Command) and event.verb in ("EHLO", "HELO"):
            name = event.line.split(" ", 1)[1].strip() if " " in event.line else ""
            if name and name not in self.names and len(self.names) < 5:
                self.names.append(name[:100])
        self.events.append(event)


class Fleet(dict[str, Device]):
    """Devices by address; past ``MAX_DEVICES`` new addresses are counted, not followed."""

    unfollowed: collections.Counter[str]

    def __init__(self) -> None:
        super().__init__()
        self.unfollowed = collections.Counter()

    def device(self, address: str) -> Device | None:
        found = self.get(address)
        if found is None:
            if len(self) >= MAX_DEVICES:
                if address in self.unfollowed or len(self.unfollowed) < MAX_DEVICES:
                    self.unfollowed[address] += 1
                else:
                    self.unfollowed["(more)"] += 1
                return None
            found = self[address] = Device(address)
        return found


def group(events: Iterable[Observed]) -> Fleet:
    """Events by device (source address). A TLS connection to login.microsoftonline.com becomes a
    sign-in request of the device (its content is encrypted); other HTTPS is left out. What is held
    stays bounded: devices (``MAX_DEVICES``), each its newest connections, and a connection's owner
    only while it is open."""
    devices = Fleet()
    owner: dict[str, str] = {}  # open session -> device address
    identity: set[str] = set()  # open sessions to port 443
    for event in events:
        if isinstance(event, ClientHelloSeen):
            event = read_hello(event)  # the lab's records keep it as sent
        if isinstance(event, Connect):
            if event.endpoint == "identity" or event.local and event.local[1] == WELL_KNOWN_PORTS["identity"]:
                identity.add(event.session)
                owner[event.session] = event.peer[0]
                continue
            owner[event.session] = event.peer[0]
            address = event.peer[0]
        elif isinstance(event, DnsQuery | DnsMalformed):
            address = event.peer[0]
        elif isinstance(event, DhcpRequest):
            device = devices.device(event.address)
            if device is None:
                continue
            if event.hostname not in device.names:
                device.names.insert(0, event.hostname)  # the name it gave itself comes first
            device.take(event)
            continue
        elif isinstance(event, IdentityRequest):
            address = event.peer
        elif event.session in identity:
            if isinstance(event, Disconnect):
                identity.discard(event.session)
                del owner[event.session]
                continue
            if isinstance(event, ClientHelloSeen) and (event.sni or "").lower() in IDENTITY_NAMES:
                event = IdentityRequest(session=event.session, t=event.t, peer=owner[event.session],
                                        endpoint=TLS_CONNECTION)
                address = event.peer
            else:
                continue
        elif event.session in owner:
            address = owner[event.session]
            if isinstance(event, Disconnect):  # the connection is over: nothing more will name it
                del owner[event.session]
        else:
            continue
        if (device := devices.device(address)) is not None:
            device.take(event)
    return devices


@dataclass(frozen=True)
class Connection:
    """One connection of a device, for its retry timing: when, after how long, how it ended."""

    session: str
    endpoint: str
    at: float  # seconds since the device's first event
    gap: float | None  # seconds since its previous connection ended (None: the first shown)
    ended: str  # the last reply (without Exchange's tail), or how the connection broke off


def timing(obs: Observation, opened: float, mask: SecretMask) -> list[Connection]:
    out: list[Connection] = []
    last_end: float | None = None
    endings: list[str] = []
    for session in obs.sessions:
        failed = session.of(TlsFailed)
        if failed:
            endings.append(f"TLS failed: {failed[-1].reason}")
        elif session.exchanges:
            endings.append(without_suffix(session.exchanges[-1].line)[:160].replace("\n", " "))
        else:
            endings.append("no reply seen")
    masked = mask.mask("\n".join(endings)).split("\n") if endings else []  # one pass for them all
    for session, ended in zip(obs.sessions, masked, strict=True):
        start, end = session.events[0].t, session.events[-1].t
        out.append(Connection(session.id, session.endpoint, round(start - opened, 3),
                              None if last_end is None else round(start - last_end, 3), ended))
        last_end = end
    return out


@dataclass
class Judged:
    device: Device
    option: str | None  # what it sends with, as far as seen
    outcomes: list[Outcome]
    facts: dict[str, Any]
    cause: str | None  # the first cause: why it would fail at Exchange Online
    cause_key: str | None
    instead: str | None  # the advisor: what it can use instead
    transcript: list[str]
    timing: list[Connection] = field(default_factory=list)  # its connections in order: the retry timing

    @property
    def ja4(self) -> list[str]:
        """The JA4 fingerprints of its ClientHellos (a capture's): the TLS stack, often the model."""
        return sorted({e.ja4 for e in self.device.events if isinstance(e, ClientHelloSeen) and e.ja4})

    @property
    def verdict(self) -> str:
        if self.cause:
            return "would fail"
        if not self.device.sessions:
            return "sent nothing"
        return "would work" if any(o.passed for o in self.outcomes) else "not judged"

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.device.address, "names": self.device.names, "ja4": self.ja4, "option": self.option,
                "verdict": self.verdict, "cause": self.cause, "instead": self.instead,
                "connections": len(self.device.sessions) + self.device.dropped, "facts": self.facts,
                "timing": [vars(c) for c in self.timing],
                "checks": [{"check": o.check, "passed": o.passed, "message": o.message} for o in self.outcomes]}


def fleet_checks(option: str | None, signs_in: bool = False) -> list[C._Check]:
    """The checks a device is judged with: what its option requires and what can be seen
    (``signs_in``: it was seen at login.microsoftonline.com)."""
    checks: list[C._Check] = [C.Port(allowed=[WELL_KNOWN_PORTS["submission"], WELL_KNOWN_PORTS["mx"]])]
    if option == "submission":
        checks += [C.StartTlsBeforeAuth(), C.Tls(minimum=MINIMUM_TLS), C.AuthMechanism(), C.NoAuthStorm()]
    else:  # at the MX TLS is opportunistic, but what is offered must be 1.2 or later to be used
        checks += [C.Tls(minimum=MINIMUM_TLS, required=False), C.NoAuth()]
    checks += [C.RetriedAfterTransient(), C.NoRetryAfterPermanent(), C.WellFormed()]
    if signs_in:  # how it signs in: what its requests show, where TLS was opened
        checks += [C.OAuthNoPasswordGrant(), C.OAuthTenantAuthority(), C.OAuthPollingPace(), C.OAuthStopsWhenRefused()]
    return checks


def judge(device: Device, *, tenant: Tenant | None = None, transcript: bool = True) -> Judged:
    """The device judged with the checks its option calls for; ``transcript``: also its lines for
    the report (the live view's rolling verdict needs none)."""
    obs = Observation.build(device.events, [], SUBMISSION_HOST)
    endpoints = {s.endpoint for s in obs.sessions}
    signed_in = any(c.verb == "AUTH" for s in obs.smtp for c in s.commands()) or any(
        isinstance(e, AuthOutcome) for e in device.events)
    option: str | None = None
    if endpoints & {"submission", "submission-25", "legacy", "implicit-tls"} or signed_in:
        option = "submission"
    elif "mx" in endpoints:
        relayed = tenant is not None and _relayed(tenant, device.address)
        option = "relay" if relayed else "direct-send"
    outcomes = [_visible(check.evaluate(obs), obs) for check in fleet_checks(option, bool(obs.identity))]
    outcomes.append(_accepted(obs))
    facts = sender_facts(obs)
    failed = {o.check for o in outcomes if o.failed and o.check not in ADVISORY}
    rule = next((r for r in RULES if r.matches(facts, failed)), None)
    first = next((o for o in outcomes if o.failed and o.check not in ADVISORY), None)
    cause = rule.label(facts) if rule else (f"{first.check}: {first.message}" if first else None)
    key = rule.key if rule else (f"check:{first.check}" if first else None)
    instead = STILL_OPEN[key][1] if key in STILL_OPEN else None
    if not transcript:
        return Judged(device, option, outcomes, facts, cause, key, instead, [])
    opened = device.events[0].t if device.events else 0.0
    mask = SecretMask()  # no secret is known from a capture: tokens are masked by their shape
    lines = [f"{event.t - opened:9.3f} {event.session} {text}" for event in device.events
             if (text := describe(event)) is not None]
    lines = mask.mask("\n".join(lines)).split("\n") if lines else []  # one pass for the transcript
    return Judged(device, option, outcomes, facts, cause, key, instead, lines, timing(obs, opened, mask))


def _relayed(tenant: Tenant, address: str) -> bool:
    """An inbound connector of the tenant takes mail from ``address`` (by its IP)."""
    from fakes.exo import rules

    return rules.attribute(tenant, address, None, None).connector is not None


def live_verdict(events: list[Observed], tenant: Tenant | None = None) -> str:
    """A device's rolling verdict in the lab's live view, from its newest events."""
    devices = list(group(events).values())
    if not devices:
        return ""
    judged = judge(devices[0], tenant=tenant, transcript=False)
    if judged.cause:
        return f"would fail at Exchange Online: {judged.cause}"
    return judged.verdict


def _accepted(obs: Observation) -> Outcome:
    """Whether Exchange took what the device sent: a permanent refusal of its sign-in, sender,
    recipients or message is a failure whatever else it did right (an external recipient by
    direct send, a mailbox with SMTP AUTH off)."""
    refused = [x for _, x in obs.exchanges() if x.code >= 500 and x.stage in ("auth", "mail", "rcpt", "message")]
    if refused:
        return Outcome("accepted", False, f"Exchange refused {refused[0].command or 'it'}: "
                                          f"{without_suffix(refused[0].line)}")
    taken = [x for _, x in obs.exchanges() if x.code == 250 and x.stage == "message"]
    if taken:
        return Outcome("accepted", True, f"{len(taken)} message(s) accepted")
    return Outcome("accepted", None, "no message was seen accepted")


def _visible(outcome: Outcome, obs: Observation) -> Outcome:
    """In a capture without the keys, what happened inside TLS is not seen: a check that found
    nothing to judge says so, rather than that it did not apply."""
    if outcome.passed is None and outcome.check.startswith("oauth_"):
        read = {e.session for e in obs.identity if e.endpoint != TLS_CONNECTION}
        if any(e.endpoint == TLS_CONNECTION and e.session not in read for e in obs.identity):
            return Outcome(outcome.check, None, f"{NOT_VISIBLE} (inside TLS): {outcome.message}", outcome.must_apply)
        return outcome
    if outcome.passed is None and any(s.tls_hidden for s in obs.smtp):
        return Outcome(outcome.check, None, f"{NOT_VISIBLE} (inside TLS): {outcome.message}", outcome.must_apply)
    return outcome


# -- reading --------------------------------------------------------------------------------------

PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")


def read(path: Path, ports: dict[int, str] | None = None, keys: KeyLog | None = None,
         submission: Iterable[str] = ()) -> tuple[Iterator[Observed], bool]:
    """The events at ``path`` (a capture, a state directory, or a records file) and whether they
    come from a capture (``ports``: the endpoint each server port of the capture reaches;
    ``keys``: the TLS secrets that open what went inside its connections; ``submission``: addresses
    of smtp.office365.com in it, beside those its DNS answers give)."""
    if path.is_dir():
        records = path / "records.jsonl"
        if not records.exists():
            raise JudgeError(f"{path}: a directory without records.jsonl: not a state directory of exoedge serve")
        return _records(records), False
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise JudgeError(f"{path}: cannot read it ({exc.strerror})") from None
    if head in PCAP_MAGICS:
        from harness.capture import events

        return events(path, ports, keys, submission), True
    if head[:1] == b"{":
        return _records(path), False
    raise JudgeError(f"{path}: not a capture (pcap or pcapng), a state directory or a records.jsonl file")


def _records(path: Path) -> Iterator[Observed]:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                yield decode(line)
            except UnknownRecord as exc:
                raise JudgeError(f"{path}:{number}: not a record of exoedge ({exc})") from None
