"""A training output directory: may it be used, and does it hold a checkpoint to resume?

The trainers (``tokenswap tune``, ``tokenswap hypernet train``) write ``out/checkpoint/``
whole (:mod:`tokenswap.training.checkpoint`, through :func:`tokenswap.io.save.atomic_dir`).
:func:`prepare_out` first puts back a checkpoint that a swap killed half-way left beside its
name (:func:`tokenswap.io.save.recover`), so a resume never finds none where one was written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tokenswap.errors import TokenswapError
from tokenswap.io.save import check_writable_parent, recover

LOG_NAME = "log.jsonl"  # a trainer's log; its first line is {"start": ...}
CHECKPOINT = "checkpoint"  # sub-directory of a training output holding the last checkpoint


def prepare_out(out: Path, resume: bool) -> bool:
    """Check a training output directory may be used; True when its checkpoint will be resumed.

    A missing or empty directory starts afresh, and so does one holding only what a run writes
    before its first checkpoint (``log.jsonl``, ``best/``: a run killed early; they are
    removed); one with a checkpoint resumes when ``resume``; anything else is an error
    (nothing of the user's is overwritten).
    """
    if not out.exists():
        check_writable_parent(out)
        return False
    if not out.is_dir():
        raise TokenswapError(f"output {out} exists and is not a directory")
    recover(out / CHECKPOINT)
    has_checkpoint = (out / CHECKPOINT / "state.pt").is_file()
    if resume and has_checkpoint:
        return True
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    if not entries:
        return False
    if not has_checkpoint and _started_only(out, entries):
        for entry in entries:  # our own output of a run killed before its first checkpoint
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return False
    if has_checkpoint:  # resume is off
        raise TokenswapError(f"output {out} holds a checkpoint; leave out --no-resume to continue "
                             "from it, or choose another --out")
    raise TokenswapError(f"output {out} exists and holds no checkpoint to resume; choose another "
                         "--out")


def _started_only(out: Path, entries: list[Path]) -> bool:
    """True when ``out`` holds nothing but a training log and a best model, written by us."""
    if {p.name for p in entries} - {LOG_NAME, "best"}:
        return False
    log = out / LOG_NAME
    if not log.is_file():
        return False
    with log.open(encoding="utf-8", errors="replace") as f:
        first = f.readline()
    try:
        return isinstance(json.loads(first), dict) and "start" in json.loads(first)
    except ValueError:
        return False


__all__ = ["CHECKPOINT", "prepare_out"]
