"""The training loop every trainer shares; a trainer supplies only its :class:`Task`.

:func:`run` drives one run of ``tokenswap tune``, ``tokenswap hypernet train`` (and any trainer
to come) into the output directory ``out``:

1. resume or start: with ``resuming``, the checkpoint's resume keys are checked
   (:func:`~tokenswap.training.checkpoint.check_resume`), then the task's weights and optimizer,
   the step, the training clocks and every RNG state are restored; otherwise the start is
   logged and the starting point evaluated;
2. until the budget is spent (``steps``; ``minutes`` of training on rank 0's clock, so every
   rank stops at the same step) or ``stop_after`` steps are done, per step:

   a. the share of the run done (``progress``) sets the learning rate: every optimizer group's
      initial rate times the schedule's multiplier (:mod:`~tokenswap.training.schedule`);
   b. the task's :meth:`Task.step` runs the forward and backward passes of the step's batch;
   c. gradients are summed over ranks (data parallel; FSDP reduces its own), clipped to
      ``grad_clip`` and applied, then cleared. Only a-c count as training time;
   d. a log line every ``log_every`` steps, the progress bar, an evaluation every
      ``eval_every``, a checkpoint every ``checkpoint_every``, then ``callback(record)``;
3. a last evaluation and checkpoint, unless the last step had them.

Writing the trained result (a model directory, a hypernet) is the trainer's, after ``run``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from tokenswap.distributed import Dist
from tokenswap.training.budget import Budget
from tokenswap.training.checkpoint import (
    Counters,
    TaskState,
    check_resume,
    read_checkpoint,
    set_rng_state,
    write_checkpoint,
)
from tokenswap.training.config import TrainingConfig
from tokenswap.training.log import LOG_FILE, JsonLog
from tokenswap.training.progress import ProgressBar
from tokenswap.training.schedule import LearningRate


class Task(Protocol):
    """What a trainer brings to :func:`run`: its step, its evaluation and what it saves."""

    def step(self, step: int, progress: float) -> dict:
        """Forward and backward passes of optimizer step ``step`` (``progress`` in [0, 1] of
        the run); gradients are left for the loop to apply. Returns the step's log values:
        ``loss`` and, for tokens/s, ``tokens`` (predicted tokens over all ranks)."""
        ...

    def evaluate(self, step: int) -> dict | None:
        """Held-out scores of the current weights (``eval_bpb`` shows in the progress bar);
        None without held-out text or on ranks that do not score. Called on every rank."""
        ...

    def state(self) -> TaskState:
        """Weights, optimizer state and small values to checkpoint (called on every rank:
        gathering under FSDP is collective; rank 0's is written)."""
        ...

    def load(self, state: TaskState) -> None:
        """Restore what :meth:`state` returned (on every rank)."""
        ...


@dataclass
class RunResult:
    step: int  # steps done in total, resumed ones included
    loss: float | None  # last training loss (None when no step ran in this call)
    evaluation: dict | None  # the last evaluation's log record
    train_seconds: float  # wall time in training steps, over all resumed runs
    train_cpu_seconds: float  # this process's CPU time in those steps


def apply_gradients(optimizer: torch.optim.Optimizer, ctx: Dist, grad_clip: float) -> float:
    """Sum the trainable gradients over ranks, clip them (``grad_clip`` 0: not), step, clear.

    Returns the gradient norm before clipping.
    """
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    ctx.sum_grads(params)
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP: DTensor


def run(task: Task, optimizer: torch.optim.Optimizer, cfg: TrainingConfig, out: Path, ctx: Dist,
        *, resuming: bool, name: str, progress: bool = True, start: dict | None = None,
        stop_after: int | None = None, callback: Callable[[dict], None] | None = None
        ) -> RunResult:
    """Train ``task`` until ``cfg``'s budget is spent; log, evaluate and checkpoint into ``out``.

    ``resuming`` continues from ``out/checkpoint`` (as
    :func:`~tokenswap.training.checkpoint.open_output` decided); ``name`` labels the progress
    bar; ``start`` adds values to the log's start line; ``stop_after`` ends this call after that
    many steps in total (as if interrupted) without changing the schedule; ``callback`` is
    called on every rank after every step with the step's log record.
    """
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    budget = Budget(cfg.steps, cfg.minutes, cfg.clock)
    step = 0
    if resuming:
        check_resume(out, cfg)
        state, counters, rng = read_checkpoint(out)
        task.load(state)
        del state
        set_rng_state(rng)
        step = counters.step
        budget.train_seconds = counters.train_seconds
        budget.train_cpu_seconds = counters.train_cpu_seconds
    lr = LearningRate(cfg.schedule, cfg.warmup_steps, cfg.steps)
    log = JsonLog(out / LOG_FILE, enabled=ctx.main)
    bar = ProgressBar(name, cfg.steps, step) if progress and ctx.main else None
    loss, last_eval, eval_step = None, None, -1
    saved_step = step if resuming else -1

    def evaluate() -> None:
        nonlocal last_eval, eval_step
        scores = task.evaluate(step)
        eval_step = step
        if scores is not None:
            last_eval = {"step": step, "train_seconds": budget.train_seconds,
                         "train_cpu_seconds": budget.train_cpu_seconds, **scores}
            log.write(last_eval)
            if bar is not None and "eval_bpb" in scores:
                bar.update(step, bpb=scores["eval_bpb"])

    def checkpoint() -> None:
        nonlocal saved_step
        state = task.state()  # collective under FSDP
        if ctx.main:
            write_checkpoint(out, state, Counters(step, budget.train_seconds,
                                                  budget.train_cpu_seconds), cfg)
        ctx.barrier()
        saved_step = step

    try:
        if resuming:
            log.write({"resumed_from": step, "train_seconds": budget.train_seconds,
                       "train_cpu_seconds": budget.train_cpu_seconds})
        else:
            log.write({"start": {"steps": cfg.steps, "minutes": cfg.minutes, "ranks": ctx.world,
                                 **(start or {})}, "config": cfg.to_dict()})
            evaluate()  # the starting point
        while stop_after is None or step < stop_after:
            elapsed = ctx.from_main(budget.elapsed()) if budget.timed else 0.0
            if budget.exhausted(step, elapsed):
                break
            done = budget.progress(step, elapsed)
            factor = lr(step, done)
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
            with budget.timing(), torch.enable_grad():
                values = task.step(step, done)
                grad_norm = apply_gradients(optimizer, ctx, cfg.grad_clip)
            step += 1
            tokens = values.pop("tokens", None)
            loss = values.get("loss")
            record = {"step": step, **values, "lr": factor * cfg.lr, "grad_norm": grad_norm,
                      "train_seconds": budget.train_seconds,
                      "train_cpu_seconds": budget.train_cpu_seconds}
            if tokens is not None:
                record["tokens_per_s"] = tokens / max(budget.last_seconds, 1e-9)
            if step % cfg.log_every == 0 or step == 1:
                log.write(record)
            if bar is not None:
                bar.update(step, loss=loss if loss is not None else math.nan,
                           tps=record.get("tokens_per_s", 0.0))
            if step % cfg.eval_every == 0:
                evaluate()
            if step % cfg.checkpoint_every == 0:
                checkpoint()
            if callback is not None:
                callback(record)
        if eval_step != step:
            evaluate()
        if saved_step != step:
            checkpoint()
    finally:
        if bar is not None:
            bar.close()
        log.close()
    return RunResult(step=step, loss=loss, evaluation=last_eval,
                     train_seconds=budget.train_seconds,
                     train_cpu_seconds=budget.train_cpu_seconds)


__all__ = ["RunResult", "Task", "apply_gradients", "run"]
