"""Atomic output directories, and saving a model + tokenizer into one.

Write everything to a temporary sibling, then rename.

A crash, a full disk or Ctrl-C never leaves a half-written model behind: either the complete
output directory exists or nothing does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tokenswap.errors import TokenswapError

if TYPE_CHECKING:
    from tokenswap.io.models import ModelBundle


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


def save_model(bundle: ModelBundle, out: str | os.PathLike, *, overwrite: bool = False,
               provenance: dict | None = None) -> Path:
    """Save model + tokenizer (safetensors) into a temporary dir, then put it in place as ``out``.

    ``provenance`` (how the model was made) goes to ``out/tokenswap.json``.
    """
    with atomic_dir(out, overwrite=overwrite) as tmp:
        bundle.model.save_pretrained(tmp, safe_serialization=True)
        bundle.tokenizer.save_pretrained(tmp)
        if provenance is not None:
            (tmp / "tokenswap.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return Path(out)
