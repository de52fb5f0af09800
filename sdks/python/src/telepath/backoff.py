"""Reconnect backoff: exponential, capped, with proportional jitter."""

from __future__ import annotations

import random as _random
from dataclasses import dataclass
from typing import Callable

__all__ = ["Backoff"]


@dataclass(slots=True, kw_only=True)
class Backoff:
    """Reconnect delays (seconds).

    Attempt ``n`` (1 for the first retry) waits
    ``min(max_delay, initial_delay * factor ** (n - 1))``, shortened by a
    random share of up to ``jitter`` (0: none, 1: full jitter), so the delay
    is always within ``[capped * (1 - jitter), capped]``.
    """

    initial_delay: float = 0.25
    max_delay: float = 10.0
    factor: float = 2.0
    jitter: float = 0.5
    random: Callable[[], float] = _random.random

    def delay(self, attempt: int) -> float:
        """The delay before attempt ``attempt`` (>= 1)."""
        initial = max(0.0, self.initial_delay)
        cap = max(initial, self.max_delay)
        factor = max(1.0, self.factor)
        jitter = min(1.0, max(0.0, self.jitter))
        n = max(1, int(attempt))
        base = min(cap, initial * factor ** min(n - 1, 64))
        r = min(1.0, max(0.0, self.random()))
        return base * (1.0 - jitter * r)
