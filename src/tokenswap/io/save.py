"""Atomic output directories: write everything to a temporary sibling, then rename.

A crash, a full disk or Ctrl-C never leaves a half-written model behind: either the complete
output directory exists or nothing does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tokenswap.errors import TokenswapError


def check_output_dir(out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Fail early (before any long job) if ``out`` exists and ``overwrite`` is not set."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise TokenswapError(
            f"output {out} already exists; choose another path or pass --overwrite"
        )
    if out.exists() and not out.is_dir():
        raise TokenswapError(f"output {out} exists and is not a directory; remove it first")
    parent = out.resolve().parent
    if not parent.exists():
        raise TokenswapError(f"the parent directory of {out} does not exist; create {parent}")
    return out


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``out``; on success move it to ``out``.

    On any exception the temporary directory is removed and ``out`` is left untouched.
    With ``overwrite`` an existing ``out`` is replaced only after the new one is complete.
    """
    out = check_output_dir(out, overwrite=overwrite)
    parent = out.resolve().parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_model(bundle, out: str | os.PathLike, *, overwrite: bool = False,
               provenance: dict | None = None) -> Path:
    """Save a bundle's model + tokenizer as safetensors into a temporary dir, then rename it
    to ``out`` (:func:`atomic_dir`); ``provenance`` goes to ``tokenswap.json``."""
    import json

    with atomic_dir(out, overwrite=overwrite) as tmp:
        bundle.model.save_pretrained(tmp, safe_serialization=True)
        bundle.tokenizer.save_pretrained(tmp)
        if provenance is not None:
            (tmp / "tokenswap.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return Path(out)


def check_output_file(out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Fail early (before any long job) if file ``out`` cannot be written or would be replaced."""
    out = Path(out)
    if out.is_dir():
        raise TokenswapError(f"output {out} is a directory; give a file name")
    if out.exists() and not overwrite:
        raise TokenswapError(f"output {out} already exists; choose another path or pass --overwrite")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise TokenswapError(f"the parent directory of {out} does not exist; create {parent}")
    if not os.access(parent, os.W_OK):
        raise TokenswapError(f"cannot write to {parent}; choose another path")
    return out


def write_file(out: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Write ``text`` to a temporary sibling of ``out``, then rename it into place."""
    out = check_output_file(out, overwrite=overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.resolve().parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return out
