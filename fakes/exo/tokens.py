"""OAuth 2.0 access tokens for XOAUTH2, minted and checked by the harness's own issuer.

A token is a JWT signed RS256 with the issuer key kept beside the CA in the state directory, in
the shape Exchange Online's tokens have (v1, entra-docs access-token-claims-reference.md): issuer
``https://sts.windows.net/{tenant id}/``, ``ver`` 1.0, ``appid``, ``appidacr``, ``oid``, ``sub``,
``uti``, ``idtyp``; delegated tokens with ``scp`` (``SMTP.Send``), ``upn``, ``unique_name``,
``name`` and ``amr``; app-only tokens with ``roles`` (``SMTP.SendAsApp``), the ``appid`` the mailbox
must grant. The header names the signing certificate by ``x5t`` and ``kid`` (its SHA-1
thumbprint), which the key set publishes with ``x5c``. Checking takes the time as an argument, so
expiry is tested without waiting.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .entropy import SYSTEM, Entropy, urlsafe

# Exchange Online's resource: delegated tokens are issued for outlook.office.com, app-only tokens
# requested with scope https://outlook.office365.com/.default carry that audience.
AUDIENCES = ("https://outlook.office.com", "https://outlook.office365.com")
DELEGATED_SCOPE = "SMTP.Send"
APP_ROLE = "SMTP.SendAsApp"


LAB_CLIENT = "00000000-0000-0000-0000-000000000000"  # the appid of a token the harness mints itself


def _uti(entropy: Entropy) -> str:
    """A token's unique id, as Microsoft writes it (22 base64url characters)."""
    return urlsafe(entropy, 16)


def signing_certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The issuer key's certificate, self-signed the same way in every process (fixed names, serial
    and dates; PKCS#1 v1.5 signatures are deterministic), so that every token minted with the key,
    by ``serve`` or by ``exoedge token``, names the one ``x5t`` the key set publishes."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.windows.net")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=5 * 365))
            .sign(key, hashes.SHA256()))


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

    def __init__(self, private_key_pem: bytes, tenant_id: str, entropy: Entropy = SYSTEM) -> None:
        self.entropy = entropy  # token ids are drawn from it
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the token issuer key must be RSA")
        self._key = key
        self._public = key.public_key()
        self.tenant_id = tenant_id
        self.issuer = f"https://sts.windows.net/{tenant_id}/"
        self.certificate = signing_certificate(key)
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        self.key_id = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")  # noqa: S324 - x5t is SHA-1
        self._x5c = base64.b64encode(der).decode()

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256",
                          headers={"typ": "JWT", "x5t": self.key_id, "kid": self.key_id})

    @staticmethod
    def object_id(name: str) -> str:
        """A stable directory object id for a mailbox or an app's service principal."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, name.lower()))

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
        client_id: str | None = None,
        app_name: str = "exo-edge lab",
        name: str | None = None,
        credential: Literal["none", "secret", "certificate"] = "none",
        mfa: bool = False,
    ) -> str:
        """A delegated token for ``mailbox`` (asked for by ``client_id``), or with ``app_id`` an
        app-only one; ``credential`` is how the app proved itself (``appidacr`` 0, 1 or 2)."""
        claims: dict[str, Any] = {
            "aud": audience, "iss": self.issuer, "iat": int(now), "nbf": int(now) - 300, "exp": int(now + expires_in),
            "app_displayname": app_name, "appidacr": {"none": "0", "secret": "1", "certificate": "2"}[credential],
            "tid": self.tenant_id, "uti": _uti(self.entropy), "ver": "1.0",
        }
        if app_id is not None:
            principal = self.object_id(f"app:{app_id}")
            claims.update(appid=app_id, idp=self.issuer, idtyp="app", oid=principal, sub=principal,
                          roles=list(roles if roles is not None else (APP_ROLE,)))
        elif mailbox is not None:
            client = client_id or LAB_CLIENT
            scp = scopes if scopes is not None else (DELEGATED_SCOPE,)
            claims.update(acr="1", amr=["pwd", "mfa"] if mfa else ["pwd"], appid=client, idtyp="user",
                          name=name or mailbox.partition("@")[0], oid=self.object_id(mailbox), scp=" ".join(scp),
                          sub=self.object_id(f"{client}/{mailbox}"), unique_name=mailbox, upn=mailbox)
        else:
            raise ValueError("a token is for a mailbox (delegated) or an app_id (app-only)")
        return self._sign(claims)

    @property
    def v2_issuer(self) -> str:
        return f"https://login.microsoftonline.com/{self.tenant_id}/v2.0"

    def id_token(self, *, now: float, mailbox: str, client_id: str, lifetime: float = 3600,
                 nonce: str | None = None, name: str | None = None) -> str:
        """An OpenID Connect ID token (v2.0) for the signed-in mailbox, for the app that asked
        (with the ``nonce`` of its authorization request, when it sent one)."""
        claims = {"aud": client_id, "iss": self.v2_issuer, "tid": self.tenant_id, "iat": int(now),
                  "nbf": int(now) - 300, "exp": int(now + lifetime), "ver": "2.0",
                  "sub": self.object_id(f"{client_id}/{mailbox}"), "oid": self.object_id(mailbox),
                  "preferred_username": mailbox, "name": name or mailbox.partition("@")[0], "uti": _uti(self.entropy)}
        if nonce:
            claims["nonce"] = nonce
        return self._sign(claims)

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set that verifies every token minted here, as Entra publishes its keys
        (``kid`` and ``x5t`` the certificate's thumbprint, ``x5c`` the certificate)."""
        key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._public))
        return {"keys": [{"kty": "RSA", "use": "sig", "kid": self.key_id, "x5t": self.key_id, "n": key["n"],
                          "e": key["e"], "x5c": [self._x5c], "issuer": self.v2_issuer}]}

    def check(self, token: str, *, user: str, now: float) -> TokenCheck:
        try:
            claims = jwt.decode(
                token,
                self._public,
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
