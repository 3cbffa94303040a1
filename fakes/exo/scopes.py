"""What a scope asks the identity platform for: Exchange Online's resource by either identifier URI,
its delegated permissions, app-only ``.default``, OpenID scopes, and Microsoft Graph's (whose tokens
smtp.office365.com refuses). Rules only: ``fakes.exo.identity`` grants by them, checks judge by them.
"""

from __future__ import annotations

OUTLOOK = "https://outlook.office.com/"
GRAPH = "https://graph.microsoft.com/"  # an app may hold Graph's scopes too; their tokens are not Exchange's
APP_SCOPE = "https://outlook.office365.com/.default"
SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"  # what a device signs in for (delegated)
DEVICE_SCOPE = f"{SMTP_SCOPE} offline_access"  # ... with a refresh token, to send unattended
# The grants a device or an app uses, as the token endpoint names them
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_GRANT, CLIENT_CREDENTIALS_GRANT, PASSWORD_GRANT = "refresh_token", "client_credentials", "password"
# Exchange Online's resource, by both its identifier URIs, and the delegated permissions a device may
# ask for (dynamic consent: asked at sign-in, whether or not the app registration lists them)
EXCHANGE_RESOURCES = ("https://outlook.office.com/", "https://outlook.office365.com/")
EXCHANGE_PERMISSIONS = {name.lower(): name for name in ("SMTP.Send", "IMAP.AccessAsUser.All",
                                                        "POP.AccessAsUser.All", "EWS.AccessAsUser.All")}
APP_SCOPES = tuple(f"{resource}.default" for resource in EXCHANGE_RESOURCES)
OIDC_SCOPES = ("openid", "profile", "email", "offline_access")


def split_scopes(scope: str) -> tuple[str, ...]:
    """``"a b,c"`` -> ``("a", "b", "c")``: scopes as a request lists them."""
    return tuple(s for s in scope.replace(",", " ").split() if s)


def for_exchange(scope: str, *, app_only: bool = False) -> bool:
    """Whether a requested ``scope`` gives a token smtp.office365.com accepts, as the platform
    resolves it: Exchange's SMTP.Send (either identifier URI, any case) or its ``.default``, with
    other Exchange permissions and OpenID scopes beside; app-only, Exchange's ``.default`` alone."""
    asked = [s.lower() for s in split_scopes(scope)]
    if app_only:
        return len(asked) == 1 and asked[0] in APP_SCOPES
    exchange = [s for s in asked if s.startswith(EXCHANGE_RESOURCES)]
    if not exchange or len(exchange) + sum(s in OIDC_SCOPES for s in asked) != len(asked):
        return False
    return any(s.endswith(("/smtp.send", "/.default")) for s in exchange)
