"""The HTTPS adapter for login.microsoftonline.com (and microsoft.com/link) over ``fakes.exo.identity``.

aiohttp serves, on the lab CA's certificate for login.microsoftonline.com, www.microsoft.com and
microsoft.com, the shapes of the Microsoft identity platform v2.0 that a device's OAuth client
uses: the OpenID configuration and its keys, the device authorization and token endpoints, and
the device login page where a person in the lab types the code and signs in. Every decision is
``IdentityPlatform``'s; every request is recorded (kind ``identity``: endpoint, grant, client,
outcome, never a secret), so a check can judge, say, how fast a device polled.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import ssl
from typing import Any
from urllib.parse import unquote, urlencode

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from fakes.exo import replies as R
from fakes.exo.grants import Authorization, Grant, Refusal
from fakes.exo.identity import IdentityPlatform, flow_id, new_trace
from fakes.exo.names import IDENTITY_HOST
from fakes.exo.observed import IdentityRequest
from fakes.record import RecordLog
from fakes.web import WebEndpoint

# The sign-in pages' own words, in the language the browser asks for (``?mkt=`` or Accept-Language)
PAGE_TEXT = {
    "en": {"lang": "en", "enter_code": "Enter code", "sign_in": "Sign in", "code": "Code", "email": "Email",
           "password": "Password", "accept": "Sign in and allow", "decline": "Decline",
           "second": "I approved the sign-in request on my phone (when my organisation asks for a second factor)",
           "close": "You can close this window and go back to the device.",
           "intro": "Enter the code displayed on your device, then sign in with the mailbox the device sends as.",
           "signed_in": "You have signed in to the device", "declined": "You declined to sign in"},
    "de": {"lang": "de", "enter_code": "Code eingeben", "sign_in": "Anmelden", "code": "Code", "email": "E-Mail",
           "password": "Kennwort", "accept": "Anmelden und zulassen", "decline": "Ablehnen",
           "second": "Ich habe die Anmeldeanforderung auf meinem Telefon genehmigt (wenn meine Organisation einen "
                     "zweiten Faktor verlangt)",
           "close": "Sie können dieses Fenster schließen und zum Gerät zurückkehren.",
           "intro": "Geben Sie den auf Ihrem Gerät angezeigten Code ein, und melden Sie sich dann mit dem Postfach "
                    "an, als das das Gerät sendet.",
           "signed_in": "Sie haben sich beim Gerät angemeldet", "declined": "Sie haben die Anmeldung abgelehnt"},
}

# What the login page says above the technical detail (the AADSTS line, in English in every language),
# by AADSTS code; other errors show the detail alone. The pages' texts as users quote them [O];
# the German ones UNCONFIRMED word for word.
PAGE_ERRORS = {
    70018: {"en": "That code didn't work. Check the code and try again.",
            "de": "Dieser Code hat nicht funktioniert. Überprüfen Sie den Code, und versuchen Sie es noch mal."},
    50126: {"en": "Your account or password is incorrect. If you don't remember your password, reset it now.",
            "de": "Ihr Konto oder Kennwort ist falsch. Wenn Sie Ihr Kennwort vergessen haben, setzen Sie es jetzt "
                  "zurück."},
    50053: {"en": "Your account is temporarily locked to prevent unauthorized use. Try again later, and if you "
                  "still have trouble, contact your admin.",
            "de": "Ihr Konto ist vorübergehend gesperrt, um eine nicht autorisierte Verwendung zu verhindern. "
                  "Versuchen Sie es später noch mal, und wenden Sie sich an Ihren Administrator, wenn das Problem "
                  "weiterhin besteht."},
}


def page_language(request: web.Request, form: Any = None) -> dict[str, str]:
    """The page's words: ``mkt`` (query or form), else the browser's first Accept-Language."""
    asked = request.query.get("mkt") or (form.get("mkt") if form is not None else None) \
        or request.headers.get("Accept-Language", "en").split(",", 1)[0]
    return PAGE_TEXT.get(str(asked).split("-", 1)[0].strip().lower(), PAGE_TEXT["en"])


# what the platform sends with every token and error answer (public transcripts: gh:Azure/azure-cli#22251)
NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "Expires": "-1"}
_PAGES = Environment(loader=PackageLoader("fakes", "templates"), autoescape=select_autoescape(["html"]))


class IdentityServer(WebEndpoint):
    """One HTTPS listener."""

    endpoint = "identity"

    def __init__(self, platform: IdentityPlatform, records: RecordLog, tls_context: ssl.SSLContext) -> None:
        super().__init__()
        self.platform = platform
        self.records = records
        self.tls_context = tls_context
        self._ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration),
            web.get("/{tenant}/discovery/v2.0/keys", self.keys),
            web.get("/common/discovery/instance", self.instance_discovery),
            web.get("/common/userrealm/{user}", self.user_realm),
            web.post("/{tenant}/oauth2/v2.0/devicecode", self.devicecode),
            web.post("/{tenant}/oauth2/v2.0/token", self.token),
            web.get("/{tenant}/oauth2/v2.0/token", self.not_posted),
            web.get("/{tenant}/oauth2/v2.0/devicecode", self.not_posted),
            web.get("/{tenant}/oauth2/v2.0/authorize", self.authorize_page),
            web.post("/{tenant}/oauth2/v2.0/authorize", self.authorize),
            web.get("/link", self.login_page),
            web.post("/link", self.login),
            web.get("/devicelogin", self.login_page),
        ]

    # -- helpers --------------------------------------------------------------------------------

    def _record(self, request: web.Request, what: str, **fields: Any) -> None:
        peer = request.remote or "?"
        self.records.add(IdentityRequest(peer=peer, endpoint=what, **fields), f"idp{next(self._ids):06d}")

    def _tenant_refusal(self, request: web.Request) -> web.Response | None:
        tenant = request.match_info.get("tenant", "")
        if self.platform.knows_tenant(tenant):
            return None
        return self._refused(Refusal(R.UNKNOWN_TENANT, {"tenant": tenant}))

    def _refused(self, refusal: Refusal) -> web.Response:
        trace, correlation = new_trace(self.platform.entropy)
        return web.json_response(refusal.body(self.platform.clock(), trace, correlation), status=refusal.reply.status,
                                 headers=NO_STORE)

    def _answer(self, request: web.Request, what: str, form: dict[str, str], result: Grant | Refusal) -> web.Response:
        granted = result.body if isinstance(result, Grant) else {}
        device_code = form.get("device_code") or granted.get("device_code")
        presented, issued = form.get("refresh_token"), granted.get("refresh_token")
        self._record(request, what, grant_type=form.get("grant_type"), client_id=form.get("client_id"),
                     scope=form.get("scope"), outcome="ok" if isinstance(result, Grant) else result.reply.error,
                     aadsts=None if isinstance(result, Grant) else result.reply.aadsts,
                     flow=flow_id(device_code) if device_code else None, interval=granted.get("interval"),
                     tenant=request.match_info.get("tenant"), user=form.get("username"),
                     presented=flow_id(presented) if presented else None, issued=flow_id(issued) if issued else None)
        if isinstance(result, Refusal):
            return self._refused(result)
        return web.json_response(result.body, headers=NO_STORE)

    # -- the endpoints ---------------------------------------------------------------------------

    async def openid_configuration(self, request: web.Request) -> web.Response:
        refused = self._tenant_refusal(request)
        if refused:
            return refused
        # Entra names the tenant by its id (a placeholder for /common and /organizations), never by the
        # domain in the path, and its own host: here the address this endpoint listens on, never the
        # request's Host header (a peer must not write URLs into the document)
        asked = request.match_info["tenant"].lower()
        tenant = "{tenantid}" if asked in ("common", "organizations") else self.platform.tokens.tenant_id
        path = asked if asked in ("common", "organizations") else tenant
        base = f"https://{self._own_host(request)}/{path}"
        return web.json_response({
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"https://login.microsoftonline.com/{tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True, "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                 "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
                                 "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "tenant_region_scope": "EU", "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net", "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        })

    @staticmethod
    def _own_host(request: web.Request) -> str:
        """login.microsoftonline.com where this endpoint has its real port (a lab), else the
        address and port it listens on (tests on ephemeral ports)."""
        local = request.transport.get_extra_info("sockname") if request.transport else None
        if not local or local[1] == 443:
            return IDENTITY_HOST
        host = local[0]
        return f"[{host}]:{local[1]}" if ":" in host else f"{host}:{local[1]}"

    async def keys(self, request: web.Request) -> web.Response:
        return self._tenant_refusal(request) or web.json_response(self.platform.tokens.jwks())

    async def instance_discovery(self, request: web.Request) -> web.Response:
        """What MSAL asks before it trusts an authority (the real answer's shape, for this host)."""
        return web.json_response({
            "tenant_discovery_endpoint": f"https://{request.host}/common/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": IDENTITY_HOST, "preferred_cache": IDENTITY_HOST,
                          "aliases": [IDENTITY_HOST, request.host]}],
        })

    async def user_realm(self, request: web.Request) -> web.Response:
        """What MSAL asks before ROPC: whether the account is managed here (cloud passwords) or
        federated; this tenant's domains are managed, any other is unknown."""
        user = request.match_info["user"]
        domain = user.rpartition("@")[2].lower()
        known = self.platform.tenant.is_accepted(user)
        return web.json_response({"ver": "1.0", "account_type": "Managed" if known else "Unknown",
                                  "domain_name": domain, "cloud_instance_name": "microsoftonline.com",
                                  "cloud_audience_urn": "urn:federation:MicrosoftOnline"}, headers=NO_STORE)

    async def _form(self, request: web.Request, what: str) -> dict[str, str] | web.Response:
        """The request's form, or the platform's 400 for a body that is not one (bytes that are not
        UTF-8, a charset no one knows, a file where a field is due, Basic credentials that are not
        base64 of UTF-8), recorded as any other refusal."""
        try:
            form = {k: v if isinstance(v, str) else "" for k, v in (await request.post()).items()}
            if request.headers.get("Authorization", "").startswith("Basic "):  # client_secret_basic
                raw = base64.b64decode(request.headers["Authorization"][6:], validate=True).decode()
                user, _, secret = raw.partition(":")
                form.setdefault("client_id", unquote(user))
                form.setdefault("client_secret", unquote(secret))
        except (UnicodeDecodeError, LookupError, ValueError, binascii.Error):
            refusal = Refusal(R.MALFORMED_FORM)
            self._record(request, what, outcome=refusal.reply.error, aadsts=refusal.reply.aadsts)
            return self._refused(refusal)
        return form

    async def devicecode(self, request: web.Request) -> web.Response:
        refused = self._tenant_refusal(request)
        if refused:
            return refused
        form = await self._form(request, "devicecode")
        if isinstance(form, web.Response):
            return form
        return self._answer(request, "devicecode", form,
                            self.platform.device_code(form, tenant=request.match_info["tenant"],
                                                      mkt=request.query.get("mkt")))

    async def not_posted(self, request: web.Request) -> web.Response:
        """A GET where only POST is served: the platform's JSON error, as for any bad request."""
        refusal = Refusal(R.POST_ONLY, {"verb": request.method})
        self._record(request, request.path.rsplit("/", 1)[-1], outcome=refusal.reply.error,
                     aadsts=refusal.reply.aadsts)
        return self._refused(refusal)

    async def token(self, request: web.Request) -> web.Response:
        refused = self._tenant_refusal(request)
        if refused:
            return refused
        form = await self._form(request, "token")
        if isinstance(form, web.Response):
            return form
        return self._answer(request, "token", form, self.platform.token(form, tenant=request.match_info["tenant"]))

    # -- the device login page (microsoft.com/link) -----------------------------------------------

    def _page(self, *, status: int = 200, words: dict[str, str] | None = None, **fields: Any) -> web.Response:
        t = words or PAGE_TEXT["en"]
        values = {"heading": t["enter_code"], "action": "/link", "hidden": {}, "code": None, "login": "",
                  "error": None, "detail": None, "done": None, "plays": "microsoft.com/link", "intro": t["intro"],
                  "mkt": ""} | fields
        html = _PAGES.get_template("sign-in.html").render(tenant=self.platform.tenant.tenant, t=t, **values)
        return web.Response(text=html, content_type="text/html", status=status)

    async def login_page(self, request: web.Request) -> web.Response:
        words = page_language(request)
        return self._page(code=request.query.get("otc", ""), words=words, mkt=words["lang"])

    async def login(self, request: web.Request) -> web.Response:
        form = await self._form(request, "device-login")
        if isinstance(form, web.Response):
            return form
        code, login = str(form.get("otc", "")), str(form.get("login", ""))
        approve = form.get("consent", "accept") != "decline"
        problem = self.platform.sign_in(code, login, str(form.get("password", "")), approve=approve,
                                        mfa=form.get("mfa") == "approved", source=request.remote or "")
        self._record(request, "device-login", user=login, outcome="ok" if problem is None else problem.error,
                     approved=approve, aadsts=problem.aadsts if problem else None)
        words = page_language(request, form)
        if problem is not None:
            return self._page(code=code, login=login, error=PAGE_ERRORS.get(problem.aadsts, {}).get(words["lang"]),
                              detail=problem.description(), words=words, mkt=words["lang"])
        return self._page(done=words["signed_in"] if approve else words["declined"], words=words)

    # -- the authorize page (authorization code with PKCE) ------------------------------------------

    def _authorization(self, request: web.Request, params: dict[str, str]) -> Authorization | web.Response:
        refused = self._tenant_refusal(request)
        if refused:
            return refused
        asked = self.platform.authorize(params)
        if isinstance(asked, Refusal):  # never redirected: the redirect URI may be the fault
            self._record(request, "authorize", client_id=params.get("client_id"), scope=params.get("scope"),
                         outcome=asked.reply.error, aadsts=asked.reply.aadsts)
            return self._page(heading="Sign in", error=asked.reply.description(**asked.fields), status=400,
                              intro="This app's sign-in request cannot be completed.", plays=IDENTITY_HOST)
        return asked

    async def authorize_page(self, request: web.Request) -> web.Response:
        asked = self._authorization(request, dict(request.query))
        if isinstance(asked, web.Response):
            return asked
        return self._page(heading="Sign in", action=request.path, hidden=dict(request.query), plays=IDENTITY_HOST,
                          intro=f"{asked.app_name} asks to send mail as you "
                                f"({', '.join(asked.scopes)}). Sign in with your mailbox to allow it.")

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request, "authorize")
        if isinstance(form, web.Response):
            return form
        params = {k: v for k, v in form.items() if k not in ("login", "password", "consent", "mfa")}
        asked = self._authorization(request, params)
        if isinstance(asked, web.Response):
            return asked
        login = form.get("login", "")
        answer = self.platform.consent(asked, login, form.get("password", ""),
                                       approve=form.get("consent", "accept") != "decline",
                                       mfa=form.get("mfa") == "approved")
        if isinstance(answer, R.IdentityReply):
            self._record(request, "authorize", client_id=asked.client_id, user=login, outcome=answer.error,
                         aadsts=answer.aadsts)
            return self._page(heading="Sign in", action=request.path, hidden=params, login=login,
                              error=answer.description(), plays=IDENTITY_HOST, intro="Sign in again.")
        self._record(request, "authorize", client_id=asked.client_id, user=login,
                     outcome="ok" if "code" in answer else answer["error"], approved="code" in answer)
        if asked.response_mode == "form_post":  # a page that posts the answer to the redirect URI
            html = _PAGES.get_template("form-post.html").render(action=asked.redirect_uri, fields=answer)
            return web.Response(text=html, content_type="text/html")
        joiner = "&" if "?" in asked.redirect_uri else "?"
        raise web.HTTPFound(f"{asked.redirect_uri}{joiner}{urlencode(answer)}")


