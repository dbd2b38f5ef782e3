"""How long a run trains: a number of optimizer steps, minutes on a clock, or both.

Only training steps are timed (:meth:`Budget.timing` around each step): evaluation,
checkpoints, exports and start-up never count, so a budget buys the same number of steps
whether a run evaluates every step or never, and a resumed run continues the clock it saved.
Two clocks run side by side; ``clock`` says which one the budget counts:

- ``wall``: seconds of the wall clock in training steps (``time.perf_counter``);
- ``cpu``: this process's CPU seconds in training steps, all its threads
  (``time.process_time``). Other jobs on a shared machine do not inflate it; on a GPU it misses
  the device's time. Compare runs with the same thread count.

Under several ranks the budget is decided on rank 0's clock (every rank must stop at the same
step); that is the loop's business (:mod:`tokenswap.training.loop`). Tests replace
:func:`wall_clock` and :func:`cpu_clock` with fake clocks; nothing here reads time otherwise.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from enum import Enum


class Clock(str, Enum):
    """What ``minutes`` counts."""

    WALL = "wall"  # wall-clock seconds spent in training steps
    CPU = "cpu"  # this process's CPU seconds in training steps (all its threads)


def wall_clock() -> float:
    return time.perf_counter()


def cpu_clock() -> float:
    return time.process_time()


class Budget:
    """Steps and training seconds used so far, against the run's limits.

    ``steps`` (None = no step limit) and ``minutes`` (None = no time limit) are the limits;
    ``train_seconds``/``train_cpu_seconds`` are the time already trained (a resumed run's).
    """

    def __init__(self, steps: int | None, minutes: float | None, clock: Clock = Clock.WALL, *,
                 train_seconds: float = 0.0, train_cpu_seconds: float = 0.0) -> None:
        self.steps = steps
        self.seconds = minutes * 60 if minutes is not None else math.inf
        self.clock = Clock(clock)
        self.train_seconds = train_seconds
        self.train_cpu_seconds = train_cpu_seconds
        self.last_seconds = 0.0  # wall seconds of the last timed step
        self._wall, self._cpu = wall_clock, cpu_clock  # looked up now: tests swap them first

    @property
    def timed(self) -> bool:
        """Whether a time limit applies (else the clocks are only reported)."""
        return self.seconds != math.inf

    def elapsed(self) -> float:
        """Training seconds on the budget's clock."""
        return self.train_cpu_seconds if self.clock == Clock.CPU else self.train_seconds

    def progress(self, step: int, elapsed: float) -> float:
        """Share of the run done before ``step``, in [0, 1]: of the steps when there is a step
        count, else of the time budget (``elapsed`` on its clock)."""
        if self.steps:
            return min(1.0, step / self.steps)
        if not self.timed:
            return 0.0
        return min(1.0, elapsed / self.seconds)

    def exhausted(self, step: int, elapsed: float) -> bool:
        """True when no further step may start: ``step`` steps done, ``elapsed`` seconds on
        the budget's clock trained."""
        return (self.steps is not None and step >= self.steps) or elapsed >= self.seconds

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """Count the ``with`` block as training time on both clocks."""
        wall, cpu = self._wall(), self._cpu()
        try:
            yield
        finally:
            self.last_seconds = self._wall() - wall
            self.train_seconds += self.last_seconds
            self.train_cpu_seconds += self._cpu() - cpu


__all__ = ["Budget", "Clock", "cpu_clock", "wall_clock"]
