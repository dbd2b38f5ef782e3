"""Bilingual word dictionaries: pairs of single words, for cross-lingual alignment (WECHSEL).

Accepted forms (:func:`read_dictionary`):

- ``freedict:deu-eng``: a FreeDict dictionary installed by Debian's ``dict-freedict-deu-eng``
  package (``/usr/share/dictd/freedict-deu-eng.dict.dz`` and its ``.index``);
- a dictd database: ``NAME.dict.dz`` or ``NAME.dict`` with ``NAME.index`` next to it (the
  format of FreeDict and every ``dict-*`` package);
- a plain text file (optionally ``.gz``) with one pair per line, two words separated by a tab
  or a space - the format of the MUSE dictionaries (``de en`` per line).

Only pairs where both sides are one word are kept (WECHSEL aligns word vectors), lowercased
and deduplicated. Which side is the source language is not decided here: the method picks the
orientation that matches its word vectors.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from tokenswap.errors import TokenswapError

FREEDICT_DIR = Path("/usr/share/dictd")
_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['-](?=[^\W\d_]))*")  # letters, inner ' or -
_NOISE = re.compile(r"/[^/]*/|<[^>]*>|\([^)]*\)|\[[^\]]*\]|\{[^}]*\}")  # IPA, POS, notes


def read_dictionary(spec: str | Path) -> list[tuple[str, str]]:
    """Single-word pairs ``(headword, translation)`` from a dictionary spec (see module doc)."""
    path = _resolve(str(spec))
    name = path.name
    if name.endswith((".dict.dz", ".dict")):
        pairs = _read_dictd(path)
    else:
        pairs = _read_pairs(path)
    if not pairs:
        raise TokenswapError(f"no single-word pairs in dictionary {spec}: expected a dictd "
                             "database or lines of two words ('haus house')")
    return pairs


def _resolve(spec: str) -> Path:
    if spec.startswith("freedict:"):
        langs = spec.removeprefix("freedict:")
        path = FREEDICT_DIR / f"freedict-{langs}.dict.dz"
        if not path.is_file():
            raise TokenswapError(f"dictionary {spec} is not installed ({path} missing): "
                                 f"apt-get install dict-freedict-{langs}")
        return path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise TokenswapError(f"dictionary {spec} not found: pass a dictd .dict.dz, a text file of "
                             "word pairs, or freedict:LANG-LANG")
    return path


def _words(text: str) -> list[str]:
    return _WORD.findall(_NOISE.sub(" ", text))


def _single(text: str) -> str | None:
    words = _words(text)
    return words[0].lower() if len(words) == 1 else None


def _add(pairs: dict, a: str | None, b: str | None) -> None:
    if a and b:
        pairs.setdefault((a, b), None)


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    pairs: dict[tuple[str, str], None] = {}
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                parts = line.split("\t") if "\t" in line else line.split()
                if len(parts) == 2:
                    _add(pairs, _single(parts[0]), _single(parts[1]))
    except (UnicodeDecodeError, OSError, EOFError) as err:
        raise TokenswapError(f"cannot read dictionary {path}: {err}") from err
    return list(pairs)


def _b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64[c]
    return n


def _read_dictd(path: Path) -> list[tuple[str, str]]:
    """Pairs from a dictd database: each entry's headword and its translation lines.

    An entry body is ``headword /ipa/ <pos>`` on its first line, then translation lines, then
    optional indented blocks (notes, synonyms, ``see:`` references) that are skipped.
    """
    base = path.name.removesuffix(".dz").removesuffix(".dict")
    index = path.with_name(base + ".index")
    if not index.is_file():
        raise TokenswapError(f"dictd dictionary {path} has no index {index}")
    try:
        data = (gzip.open(path, "rb") if path.suffix == ".dz" else open(path, "rb")).read()
        lines = index.read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise TokenswapError(f"cannot read dictionary {path}: {err}") from err
    pairs: dict[tuple[str, str], None] = {}
    for line in lines:
        fields = line.split("\t")
        if len(fields) < 3 or fields[0].startswith("00-database") or fields[0].startswith("00database"):
            continue
        try:
            start, size = _b64(fields[1]), _b64(fields[2])
        except KeyError:
            continue
        head = _single(fields[0])
        if head is None:
            continue
        body = data[start:start + size].decode("utf-8", errors="replace").split("\n")
        for text in body[1:]:
            if not text.strip():
                break
            if text[0].isspace():  # a note, synonym list or reference block
                continue
            for part in re.split(r"[,;]", text):
                _add(pairs, head, _single(part))
    return list(pairs)
