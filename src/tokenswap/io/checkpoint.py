"""A training output directory: may it be used, and does it hold a checkpoint to resume?

The trainers (``tokenswap tune``, ``tokenswap hypernet train``) write ``out/checkpoint/``
whole (:mod:`tokenswap.training.checkpoint`, through :func:`tokenswap.io.save.atomic_dir`).
:func:`prepare_out` first puts back a checkpoint that a swap killed half-way left beside its
name (:func:`tokenswap.io.save.recover`), so a resume never finds none where one was written.
"""

from __future__ import annotations

from pathlib import Path

from tokenswap.errors import TokenswapError
from tokenswap.io.save import recover

CHECKPOINT = "checkpoint"  # sub-directory of a training output holding the last checkpoint


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
    recover(out / CHECKPOINT)
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


__all__ = ["CHECKPOINT", "prepare_out"]
