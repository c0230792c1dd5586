"""Collects a manager's events so a test can wait for one (an event, not a sleep)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from capvend import Event

E = TypeVar("E")


class EventLog:
    """Thread-safe list of events with a blocking ``wait_for``."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        #: Wall-clock receipt time of each event, seconds since the epoch.
        self.received_at: list[float] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self.received_at.append(time.time())
            self._cond.notify_all()

    def wait_for(self, kind: type[E], predicate: Callable[[E], bool] = lambda _: True, timeout: float = 10.0, start: int = 0) -> E | None:
        """The first event of ``kind`` (from index ``start``) that satisfies ``predicate``, or None after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events[start:]:
                    if isinstance(e, kind) and predicate(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def received(self, event: object) -> float:
        """When ``event`` arrived (epoch seconds)."""
        with self._cond:
            return self.received_at[next(i for i, e in enumerate(self.events) if e is event)]

    def mark(self) -> int:
        """The index the next event will have."""
        with self._cond:
            return len(self.events)
