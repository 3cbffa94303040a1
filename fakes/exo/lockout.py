"""Entra's smart lockout, as a counter of failures by key: after ``threshold`` wrong tries a key
is locked for ``seconds`` (the right answer too), and a success forgets its failures. Used for
mailboxes (wrong passwords) and for source addresses (wrong device codes on the login page). At
most ``kept`` keys are remembered, the oldest forgotten first, so no peer can grow the table."""

from __future__ import annotations

import collections
from collections.abc import Callable

# smart lockout's defaults: "locks an account from sign-in attempts for one minute after 10 failed
# attempts" (entra-docs howto-password-smart-lockout.md)
THRESHOLD, SECONDS, KEPT = 10, 60.0, 4096


class Lockout:
    def __init__(self, clock: Callable[[], float], threshold: int = THRESHOLD, seconds: float = SECONDS,
                 kept: int = KEPT) -> None:
        self.clock = clock
        self.threshold = threshold
        self.seconds = seconds
        self.kept = kept
        self._held: collections.OrderedDict[str, tuple[int, float]] = collections.OrderedDict()  # failures, until

    def locked(self, key: str) -> bool:
        _failures, until = self._held.get(key, (0, 0.0))
        return self.clock() < until

    def failed(self, key: str) -> None:
        failures, _until = self._held.pop(key, (0, 0.0))
        failures += 1
        self._held[key] = (0, self.clock() + self.seconds) if failures >= self.threshold else (failures, 0.0)
        if len(self._held) > self.kept:
            self._held.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._held.pop(key, None)

    def clear(self) -> None:
        self._held.clear()
