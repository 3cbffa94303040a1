"""What the identity platform hands out and holds: its answers (a ``Grant``, or a ``Refusal`` in
the platform's error JSON), the device codes, refresh tokens and authorization codes it keeps,
and a pending ``/authorize`` request. ``fakes.exo.identity`` decides; these are its records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .replies import IdentityReply

ERROR_LOOKUP = "https://login.microsoftonline.com/error"  # every error body links its code there


@dataclass(frozen=True)
class Refusal:
    reply: IdentityReply
    fields: dict[str, str] = field(default_factory=dict)

    def body(self, now: float, trace_id: str, correlation_id: str) -> dict[str, Any]:
        """The platform's error JSON (EXO-REFERENCE 3a)."""
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        description = (f"{self.reply.description(**self.fields)}\r\nTrace ID: {trace_id}\r\n"
                       f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}")
        body = {"error": self.reply.error, "error_description": description, "error_codes": [self.reply.aadsts],
                "timestamp": stamp, "trace_id": trace_id, "correlation_id": correlation_id,
                "error_uri": f"{ERROR_LOOKUP}?code={self.reply.aadsts}"}
        return body | {"suberror": self.reply.suberror} if self.reply.suberror else body


@dataclass(frozen=True)
class Grant:
    body: dict[str, Any]


@dataclass
class DeviceCode:
    client_id: str
    scopes: tuple[str, ...]
    user_code: str
    expires: float
    interval: int
    mailbox: str | None = None  # set when a person signed in on the login page
    declined: bool = False
    mfa: bool = False  # the person completed multi-factor authentication
    forget: float = 0.0  # kept past its expiry until then, so that a late poll still hears expired_token


@dataclass
class HeldRefreshToken:
    client_id: str
    mailbox: str
    scopes: tuple[str, ...]
    issued: float
    expires: float
    mfa: bool = False
    revoked: bool = False  # by an administrator (a revoked sign-in): refused with 50173 until it expires


@dataclass
class AuthorizationCode:
    client_id: str
    mailbox: str
    scopes: tuple[str, ...]
    redirect_uri: str
    challenge: str
    method: str
    expires: float
    mfa: bool
    nonce: str | None = None


@dataclass(frozen=True)
class Authorization:
    """A valid ``/authorize`` request, waiting for the person to sign in and consent."""

    client_id: str
    app_name: str
    scopes: tuple[str, ...]
    redirect_uri: str
    state: str
    challenge: str
    method: str
    response_mode: str = "query"  # or form_post: the answer is a page that posts it to the redirect URI
    nonce: str | None = None  # echoed in the ID token


AUTHORIZATION_CODE_LIFETIME = 600  # seconds; Microsoft's codes are short-lived ("about 10 minutes")
