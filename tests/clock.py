"""A clock for code that waits: it moves only when the code under test sleeps (or the test says so)."""

from __future__ import annotations


class Clock:
    """Pass ``clock`` as the code's ``time.monotonic`` and ``clock.sleep`` as its ``time.sleep``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
