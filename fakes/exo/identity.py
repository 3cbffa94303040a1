"""The Microsoft identity platform v2.0 as a device's OAuth client meets it: rules only, no I/O.

``IdentityPlatform`` answers what ``login.microsoftonline.com`` answers: the device authorization
(``devicecode``), the token endpoint for the ``device_code``, ``refresh_token`` and
``client_credentials`` grants, and the person who signs in on the device login page. Requests
are forms (``dict[str, str]``); answers are ``Grant`` (an HTTP 200 JSON body) or ``Refusal`` (the
platform's error JSON, with its AADSTS code from ``replies``). Time comes from the clock passed
in, so expiry and polling pace are tested without waiting. Nothing kept here outlives its
lifetime: expired device codes and refresh tokens are dropped as they are met, and a refresh
token is replaced at each use (rotation).
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import replies as R
from .replies import IdentityReply
from .tenant import App, Tenant
from .tokens import APP_ROLE, AUDIENCES, DELEGATED_SCOPE, TokenAuthority

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
VERIFICATION_URI = "https://www.microsoft.com/link"
OUTLOOK = "https://outlook.office.com/"
APP_SCOPE = "https://outlook.office365.com/.default"
TENANT_ALIASES = ("organizations", "common")
_OIDC = ("openid", "profile", "email", "offline_access")


@dataclass(frozen=True)
class Refusal:
    reply: IdentityReply
    fields: dict[str, str] = field(default_factory=dict)

    def body(self, now: float, trace_id: str, correlation_id: str) -> dict[str, Any]:
        """The platform's error JSON (EXO-REFERENCE 3a)."""
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        description = (f"{self.reply.description(**self.fields)}\r\nTrace ID: {trace_id}\r\n"
                       f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}")
        return {"error": self.reply.error, "error_description": description, "error_codes": [self.reply.aadsts],
                "timestamp": stamp, "trace_id": trace_id, "correlation_id": correlation_id}


@dataclass(frozen=True)
class Grant:
    body: dict[str, Any]


@dataclass
class _DeviceCode:
    client_id: str
    scopes: tuple[str, ...]
    user_code: str
    expires: float
    interval: int
    mailbox: str | None = None  # set when a person signed in on the login page
    declined: bool = False
    polls: list[float] = field(default_factory=list)  # when the device asked, to judge its pace


@dataclass
class _RefreshToken:
    client_id: str
    mailbox: str
    scopes: tuple[str, ...]
    issued: float
    expires: float


def _split_scopes(scope: str) -> tuple[str, ...]:
    return tuple(s for s in scope.replace(",", " ").split() if s)


class IdentityPlatform:
    def __init__(self, tenant: Callable[[], Tenant], tokens: TokenAuthority, clock: Callable[[], float],
                 domains: Callable[[], tuple[str, ...]] | None = None) -> None:
        self._tenant = tenant
        self.tokens = tokens
        self.clock = clock
        self._device_codes: dict[str, _DeviceCode] = {}  # by device_code
        self._refresh_tokens: dict[str, _RefreshToken] = {}

    @property
    def tenant(self) -> Tenant:
        return self._tenant()

    # -- who is asking --------------------------------------------------------------------------

    def knows_tenant(self, name: str) -> bool:
        """``{tenant}`` in a path: the tenant id, one of its domains, organizations or common."""
        tenant = self.tenant
        names = {self.tokens.tenant_id, tenant.initial_domain, *tenant.accepted_domains, *TENANT_ALIASES}
        return name.lower() in names

    def _client(self, form: dict[str, str], *, secret_required: bool = False) -> App | Refusal:
        client_id = form.get("client_id", "")
        if not client_id:
            return Refusal(R.MISSING_PARAMETER, {"name": "client_id"})
        app = self.tenant.app(client_id)
        if app is None:
            return Refusal(R.UNKNOWN_CLIENT, {"client_id": client_id, "tenant": self.tokens.tenant_id})
        if app.disabled:
            return Refusal(R.APP_DISABLED, {"client_id": client_id, "name": app.name})
        if (secret_required or form.get("client_secret")) and (
                not app.secret or not secrets.compare_digest(form.get("client_secret", ""), app.secret)):
            return Refusal(R.INVALID_CLIENT_SECRET, {"client_id": client_id})
        return app

    def _delegated_scopes(self, app: App, scope: str) -> tuple[str, ...] | Refusal:
        """``https://outlook.office.com/SMTP.Send offline_access`` -> the scopes, each granted."""
        wanted = _split_scopes(scope)
        if not wanted:
            return Refusal(R.MISSING_PARAMETER, {"name": "scope"})
        out = []
        for item in wanted:
            # OpenID scopes stand alone; Exchange's are asked for with their resource
            short = item.removeprefix(OUTLOOK)
            known = short in _OIDC if short == item else short not in _OIDC
            if not known or short not in app.delegated_scopes:
                return Refusal(R.INVALID_SCOPE, {"scope": item})
            out.append(short)
        return tuple(out)

    # -- device authorization -------------------------------------------------------------------

    def device_code(self, form: dict[str, str]) -> Grant | Refusal:
        app = self._client(form)
        if isinstance(app, Refusal):
            return app
        scopes = self._delegated_scopes(app, form.get("scope", ""))
        if isinstance(scopes, Refusal):
            return scopes
        self._forget_expired()
        settings = self.tenant.identity
        user_code = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(9))
        device_code = secrets.token_urlsafe(48)
        self._device_codes[device_code] = _DeviceCode(app.client_id, scopes, user_code,
                                                      self.clock() + settings.device_code_lifetime,
                                                      settings.polling_interval)
        return Grant({
            "user_code": user_code, "device_code": device_code, "verification_uri": VERIFICATION_URI,
            "expires_in": settings.device_code_lifetime, "interval": settings.polling_interval,
            "message": f"To sign in, use a web browser to open the page {VERIFICATION_URI} and enter the code "
                       f"{user_code} to authenticate.",
        })

    def pending(self, user_code: str) -> _DeviceCode | None:
        """The device code a person typed on the login page, if it is one still waiting."""
        self._forget_expired()
        code = user_code.strip().upper().replace("-", "")
        return next((c for c in self._device_codes.values() if c.user_code == code), None)

    def sign_in(self, user_code: str, mailbox: str, password: str, *, approve: bool = True) -> IdentityReply | None:
        """A person on the device login page: the code, then a mailbox and its password, then
        consent (or not). None when it worked."""
        waiting = self.pending(user_code)
        if waiting is None:
            return R.BAD_VERIFICATION_CODE
        box = self.tenant.mailbox(mailbox)
        if box is None or not box.password or not secrets.compare_digest(password, box.password):
            return R.INVALID_CREDENTIALS
        waiting.mailbox, waiting.declined = box.address, not approve
        return None

    # -- the token endpoint ---------------------------------------------------------------------

    def token(self, form: dict[str, str]) -> Grant | Refusal:
        grant = form.get("grant_type", "")
        if grant == DEVICE_CODE_GRANT:
            return self._by_device_code(form)
        if grant == "refresh_token":
            return self._by_refresh_token(form)
        if grant == "client_credentials":
            return self._by_client_credentials(form)
        if not grant:
            return Refusal(R.MISSING_PARAMETER, {"name": "grant_type"})
        return Refusal(R.UNSUPPORTED_GRANT, {"grant": grant})

    def _by_device_code(self, form: dict[str, str]) -> Grant | Refusal:
        app = self._client(form)
        if isinstance(app, Refusal):
            return app
        code = self._device_codes.get(form.get("device_code", ""))
        now = self.clock()
        if code is None or code.client_id != app.client_id:
            return Refusal(R.BAD_VERIFICATION_CODE)
        code.polls.append(now)
        if now >= code.expires:
            del self._device_codes[form["device_code"]]
            return Refusal(R.EXPIRED_DEVICE_CODE)
        if code.declined:
            del self._device_codes[form["device_code"]]
            return Refusal(R.AUTHORIZATION_DECLINED)
        if code.mailbox is None:
            return Refusal(R.AUTHORIZATION_PENDING)
        del self._device_codes[form["device_code"]]
        return self._tokens(app, code.mailbox, code.scopes)

    def _by_refresh_token(self, form: dict[str, str]) -> Grant | Refusal:
        app = self._client(form)
        if isinstance(app, Refusal):
            return app
        presented = form.get("refresh_token", "")
        held = self._refresh_tokens.pop(presented, None)  # rotation: a refresh token works once
        now = self.clock()
        if held is None or held.client_id != app.client_id:
            return Refusal(R.REFRESH_TOKEN_REVOKED)
        if now >= held.expires:
            return Refusal(R.REFRESH_TOKEN_EXPIRED, {"issued": _stamp(held.issued),
                                                     "inactive": f"{int(now - held.issued)} seconds"})
        scopes = held.scopes
        if form.get("scope"):
            asked = self._delegated_scopes(app, form["scope"])
            if isinstance(asked, Refusal):
                return asked
            scopes = asked
        return self._tokens(app, held.mailbox, scopes)

    def _by_client_credentials(self, form: dict[str, str]) -> Grant | Refusal:
        app = self._client(form, secret_required=True)
        if isinstance(app, Refusal):
            return app
        if _split_scopes(form.get("scope", "")) != (APP_SCOPE,):
            return Refusal(R.INVALID_SCOPE, {"scope": form.get("scope", "") or "(none)"})
        lifetime = self.tenant.identity.access_token_lifetime
        roles = (APP_ROLE,) if app.send_as_app else ()
        token = self.tokens.mint(now=self.clock(), app_id=app.client_id, expires_in=lifetime, roles=roles,
                                 audience=AUDIENCES[1])
        return Grant({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                      "access_token": token})

    def _tokens(self, app: App, mailbox: str, scopes: tuple[str, ...]) -> Grant:
        now, settings = self.clock(), self.tenant.identity
        smtp = tuple(s for s in scopes if s not in _OIDC)
        access = self.tokens.mint(now=now, mailbox=mailbox, expires_in=settings.access_token_lifetime,
                                  scopes=smtp or (DELEGATED_SCOPE,))
        body: dict[str, Any] = {
            "token_type": "Bearer", "scope": " ".join(f"{OUTLOOK}{s}" for s in smtp),
            "expires_in": settings.access_token_lifetime, "ext_expires_in": settings.access_token_lifetime,
            "access_token": access,
        }
        if "offline_access" in scopes:
            refresh = secrets.token_urlsafe(64)
            self._refresh_tokens[refresh] = _RefreshToken(app.client_id, mailbox, scopes, now,
                                                          now + settings.refresh_token_lifetime)
            body["refresh_token"] = refresh
        if "openid" in scopes:
            body["id_token"] = self.tokens.id_token(now=now, mailbox=mailbox, client_id=app.client_id)
        return Grant(body)

    # -- what a scenario does mid-run -----------------------------------------------------------

    def revoke(self, mailbox: str) -> int:
        """Revoke every refresh token of a mailbox (Revoke-MgUserSignInSession); how many."""
        gone = [t for t, held in self._refresh_tokens.items() if held.mailbox == mailbox.lower()]
        for token in gone:
            del self._refresh_tokens[token]
        return len(gone)

    def reset(self) -> None:
        """Forget every device code and refresh token (a new scenario starts signed out)."""
        self._device_codes.clear()
        self._refresh_tokens.clear()

    def _forget_expired(self) -> None:
        now = self.clock()
        for code in [c for c, held in self._device_codes.items() if now >= held.expires]:
            del self._device_codes[code]
        for token in [t for t, held in self._refresh_tokens.items() if now >= held.expires]:
            del self._refresh_tokens[token]


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%m/%d/%Y %H:%M:%S")


def new_trace() -> tuple[str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4())
