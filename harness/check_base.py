"""What every check is: a strict pydantic model with ``evaluate(obs) -> Outcome``."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from harness.observation import Observation


@dataclass(frozen=True)
class Outcome:
    check: str
    passed: bool | None  # None: not applicable
    message: str
    must_apply: bool = True  # a case is not exercised when such a check did not apply

    @property
    def not_exercised(self) -> bool:
        return self.passed is None and self.must_apply

    @property
    def failed(self) -> bool:
        return self.passed is False


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    must_apply: bool = Field(True, description="a case passes only when this check applied (what it judges "
                                               "happened); false for a check that may rightly find nothing to judge")

    def evaluate(self, obs: Observation) -> Outcome:  # pragma: no cover - every check overrides
        raise NotImplementedError

    def outcome(self, passed: bool | None, message: str) -> Outcome:
        return Outcome(self.check, passed, message, self.must_apply)  # type: ignore[attr-defined]
