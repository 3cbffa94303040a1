"""The identity platform's memory and work stay bounded: the login page finds a user code by an
index (never a scan of every device code waiting), and what has expired is forgotten a heap pop at
a time, so a lab asked for a hundred thousand device codes holds none of them once they expire."""

from __future__ import annotations

from fakes.exo.identity import IdentityPlatform
from fakes.exo.tenant import default_tenant
from fakes.exo.tokens import TokenAuthority, generate_issuer_key

DEVICE_APP = "00000000-0000-0000-0000-00000000d3c0"
SCOPE = "https://outlook.office.com/SMTP.Send offline_access"


class NoScans(dict):
    """A dict that refuses to be walked: only lookups by key."""

    def values(self):  # noqa: ANN201
        raise AssertionError("every device code scanned")

    def items(self):  # noqa: ANN201
        raise AssertionError("every device code scanned")

    def __iter__(self):  # noqa: ANN204
        raise AssertionError("every device code scanned")


def platform(now: list[float]) -> IdentityPlatform:
    tenant = default_tenant()
    return IdentityPlatform(lambda: tenant, TokenAuthority(generate_issuer_key(), "t"), lambda: now[0])


def test_the_login_page_finds_a_code_without_walking_the_others():
    now = [1_000_000.0]
    identity = platform(now)
    identity._device_codes = NoScans()
    codes = [identity.device_code({"client_id": DEVICE_APP, "scope": SCOPE}).body for _ in range(2000)]
    assert identity.pending(codes[1234]["user_code"]) is not None
    assert identity.sign_in(codes[7]["user_code"], "scanner@contoso.com", "Scan-2026!") is None
    assert identity.pending("NOTACODE") is None


def test_expired_codes_and_tokens_are_forgotten():
    now = [1_000_000.0]
    identity = platform(now)
    for _ in range(5000):
        identity.device_code({"client_id": DEVICE_APP, "scope": SCOPE})
    assert len(identity._device_codes) == 5000
    now[0] += 2 * default_tenant().identity.device_code_lifetime + 1  # past expiry and the late-poll grace
    identity.device_code({"client_id": DEVICE_APP, "scope": SCOPE})  # any request forgets what is due
    assert len(identity._device_codes) == 1 and len(identity._user_codes) == 1 and len(identity._expiry) == 1
