"""What the trainers (hypernet, tune) share to checkpoint and resume exactly.

A resumed run reaches the same weights as an uninterrupted one when, besides weights and
optimizer state, the random number generators continue where they stopped
(:func:`rng_state` / :func:`set_rng_state`) and the output directory is checked the same way
before anything is written (:func:`prepare_out`). Writing the checkpoint itself is each
trainer's business (what goes in differs); both write it with :func:`tokenswap.io.save.atomic_dir`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from tokenswap.errors import TokenswapError
from tokenswap.io.save import recover

CHECKPOINT = "checkpoint"  # sub-directory of a training output holding the last checkpoint


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


def prepare_out(out: Path, resume: bool) -> bool:
    """Check a training output directory may be used; True when its checkpoint will be resumed.

    A missing or empty directory starts afresh; one with a checkpoint resumes when ``resume``;
    anything else is an error (nothing of the user's is overwritten).
    """
    if not out.exists():
        if not out.resolve().parent.exists():
            raise TokenswapError(f"the parent directory of {out} does not exist; create it first")
        return False
    if not out.is_dir():
        raise TokenswapError(f"output {out} exists and is not a directory")
    recover(out / CHECKPOINT)  # a checkpoint swap killed half-way left it beside its name
    has_checkpoint = (out / CHECKPOINT / "state.pt").is_file()
    if resume and has_checkpoint:
        return True
    if not any(out.iterdir()):
        return False
    if resume:
        raise TokenswapError(f"output {out} exists but holds no checkpoint to resume; "
                             "choose another --out")
    raise TokenswapError(f"output {out} already exists; pass --resume to continue from its "
                         "checkpoint, or choose another --out")


def write_jsonl(log, record: dict) -> None:
    """One JSON line, flushed (a log that a killed run leaves readable)."""
    log.write(json.dumps(record) + "\n")
    log.flush()


__all__ = ["CHECKPOINT", "prepare_out", "rng_state", "set_rng_state", "write_jsonl"]
