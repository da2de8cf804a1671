"""What a `verify` step reports, and what a run made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.db.schemas import EngineRole


class StepFailed(Exception):
    """What a step found wrong, in one line."""


@dataclass(frozen=True)
class StepResult:
    label: str  # what was proven, or what was being proven when it failed
    engine: EngineRole
    ok: bool
    seconds: float
    error: str | None = None

    def line(self) -> str:
        """`ok   0.12 s  primary reachable and migrated`, or FAIL, the engine and why."""
        status = "ok" if self.ok else "FAIL"
        text = self.label if self.ok else f"{self.label}: {self.engine} engine: {self.error}"
        return f"{status:<4} {self.seconds:.2f} s  {text}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.label,
            "engine": self.engine,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


@dataclass
class Scratch:
    """What the run made, so that it can be removed (or said to be kept)."""

    user_id: int | None = None
    user_email: str | None = None
    customer_id: int | None = None
    customer_code: str | None = None
    made: dict[str, int] = field(default_factory=dict)  # import, transform and export ids
