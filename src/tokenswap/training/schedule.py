"""The learning rate of every step: linear warm-up, then cosine, linear or no decay.

With a step count the multiplier is transformers' own (``get_cosine_schedule_with_warmup``,
``get_linear_schedule_with_warmup``, ``get_constant_schedule_with_warmup``): warm-up from 0 at
step 0 to the peak at step ``warmup``, then decay to 0 at the last step. With only a time
budget the number of steps is not known in advance; the same shapes then follow the share of
the budget used (``progress``), which the loop measures before each step.

Both cap the warm-up at a tenth of the run, of ``steps`` or of the steps a time budget is on
course for (``step / progress``, known after the first step; before it, ``10 * warmup_steps``).
Uncapped, a 20-step warm-up would fill most of a 30-step budget: a transferred model's new
embedding rows would train at a fraction of their learning rate for most of the run.

Left out: restarts, minimum learning rates, warm-up shapes other than linear.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum


class Schedule(str, Enum):
    """Learning rate after the linear warm-up."""

    COSINE = "cosine"  # half a cosine down to zero at the end of the run
    LINEAR = "linear"  # straight down to zero at the end of the run
    CONSTANT = "constant"  # the peak until the end


def warmup_length(warmup_steps: int, run_steps: int) -> int:
    """``warmup_steps`` capped at a tenth of a run of ``run_steps`` steps (at least 1).

    >>> warmup_length(20, 1000), warmup_length(20, 30), warmup_length(20, 5)
    (20, 3, 1)
    """
    return min(warmup_steps, max(1, run_steps // 10))


def _by_step(schedule: Schedule, warmup: int, steps: int) -> Callable[[int], float]:
    """transformers' multiplier of step ``s`` (the ``lr_lambda`` of its ``LambdaLR``)."""
    import torch
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    makers = {
        Schedule.COSINE: lambda opt: get_cosine_schedule_with_warmup(opt, warmup, steps),
        Schedule.LINEAR: lambda opt: get_linear_schedule_with_warmup(opt, warmup, steps),
        Schedule.CONSTANT: lambda opt: get_constant_schedule_with_warmup(opt, warmup),
    }
    # The multiplier is a pure function of the step: taken from a scheduler on a throw-away
    # optimizer, the real one needs no scheduler state in checkpoints.
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    return makers[schedule](probe).lr_lambdas[0]


class LearningRate:
    """Multiplier of the peak learning rate: ``lr(step, progress)`` in [0, 1].

    ``steps`` is the run's length (None: a time budget; ``progress`` is then the share of it
    used before ``step``).
    """

    def __init__(self, schedule: Schedule, warmup_steps: int, steps: int | None) -> None:
        self.schedule = Schedule(schedule)
        self.warmup_steps = warmup_steps
        self.steps = steps
        self._fixed = None if steps is None else \
            _by_step(self.schedule, warmup_length(warmup_steps, steps), steps)

    def warmup(self, step: int, progress: float) -> int:
        """The warm-up length as known at ``step``."""
        if self.steps is not None:
            run = self.steps
        elif step > 0 and progress > 0:
            run = int(step / progress)
        else:
            run = 10 * self.warmup_steps
        return warmup_length(self.warmup_steps, run)

    def __call__(self, step: int, progress: float) -> float:
        if self._fixed is not None:
            return float(self._fixed(step))
        warmup = self.warmup(step, progress)
        if step < warmup:  # as transformers: 0 at step 0, the peak at step `warmup`
            return step / warmup
        if self.schedule == Schedule.CONSTANT:
            return 1.0
        progress = min(1.0, max(0.0, progress))
        if self.schedule == Schedule.LINEAR:
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))


__all__ = ["LearningRate", "Schedule", "warmup_length"]
