"""Secrets out of everything a run writes: passwords, tokens, client secrets, and their encodings.

``SecretMask`` learns each secret once (``add``) and then replaces it in any text (``mask``): the
secret as it is, its base64 alone, and inside any longer base64 (an AUTH PLAIN or XOAUTH2 blob),
whatever its alignment there, as CI systems mask their secrets in logs. Records, results,
JUnit and HTML all pass through one mask.

Passwords and client secrets are learnt one by one (a tenant has few). Access tokens are minted
for every case, so they are not learnt by value: any JWT, and any base64 that carries one (an
XOAUTH2 blob, a JWT encoded again), is masked by its shape, and the cost of masking never grows
with the number of cases run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from typing import Any

from ahocorasick_rs import AhoCorasick

MASK = "********"
# base64 runs shorter than this are not masked inside longer base64 (too likely to be chance)
_MIN_FRAGMENT = 8
# A JWT starts where a run of its alphabet starts, and each segment is taken whole (possessive): a
# search costs one pass over the text, however long a run of base64-looking text a peer sends (the
# plain pattern backtracked through the rest of the run at every "eyJ", a quadratic stall)
_JWT = r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}+"


def encodings(secret: str) -> set[str]:
    """The secret, its form encodings (a form body a sender prints: ``password=Scan-2026%21``), as
    written inside a JSON string, its base64 and urlsafe base64 (padded or not), and the part of
    each that stays the same at any offset within a longer base64 text."""
    raw = secret.encode()
    quoted = {urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret), urllib.parse.quote(secret)}
    # and as encoders that take "~" for reserved write it (RFC 2396: %7E)
    escaped = {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}  # inside a JSON string
    forms = {secret, *escaped, *quoted, *(q.replace("~", "%7E") for q in quoted)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        forms |= {whole, whole.rstrip("=")}
        for offset in range(3):
            encoded = encode(b"\0" * offset + raw).decode()
            # the first quantum mixes in what came before; the last may mix in what follows
            core = encoded[4 if offset else 0:-4]
            if len(core) >= _MIN_FRAGMENT:
                forms.add(core)
    return {f for f in forms if f}


def unknown_user(name: str) -> str:
    """What records keep of a user name that is no mailbox (where people type their password):
    a hash, the same for the same name, so repeated tries still read as repeated."""
    return f"unknown user sha256:{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def _inside_base64(marker: bytes) -> list[str]:
    """The base64 of ``marker`` as it reads inside a longer base64 text, at each alignment."""
    out = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + marker).decode()
        out.append(encoded[4 if offset else 0:-4])
    return out


# A refresh token of the lab's identity platform: opaque, but shaped as Microsoft's start ("0.A"),
# so it is masked wherever it appears (a sender may print it, or send it outside AUTH)
REFRESH_TOKEN_PREFIX = "0.A"
_REFRESH = r"(?<![A-Za-z0-9_.-])0\.A[A-Za-z0-9_-]{60,}+"
_CORES = [core for marker in (b"auth=Bearer ", b"eyJhbGciOi", b"eyJ0eXAiOi") for core in _inside_base64(marker)]
# A token by its shape: a JWT, a refresh token, or base64 from "auth=Bearer " (XOAUTH2) or from a JWT header on
TOKEN_SHAPES = [_JWT, _REFRESH, *(re.escape(core) + "[A-Za-z0-9+/]*={0,2}" for core in _CORES)]
# What each shape cannot match without: text holding none of these (nor a learnt form) is left as
# it is without the pattern's pass, which tries every shape at every position (most text: a
# tenth of the time)
TOKEN_MARKERS = ("eyJ", REFRESH_TOKEN_PREFIX, *_CORES)


class SecretMask:
    def __init__(self) -> None:
        self._forms: set[str] = set()
        # the pattern, and an automaton of the literals one of which any match holds (one pass over
        # a text finds whether it holds any: 33 searches for each of them took four times as long,
        # 70 us for a ClientHello's base64); replaced together
        self._compiled: tuple[re.Pattern[str], AhoCorasick] = (re.compile("|".join(TOKEN_SHAPES)),
                                                               AhoCorasick(list(TOKEN_MARKERS)))

    def add(self, *secrets: str | None) -> None:
        """Passwords and client secrets: masked for the life of the mask. The harness adds (one
        thread), the edge masks (another): each new pattern replaces the old one whole."""
        fresh = {form for secret in secrets if secret and len(secret) >= 4 for form in encodings(secret)}
        if not fresh <= self._forms:
            forms = self._forms | fresh
            ordered = sorted(forms, key=len, reverse=True)  # longest first
            self._compiled = (re.compile("|".join([*TOKEN_SHAPES, *(re.escape(f) for f in ordered)])),
                              AhoCorasick([*TOKEN_MARKERS, *ordered]))
            self._forms = forms

    def mask(self, text: str) -> str:
        pattern, literals = self._compiled
        if text and literals.find_matches_as_indexes(text):  # any literal at all (most text: none)
            return pattern.sub(MASK, text)
        return text

    def mask_data(self, data: Any) -> Any:
        """``data`` (JSON-like) with every string masked."""
        if isinstance(data, str):
            return self.mask(data)
        if isinstance(data, dict):
            return {self.mask_data(k): self.mask_data(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.mask_data(item) for item in data]
        return data


_BASE64_TOKEN = re.compile(r"^[A-Za-z0-9+/]{6,}={0,2}$")


def looks_like_a_secret(line: str) -> bool:
    """A lone base64 token (not a plain word): what AUTH LOGIN or XOAUTH2 data looks like, sent
    as a "command" by a client that lost track of its AUTH exchange."""
    return bool(_BASE64_TOKEN.match(line)) and not line.isalpha()
