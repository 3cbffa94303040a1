"""Secrets out of everything a run writes: passwords, tokens, client secrets, and their encodings.

``SecretMask`` learns each secret once (``add``) and then replaces it in any text (``mask``): the
secret as it is, its base64 alone, and inside any longer base64 (an AUTH PLAIN or XOAUTH2 blob),
whatever its alignment there, as CI systems mask their secrets in logs. Records, results,
JUnit and HTML all pass through one mask.
"""

from __future__ import annotations

import base64
import re
import threading
from typing import Any

MASK = "********"
# base64 runs shorter than this are not masked inside longer base64 (too likely to be chance)
_MIN_FRAGMENT = 8


def encodings(secret: str) -> set[str]:
    """The secret, its base64, and the part of its base64 that stays the same at any offset
    within a longer base64 text."""
    raw = secret.encode()
    forms = {secret, base64.b64encode(raw).decode()}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        # the first quantum mixes in what came before; the last may mix in what follows
        core = encoded[4 if offset else 0:-4]
        if len(core) >= _MIN_FRAGMENT:
            forms.add(core)
    return {f for f in forms if f}


class SecretMask:
    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, *secrets: str | None) -> None:
        with self._lock:
            before = len(self._forms)
            for secret in secrets:
                if secret and len(secret) >= 4:
                    self._forms |= encodings(secret)
            if len(self._forms) != before:
                ordered = sorted(self._forms, key=len, reverse=True)  # longest first
                self._pattern = re.compile("|".join(re.escape(f) for f in ordered))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None or not text else pattern.sub(MASK, text)

    def mask_data(self, data: Any) -> Any:
        """``data`` (JSON-like) with every string masked."""
        if isinstance(data, str):
            return self.mask(data)
        if isinstance(data, dict):
            return {self.mask_data(k): self.mask_data(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.mask_data(item) for item in data]
        return data
