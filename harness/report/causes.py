"""Why a sender failed, once: failures grouped by their root cause, a verdict per option, and
which options the sender can use (the advisor).

``harness.observation.sender_facts(obs)`` is what one case saw the sender do (TLS versions
offered, endpoints, STARTTLS, AUTH mechanisms, a client certificate, requests to the identity
platform, where it sent from and to); the runner keeps it in each ``CaseResult``.
``causes(results)`` explains every case that did not pass by the first rule its facts or failed
checks match ("offers TLS 1.0 only" explains every case whose handshake it broke), else by its
first failed check; each cause names the case that quotes the guide's rule and gives the remedy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fakes.exo.names import TLS_VERSIONS, WELL_KNOWN_PORTS
from harness.results import CaseResult, Verdict

NOT_PASSED = (Verdict.FAIL, Verdict.NON_STRICT, Verdict.INFO)
OPTIONS = {"submission": "Option 1: SMTP AUTH client submission (smtp.office365.com, port 587)",
           "direct-send": "Option 2: direct send (the tenant's MX host, port 25)",
           "relay": "Option 3: SMTP relay through an inbound connector (the tenant's MX host, port 25)"}


@dataclass(frozen=True)
class Rule:
    key: str
    label: Callable[[dict[str, Any]], str]
    matches: Callable[[dict[str, Any], set[str]], bool]  # (facts, failed checks)
    # the check whose failure quotes the guide's rule and says what to change: the cause takes its
    # advice from its first case that failed it (the rules name checks and facts, never a case)
    check: str


def _highest(facts: dict[str, Any]) -> str | None:
    offered = facts.get("tls_offered") or []
    return offered[-1] if offered else None


RULES = (
    Rule("legacy-tls",
         lambda f: f"offers only {', '.join(f['tls_offered'])}: Exchange Online requires TLS 1.2 or later",
         lambda f, _: _highest(f) in ("TLSv1", "TLSv1.1"), "tls"),
    Rule("implicit-tls", lambda f: "uses port 465 with implicit TLS, which Exchange Online does not serve",
         lambda f, _: "implicit-tls" in f.get("endpoints", []), "port"),
    Rule("no-starttls", lambda f: "sends its credentials without STARTTLS",
         lambda f, failed: bool(f.get("auth_before_tls")) or "starttls_before_auth" in failed,
         "starttls_before_auth"),
    Rule("no-certificate-check", lambda f: "never verifies the server certificate",
         lambda f, failed: "certificate_verified" in failed, "certificate_verified"),
    Rule("ip-literal", lambda f: "is set up with an IP address instead of the server's name",
         lambda f, failed: "dns_name" in failed, "dns_name"),
    Rule("auth-plain", lambda f: "authenticates with AUTH PLAIN, which Exchange Online does not offer",
         lambda f, _: "PLAIN" in f.get("auth_mechanisms", []), "auth_mechanism"),
    Rule("no-oauth", lambda f: "signs in with a password only, never with OAuth (XOAUTH2)",
         lambda f, failed: "auth_mechanism" in failed and "XOAUTH2" not in f.get("auth_mechanisms", [])
         and not f.get("identity_requests"), "auth_mechanism"),
    Rule("ropc", lambda f: "signs in with its user's password at the token endpoint (ROPC): basic "
                           "authentication by another name, refused once Conditional Access requires MFA",
         lambda f, failed: "oauth_no_password_grant" in failed, "oauth_no_password_grant"),
    Rule("storm", lambda f: "retries refusals in a tight loop",
         lambda f, failed: bool(failed & {"no_retry_after_permanent", "no_auth_storm", "oauth_sign_in_again",
                                          "oauth_stops_when_refused"}),
         "no_auth_storm"),
    Rule("no-retry", lambda f: "gives up after a temporary (4xx) failure or a dropped connection",
         lambda f, failed: "retried_after_transient" in failed, "retried_after_transient"),
)


@dataclass
class Cause:
    key: str
    label: str
    cases: list[CaseResult] = field(default_factory=list)
    source: CaseResult | None = None  # the case whose reference and advice the cause quotes

    @property
    def advice(self) -> str:
        return (self.source or self.cases[0]).scenario.advice

    @property
    def reference(self) -> list[Any]:
        return (self.source or self.cases[0]).scenario.reference


def causes(results: list[CaseResult]) -> list[Cause]:
    """Every case that did not pass, each under one cause; the causes explaining most first."""
    found: dict[str, Cause] = {}
    for result in results:
        if result.verdict not in NOT_PASSED or not result.exercised:
            continue
        failed = _failed(result)
        rule = next((r for r in RULES if r.matches(result.facts, failed)), None)
        if rule is not None:
            cause = found.setdefault(rule.key, Cause(rule.key, rule.label(result.facts)))
            if cause.source is None and rule.check in failed:
                cause.source = result
        else:
            first = next((o for o in result.outcomes if o.failed), None)
            key = f"check:{first.check}" if first else f"verdict:{result.verdict}"
            label = f"{first.check}: {first.message}" if first else result.reason
            cause = found.setdefault(key, Cause(key, label))
        cause.cases.append(result)
    return sorted(found.values(), key=lambda c: (-len(c.cases), c.key))


def _failed(result: CaseResult) -> set[str]:
    return {o.check for o in result.outcomes if o.failed}


@dataclass(frozen=True)
class OptionVerdict:
    option: str
    title: str
    conforms: bool | None  # None: not judged (every case skipped, in error or not exercised)
    because: str


def _grouped(results: list[CaseResult]) -> str:
    """Reasons of cases that were not judged, each once with its count: "35 ERROR: the sender never
    connected"."""
    counts: dict[tuple[str, str], int] = {}
    for r in results:
        label = "not exercised" if not r.exercised else str(r.verdict)
        why = r.reason.split(": ", 1)[1] if not r.exercised and ": " in r.reason else r.reason
        counts[label, why] = counts.get((label, why), 0) + 1
    return "; ".join(f"{n} {label}: {why}" for (label, why), n in sorted(counts.items(), key=lambda i: -i[1]))


def option_verdicts(results: list[CaseResult], found: list[Cause]) -> list[OptionVerdict]:
    """Per option: "yes" only when its cases were judged and every must was met; "no" only for a
    FAIL (a fault of the sender); else not judged, with why (an ERROR is never the sender's)."""
    out = []
    for option, title in OPTIONS.items():
        mine = [r for r in results if r.scenario.option in (option, "any")]
        judged = [r for r in mine if r.exercised and r.verdict not in (Verdict.SKIP, Verdict.ERROR)]
        broken = [r for r in judged if r.verdict == Verdict.FAIL]
        unjudged = [r for r in mine if r not in judged and r.verdict != Verdict.SKIP]
        if broken:
            labels = [c.label for c in found if any(r in broken for r in c.cases)]
            out.append(OptionVerdict(option, title, False, f"{len(broken)} case(s) failed: {'; '.join(labels)}"))
        elif not judged:
            out.append(OptionVerdict(option, title, None, _grouped(mine) if mine else "the catalog has no case of it"))
        elif any(r.verdict == Verdict.ERROR for r in unjudged):
            out.append(OptionVerdict(option, title, None, f"{len(unjudged)} of its cases could not be judged "
                                                          f"({_grouped(unjudged)})"))
        else:
            shy = [r for r in judged if r.verdict in NOT_PASSED]
            note = f"; {len(shy)} should/info case(s) not met" if shy else ""
            idle = f"; {_grouped(unjudged)}" if unjudged else ""
            out.append(OptionVerdict(option, title, True, f"every must of its {len(judged)} judged case(s) "
                                                          f"met{note}{idle}"))
    return out


# Microsoft's comparison of the three options (MFD (de), "Vergleichen der Optionen"), in English
COMPARISON = (
    ("Send to recipients in your domains", ("Yes", "Yes", "Yes")),
    ("Relay to the internet through Microsoft 365", ("Yes", "No: direct delivery only", "Yes")),
    ("Saved in Sent Items", ("Yes", "No", "No")),
    ("Network port open", ("587 or 25", "25", "25")),
    ("Device or application server must support TLS", ("Required (1.2 or later)", "Optional", "Optional")),
    ("Authentication required", ("A Microsoft 365 user name and password (or OAuth)", "None",
                                 "One or more static IP addresses (or a certificate)")),
    # not rows of Microsoft's table: what the sender was seen to do that decides between the options
    ("Sends from", ("any address", "an address in the SPF record (recommended static)",
                    "a static address in the connector")),
    ("Sends to", ("inside and outside the organization", "inside the organization only",
                  "inside and outside the organization")),
)
# For each cause: the options a device with it can still use, and how.
STILL_OPEN = {
    "legacy-tls": ({"direct-send", "relay"}, "TLS is optional at the MX (option 2, or 3 by IP address): it refuses "
                   "the TLS 1.0/1.1 handshake, and the device sends again without STARTTLS; while it lasts, the "
                   "opt-in endpoint for legacy TLS clients; or a local mail server that relays for the device"),
    "implicit-tls": ({"direct-send", "relay"}, "port 25 at the tenant's MX (option 2 or 3), or a local mail server"),
    "no-starttls": ({"direct-send", "relay"}, "TLS is optional at the MX (option 2 or 3), or a local mail server"),
    "auth-plain": ({"direct-send", "relay"}, "no AUTH at the MX (option 2, or option 3 by IP address)"),
    "no-oauth": ({"direct-send", "relay"}, "no sign-in at the MX (option 2, or option 3 by IP address); basic "
                 "authentication only while an administrator keeps it on"),
}


@dataclass(frozen=True)
class Advice:
    option: str
    title: str
    can_use: bool | None  # None: not known from this run
    why: str


def seen(results: list[CaseResult]) -> dict[str, str]:
    """What the sender was seen to do over the whole run, for the advisor's column."""
    facts = [r.facts for r in results if r.facts]
    endpoints = sorted({e for f in facts for e in f.get("endpoints", [])})
    offered = sorted({v for f in facts for v in f.get("tls_offered", [])}, key=TLS_VERSIONS.index)
    mechanisms = sorted({m for f in facts for m in f.get("auth_mechanisms", [])})
    return {
        "Network port open": ", ".join(f"{WELL_KNOWN_PORTS.get(e, e)} ({e})" for e in endpoints) or "no connection",
        "Device or application server must support TLS": (
            f"offers {', '.join(offered)}" if offered else "no TLS")
        + ("; STARTTLS" if any(f.get("starttls") for f in facts) else ""),
        "Authentication required": ", ".join(
            [*(f"AUTH {m}" for m in mechanisms),
             *(["OAuth tokens of its own"] if any(f.get("identity_requests") for f in facts) else []),
             *(["a client certificate"] if any(f.get("client_certificate") for f in facts) else [])]) or "none",
        "Sends from": ", ".join(sorted({a for f in facts for a in f.get("sources", [])})) or "nowhere",
        "Sends to": ", ".join(sorted({d for f in facts for d in f.get("recipient_domains", [])})) or "no recipient",
    }


def advise(verdicts: list[OptionVerdict], found: list[Cause]) -> list[Advice]:
    """Which options the sender can use: those it was judged to conform to, and, for a cause that
    rules one out, the ones a device with that cause can still use."""
    keys = [c.key for c in found]
    out = []
    for verdict in verdicts:
        if verdict.conforms is True:
            out.append(Advice(verdict.option, verdict.title, True, verdict.because))
            continue
        blocking = [k for k in keys if k in STILL_OPEN and verdict.option not in STILL_OPEN[k][0]]
        if verdict.conforms is False:
            remedies = "; ".join(STILL_OPEN[k][1] for k in blocking) or "fix the causes above"
            out.append(Advice(verdict.option, verdict.title, False, f"{verdict.because}. Instead: {remedies}"))
            continue
        if blocking:
            out.append(Advice(verdict.option, verdict.title, None, f"not tested; a device that "
                              f"{next(c.label for c in found if c.key == blocking[0])} cannot use it either"))
        elif any(k in STILL_OPEN for k in keys):
            how = "; ".join(STILL_OPEN[k][1] for k in keys if k in STILL_OPEN)
            out.append(Advice(verdict.option, verdict.title, None, f"not tested; likely usable: {how}. Run the "
                              f"catalog with --option {verdict.option} to know"))
        else:
            out.append(Advice(verdict.option, verdict.title, None, f"not tested: run the catalog with --option "
                              f"{verdict.option}"))
    return out
