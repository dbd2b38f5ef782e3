"""Atomic output directories, and saving a model + tokenizer into one.

A crash, a full disk, Ctrl-C or ``kill -9`` never leaves a half-written directory under the
output's name, and never leaves no whole copy at all:

- everything is written to a hidden sibling ``.NAME.tmp-PID-XXXX`` first;
- a new output is then renamed into place (one atomic rename);
- an existing one (``overwrite=True``) is *exchanged* with the new one in one system call,
  ``renameat2(RENAME_EXCHANGE)`` (Linux, glibc >= 2.28), and the old copy, now under the
  temporary name, is removed. Where that call is missing (other systems, old glibc, file
  systems without it) the swap takes three renames: the new copy becomes ``.NAME.new-PID-XXXX``
  (complete), the old one moves to ``.NAME.old-PID-XXXX``, the new one moves in. A kill between
  the last two leaves no ``NAME``; :func:`recover` renames the complete copy left beside it back
  (training checkpoints are recovered so before a resume reads them).

Siblings carry the writer's process id: the next write of the same output removes those whose
process is gone (what killed runs left), and :func:`recover` only takes a dead writer's copy.
A process id reused by a new process keeps its predecessor's leftovers until that one ends;
several machines writing one output directory at once are not supported.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tokenswap.errors import TokenswapError

if TYPE_CHECKING:
    from tokenswap.io.models import ModelBundle

_AT_FDCWD = -100  # renameat2: paths relative to the working directory
_RENAME_EXCHANGE = 2  # renameat2: swap the two paths (linux/fs.h)


def check_output_dir(out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Fail early (before any long job) if ``out`` exists and ``overwrite`` is not set."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise TokenswapError(
            f"output {out} already exists; choose another path or pass --overwrite"
        )
    if out.exists() and not out.is_dir():
        raise TokenswapError(f"output {out} exists and is not a directory; remove it first")
    check_writable_parent(out)
    return out


def check_writable_parent(out: str | os.PathLike) -> Path:
    """The directory ``out`` would be created in, or one line saying why it cannot be."""
    out = Path(out)
    parent = out.resolve().parent
    for up in (parent, *parent.parents):  # `file.txt/sub`: a file where a directory should be
        if up.exists():
            if not up.is_dir():
                raise TokenswapError(f"cannot write {out}: {up} is a file, not a directory")
            break
    if not parent.is_dir():
        raise TokenswapError(f"the parent directory of {out} does not exist; create {parent}")
    try:  # a probe says what permission bits cannot: read-only mounts, /proc, /sys, quotas
        fd, probe = tempfile.mkstemp(prefix=".tokenswap-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise TokenswapError(f"cannot write to {parent} ({err.strerror or err}: read-only or "
                             "not yours); choose another output path") from None
    return parent


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_umask_allows(path: str | os.PathLike) -> None:
    """Give the file ``path`` the permissions a plain ``open()`` would (``0o666`` less the
    umask): writers such as mkstemp and safetensors' ``save_file`` make files 0600, which
    another user or a serving process cannot read."""
    os.chmod(path, 0o666 & ~_umask())


def check_output_file(out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Fail early (before any long job) if file ``out`` cannot be written or would be replaced."""
    out = Path(out)
    if out.is_dir():
        raise TokenswapError(f"output {out} is a directory; give a file name")
    if out.exists() and not overwrite:
        raise TokenswapError(f"output {out} already exists; choose another path or pass --overwrite")
    check_writable_parent(out)
    return out


def write_file(out: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Write ``text`` to a temporary sibling of ``out``, then rename it into place."""
    with atomic_file(out, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(out)


@contextlib.contextmanager
def atomic_file(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield the path of an empty temporary sibling of file ``out``; on success rename it to
    ``out``. On any exception the temporary file is removed and an existing ``out`` is kept.

    For writers that want a path rather than text (``gguf.GGUFWriter``).
    """
    out = check_output_file(out, overwrite=overwrite)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.resolve().parent)
    os.close(fd)
    tmp = Path(name)
    as_umask_allows(tmp)  # mkstemp makes 0600
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``out``; on success put it in place as ``out``.

    On any exception the temporary directory is removed and ``out`` is left untouched. With
    ``overwrite`` an existing ``out`` is replaced only once the new one is complete, and at
    every moment a whole copy exists under ``out`` (or, without ``renameat2``, beside it for
    :func:`recover`).
    """
    out = check_output_dir(out, overwrite=overwrite)
    parent = out.resolve().parent
    remove_leftovers(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the output must read like save_pretrained's
    try:
        yield tmp
        if not out.exists():
            os.replace(tmp, out)
        elif exchange(tmp, out):
            shutil.rmtree(tmp)  # the old copy, now under the temporary name
        else:
            _swap_by_renames(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_by_renames(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the complete ``tmp`` where the kernel cannot exchange them."""
    ready = tmp.with_name(tmp.name.replace(".tmp-", ".new-", 1))
    old = tmp.with_name(tmp.name.replace(".tmp-", ".old-", 1))
    os.replace(tmp, ready)
    os.replace(out, old)
    try:
        os.replace(ready, out)
    except BaseException:
        os.replace(old, out)
        os.replace(ready, tmp)  # removed by the caller
        raise
    shutil.rmtree(old, ignore_errors=True)


@functools.cache
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap the two existing paths ``a`` and ``b`` in one atomic step.

    False (nothing done) where the system or the file system cannot; other errors raise.
    """
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _siblings(out: Path) -> Iterator[tuple[Path, str, int]]:
    """The hidden siblings atomic writes of ``out`` leave: (path, kind, writer's pid)."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(tmp|new|old)-(\d+)-")
    parent = out.resolve().parent
    if not parent.is_dir():
        return
    for path in parent.iterdir():
        match = pattern.match(path.name)
        if match and path.is_dir():
            yield path, match.group(1), int(match.group(2))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's live process
        return True
    return True


def remove_leftovers(out: str | os.PathLike) -> list[Path]:
    """Remove the siblings of ``out`` that killed writers left (their process is gone)."""
    removed = []
    for path, _, pid in _siblings(Path(out)):
        if not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def recover(out: str | os.PathLike) -> bool:
    """Put back a whole copy of a missing ``out`` that an interrupted swap left beside it.

    The newest complete new copy (``.NAME.new-*``) wins over the old one (``.NAME.old-*``); a
    live writer's siblings are left to it. True when ``out`` was restored.
    """
    out = Path(out)
    if out.exists():
        return False
    found = sorted(((kind == "new", path.stat().st_mtime, path)
                    for path, kind, pid in _siblings(out)
                    if kind in ("new", "old") and not _alive(pid)), reverse=True)
    if not found:
        return False
    os.replace(found[0][2], out)
    return True


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


__all__ = ["atomic_dir", "atomic_file", "check_output_dir", "exchange", "recover", "remove_leftovers",
           "save_model"]


def json_text(obj, *, indent: int | None = 2, ensure_ascii: bool = True) -> str:
    """``obj`` as strict JSON: NaN and infinities (which ``json.dumps`` writes as the invalid
    tokens ``NaN``/``Infinity``) become ``null``."""
    import math

    def finite(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(obj), indent=indent, ensure_ascii=ensure_ascii, allow_nan=False) + "\n"
