"""Man pages as the text a reader sees, not their roff source.

``/usr/share/man/de/man1/ls.1.gz`` holds roff: ``.TH``, ``\\fB``, ``\\-`` and comment lines of
asterisks. Read as text, a tokenizer trained on it learns markup tokens and a model is scored on
markup. :func:`render` runs groff (Debian's ``groff-base``, which ``man`` itself uses) with the
man macros, UTF-8 output, one unbroken line per paragraph and no hyphenation, then drops
overstriking, page headers and indentation, so what remains is the page's prose with its section
headings. Rendered pages are cached under ``~/.cache/tokenswap/man`` (``$TOKENSWAP_CACHE``),
keyed by the file's path, size and modification time.

The corpus reader takes these as ``man:PATH`` specs (:mod:`tokenswap.io.corpus`), PATH a man
page, a directory of them or a glob; ``.so`` redirections (pages that only include another)
are skipped rather than followed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from tokenswap.errors import TokenswapError

_GROFF = ["groff", "-k", "-Tutf8", "-man", "-t", "-rLL=100000n", "-rHY=0", "-dAD=l",
          "-rcR=1", "-P-cbou"]
_OVERSTRIKE = re.compile(".\b")  # bold/underline by backspacing, if a groff still emits it
_BLANKS = re.compile(r"\n{3,}")


def _cache_dir() -> Path:
    root = os.environ.get("TOKENSWAP_CACHE") or Path.home() / ".cache" / "tokenswap"
    return Path(root) / "man"


def _source(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def is_redirect(source: bytes) -> bool:
    """A page whose only content is ``.so other/page`` (an alias of another page)."""
    lines = [ln for ln in source.splitlines() if ln.strip() and not ln.startswith(b'.\\"')]
    return len(lines) == 1 and lines[0].startswith(b".so ")


def clean(rendered: str) -> str:
    """Rendered groff output -> prose: no overstrikes, no page header, no indentation."""
    text = _OVERSTRIKE.sub("", rendered)
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[0]:
        lines = lines[1:]
    if lines and re.match(r"^[^\s(]+\([^\s)]+\)", lines[0]):  # the header, "LS(1) ... LS(1)"
        lines = lines[1:]
    text = "\n".join(lines)
    return _BLANKS.sub("\n\n", text).strip() + "\n"


def render(path: str | os.PathLike) -> str:
    """The text of man page ``path`` (roff, optionally gzipped) as a reader sees it; ``""`` for
    a page that only redirects to another (``.so``)."""
    path = Path(path)
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    cached = _cache_dir() / f"{key}.txt"
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    source = _source(path)
    if is_redirect(source):
        return ""
    if shutil.which("groff") is None:
        raise TokenswapError("man: specs need groff to render man pages; apt-get install "
                             "groff-base (or read the pages as roff source without man:)")
    proc = subprocess.run(_GROFF, input=source, capture_output=True, timeout=120)
    if proc.returncode != 0 and not proc.stdout:
        raise TokenswapError(f"groff could not render {path}: "
                             f"{proc.stderr.decode(errors='replace').strip()[:200]}")
    text = clean(proc.stdout.decode("utf-8", errors="replace"))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, cached)
    return text


__all__ = ["clean", "is_redirect", "render"]
