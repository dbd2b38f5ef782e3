"""Checkpoints for exact resume: weights, optimizer, every RNG state, the run's counters.

A resumed run reaches the same weights as an uninterrupted one: besides weights and optimizer
state, the random number generators (python, numpy, torch, CUDA) continue where they stopped,
the data order is a function of (seed, step) in both trainers, and the learning rate a pure
function of the step and the training time (no scheduler state). ``out/checkpoint/`` holds

- ``model.pt``: the trained weights (a full state dict; gathered on rank 0 under FSDP);
- ``state.pt``: optimizer state, RNG states, step, training seconds on both clocks and the
  trainer's own values (best score so far, hypernet shape, ...);
- ``state.json``: step, data position, training seconds, the trainer's values and the config,
  readable by people and read by the resume check: a checkpoint written with other
  ``resume_keys`` (seed, batch size, ...) is refused with one line.

It is written whole or not at all (:func:`tokenswap.io.save.atomic_dir`, which exchanges it
with the previous one, never deleting that first). Only rank 0 writes; every rank reads. All
ranks start from the same seed and consume random numbers alike, so rank 0's RNG states stand
for every rank's.

From accelerate we take ``set_seed`` (python, numpy, torch and every CUDA device).
``Accelerator.save_state``/``load_state`` do not fit: they save the models, optimizers and
RNG states of objects an ``Accelerator`` prepared, one RNG file per process, into a directory
they manage. Our trainers shard with FSDP2's ``fully_shard`` themselves, train a hypernet
against a frozen model the ``Accelerator`` would not know, gather full state dicts on rank 0
and need one directory that replaces the previous checkpoint atomically under a fixed name.
Checkpoints written before this module (tokenswap <= 0.1.0) do not load; start such runs anew.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tokenswap import config
from tokenswap.distributed import Dist
from tokenswap.errors import TokenswapError
from tokenswap.io.checkpoint import CHECKPOINT, prepare_out
from tokenswap.io.save import atomic_dir
from tokenswap.training.config import TrainingConfig

MODEL_FILE = "model.pt"
STATE_FILE = "state.pt"
SUMMARY_FILE = "state.json"
FORMAT = 2  # of the checkpoint directory; 1 (no "format" key) was each trainer's own


@dataclass
class TaskState:
    """What a trainer saves besides the loop's counters and the RNG states."""

    model: dict  # full state dict of the trained weights (empty on ranks > 0 under FSDP)
    optimizer: dict  # full optimizer state dict
    extra: dict = field(default_factory=dict)  # small JSON values: best score, shapes, ...


@dataclass
class Counters:
    """Where a run stands: steps done and training seconds, over every resumed run."""

    step: int = 0
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed python, numpy, torch and every CUDA device (accelerate's ``set_seed``)."""
    from accelerate.utils import set_seed

    set_seed(seed)


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved (torch states must be CPU tensors)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def open_output(out: Path, resume: bool, ctx: Dist) -> bool:
    """Check (and create) a training output directory on every rank; True when resuming.

    Rank 0 goes first: it may put back a checkpoint an interrupted swap left beside its name.
    """
    if ctx.main:
        resuming = prepare_out(out, resume)
    ctx.barrier()
    if not ctx.main:
        resuming = prepare_out(out, resume)
    ctx.barrier()  # every rank has checked `out` before rank 0 creates it
    if ctx.main:
        out.mkdir(exist_ok=True)
    ctx.barrier()
    return resuming


def check_resume(out: Path, cfg: TrainingConfig) -> dict:
    """The checkpoint's ``state.json``, after checking it was written with the same
    ``resume_keys`` as ``cfg`` (else one line saying which differ)."""
    path = out / CHECKPOINT
    summary = json.loads((path / SUMMARY_FILE).read_text())
    if summary.get("format") != FORMAT:
        raise TokenswapError(f"checkpoint {path} was written by an older tokenswap and cannot be "
                             "resumed; choose another --out (or delete the checkpoint)")
    old, new = summary.get("config", {}), cfg.to_dict()
    # a resume key added after the checkpoint was written: it ran with the option's default
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)
                if f.default is not dataclasses.MISSING}
    old = {k: old.get(k, config.to_dict(defaults.get(k))) for k in cfg.resume_keys}
    changed = [k for k in cfg.resume_keys if old.get(k) != new[k]]
    if changed:
        values = ", ".join(f"{k}={old.get(k)}" for k in changed)
        raise TokenswapError(f"checkpoint {path} was written with other {', '.join(changed)} "
                             f"({values}); resume with the same values or choose another --out")
    return summary


def write_checkpoint(out: Path, task: TaskState, counters: Counters, cfg: TrainingConfig) -> Path:
    """Write ``out/checkpoint/`` whole, replacing the previous one (rank 0 only)."""
    summary = {"format": FORMAT, "step": counters.step,
               "data_position": counters.step * cfg.batch_size,
               "train_seconds": counters.train_seconds,
               "train_cpu_seconds": counters.train_cpu_seconds, **task.extra,
               "config": cfg.to_dict()}
    with atomic_dir(out / CHECKPOINT, overwrite=True) as tmp:
        torch.save(task.model, tmp / MODEL_FILE)
        torch.save({"optimizer": task.optimizer, "rng": rng_state(), "extra": task.extra,
                    "counters": vars(counters)}, tmp / STATE_FILE)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return out / CHECKPOINT


def read_checkpoint(out: Path) -> tuple[TaskState, Counters, dict]:
    """The task's state, the counters and the RNG states of ``out/checkpoint/`` (on the CPU:
    RNG states must stay CPU tensors; optimizers move their own state)."""
    path = out / CHECKPOINT
    model = torch.load(path / MODEL_FILE, map_location="cpu", weights_only=True)
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    return (TaskState(model, state["optimizer"], state["extra"]), Counters(**state["counters"]),
            state["rng"])


__all__ = ["FORMAT", "Counters", "MODEL_FILE", "STATE_FILE", "SUMMARY_FILE", "TaskState", "check_resume",
           "open_output", "read_checkpoint", "rng_state", "seed_everything", "set_rng_state",
           "write_checkpoint"]
