"""Fault rules of the emulator: latency, 5xx, timeouts, ambiguous writes, forced 429s."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ActiveFault", "FaultBook", "FaultPlan", "FaultRule"]

FaultKind = Literal["latency", "error", "timeout", "ambiguous", "rate_limit"]


class FaultRule(BaseModel):
    """One rule; ``method`` and ``path`` (a regex matched against the whole path) scope it.

    - ``latency``: wait ``seconds`` before answering (rules add up).
    - ``error``: answer ``status`` (default 503) with ``{code, message}``.
    - ``timeout``: hang ``seconds`` (or until the client gives up), then drop the
      connection without applying the request.
    - ``ambiguous``: apply the request (e.g. the Pin IS created), then drop the connection
      before answering.
    - ``rate_limit``: answer 429 code 8 whatever the counters say.

    ``probability`` is the share of matching requests hit; ``count`` caps how many times the
    rule fires before it disappears (None: forever).
    """

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    method: str | None = None
    path: str | None = None
    probability: float = Field(default=1.0, ge=0, le=1)
    count: int | None = Field(default=None, ge=1)
    seconds: float = Field(default=0.0, ge=0, le=300)
    status: int = Field(default=503, ge=400, le=599)
    code: int | None = None
    message: str | None = None


@dataclass
class ActiveFault:
    id: int
    rule: FaultRule
    pattern: re.Pattern[str] | None
    remaining: int | None
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.rule.method is not None and self.rule.method.upper() != method.upper():
            return False
        return self.pattern is None or self.pattern.fullmatch(path) is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.rule.model_dump(),
            "fired": self.fired,
            "remaining": self.remaining,
        }


@dataclass
class FaultPlan:
    """What to do with one request: wait ``latency`` seconds, then apply ``action``."""

    latency: float = 0.0
    action: ActiveFault | None = None
    fired: list[int] = field(default_factory=list)


class FaultBook:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._faults: dict[int, ActiveFault] = {}
        self._next = 1

    def add(self, rule: FaultRule) -> ActiveFault:
        pattern = re.compile(rule.path) if rule.path is not None else None
        fault = ActiveFault(self._next, rule, pattern, rule.count)
        self._faults[fault.id] = fault
        self._next += 1
        return fault

    def remove(self, fault_id: int) -> bool:
        return self._faults.pop(fault_id, None) is not None

    def clear(self) -> None:
        self._faults.clear()

    def as_json(self) -> list[dict[str, Any]]:
        return [f.as_json() for f in self._faults.values()]

    def plan(self, method: str, path: str) -> FaultPlan:
        plan = FaultPlan()
        for fault in list(self._faults.values()):
            if not fault.matches(method, path):
                continue
            terminal = fault.rule.kind != "latency"
            if terminal and plan.action is not None:
                continue
            if self._rng.random() >= fault.rule.probability:
                continue
            fault.fired += 1
            plan.fired.append(fault.id)
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._faults[fault.id]
            if terminal:
                plan.action = fault
            else:
                plan.latency += fault.rule.seconds
        return plan
