"""The options every trainer shares: budget, schedule, optimizer, evaluation and checkpoints.

Trainers inherit :class:`TrainingConfig` (``class TuneConfig(TrainingConfig)``), so every
option stays a flat keyword argument and a flat command-line option; a subclass re-declares a
field to change its default or its help. ``resume_keys`` name the fields a checkpoint must
agree on (they change the data order or the set of trained parameters); ``what`` names the
options in error messages. No torch here: configs are read before any model loads.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from tokenswap import config
from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.training.budget import Clock
from tokenswap.training.schedule import Schedule


@dataclass
class TrainingConfig:
    """Options of the training loop (:func:`tokenswap.training.loop.run`)."""

    resume_keys: ClassVar[tuple[str, ...]] = ("seed", "batch_size")
    what: ClassVar[str] = "training option"

    steps: int | None = option(
        None, "Optimizer steps (the schedule's length); none = until --minutes run out.")
    minutes: float | None = option(
        None, "Training-time budget in minutes, over resumed runs too; evaluation and "
              "checkpoints do not count.")
    clock: Clock = option(
        Clock.WALL, "What --minutes counts: wall (clock time in training steps) or cpu (this "
                    "process's CPU time in them, all threads; other jobs on a shared machine do "
                    "not count).")
    batch_size: int = option(16, "Sequences per optimizer step, over all ranks.")
    lr: float = option(1e-4, "Peak learning rate.")
    weight_decay: float = option(0.0, "AdamW decoupled weight decay.")
    warmup_steps: int = option(
        20, "Linear warm-up steps, capped at a tenth of the run (of --steps, or of the steps "
            "--minutes is on course for).")
    schedule: Schedule = option(
        Schedule.COSINE, "Learning rate after the warm-up: cosine or linear decay to zero over "
                         "the run (--steps, else --minutes), or constant.")
    grad_clip: float = option(1.0, "Max global gradient norm; 0 = no clipping.")
    seed: int = option(0, "Seed of the data order, the initialisation and any dropout.")
    eval_every: int = option(50, "Steps between held-out evaluations (needs held-out text).")
    checkpoint_every: int = option(
        50, "Steps between checkpoints (and one at the end of every run).")
    log_every: int = option(1, "Steps between training-loss lines in log.jsonl.")

    def __post_init__(self) -> None:
        types = config.field_types(type(self))
        for f in dataclasses.fields(self):
            base, _ = config.unwrap_optional(types[f.name])
            value = getattr(self, f.name)
            if isinstance(base, type) and issubclass(base, enum.Enum) and value is not None \
                    and not isinstance(value, base):
                setattr(self, f.name, config.parse_value(value, types[f.name], f.name))
        if self.steps is None and self.minutes is None:
            raise TokenswapError("say how long to train: --steps or --minutes")
        if self.steps is not None and self.steps < 1:
            raise TokenswapError(f"--steps must be at least 1, got {self.steps}")
        if self.minutes is not None and not self.minutes > 0:
            raise TokenswapError(f"--minutes must be positive, got {self.minutes}")
        for name in ("batch_size", "eval_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise TokenswapError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "grad_clip", "weight_decay"):
            if getattr(self, name) < 0:
                raise TokenswapError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:
            raise TokenswapError(f"seed must be in [0, 2**32), got {self.seed}")

    @classmethod
    def from_options(cls, **options: Any) -> TrainingConfig:
        """From keyword arguments, strings (command line) or a checkpoint's dict; one-line
        errors with a did-you-mean for unknown names."""
        return config.from_dict(cls, options, what=cls.what)

    def to_dict(self) -> dict:
        """Plain JSON values (enums as their values)."""
        return config.to_dict(self)


__all__ = ["Clock", "Schedule", "TrainingConfig"]
