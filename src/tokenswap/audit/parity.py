"""Parity across languages on parallel text, and reading the parallel text.

Parity (Petrov et al. 2023, "Language Model Tokenizers Introduce Unfairness Between Languages",
arXiv 2305.15425) is the number of tokens a tokenizer needs for a language's version of some
content divided by the tokens it needs for the reference (English) version of the same content:
1.0 is parity, 2.0 means the same content costs twice as many tokens - twice the price, half
the context. Here it is the ratio of token totals over the *units* (files, chapters) present in
both languages, with the spread of the per-unit ratios.

Units are paired by a key made from the file path: the parts of the path that name the
language are removed (``ch02.de.html`` and ``ch02.en.html`` -> ``ch02.html``;
``man/de/man1/ls.1.gz`` and ``man/man1/ls.1.gz`` -> ``man1/ls.1.gz``; ``en.txt`` and ``de.txt``
-> ``txt``), then the directory prefix every file of that language shares. Files that pair with
nothing are left out of parity (a corpus with none, such as source code, has no parity).

Parallel text on Debian: the ``debian-reference-*`` packages install one book, the Debian
Reference, as per-chapter HTML in many languages (``/usr/share/debian-reference/ch02.de.html``);
:func:`debian_reference` lists what is installed. HTML files (``.html``, ``.htm``, ``.xhtml``,
also compressed) are reduced to their text by :func:`html_to_text` (stdlib ``html.parser``).

Left out: sentence alignment (parity over sentences, as on FLORES); a translation that leaves
passages untranslated (the Debian Reference keeps commands, and some chapters of some
languages, in English) lowers that language's parity toward 1.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path, PurePath

import numpy as np

from tokenswap.errors import TokenswapError
from tokenswap.io.corpus import Document, read_corpus

__all__ = ["DEBIAN_REFERENCE", "Parity", "ParallelCorpus", "debian_reference", "html_to_text",
           "pair_keys", "parity", "read_language"]

DEBIAN_REFERENCE = Path("/usr/share/debian-reference")
_HTML_SUFFIXES = (".html", ".htm", ".xhtml")
_BLOCK = frozenset(
    "address article aside blockquote br caption dd div dl dt figcaption figure footer form h1 h2"
    " h3 h4 h5 h6 header hr li main nav ol p pre section table tbody td tfoot th thead title tr"
    " ul".split())
_SKIP = frozenset({"head", "script", "style", "noscript", "template", "nav"})
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0  # depth inside skipped elements
        self.pre = 0

    def _skipped(self, tag: str, attrs) -> bool:
        classes = (dict(attrs).get("class") or "").split()
        return tag in _SKIP or any(c in ("navheader", "navfooter") for c in classes)

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _VOID:
            if not self.skip and tag in _BLOCK:
                self.parts.append("\n")
            return
        if self.skip or self._skipped(tag, attrs):
            self.skip += 1
            return
        if tag == "pre":
            self.pre += 1
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if not self.skip and tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if self.skip:
            self.skip -= 1
            return
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            self.parts.append(data.replace("\n", "\0"))  # protected from whitespace folding
        else:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """The readable text of an HTML page: no markup, head, scripts, styles or navigation bars.

    Block elements become line breaks, runs of whitespace outside ``<pre>`` fold to one space,
    ``<pre>`` keeps its lines, and paragraphs are separated by one blank line.

    >>> html_to_text("<html><head><title>T</title></head><body><h1>Hi &amp; bye</h1>"
    ...              "<p>one\\n  two</p><pre>a\\n  b</pre></body></html>")
    'Hi & bye\\n\\none two\\n\\na\\n  b\\n'
    """
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip(" ") if "\0" not in line else line for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n").replace("\0", "\n")
    return text + "\n" if text else ""


def _is_html(source: str) -> bool:
    name = source.split("#", 1)[0].lower()
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    return name.endswith(_HTML_SUFFIXES)


def _lang_variants(lang: str) -> set[str]:
    low = lang.lower()
    return {low, low.replace("-", "_"), low.replace("_", "-")}


def _strip_lang(part: str, langs: set[str]) -> str:
    """``ch02.de.html`` -> ``ch02.html`` for ``de``; a part that is only the language -> ''."""
    if part.lower() in langs:
        return ""
    pieces = part.split(".")
    kept = [p for p in pieces if p.lower() not in langs]
    return ".".join(kept) if len(kept) != len(pieces) and kept else part


def pair_keys(sources: Sequence[str], lang: str) -> list[str]:
    """Keys that pair the files of one language with the same files of another (module doc).

    >>> pair_keys(["/d/ch01.de.html", "/d/ch02.de.html"], "de")
    ['ch01.html', 'ch02.html']
    >>> pair_keys(["/usr/share/man/de/man1/ls.1.gz", "/usr/share/man/de/man8/ip.8.gz"], "de")
    ['man1/ls.1.gz', 'man8/ip.8.gz']
    """
    langs = _lang_variants(lang)
    split = []
    for source in sources:
        path = PurePath(source.split("#", 1)[0])
        parts = [_strip_lang(p, langs) for p in path.parts]
        split.append([p for p in parts if p])
    if not split:
        return []
    prefix = 0
    shortest = min(len(p) for p in split)
    while prefix < shortest - 1 and len({tuple(p[: prefix + 1]) for p in split}) == 1:
        prefix += 1
    return ["/".join(p[prefix:]) for p in split]


@dataclass
class ParallelCorpus:
    """The documents of one language (or domain) and the pairing key of each."""

    lang: str
    docs: list[Document]
    keys: list[str]

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.docs]

    @property
    def n_bytes(self) -> int:
        return sum(len(d.text.encode("utf-8")) for d in self.docs)


def read_language(lang: str, specs: str | os.PathLike | Sequence[str | os.PathLike], *,
                  max_bytes: int | None = None) -> ParallelCorpus:
    """Read one language's corpus (files, directories, globs, as :func:`read_corpus`).

    A file is one document (HTML reduced to its text), so that files pair across languages.
    """
    spec_list = [specs] if isinstance(specs, (str, os.PathLike)) else list(specs)
    docs = read_corpus(spec_list, max_doc_bytes=1 << 40)
    out: list[Document] = []
    used = 0
    for doc in docs:
        text = html_to_text(doc.text) if _is_html(doc.source) else doc.text
        if not text.strip():
            continue
        if max_bytes is not None:
            data = text.encode("utf-8")
            if used + len(data) > max_bytes:
                text = data[: max_bytes - used].decode("utf-8", errors="ignore")
            used += len(text.encode("utf-8"))
        out.append(Document(text, doc.source))
        if max_bytes is not None and used >= max_bytes:
            break
    if not out:
        raise TokenswapError(f"corpus {lang}={', '.join(map(str, spec_list))} holds no text")
    return ParallelCorpus(lang=lang, docs=out, keys=pair_keys([d.source for d in out], lang))


def debian_reference(langs: Sequence[str] | None = None,
                     root: str | os.PathLike = DEBIAN_REFERENCE) -> dict[str, str]:
    """``{lang: glob}`` of the installed Debian Reference translations (``apt-get install
    debian-reference-de ...``), English first; only ``langs`` when given."""
    found = sorted({Path(p).name.split(".", 1)[1].rsplit(".", 1)[0]
                    for p in glob.glob(str(Path(root) / "ch*.*.html"))})
    if not found:
        raise TokenswapError(f"no Debian Reference in {root}; apt-get install debian-reference-en "
                             "debian-reference-de ... (one package per language)")
    if langs is not None:
        missing = [lang for lang in langs if lang not in found]
        if missing:
            raise TokenswapError(f"Debian Reference not installed for {', '.join(missing)} "
                                 f"(have {', '.join(found)}); apt-get install "
                                 + " ".join(f"debian-reference-{m}" for m in missing))
        found = list(langs)
    found.sort(key=lambda lang: (lang != "en", lang))
    return {lang: str(Path(root) / f"*.{lang}.html") for lang in found}


@dataclass
class Parity:
    """Tokens of one language over the reference language on the units both have."""

    lang: str
    reference: str
    ratio: float  # total tokens (lang) / total tokens (reference) over paired units
    units: int  # paired units
    median: float  # of the per-unit ratios
    low: float  # smallest per-unit ratio
    high: float  # largest

    def to_dict(self) -> dict:
        return {"lang": self.lang, "reference": self.reference, "ratio": self.ratio,
                "units": self.units, "median": self.median, "min": self.low, "max": self.high}


def _unit_tokens(keys: Sequence[str], doc_tokens: Sequence[int]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for key, n in zip(keys, doc_tokens, strict=True):
        totals[key] = totals.get(key, 0) + int(n)
    return totals


def parity(tokens: Mapping[str, tuple[Sequence[str], Sequence[int]]], reference: str
           ) -> dict[str, Parity]:
    """Parity of every language against ``reference``.

    ``tokens[lang] = (keys, tokens per document)``. Languages sharing no unit with the
    reference are left out (not parallel); the reference itself has ratio 1.

    >>> p = parity({"en": (["a", "b"], [10, 20]), "de": (["a", "b"], [15, 20])}, "en")
    >>> round(p["de"].ratio, 3), p["de"].units, p["de"].high
    (1.167, 2, 1.5)
    """
    if reference not in tokens:
        raise TokenswapError(f"parity needs the reference language {reference!r} among the "
                             f"corpora (have {', '.join(tokens)})")
    ref_keys, ref_counts = tokens[reference]
    ref = _unit_tokens(ref_keys, ref_counts)
    out: dict[str, Parity] = {}
    for lang, (keys, counts) in tokens.items():
        units = _unit_tokens(keys, counts)
        shared = [k for k in ref if k in units and ref[k] > 0]
        if not shared:
            continue
        mine = np.array([units[k] for k in shared], dtype=np.float64)
        theirs = np.array([ref[k] for k in shared], dtype=np.float64)
        per_unit = mine / theirs
        out[lang] = Parity(lang=lang, reference=reference, ratio=float(mine.sum() / theirs.sum()),
                           units=len(shared), median=float(np.median(per_unit)),
                           low=float(per_unit.min()), high=float(per_unit.max()))
    return out
