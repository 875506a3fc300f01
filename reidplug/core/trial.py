"""Trials, their status, and the scheduler's decisions."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any


class TrialStatus(str, enum.Enum):
    PENDING = "PENDING"  # created, waiting for a slot
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # checkpointed, slot freed; a scheduler may resume it
    TERMINATED = "TERMINATED"  # finished its budget or stopped by the scheduler
    ERROR = "ERROR"

    @property
    def done(self) -> bool:
        return self in (TrialStatus.TERMINATED, TrialStatus.ERROR)


class Decision(str, enum.Enum):
    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"


@dataclass
class Trial:
    id: int
    params: dict[str, Any]
    status: TrialStatus = TrialStatus.PENDING
    step: int = 0  # budget units completed
    last_result: dict | None = None
    checkpoint: str | None = None  # latest checkpoint folder, relative to the experiment folder
    checkpoint_step: int = 0
    restore_from: str | None = None  # what the next launch loads (own checkpoint, or a donor's copy)
    parent: int | None = None  # the PBT donor this trial last copied
    num_failures: int = 0
    error: str | None = None
    created_at: float = 0.0
    results: list[dict] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return f"trial_{self.id:04d}"

    def metric(self, metric: str, default: float = math.nan) -> float:
        if not self.last_result:
            return default
        value = self.last_result.get(metric, default)
        return float(value) if isinstance(value, (int, float)) else default

    def best(self, metric: str, mode: str) -> float:
        values = [r[metric] for r in self.results if isinstance(r.get(metric), (int, float))]
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return math.nan
        return max(values) if mode == "max" else min(values)
