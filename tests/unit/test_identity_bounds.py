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


def test_codes_and_tokens_are_drawn_from_the_randomness_handed_in():
    """The model draws nothing itself: the same seeded source gives the same device code, user code,
    trace ids and token id every time; the system source gives codes of the documented shapes."""
    import random

    from fakes.exo.identity import new_trace

    def seeded(seed: int):  # noqa: ANN202
        rng = random.Random(seed)
        return lambda n: rng.randbytes(n)

    def answer(seed: int) -> tuple[str, str, tuple[str, str]]:
        tenant, key = default_tenant(), KEY
        entropy = seeded(seed)
        identity = IdentityPlatform(lambda: tenant, TokenAuthority(key, "t", entropy), lambda: 1_000_000.0,
                                    entropy=entropy)
        body = identity.device_code({"client_id": DEVICE_APP, "scope": SCOPE}).body
        return body["device_code"], body["user_code"], new_trace(entropy)

    assert answer(7) == answer(7) and answer(7) != answer(8)
    user_code = platform([1_000_000.0]).device_code({"client_id": DEVICE_APP, "scope": SCOPE}).body["user_code"]
    assert len(user_code) == 9 and user_code.isalnum() and user_code == user_code.upper()


KEY = generate_issuer_key()
