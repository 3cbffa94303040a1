"""Randomness, handed to the model: what the identity platform and the token issuer draw codes,
tokens and ids from. The service passes ``secrets.token_bytes``; a test may pass a seeded source
and get the same codes every run. Nothing in ``fakes.exo`` draws randomness any other way."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable

Entropy = Callable[[int], bytes]  # n random octets
SYSTEM: Entropy = secrets.token_bytes


def urlsafe(entropy: Entropy, octets: int) -> str:
    """``octets`` random octets as unpadded base64url (as ``secrets.token_urlsafe``)."""
    return base64.urlsafe_b64encode(entropy(octets)).rstrip(b"=").decode()


def code(entropy: Entropy, alphabet: str, length: int) -> str:
    """``length`` characters drawn uniformly from ``alphabet`` (rejection sampling: no bias)."""
    limit = 256 - 256 % len(alphabet)
    out: list[str] = []
    while len(out) < length:
        out.extend(alphabet[b % len(alphabet)] for b in entropy(length) if b < limit)
    return "".join(out[:length])


def uuid4(entropy: Entropy) -> str:
    """A random (version 4) UUID from 16 drawn octets."""
    return str(uuid.UUID(bytes=entropy(16), version=4))
