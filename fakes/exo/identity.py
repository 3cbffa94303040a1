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

import base64
import collections
import functools
import hashlib
import heapq
import itertools
import re
import secrets
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import replies as R
from .entropy import SYSTEM, Entropy, urlsafe, uuid4
from .entropy import code as drawn_code
from .grants import (
    AUTHORIZATION_CODE_LIFETIME,
    Authorization,
    AuthorizationCode,
    DeviceCode,
    Grant,
    HeldRefreshToken,
    Refusal,
)
from .lockout import Lockout
from .names import IDENTITY_HOST
from .replies import IdentityReply
from .scopes import (
    APP_SCOPES,
    DEVICE_CODE_GRANT,
    EXCHANGE_PERMISSIONS,
    EXCHANGE_RESOURCES,
    GRAPH,
    OIDC_SCOPES,
    OUTLOOK,
    split_scopes,
)
from .secrets import REFRESH_TOKEN_PREFIX
from .tenant import App, Tenant
from .tokens import APP_ROLE, AUDIENCES, DELEGATED_SCOPE, TokenAuthority

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
VERIFICATION_URI = "https://www.microsoft.com/link"
TENANT_ALIASES = ("organizations", "common")
ASSERTION_LIFETIME = 3600  # seconds a client assertion may be valid for (UNCONFIRMED; MSAL's last 600)
REFRESH_FAMILY = 16  # refresh tokens kept per app and mailbox: older ones stay valid at Microsoft (see note)




def flow_id(device_code: str) -> str:
    """A name for one device code, or one refresh token, in records (the thing itself is a credential)."""
    return hashlib.sha256(device_code.encode()).hexdigest()[:12]


_URI_TROUBLE = re.compile(r"[\\\s\x00-\x1f\x7f]|%(?:2f|5c|40|00)", re.IGNORECASE)


def _redirect_matches(asked: str, registered: str) -> bool:
    """Exactly the registered URI; for a loopback one (a native app's) the port may differ, as
    Microsoft allows (entra-docs reply-url.md: "the port component is ignored"), after a parse a
    browser agrees with: no backslash, whitespace, control character or user info, which Python
    and a browser read differently (``http://evil.example\\@localhost:8/`` is evil.example's)."""
    if asked == registered:
        return True
    if _URI_TROUBLE.search(asked) or not asked.isascii():
        return False
    a, r = urlsplit(asked), urlsplit(registered)
    if a.username is not None or a.password is not None or "@" in a.netloc:
        return False
    return (r.scheme == a.scheme == "http" and r.hostname in ("localhost", "127.0.0.1")
            and a.hostname == r.hostname and (a.path or "/") == (r.path or "/") and not a.query)


def _thumbprints(certificate: x509.Certificate) -> set[str]:
    """How a client assertion may name a certificate: base64url SHA-1 (``x5t``) or SHA-256."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return {base64.urlsafe_b64encode(hashlib.new(name, der).digest()).rstrip(b"=").decode()
            for name in ("sha1", "sha256")}


class IdentityPlatform:
    def __init__(self, tenant: Callable[[], Tenant], tokens: TokenAuthority, clock: Callable[[], float],
                 domains: Callable[[], tuple[str, ...]] | None = None,
                 draw: Callable[[int, int], int] | None = None, entropy: Entropy = SYSTEM) -> None:
        self._tenant = tenant
        self.tokens = tokens
        self.clock = clock
        self.draw = draw or (lambda low, high: low)  # a lifetime within a range: randomness passed in
        self.entropy = entropy  # codes, tokens and trace ids are drawn from it
        self._device_codes: dict[str, DeviceCode] = {}  # by device_code
        self._user_codes: dict[str, str] = {}  # user code -> device code: the login page looks one up
        # (when, n, what, key): every code, token and assertion id by the time it may be forgotten,
        # so that forgetting costs a heap pop per item, never a scan of everything held
        self._expiry: list[tuple[float, int, str, str]] = []
        self._expiry_ids = itertools.count()
        self._refresh_tokens: dict[str, HeldRefreshToken] = {}
        # the newest refresh tokens of each (app, mailbox): using one does not revoke the others
        self._families: dict[tuple[str, str], collections.deque[str]] = {}
        self._codes: dict[str, AuthorizationCode] = {}  # authorization codes, by code
        self._lockouts = Lockout(clock)  # by mailbox: wrong passwords
        # by source address: wrong codes typed on the device login page (the threshold UNCONFIRMED there)
        self._guessers = Lockout(clock)
        self._assertions_seen: dict[str, float] = {}  # client assertion ids (jti) used, until they expire
        # the hosts a client assertion's audience may name: Microsoft's, and where this endpoint listens
        self.hosts: set[str] = {IDENTITY_HOST}

    @property
    def tenant(self) -> Tenant:
        return self._tenant()

    # -- who is asking --------------------------------------------------------------------------

    def knows_tenant(self, name: str) -> bool:
        """``{tenant}`` in a path: the tenant id, one of its domains, organizations or common."""
        tenant = self.tenant
        names = {self.tokens.tenant_id, tenant.initial_domain, *tenant.accepted_domains, *TENANT_ALIASES}
        return name.lower() in names

    def _client(self, form: dict[str, str], *, secret_required: bool = False, tenant: str | None = None,
                authenticate: bool = True) -> App | Refusal:
        """The app asking, authenticated as Microsoft authenticates it: a confidential client (one
        that does not allow public client flows) proves itself on every grant, with its secret or a
        client assertion; a single-tenant app is not served on /common or /organizations."""
        client_id = form.get("client_id", "")
        if not client_id:
            return Refusal(R.MISSING_PARAMETER, {"name": "client_id"})
        app = self.tenant.app(client_id)
        if app is None:
            return Refusal(R.UNKNOWN_CLIENT, {"client_id": client_id, "tenant": self.tokens.tenant_id})
        if app.disabled:
            return Refusal(R.APP_DISABLED, {"client_id": client_id, "name": app.name})
        if tenant is not None and tenant.lower() in TENANT_ALIASES and not app.multi_tenant:
            return Refusal(R.SINGLE_TENANT_APP, {"client_id": client_id, "name": app.name})
        if not authenticate:
            return app
        if form.get("client_assertion_type") == JWT_BEARER:
            return self._assertion(app, form.get("client_assertion", "")) or app
        if not form.get("client_secret"):
            if secret_required or not app.is_public:
                return Refusal(R.NO_CLIENT_CREDENTIAL)
            return app
        if not app.secret or not secrets.compare_digest(form["client_secret"].encode(), app.secret.encode()):
            return Refusal(R.INVALID_CLIENT_SECRET, {"client_id": client_id})
        return app

    def _assertion(self, app: App, assertion: str) -> Refusal | None:
        """A client assertion (RFC 7523) signed with the key of the app's certificate: the
        certificate named by its thumbprint (``x5t``, SHA-1, or ``x5t#S256``), the signature, the
        app as issuer and subject, a token endpoint of this platform as audience, the times."""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            return Refusal(R.ASSERTION_INVALID, {"why": f"It is not a JWT ({exc})."})
        named = str(header.get("x5t#S256") or header.get("x5t") or "").rstrip("=")
        certificate = x509.load_pem_x509_certificate(app.certificate.encode()) if app.certificate else None
        if certificate is None or named not in _thumbprints(certificate):
            return Refusal(R.ASSERTION_KEY_UNKNOWN, {"thumbprint": named})
        try:
            claims = jwt.decode(assertion, certificate.public_key(),  # type: ignore[arg-type]
                                algorithms=["RS256", "PS256"], options={"verify_aud": False, "verify_exp": False,
                                                                       "verify_nbf": False, "verify_iat": False})
        except jwt.PyJWTError as exc:
            return Refusal(R.ASSERTION_INVALID, {"why": str(exc)})
        now = self.clock()
        try:
            expires, begins = float(claims["exp"]), float(claims.get("nbf", claims.get("iat", 0)))
        except (KeyError, TypeError, ValueError):
            return Refusal(R.ASSERTION_INVALID, {"why": "Its exp and nbf must be numbers (seconds since 1970)."})
        if now >= expires or now < begins - 300:
            return Refusal(R.ASSERTION_EXPIRED)
        if expires - begins > ASSERTION_LIFETIME:
            return Refusal(R.ASSERTION_INVALID, {"why": f"It is valid for {expires - begins:.0f} seconds; an assertion "
                                                        f"lives {ASSERTION_LIFETIME} seconds at most."})
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            return Refusal(R.ASSERTION_INVALID, {"why": "Its iss and sub must be the application id."})
        audience = urlsplit(str(claims.get("aud", "")))
        tenant = audience.path.strip("/").split("/")[0] if audience.path else ""
        if (audience.scheme != "https" or audience.netloc.lower() not in self.hosts
                or audience.path != f"/{tenant}/oauth2/v2.0/token" or audience.query or not self.knows_tenant(tenant)):
            return Refusal(R.ASSERTION_INVALID, {"why": "Its aud must be this tenant's token endpoint."})
        jti = str(claims.get("jti") or "")
        if not jti or jti in self._assertions_seen:
            return Refusal(R.ASSERTION_INVALID, {"why": "Its jti is missing or was used before: an assertion is "
                                                        "used once."})
        self._assertions_seen[jti] = expires
        self._forget_at(expires, "jti", jti)
        return None

    def _delegated_scopes(self, app: App, scope: str) -> tuple[str, ...] | Refusal:
        """The scopes a person's token is for, as Microsoft resolves them: Exchange's permissions by
        either identifier URI and in any case (kept by their short name), its ``.default`` (the
        app's configured Exchange permissions), OpenID scopes alone, Graph's whole, and a bare
        name taken as Graph's (so bare ``SMTP.Send`` gives a token smtp.office365.com refuses)."""
        wanted = split_scopes(scope)
        if not wanted:
            return Refusal(R.MISSING_PARAMETER, {"name": "scope"})
        out: list[str] = []
        for item in wanted:
            low = item.lower()
            resource = next((r for r in EXCHANGE_RESOURCES if low.startswith(r)), None)
            if low in OIDC_SCOPES:
                out.append(low)
            elif resource is not None:
                name = low[len(resource):]
                if name == ".default":
                    configured = [s for s in app.delegated_scopes if s.lower() in EXCHANGE_PERMISSIONS]
                    if not configured:
                        return Refusal(R.INVALID_SCOPE, {"scope": item})
                    out.extend(configured)
                elif name in EXCHANGE_PERMISSIONS:
                    out.append(EXCHANGE_PERMISSIONS[name])
                else:
                    return Refusal(R.INVALID_SCOPE, {"scope": item})
            elif low.startswith(GRAPH):
                out.append(GRAPH + item[len(GRAPH):])
            elif "/" not in item and ":" not in item:  # a bare name is Microsoft Graph's
                out.append(GRAPH + item)
            else:
                return Refusal(R.INVALID_SCOPE, {"scope": item})
        resources = {"graph" if s.startswith(GRAPH) else "outlook" for s in out if s not in OIDC_SCOPES}
        if len(resources) > 1:
            return Refusal(R.MORE_THAN_ONE_RESOURCE)
        return tuple(dict.fromkeys(out))

    # -- device authorization -------------------------------------------------------------------

    def device_code(self, form: dict[str, str], tenant: str | None = None, mkt: str | None = None) -> Grant | Refusal:
        """``POST /{tenant}/oauth2/v2.0/devicecode`` (the app is authenticated when it polls); the
        message in the language ``mkt`` names."""
        app = self._client(form, tenant=tenant, authenticate=False)
        if isinstance(app, Refusal):
            return app
        scopes = self._delegated_scopes(app, form.get("scope", ""))
        if isinstance(scopes, Refusal):
            return scopes
        self._forget_expired()
        settings = self.tenant.identity
        user_code = drawn_code(self.entropy, string.ascii_uppercase + string.digits, 9)
        device_code = urlsafe(self.entropy, 48)
        expires = self.clock() + settings.device_code_lifetime
        self._device_codes[device_code] = DeviceCode(app.client_id, scopes, user_code, expires,
                                                      settings.polling_interval,
                                                      forget=expires + settings.device_code_lifetime)
        self._user_codes[user_code] = device_code
        self._forget_at(expires + settings.device_code_lifetime, "device", device_code)
        return Grant({
            "user_code": user_code, "device_code": device_code, "verification_uri": VERIFICATION_URI,
            "expires_in": settings.device_code_lifetime, "interval": settings.polling_interval,
            "message": R.device_code_message(mkt, VERIFICATION_URI, user_code),
        })

    def pending(self, user_code: str) -> DeviceCode | None:
        """The device code a person typed on the login page, if it is one still waiting."""
        self._forget_expired()
        code = self._device_codes.get(self._user_codes.get(user_code.strip().upper().replace("-", ""), ""))
        return code if code is not None and self.clock() < code.expires else None

    def _person(self, mailbox: str, password: str, mfa: bool) -> tuple[str, bool] | IdentityReply:
        """A person signing in: their mailbox's address and whether a second factor was asked for
        (and given), or why not. Entra's smart lockout (``fakes.exo.lockout``): after ten wrong
        passwords the account refuses every sign-in, the right password too, for a minute."""
        box = self.tenant.mailbox(mailbox)
        if box is not None and self._lockouts.locked(box.address):
            return R.ACCOUNT_LOCKED
        if box is None or not box.password or not secrets.compare_digest(password.encode(), box.password.encode()):
            if box is not None:
                self._lockouts.failed(box.address)
            return R.INVALID_CREDENTIALS
        self._lockouts.succeeded(box.address)
        if box.mfa_required and not mfa:
            return R.MFA_REQUIRED
        return box.address, box.mfa_required

    def sign_in(self, user_code: str, mailbox: str, password: str, *, approve: bool = True,
                mfa: bool = False, source: str = "") -> IdentityReply | None:
        """A person on the device login page (from ``source``, an address): the code, then a
        mailbox and its password (and the second factor where Conditional Access asks for it), then
        consent (or not). None when it worked."""
        if self._guessers.locked(source):  # the same answer whether its code is live or not
            return R.SOURCE_BLOCKED
        waiting = self.pending(user_code)
        if waiting is None:
            self._guessers.failed(source)
            return R.BAD_VERIFICATION_CODE
        person = self._person(mailbox, password, mfa)
        if isinstance(person, IdentityReply):
            return person
        waiting.mailbox, waiting.mfa = person
        waiting.declined = not approve
        return None

    # -- authorization code with PKCE (an app with a browser) -------------------------------------

    def authorize(self, query: dict[str, str]) -> Authorization | Refusal:
        """``GET /authorize``: a request a person may sign in to, or why it is refused (shown on
        the page, since a bad ``redirect_uri`` must never be redirected to)."""
        app = self._client(query, authenticate=False)
        if isinstance(app, Refusal):
            return app
        redirect_uri = query.get("redirect_uri", "")
        if not any(_redirect_matches(redirect_uri, registered) for registered in app.redirect_uris):
            return Refusal(R.REDIRECT_URI_MISMATCH, {"client_id": app.client_id, "redirect_uri": redirect_uri})
        if query.get("response_type") != "code":
            return Refusal(R.UNSUPPORTED_RESPONSE_TYPE)
        scopes = self._delegated_scopes(app, query.get("scope", ""))
        if isinstance(scopes, Refusal):
            return scopes
        method = query.get("code_challenge_method", "plain")
        if method not in ("S256", "plain"):
            return Refusal(R.INVALID_CHALLENGE_METHOD)
        mode = query.get("response_mode", "query")
        if mode not in ("query", "form_post"):
            return Refusal(R.MISSING_PARAMETER, {"name": "response_mode"})
        return Authorization(app.client_id, app.name, scopes, redirect_uri, query.get("state", ""),
                             query.get("code_challenge", ""), method, mode, query.get("nonce"))

    def consent(self, request: Authorization, mailbox: str, password: str, *, approve: bool = True,
                mfa: bool = False) -> dict[str, str] | IdentityReply:
        """The person signed in on the authorize page: the query to redirect back with (``code``
        and ``state``, or ``error`` when they declined), or why the sign-in failed."""
        person = self._person(mailbox, password, mfa)
        if isinstance(person, IdentityReply):
            return person
        if not approve:
            return {"error": "access_denied", "error_description": R.CONSENT_DECLINED.description(),
                    "state": request.state}
        self._forget_expired()
        code = urlsafe(self.entropy, 48)
        self._codes[code] = AuthorizationCode(request.client_id, person[0], request.scopes, request.redirect_uri,
                                               request.challenge, request.method,
                                               self.clock() + AUTHORIZATION_CODE_LIFETIME, person[1],
                                               request.nonce)
        self._forget_at(self._codes[code].expires, "code", code)
        return {"code": code, "state": request.state}

    # -- the token endpoint ---------------------------------------------------------------------

    def token(self, form: dict[str, str], tenant: str | None = None) -> Grant | Refusal:
        """``POST /{tenant}/oauth2/v2.0/token``; ``tenant`` as the path names it (None: this tenant)."""
        grant = form.get("grant_type", "")
        if not grant:
            return Refusal(R.MISSING_PARAMETER, {"name": "grant_type"})
        self._forget_expired()
        handler = {DEVICE_CODE_GRANT: self._by_device_code, "refresh_token": self._by_refresh_token,
                   "client_credentials": self._by_client_credentials, "authorization_code": self._by_authorization_code,
                   "password": self._by_password}.get(grant)
        if handler is None:
            return Refusal(R.UNSUPPORTED_GRANT, {"grant": grant})
        if grant == "client_credentials" and tenant is not None and tenant.lower() == "common":
            return Refusal(R.GRANT_NEEDS_TENANT)
        app = self._client(form, secret_required=grant == "client_credentials", tenant=tenant)
        if isinstance(app, Refusal):
            return app
        return handler(app, form)

    def _by_device_code(self, app: App, form: dict[str, str]) -> Grant | Refusal:
        if not form.get("device_code"):
            return Refusal(R.MISSING_PARAMETER, {"name": "device_code"})
        code = self._device_codes.get(form["device_code"])
        now = self.clock()
        if code is None or code.client_id != app.client_id:
            return Refusal(R.BAD_VERIFICATION_CODE)
        if now >= code.expires:  # and so it stays, poll after poll, until it is forgotten
            return Refusal(R.EXPIRED_DEVICE_CODE)
        if code.declined:
            self._drop_device_code(form["device_code"])
            return Refusal(R.AUTHORIZATION_DECLINED)
        if code.mailbox is None:
            return Refusal(R.AUTHORIZATION_PENDING)
        self._drop_device_code(form["device_code"])
        return self._tokens(app, code.mailbox, code.scopes, mfa=code.mfa, form=form)

    def _by_authorization_code(self, app: App, form: dict[str, str]) -> Grant | Refusal:
        held = self._codes.pop(form.get("code", ""), None)  # a code is redeemed once
        if held is None or held.client_id != app.client_id or self.clock() >= held.expires:
            return Refusal(R.BAD_AUTHORIZATION_CODE)
        if form.get("redirect_uri", "") != held.redirect_uri:
            return Refusal(R.REDIRECT_URI_DIFFERS)
        if held.challenge:
            verifier = form.get("code_verifier", "")
            if not verifier:
                return Refusal(R.MISSING_PARAMETER, {"name": "code_verifier"})
            derived = verifier if held.method == "plain" else \
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if not secrets.compare_digest(derived.encode(), held.challenge.encode()):
                return Refusal(R.PKCE_MISMATCH)
        return self._tokens(app, held.mailbox, held.scopes, mfa=held.mfa, nonce=held.nonce, form=form)

    def _by_refresh_token(self, app: App, form: dict[str, str]) -> Grant | Refusal:
        presented = form.get("refresh_token", "")
        if not presented:
            return Refusal(R.MISSING_PARAMETER, {"name": "refresh_token"})
        # a new refresh token comes with every use, and the one used stays valid: Microsoft "doesn't
        # revoke old refresh tokens when used to fetch new access tokens" (entra-docs refresh-tokens.md)
        held = self._refresh_tokens.get(presented)
        now = self.clock()
        if held is None:
            return Refusal(R.MALFORMED_REQUEST)
        if held.client_id != app.client_id or held.revoked:
            return Refusal(R.REFRESH_TOKEN_REVOKED)
        if now >= held.expires:
            del self._refresh_tokens[presented]
            return Refusal(R.REFRESH_TOKEN_EXPIRED, {"issued": _stamp(held.issued),
                                                     "inactive": f"{int(now - held.issued)} seconds"})
        box = self.tenant.mailbox(held.mailbox)
        if box is not None and box.mfa_required and not held.mfa:
            # Conditional Access now asks for MFA this sign-in never did: the person must sign in again
            return Refusal(R.MFA_REQUIRED)
        scopes = held.scopes
        if form.get("scope"):
            asked = self._delegated_scopes(app, form["scope"])
            if isinstance(asked, Refusal):
                return asked
            scopes = asked
        return self._tokens(app, held.mailbox, scopes, mfa=held.mfa, form=form)

    def _by_password(self, app: App, form: dict[str, str]) -> Grant | Refusal:
        """Resource owner password credentials (ROPC): a work account's user name and password,
        never with MFA (entra-docs v2-oauth-ropc.md); basic authentication by another name."""
        for name in ("username", "password", "scope"):
            if not form.get(name):
                return Refusal(R.MISSING_PARAMETER, {"name": name})
        scopes = self._delegated_scopes(app, form["scope"])
        if isinstance(scopes, Refusal):
            return scopes
        person = self._person(form["username"], form["password"], mfa=False)
        if isinstance(person, IdentityReply):
            return Refusal(person)
        return self._tokens(app, person[0], scopes, form=form)

    def _by_client_credentials(self, app: App, form: dict[str, str]) -> Grant | Refusal:
        scope = form.get("scope", "")
        asked = split_scopes(scope)
        if len(asked) != 1 or not asked[0].lower().endswith("/.default"):
            return Refusal(R.APP_ONLY_SCOPE, {"scope": scope or "(none)"})
        if asked[0].lower() not in APP_SCOPES and not asked[0].lower().startswith(GRAPH):
            return Refusal(R.INVALID_SCOPE, {"scope": asked[0]})
        lifetime = self.access_lifetime()
        roles = (APP_ROLE,) if app.send_as_app else ()
        audience = GRAPH.rstrip("/") if asked[0].lower().startswith(GRAPH) else AUDIENCES[1]
        token = self.tokens.mint(now=self.clock(), app_id=app.client_id, expires_in=lifetime, roles=roles,
                                 audience=audience, app_name=app.name, credential=_credential(form))
        return Grant({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                      "access_token": token})

    def access_lifetime(self) -> int:
        """An access token's lifetime: the tenant's, or drawn from its range (Entra's default: a
        lifetime between 60 and 90 minutes, so that tokens do not all expire at once)."""
        settings = self.tenant.identity
        if settings.access_token_lifetime_max is None:
            return settings.access_token_lifetime
        return self.draw(settings.access_token_lifetime, settings.access_token_lifetime_max)

    def _tokens(self, app: App, mailbox: str, scopes: tuple[str, ...], *, mfa: bool = False,
                nonce: str | None = None, form: dict[str, str] | None = None) -> Grant:
        now, settings = self.clock(), self.tenant.identity
        box = self.tenant.mailbox(mailbox)
        lifetime = self.access_lifetime()
        mint = functools.partial(self.tokens.mint, now=now, mailbox=mailbox, expires_in=lifetime,
                                 client_id=app.client_id, app_name=app.name, name=box.display_name if box else None,
                                 credential=_credential(form or {}), mfa=mfa)
        smtp = tuple(s for s in scopes if s not in OIDC_SCOPES)
        graph = tuple(s.removeprefix(GRAPH) for s in smtp if s.startswith(GRAPH))
        # a token for Microsoft Graph: the submission endpoint refuses its audience
        access = mint(scopes=graph, audience=GRAPH.rstrip("/")) if graph else mint(scopes=smtp or (DELEGATED_SCOPE,))
        body: dict[str, Any] = {
            "token_type": "Bearer", "scope": " ".join(s if s.startswith(GRAPH) else f"{OUTLOOK}{s}" for s in smtp),
            "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access,
        }
        if "offline_access" in scopes:
            refresh = REFRESH_TOKEN_PREFIX + urlsafe(self.entropy, 64)  # masked by its shape
            self._refresh_tokens[refresh] = HeldRefreshToken(app.client_id, mailbox, scopes, now,
                                                          now + settings.refresh_token_lifetime, mfa)
            self._forget_at(now + settings.refresh_token_lifetime, "refresh", refresh)
            family = self._families.setdefault((app.client_id, mailbox), collections.deque())
            family.append(refresh)
            if len(family) > REFRESH_FAMILY:
                self._refresh_tokens.pop(family.popleft(), None)
            body["refresh_token"] = refresh
        if "openid" in scopes:
            body["id_token"] = self.tokens.id_token(now=now, mailbox=mailbox, client_id=app.client_id, nonce=nonce,
                                                    name=box.display_name if box else None)
        return Grant(body)

    # -- what a scenario does mid-run -----------------------------------------------------------

    def revoke(self, mailbox: str) -> int:
        """Revoke every refresh token of a mailbox (Revoke-MgUserSignInSession): each is refused
        with 50173 from now on; how many."""
        gone = [held for held in self._refresh_tokens.values() if held.mailbox == mailbox.lower()]
        for held in gone:
            held.revoked = True
        return len(gone)

    def reset(self) -> None:
        """Forget every device code and refresh token (a new scenario starts signed out)."""
        self._device_codes.clear()
        self._user_codes.clear()
        self._expiry.clear()
        self._refresh_tokens.clear()
        self._families.clear()
        self._codes.clear()
        self._lockouts.clear()
        self._guessers.clear()

    def _forget_at(self, when: float, what: str, key: str) -> None:
        heapq.heappush(self._expiry, (when, next(self._expiry_ids), what, key))

    def _drop_device_code(self, device_code: str) -> None:
        held = self._device_codes.pop(device_code, None)
        if held is not None and self._user_codes.get(held.user_code) == device_code:
            del self._user_codes[held.user_code]

    def _forget_expired(self) -> None:
        """Forget what has expired: the heap's due items, each looked up by its key (one used or
        replaced since is simply gone, or not yet due by its own time)."""
        now = self.clock()
        while self._expiry and self._expiry[0][0] <= now:
            _when, _n, what, key = heapq.heappop(self._expiry)
            if what == "device":
                held = self._device_codes.get(key)
                if held is not None and now >= max(held.forget, held.expires):
                    self._drop_device_code(key)
            elif what == "refresh":
                token = self._refresh_tokens.get(key)
                if token is not None and now >= token.expires:
                    del self._refresh_tokens[key]
            elif what == "code":
                code = self._codes.get(key)
                if code is not None and now >= code.expires:
                    del self._codes[key]
            elif self._assertions_seen.get(key, now + 1) <= now:
                del self._assertions_seen[key]


def _credential(form: dict[str, str]) -> Literal["none", "secret", "certificate"]:
    """How the app proved itself in a request (a token's ``appidacr``)."""
    if form.get("client_assertion_type") == JWT_BEARER:
        return "certificate"
    return "secret" if form.get("client_secret") else "none"


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%m/%d/%Y %H:%M:%S")


def new_trace(entropy: Entropy = SYSTEM) -> tuple[str, str]:
    """A trace id and a correlation id, as every answer of the platform carries them."""
    return uuid4(entropy), uuid4(entropy)
