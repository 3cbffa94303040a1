"""OAuth 2.0 access tokens for XOAUTH2, minted and checked by the harness's own issuer.

A token is a JWT signed RS256 with the issuer key kept beside the CA in the state directory.
Delegated tokens carry ``scp`` with ``SMTP.Send`` and the user's ``upn``; app-only tokens carry
``roles`` with ``SMTP.SendAsApp`` and the ``appid`` the mailbox must grant (OAUTH in the reference).
Checking takes the time as an argument, so expiry is tested without waiting.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# Exchange Online's resource: delegated tokens are issued for outlook.office.com, app-only tokens
# requested with scope https://outlook.office365.com/.default carry that audience.
AUDIENCES = ("https://outlook.office.com", "https://outlook.office365.com")
DELEGATED_SCOPE = "SMTP.Send"
APP_ROLE = "SMTP.SendAsApp"


def generate_issuer_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class TokenCheck:
    ok: bool
    reason: str
    kind: Literal["delegated", "app", ""] = ""
    app_id: str | None = None


class TokenAuthority:
    """Mints and checks tokens for one tenant with one RSA key."""

    def __init__(self, private_key_pem: bytes, tenant_id: str) -> None:
        self._key = serialization.load_pem_private_key(private_key_pem, password=None)
        self._public = self._key.public_key()
        self.tenant_id = tenant_id
        self.issuer = f"https://sts.windows.net/{tenant_id}/"
        der = self._public.public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:20]).decode().rstrip("=")

    def mint(
        self,
        *,
        now: float,
        mailbox: str | None = None,
        app_id: str | None = None,
        expires_in: float = 3600,
        scopes: tuple[str, ...] | None = None,
        roles: tuple[str, ...] | None = None,
        audience: str = AUDIENCES[0],
    ) -> str:
        """A delegated token for ``mailbox``, or with ``app_id`` an app-only one."""
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer,
            "tid": self.tenant_id,
            "iat": int(now),
            "nbf": int(now) - 60,
            "exp": int(now + expires_in),
            "jti": str(uuid.uuid4()),
        }
        if app_id is not None:
            claims.update(appid=app_id, roles=list(roles if roles is not None else (APP_ROLE,)))
        elif mailbox is not None:
            scp = scopes if scopes is not None else (DELEGATED_SCOPE,)
            claims.update(upn=mailbox, preferred_username=mailbox, scp=" ".join(scp))
        else:
            raise ValueError("a token is for a mailbox (delegated) or an app_id (app-only)")
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id})  # type: ignore[arg-type]

    @property
    def v2_issuer(self) -> str:
        return f"https://login.microsoftonline.com/{self.tenant_id}/v2.0"

    def id_token(self, *, now: float, mailbox: str, client_id: str, lifetime: float = 3600,
                 nonce: str | None = None) -> str:
        """An OpenID Connect ID token (v2.0) for the signed-in mailbox, for the app that asked
        (with the ``nonce`` of its authorization request, when it sent one)."""
        claims = {"aud": client_id, "iss": self.v2_issuer, "tid": self.tenant_id, "iat": int(now),
                  "nbf": int(now) - 60, "exp": int(now + lifetime), "ver": "2.0",
                  "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{client_id}/{mailbox}")),
                  "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, mailbox)), "preferred_username": mailbox,
                  "name": mailbox.partition("@")[0]}
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id})  # type: ignore[arg-type]

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set that verifies every token minted here."""
        key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._public))  # type: ignore[arg-type]
        return {"keys": [{**key, "kid": self.key_id, "use": "sig", "alg": "RS256"}]}

    def check(self, token: str, *, user: str, now: float) -> TokenCheck:
        try:
            claims = jwt.decode(
                token,
                self._public,  # type: ignore[arg-type]
                algorithms=["RS256"],
                audience=list(AUDIENCES),
                issuer=self.issuer,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "require": ["exp", "aud", "iss"]},
            )
        except jwt.InvalidAudienceError:
            return TokenCheck(False, "the token is not for Exchange Online (audience)")
        except jwt.InvalidIssuerError:
            return TokenCheck(False, "the token was issued for another tenant")
        except jwt.InvalidSignatureError:
            return TokenCheck(False, "the token's signature does not verify")
        except jwt.PyJWTError as exc:
            return TokenCheck(False, f"the token is not a valid JWT ({exc})")
        if now >= float(claims["exp"]):
            return TokenCheck(False, "the token has expired")
        if "nbf" in claims and now < float(claims["nbf"]):
            return TokenCheck(False, "the token is not valid yet")
        if "appid" in claims and "roles" in claims:
            if APP_ROLE not in claims.get("roles", []):
                return TokenCheck(False, f"the app token lacks the {APP_ROLE} role", "app")
            return TokenCheck(True, "app-only token", "app", str(claims["appid"]))
        scopes = str(claims.get("scp", "")).split()
        if DELEGATED_SCOPE not in scopes:
            return TokenCheck(False, f"the token's scp lacks {DELEGATED_SCOPE}", "delegated")
        upn = str(claims.get("upn") or claims.get("preferred_username") or "").lower()
        if upn != user.lower():
            return TokenCheck(False, "the token belongs to another user than user=", "delegated")
        return TokenCheck(True, "delegated token", "delegated")


def xoauth2_payload(user: str, token: str) -> str:
    """``base64("user=" + user + "^Aauth=Bearer " + token + "^A^A")`` as OAUTH gives it."""
    raw = f"user={user}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode()).decode()


def parse_xoauth2(decoded: str) -> tuple[str, str] | None:
    """``(user, token)`` from a decoded XOAUTH2 response, or None when it is malformed."""
    fields = {}
    for part in decoded.split("\x01"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            return None
        fields[key] = value
    auth = fields.get("auth", "")
    if "user" not in fields or not auth.startswith("Bearer "):
        return None
    return fields["user"], auth[len("Bearer ") :]
