"""Exponential backoff with full jitter, for reconnecting to capvend replicas."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

#: First reconnect delay cap, seconds.
DEFAULT_INITIAL_BACKOFF = 0.1
#: Largest reconnect delay cap, seconds.
DEFAULT_MAX_BACKOFF = 5.0
#: Growth of the cap per failed attempt.
DEFAULT_MULTIPLIER = 2.0


def full_jitter_delay(
    attempt: int,
    rnd: float,
    *,
    initial: float = DEFAULT_INITIAL_BACKOFF,
    maximum: float = DEFAULT_MAX_BACKOFF,
    multiplier: float = DEFAULT_MULTIPLIER,
) -> float:
    """The delay (seconds) before retry number ``attempt`` (0-based), given ``rnd`` in [0, 1).

    Full jitter: uniform between 0 and ``min(maximum, initial * multiplier**attempt)``, so a
    fleet of runtimes cut off by the same failure does not come back in one burst.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if not 0.0 <= rnd <= 1.0:
        raise ValueError("rnd must be in [0, 1]")
    # Cap the exponent: past the maximum the cap no longer grows, and floats must not overflow.
    exponent = min(attempt, 64)
    cap = min(maximum, initial * multiplier**exponent)
    return rnd * cap


@dataclass
class Backoff:
    """Counts failed attempts and hands out full-jitter delays; ``reset()`` after a success."""

    initial: float = DEFAULT_INITIAL_BACKOFF
    maximum: float = DEFAULT_MAX_BACKOFF
    multiplier: float = DEFAULT_MULTIPLIER
    random: Callable[[], float] = random.random
    attempts: int = 0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if self.multiplier < 1:
            raise ValueError("backoff multiplier must be >= 1")

    def next_delay(self) -> float:
        """The delay before the next attempt, seconds; counts one more failure."""
        delay = full_jitter_delay(
            self.attempts, self.random(), initial=self.initial, maximum=self.maximum, multiplier=self.multiplier
        )
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Forgets past failures: the next delay is short again."""
        self.attempts = 0
