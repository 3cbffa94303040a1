"""What every check is: a strict pydantic model with ``evaluate(obs) -> Outcome``."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from harness.observation import Observation


@dataclass(frozen=True)
class Outcome:
    check: str
    passed: bool | None  # None: not applicable
    message: str

    @property
    def failed(self) -> bool:
        return self.passed is False


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def evaluate(self, obs: Observation) -> Outcome:  # pragma: no cover - every check overrides
        raise NotImplementedError

    def outcome(self, passed: bool | None, message: str) -> Outcome:
        return Outcome(self.check, passed, message)  # type: ignore[attr-defined]
