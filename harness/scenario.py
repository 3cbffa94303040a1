"""Scenario files: what a sender must do, as data.

One YAML file per case under ``scenarios/<option>/``; its id is its path without the extension
(``submission/tls-1.2-or-later``). ``load_scenario(path)`` validates it (unknown keys and bad
values fail with file, line, key and value); ``load_catalog(root)`` loads them all and reports
every bad file at once; ``schema()`` is the JSON Schema committed as ``scenarios/schema.json``.

A scenario names no tenant's addresses: it says ``{submitter}``, ``{internal}``, ``{external}``
and the other roles of ``fakes.exo.lab``, and ``Scenario.cast(roles)`` fills them in for the
tenant in use (raising ``MissingRole`` when that tenant has no one for a part).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fakes.exo import replies as R
from fakes.exo.documents import load_document, read_text
from fakes.exo.errors import ConfigError, ConfigErrors, InternalError
from fakes.exo.lab import (
    NEEDS,
    OPTION_NEEDS,
    ROLE_NAMES,
    SIGN_IN_NEEDS,
    MissingRole,
    Roles,
    cast,
    past_token_lifetime,
    roles,
)
from fakes.exo.names import PLACEHOLDER
from fakes.exo.tenant import Tenant
from harness.checks import Check, TlsVersion

Option = Literal["submission", "direct-send", "relay", "any"]
Severity = Literal["must", "should", "info"]
# OAuth cases are SMTP AUTH submission cases, kept together under scenarios/oauth/
OPTION_FOLDERS = {"submission": ("submission", "oauth"), "direct-send": ("direct-send",), "relay": ("relay",)}
FaultStage = Literal["ehlo", "starttls", "auth", "mail", "rcpt", "data", "message"]
REPLY_NAMES = sorted(R.CATALOG)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reference(_Strict):
    source: str = Field(min_length=1, description="MFD, FIX, SUB, OAUTH, ... as in EXO-REFERENCE.md")
    text: str = Field(min_length=1, description="what the guide or the service says")


class ReplySpec(_Strict):
    """A reply by its name in fakes/exo/replies.py, or spelled out."""

    name: str | None = Field(None, description=f"one of {', '.join(REPLY_NAMES)}")
    code: int | None = Field(None, ge=400, le=599)
    enhanced: str | None = Field(None, pattern=r"^\d\.\d{1,3}\.\d{1,3}$")
    text: str | None = None

    @model_validator(mode="after")
    def _named_or_spelled(self) -> ReplySpec:
        if self.name is not None:
            if self.name not in REPLY_NAMES:
                raise ValueError(f"name={self.name!r} is not a reply of fakes/exo/replies.py")
            if self.code or self.text:
                raise ValueError("give a reply by name or by code and text, not both")
        elif self.code is None or not self.text:
            raise ValueError("a reply needs a name, or a code and a text")
        return self

    def reply(self) -> R.Reply:
        if self.name:
            reply: R.Reply = getattr(R, self.name)
            return reply
        if self.code is None or self.text is None:
            raise InternalError("expected self.code is not None and self.text is not None")
        return R.Reply(self.code, self.enhanced, self.text, "scenario", "injected", suffix=True)


class FaultSpec(_Strict):
    """Something the edge does wrong on purpose: a reply at a stage, a dropped connection, a delay."""

    stage: FaultStage
    reply: ReplySpec | None = None
    drop: bool = Field(False, description="close the connection instead of answering")
    delay: float = Field(0.0, ge=0, le=60, description="seconds to wait before answering")
    times: int | Literal["always"] = 1

    @model_validator(mode="after")
    def _does_something(self) -> FaultSpec:
        if self.reply is None and not self.drop and not self.delay:
            raise ValueError("a fault needs a reply, drop: true or a delay")
        return self


class QuotaSeed(_Strict):
    """Use already made of a mailbox's limits when the case starts; ``limit``: all of it (the
    tenant's own limit, whatever it is)."""

    mailbox: str = Field(description="a mailbox, or a role: {submitter}")
    recipients_today: Annotated[int, Field(ge=0)] | Literal["limit"] = 0
    messages_this_minute: Annotated[int, Field(ge=0)] | Literal["limit"] = 0

    def use(self, tenant: Tenant) -> tuple[int, int]:
        """(recipients today, messages this minute) for ``tenant``."""
        limits = tenant.limits
        return (limits.recipients_per_day if self.recipients_today == "limit" else self.recipients_today,
                limits.messages_per_minute if self.messages_this_minute == "limit" else self.messages_this_minute)


class EdgeVariation(_Strict):
    tls_versions: list[TlsVersion] | None = Field(None, description="the only versions the edge offers")
    certificate: Literal["valid", "wrong-name", "unknown-ca", "expired"] = "valid"
    tarpit: float | None = Field(None, ge=0, le=60, description="seconds an error reply waits, as Exchange Online's "
                                                              "do (about 5); unset: the edge's own setting")


class MidRunStep(_Strict):
    """What happens at the service while the sender is at work: once the edge has stored the
    sender's ``after_stored``-th message, before it answers 250 for it."""

    after_stored: int = Field(1, ge=1, le=100)
    revoke_sign_in: str | None = Field(None, description="a mailbox or a role ({submitter}): its refresh tokens "
                                                         "are revoked (Revoke-MgUserSignInSession)")
    disable_app: str | None = Field(None, description="an app's client id or a role ({device_app}): "
                                                      "disabled in Entra ID")
    require_mfa: str | None = Field(None, description="a mailbox or a role: Conditional Access now requires "
                                                      "multi-factor authentication for it")
    advance_clock: Annotated[float, Field(ge=0, le=400 * 86400)] | Literal["past_token_lifetime"] = Field(
        0.0, description="seconds the service's clock jumps ahead (tokens expire as they "
                                               "would); past_token_lifetime: past the tenant's access token lifetime")

    def seconds(self, tenant: Tenant) -> float:
        """The clock jump in seconds for ``tenant``."""
        return past_token_lifetime(tenant) if self.advance_clock == "past_token_lifetime" else self.advance_clock

    @model_validator(mode="after")
    def _does_something(self) -> MidRunStep:
        if not (self.revoke_sign_in or self.disable_app or self.require_mfa or self.advance_clock):
            raise ValueError("a during: step needs revoke_sign_in, disable_app, require_mfa or advance_clock")
        return self


class Send(_Strict):
    """What the sender is asked to send."""

    sender: str | None = Field(None, alias="from", description="default: the mailbox (submission), "
                                                                "{mx_sender} (direct send, relay)")
    to: list[str] = Field(default_factory=list, description="default: {internal}, or {external} for relay")
    count: int = Field(1, ge=1, le=100)
    size: int = Field(0, ge=0, le=200_000_000, description="body bytes to add")
    subject: str = "exo-edge conformance"
    user: str | None = Field(None, description="the mailbox that signs in; default: {submitter}")
    password: str | None = Field(None, description="default: the mailbox's password in the tenant")
    token: bool = Field(True, description="hand the sender an XOAUTH2 token too")
    interval: float = Field(0.0, ge=0, le=60, description="seconds between messages (the device's pace, "
                                                           "long enough for a short-lived token to expire)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Scenario(_Strict):
    title: str = Field(min_length=1)
    option: Option
    severity: Severity = "must"
    connector: Literal["ip", "certificate"] | None = Field(
        None, description="relay cases: which kind of connector the sender must match")
    sign_in: Literal["any", "oauth", "app"] = Field(
        "any", description="oauth: a case for senders that get their own tokens from the identity platform "
                           "for a person's mailbox; app: for apps that send app-only (client credentials); "
                           "any: for senders handed a password or a token")
    oauth_behaviour: bool = Field(
        False, description="a case about how a sender uses OAuth (refreshing, polling, app-only): SKIP, not FAIL, "
                           "for a sender that never asked the identity platform for a token (whether it should "
                           "is another case's to judge)")
    reference: list[Reference] = Field(min_length=1)
    needs: list[Literal[tuple(NEEDS)]] | None = Field(  # type: ignore[valid-type]
        None, description="what the case needs of the tenant, each: " + "; ".join(f"{k}: {v}" for k, v in NEEDS.items())
        + ". Default: what its option needs (submission: smtp_auth; direct-send: direct_send; all: message_fits, "
          "daily_room; OAuth device cases also device_code_time). A tenant without it skips the case with the reason")
    tenant: dict[str, Any] = Field(default_factory=dict, description="overrides deep-merged over the tenant")
    quota: list[QuotaSeed] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)
    during: list[MidRunStep] = Field(default_factory=list, description="what the service does mid-run")
    edge: EdgeVariation = EdgeVariation()
    send: Send = Send()
    timeout: float = Field(15.0, gt=0, le=600)
    expect: list[Annotated[Check, Field()]] = Field(min_length=1)
    advice: str = Field(min_length=1)

    # set by the loader, not by the file
    id: str = Field("", exclude=True)
    path: str = Field("", exclude=True)

    def applies_to(self, option: str, connector: str | None, sign_in: str | None = None) -> bool:
        """For a sender of this option (and connector); ``sign_in``: how it signs in, "password"
        (or a token it is handed), "oauth" or "app" (None: not known, as for a command, which then
        runs every case of its option)."""
        if self.option not in ("any", option):
            return False
        if sign_in is not None and self.sign_in != ("any" if sign_in == "password" else sign_in):
            return False
        return self.connector is None or connector is None or self.connector == connector

    def required(self) -> tuple[str, ...]:
        """The needs this case declares, or those of its option (and sign-in)."""
        if self.needs is not None:
            return tuple(self.needs)
        return OPTION_NEEDS[self.option] + SIGN_IN_NEEDS.get(self.sign_in, ())

    def clock_jump(self, tenant: Tenant) -> float:
        return sum(step.seconds(tenant) for step in self.during)

    def cast(self, lab: Roles) -> Scenario:
        """This scenario with its ``{role}`` placeholders filled from a tenant's roles."""
        # references are quotations, kept to the letter ("{tenant}" in a URL is Microsoft's)
        data = self.model_dump(mode="json", by_alias=True, exclude={"id", "path", "reference"}, exclude_unset=True)
        filled = Scenario.model_validate({**cast(data, lab), "reference": [r.model_dump() for r in self.reference]})
        return filled.model_copy(update={"id": self.id, "path": self.path})


def _unknown_role(data: Any, path: str = "") -> tuple[str, str, str] | None:
    """The first ``{name}`` that is no role: (key path, value, name)."""
    if isinstance(data, str):
        for name in PLACEHOLDER.findall(data):
            if name not in ROLE_NAMES:
                return path, data, name
        return None
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        here = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))
        found = _unknown_role(key, here) if isinstance(key, str) else None
        found = found or _unknown_role(value, here)
        if found:
            return found
    return None


def load_scenario(path: Path, root: Path, tenant: Tenant | None = None) -> Scenario:
    text = read_text(path, "scenario")
    scenario = load_document(Scenario, text, str(path))
    case_id = path.relative_to(root).with_suffix("").as_posix()
    option_dir = case_id.split("/", 1)[0]
    if scenario.option != "any" and option_dir not in OPTION_FOLDERS[scenario.option]:
        raise ConfigError(f"a {scenario.option} case must live under scenarios/{scenario.option}/",
                          source=str(path), line=None, path="option", value=scenario.option, has_value=True)
    unknown = _unknown_role(scenario.model_dump(mode="json", by_alias=True, exclude={"id", "path", "reference"}))
    if unknown:
        key, value, name = unknown
        raise ConfigError(f"{{{name}}} is not a role; known: {', '.join(sorted(ROLE_NAMES))}",
                          source=str(path), path=key, value=value, has_value=True)
    scenario = scenario.model_copy(update={"id": case_id, "path": str(path)})
    if tenant is not None and scenario.tenant:
        check_overrides(scenario, tenant)
    return scenario


def check_overrides(scenario: Scenario, tenant: Tenant) -> Tenant | None:
    """The tenant with the scenario's overrides applied (``ConfigError`` if they do not fit it);
    None when the tenant lacks a role the overrides name (the case is skipped there)."""
    try:
        filled = scenario.cast(roles(tenant))
    except MissingRole:
        return None
    return tenant.with_overrides(filled.tenant, source=f"{scenario.path}: tenant")


def load_catalog(root: Path, tenant: Tenant | None = None) -> list[Scenario]:
    """Every scenario under ``root``, sorted by id; all bad files reported together. With a
    tenant, each scenario's tenant overrides are checked against it."""
    scenarios, problems = [], []
    for path in sorted(root.rglob("*.yaml")):
        try:
            scenarios.append(load_scenario(path, root, tenant))
        except ConfigErrors as exc:
            problems.extend(exc.errors)
        except ConfigError as exc:
            problems.append(exc)
    if problems:
        raise problems[0] if len(problems) == 1 else ConfigErrors(problems)
    return scenarios


def schema() -> dict[str, Any]:
    document = Scenario.model_json_schema(by_alias=True, mode="validation")
    document["properties"].pop("id", None)
    document["properties"].pop("path", None)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "exo-edge scenario"
    return document


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"
