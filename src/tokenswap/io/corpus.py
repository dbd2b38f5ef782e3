"""Read the user's text corpora into a list of :class:`Document`.

A corpus spec is one of

* a file: ``.txt``, ``.md``, ``.py`` or any other text file is one document (split at blank
  lines when it is larger than ``max_doc_bytes``); ``.jsonl``/``.json``/``.ndjson`` hold one
  JSON object per line and give one document per line (the ``field`` key); ``.parquet`` gives
  one document per row (the ``field`` column, needs pyarrow);
* any of those compressed as ``.gz``, ``.bz2`` or ``.xz``: the suffix inside decides the format,
  so ``x.jsonl.gz`` is JSON Lines and the man page ``ls.1.gz`` is text;
* a directory, read recursively in sorted path order, skipping hidden files and directories,
  dangling symlinks, a second path to the same file (a symlink), files with a binary suffix
  (``.pyc``, ``.so``, ``.png``, ``.tar.gz``, ...) and text-format files with a NUL byte in
  their first 8 KiB;
* a glob (``data/**/*.txt``), expanded in sorted order with the same skipping rules;
* ``hf:NAME[:CONFIG][:SPLIT]``, a Hugging Face ``datasets`` dataset (streamed; needs the
  ``datasets`` package and the network; split defaults to ``train``);
* ``man:PATH``: man pages (a page, a directory such as ``/usr/share/man/de`` or a glob)
  rendered to the text a reader sees by groff (:mod:`tokenswap.io.manpages`); read without
  ``man:``, a man page is its roff source, markup and all;
* any of these followed by ``#FIELD`` to read the text from another JSON key, parquet or
  dataset column than ``field`` (``data.jsonl#content``, ``hf:NAME#body``), on the command
  line too.

Text is kept exactly as its bytes decode (CRLF stays CRLF) so that byte-level evaluation sees
the real bytes; only a leading UTF-8 BOM is removed. Anything that is not UTF-8 is an error
naming the file and the offset of the first bad byte. Whitespace-only documents are dropped.

Sources name where a document came from: ``path`` for a whole text file, ``path#line N``
(1-based) for a piece of a split text file or a JSON Lines record, ``path#row N`` (0-based) for
a parquet row and ``hf:NAME#row N`` for a dataset row.

Left out: tokenization, deduplication of identical texts, and any normalisation of the text.
"""

from __future__ import annotations

import abc
import bisect
import bz2
import contextlib
import glob
import gzip
import hashlib
import json
import lzma
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tokenswap.errors import TokenswapError

__all__ = ["Document", "corpus_bytes", "read_corpus", "split_corpus"]

_BOM = b"\xef\xbb\xbf"

_DECOMPRESSORS: dict[str, tuple[str, Callable[..., IO[bytes]]]] = {
    ".gz": ("gzip", gzip.open),
    ".bz2": ("bzip2", bz2.open),
    ".xz": ("xz", lzma.open),
}

_JSONL_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson"})

# Skipped in directory walks and globs; a file named explicitly is always read.
_BINARY_SUFFIXES = frozenset(
    """
    .pyc .pyo .so .dylib .dll .exe .o .a .lib .bin .class .jar .whl .egg
    .png .jpg .jpeg .gif .bmp .ico .webp .tif .tiff .svgz .psd
    .pdf .zip .tar .tgz .tbz2 .txz .7z .rar .zst .lz4 .deb .rpm .iso .dmg
    .mp3 .mp4 .wav .ogg .flac .avi .mov .mkv .webm
    .woff .woff2 .ttf .otf .eot
    .npy .npz .pt .pth .ckpt .safetensors .gguf .onnx .pkl .pickle .arrow .h5 .hdf5
    .db .sqlite .sqlite3 .mo
    """.split()
)

_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Document:
    """One document of a corpus: its text and where it came from (see the module docstring)."""

    text: str
    source: str


def corpus_bytes(docs: Sequence[Document]) -> int:
    """Total UTF-8 bytes of the documents' texts.

    >>> corpus_bytes([Document("ä€", "a"), Document("x", "b")])
    6
    """
    return sum(len(doc.text.encode("utf-8")) for doc in docs)


def read_corpus(
    specs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    field: str = "text",
    max_bytes: int | None = None,
    max_doc_bytes: int = 65536,
    progress: bool = False,
) -> list[Document]:
    """Read every spec in order and return the documents (see the module docstring for specs).

    ``field`` names the JSON key, parquet column or dataset column that holds the text.
    ``max_bytes`` stops after that many UTF-8 bytes in total; the last document is cut at a
    character boundary, so ``corpus_bytes(result) <= max_bytes``, and files past the budget
    are not opened (nor is the rest of a text file checked for UTF-8). A document larger than
    ``max_doc_bytes`` is split into several at blank lines (at line ends, or between characters,
    when a paragraph or a line alone is larger); joining the pieces gives the text back.
    ``progress`` shows a progress bar over the files on stderr.

    Raises :class:`TokenswapError` for a missing path, an empty glob, a non-UTF-8 file, a
    missing field, a missing optional dependency, or when no text remains.
    """
    spec_list = [specs] if isinstance(specs, (str, os.PathLike)) else list(specs)
    if not spec_list:
        raise TokenswapError("no corpus given; pass at least one file, directory, glob or hf:NAME")
    if max_bytes is not None and max_bytes < 1:
        raise TokenswapError(f"max_bytes must be a positive number of bytes, not {max_bytes}")
    if max_doc_bytes < 1:
        raise TokenswapError(
            f"max_doc_bytes must be a positive number of bytes, not {max_doc_bytes}"
        )

    items: list[tuple[_Item, str]] = []
    for spec in spec_list:
        where, spec_field = split_field(spec, field)
        items += [(item, spec_field) for item in _expand(where)]
    remaining = max_bytes
    docs: list[Document] = []
    with _progress_bar(progress, len(items)) as advance:
        for item, item_field in items:
            reader = item.read(field=item_field, max_doc_bytes=max_doc_bytes, limit=remaining)
            with contextlib.closing(reader):
                for doc in reader:
                    truncated = False
                    if remaining is not None:
                        text = _truncate_utf8(doc.text, remaining)
                        if text is not doc.text:
                            doc, truncated = Document(text, doc.source), True
                    if doc.text.strip():
                        docs.append(doc)
                        if remaining is not None:
                            remaining -= len(doc.text.encode("utf-8"))
                    if truncated:  # the budget ends inside this document: stop here
                        remaining = 0
                    if remaining is not None and remaining <= 0:
                        break
            advance()
            if remaining is not None and remaining <= 0:
                break
    if not docs:
        shown = ", ".join(os.fspath(s) for s in spec_list)
        raise TokenswapError(
            f"corpus {shown} holds no text; point it at non-empty text, JSON Lines or parquet files"
        )
    return docs


def split_corpus(
    docs: Sequence[Document], *, heldout_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Document], list[Document]]:
    """Split documents into ``(train, heldout)``, deterministically.

    Each document gets a number in [0, 1) from ``blake2b(seed, source, text)``; it is held out
    when that number is below ``heldout_fraction``. So membership depends only on the document
    itself and the seed: not on the order of ``docs``, the other documents or the machine.
    Both lists keep the input order.

    With two or more documents each part gets at least one: if nothing was held out, the
    document with the lowest number moves to held-out; if everything was, the one with the
    highest number moves to train. A single document is cut in two instead, at the paragraph
    boundary (else line end, else character) nearest ``1 - heldout_fraction`` of its bytes;
    the first part trains, the rest is held out, and both keep the document's source.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise TokenswapError(
            f"heldout_fraction must be between 0 and 1 (exclusive), not {heldout_fraction}"
        )
    if not docs:
        raise TokenswapError("cannot split an empty corpus; read some text first")
    if len(docs) == 1:
        return _split_single(docs[0], heldout_fraction)

    scores = [_stable_unit(seed, doc) for doc in docs]
    heldout_mask = [score < heldout_fraction for score in scores]
    if not any(heldout_mask):
        heldout_mask[min(range(len(docs)), key=lambda i: scores[i])] = True
    elif all(heldout_mask):
        heldout_mask[max(range(len(docs)), key=lambda i: scores[i])] = False
    train = [doc for doc, held in zip(docs, heldout_mask, strict=True) if not held]
    heldout = [doc for doc, held in zip(docs, heldout_mask, strict=True) if held]
    return train, heldout


# --- split helpers -------------------------------------------------------------------------


def split_field(spec: str | os.PathLike, default: str) -> tuple[str | os.PathLike, str]:
    """``"data.jsonl#content"`` -> ``("data.jsonl", "content")``; a spec without ``#FIELD``
    (or an existing path that contains ``#``) keeps ``default``."""
    text = os.fspath(spec)
    where, sep, name = text.rpartition("#")
    if not sep or not where or not name or "/" in name or Path(text).exists():
        return spec, default
    return where, name


def _stable_unit(seed: int, doc: Document) -> float:
    """A number in [0, 1) that depends only on seed, source and text."""
    digest = hashlib.blake2b(digest_size=8)
    for part in (str(seed), doc.source, doc.text):
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))  # length prefix: no ambiguity
        digest.update(encoded)
    return int.from_bytes(digest.digest(), "little") / 2**64


def _split_single(doc: Document, heldout_fraction: float) -> tuple[list[Document], list[Document]]:
    text = doc.text
    offsets = _char_byte_offsets(text)  # offsets[i] = UTF-8 bytes before character i
    target = (1.0 - heldout_fraction) * offsets[-1]
    # A cut at character i leaves text on both sides when first < i <= last.
    solid = [i for i, ch in enumerate(text) if not ch.isspace()]
    if len(solid) < 2:
        raise TokenswapError(
            f"corpus {doc.source} is a single document too short to hold part of it out; "
            "give more text or a separate held-out file"
        )
    first, last = solid[0], solid[-1]

    lines = _lines(text)
    line_starts, pos = [], 0
    for line in lines:
        line_starts.append(pos)
        pos += len(line)
    paragraph_cuts = [
        line_starts[k]
        for k in range(1, len(lines))
        if not lines[k - 1].strip() and lines[k].strip()
    ]
    for candidates in (paragraph_cuts, line_starts):
        cuts = [i for i in candidates if first < i <= last]
        if cuts:
            cut = min(cuts, key=lambda i: (abs(offsets[i] - target), i))
            break
    else:  # one line: cut at the character nearest the target
        cut = min(max(bisect.bisect_left(offsets, target), first + 1), last)
    return [Document(text[:cut], doc.source)], [Document(text[cut:], doc.source)]


def _char_byte_offsets(text: str) -> list[int]:
    offsets = [0]
    total = 0
    for ch in text:
        total += len(ch.encode("utf-8", "surrogatepass"))
        offsets.append(total)
    return offsets


# --- text helpers ------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Split at ``\\n`` only, keeping it (unlike ``str.splitlines``, which also splits at
    ``\\r``, ``\\x0c``, U+2028 and friends and would shift line numbers against an editor)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` with at most ``limit`` UTF-8 bytes (``text`` itself if
    it fits).

    >>> _truncate_utf8("aä€", 4)
    'aä'
    """
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    cut = limit
    while cut > 0 and data[cut] & 0xC0 == 0x80:  # never cut inside a character
        cut -= 1
    return data[:cut].decode("utf-8")


def _hard_split(text: str, limit: int) -> Iterator[str]:
    """Pieces of at most ``limit`` bytes, cut between characters (a piece holds at least one
    character even when that character alone is longer than ``limit``)."""
    data = text.encode("utf-8")
    pos = 0
    while pos < len(data):
        cut = min(pos + limit, len(data))
        while pos < cut < len(data) and data[cut] & 0xC0 == 0x80:
            cut -= 1
        if cut == pos:
            cut = pos + 1
            while cut < len(data) and data[cut] & 0xC0 == 0x80:
                cut += 1
        yield data[pos:cut].decode("utf-8")
        pos = cut


def _split_text(text: str, limit: int) -> list[tuple[int, str]]:
    """Cut ``text`` into ``(first line number, piece)`` pieces of at most ``limit`` UTF-8 bytes.

    Pieces end at blank lines (paragraph boundaries) where possible, else at line ends, else
    between characters. ``"".join(piece for _, piece in result) == text``.

    >>> _split_text("one\\n\\ntwo\\n", 6)
    [(1, 'one\\n\\n'), (3, 'two\\n')]
    """
    if _nbytes(text) <= limit:
        return [(1, text)]
    lines = _lines(text)
    paragraphs: list[tuple[int, list[str]]] = []  # (first line number, lines)
    for number, line in enumerate(lines, 1):
        starts_paragraph = line.strip() and number > 1 and not lines[number - 2].strip()
        if not paragraphs or starts_paragraph:
            paragraphs.append((number, []))
        paragraphs[-1][1].append(line)

    atoms: list[tuple[int, str]] = []  # each at most `limit` bytes, except one huge character
    for first, para_lines in paragraphs:
        paragraph = "".join(para_lines)
        if _nbytes(paragraph) <= limit:
            atoms.append((first, paragraph))
            continue
        for number, line in enumerate(para_lines, first):
            if _nbytes(line) <= limit:
                atoms.append((number, line))
            else:
                atoms.extend((number, piece) for piece in _hard_split(line, limit))

    pieces: list[tuple[int, str]] = []
    buf: list[str] = []
    size, start = 0, 1
    for number, atom in atoms:
        n = _nbytes(atom)
        if buf and size + n > limit:
            pieces.append((start, "".join(buf)))
            buf, size = [], 0
        if not buf:
            start = number
        buf.append(atom)
        size += n
    if buf:
        pieces.append((start, "".join(buf)))
    return pieces


# --- spec expansion ----------------------------------------------------------------------------


def _compression(path: Path) -> tuple[str | None, str]:
    """``(compression name or None, inner suffix)``: ``ls.1.gz`` -> ``("gzip", ".1")``."""
    suffix = path.suffix.lower()
    if suffix in _DECOMPRESSORS:
        return _DECOMPRESSORS[suffix][0], Path(path.stem).suffix.lower()
    return None, suffix


def _is_binary_name(path: Path) -> bool:
    return _compression(path)[1] in _BINARY_SUFFIXES or path.suffix.lower() in _BINARY_SUFFIXES


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            if not name.startswith(".") and path.is_file() and not _is_binary_name(path):
                found.append(path)
    return found


def _dedupe_sorted(paths: list[Path]) -> list[Path]:
    """Sorted by path string; a second path to the same file (a symlink) is dropped."""
    seen: set[str] = set()
    unique = []
    for path in sorted(set(paths), key=lambda p: str(p)):
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            unique.append(path)
    return unique


def _expand(spec: str | os.PathLike) -> list[_Item]:
    text = os.fspath(spec)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if not text:
        raise TokenswapError("an empty corpus path was given; pass a file, directory or glob")
    path = Path(text)
    if text.startswith("hf:") and not path.exists():
        return [_HfItem(text)]
    if text.startswith("man:") and not path.exists():
        pages = [_ManItem(item.path, walked=item.walked) for item in _expand(text[4:])]
        _prerender([p.path for p in pages])
        return pages
    if path.is_file():
        return [_FileItem(path, walked=False)]
    if path.is_dir():
        files = _dedupe_sorted(_walk(path))
        if not files:
            raise TokenswapError(
                f"directory {text} holds no readable files (hidden and binary files are "
                "skipped); point the corpus at text files"
            )
        return [_FileItem(p, walked=True) for p in files]
    if glob.has_magic(text):
        matches = glob.glob(text, recursive=True)
        if not matches:
            raise TokenswapError(f"glob {text} matches nothing; check the pattern")
        files: list[Path] = []
        for match in map(Path, matches):
            if match.is_dir():
                files.extend(_walk(match))
            elif match.is_file() and not _is_binary_name(match):
                files.append(match)
        if not files:
            raise TokenswapError(
                f"glob {text} matches only directories without readable files or binary "
                "files; check the pattern"
            )
        return [_FileItem(p, walked=True) for p in _dedupe_sorted(files)]
    if path.exists() or path.is_symlink():
        raise TokenswapError(
            f"corpus path {text} is not a regular file or directory (a dangling symlink?); "
            "pass text files instead"
        )
    raise TokenswapError(
        f"corpus path {text} does not exist; check the path "
        "(files, directories, globs like data/**/*.txt and hf:NAME are accepted)"
    )


# --- readers -----------------------------------------------------------------------------------


def _not_utf8(path: Path, data: bytes, offset: int, compressed: str | None) -> TokenswapError:
    where = (
        f"offset {offset} after {compressed} decompression" if compressed else f"offset {offset}"
    )
    return TokenswapError(
        f"{path} is not UTF-8 text (invalid byte 0x{data[0]:02x} at {where}); "
        "convert it with iconv or remove it"
    )


@contextlib.contextmanager
def _guard(path: Path, compressed: str | None) -> Iterator[None]:
    """Turn I/O and decompression failures into one-line TokenswapErrors."""
    try:
        yield
    except (EOFError, lzma.LZMAError, gzip.BadGzipFile) as err:
        raise TokenswapError(
            f"{path} is not a valid {compressed} file ({err}); decompress or remove it"
        ) from err
    except OSError as err:
        if compressed and not isinstance(err, (PermissionError, FileNotFoundError)):
            raise TokenswapError(
                f"{path} is not a valid {compressed} file ({err}); decompress or remove it"
            ) from err
        reason = err.strerror or str(err)
        raise TokenswapError(f"cannot read {path}: {reason}; check the file") from err


def _open(path: Path) -> IO[bytes]:
    suffix = path.suffix.lower()
    if suffix in _DECOMPRESSORS:
        return _DECOMPRESSORS[suffix][1](path, "rb")
    return open(path, "rb")


class _Item(abc.ABC):
    """One source of documents: a file or a Hugging Face dataset."""

    @abc.abstractmethod
    def read(self, *, field: str, max_doc_bytes: int, limit: int | None) -> Iterator[Document]:
        """Yield documents, stopping once ``limit`` bytes (if set) have been produced."""


@dataclass
class _FileItem(_Item):
    path: Path
    walked: bool  # found by a directory walk or glob: skip text files that look binary

    def read(self, *, field: str, max_doc_bytes: int, limit: int | None) -> Iterator[Document]:
        compressed, inner = _compression(self.path)
        if inner in _JSONL_SUFFIXES:
            return self._read_jsonl(field, max_doc_bytes, compressed)
        if inner == ".parquet":
            return self._read_parquet(field, max_doc_bytes, compressed)
        return self._read_text(max_doc_bytes, compressed, limit)

    def _read_text(
        self, max_doc_bytes: int, compressed: str | None, limit: int | None
    ) -> Iterator[Document]:
        path = self.path
        with _guard(path, compressed), _open(path) as f:
            # With a byte budget only a prefix is read: the BOM, the budget and one more
            # character (so that read_corpus sees the text go past the budget and stops).
            data = f.read() if limit is None else f.read(len(_BOM) + limit + 5)
        if self.walked and b"\x00" in data[:_SNIFF_BYTES]:
            return
        start = len(_BOM) if data.startswith(_BOM) else 0
        if limit is not None and len(data) - start > limit:
            cut = start + limit + 1
            while cut < len(data) and data[cut] & 0xC0 == 0x80:
                cut += 1
            data = data[:cut]
        try:
            text = data[start:].decode("utf-8")
        except UnicodeDecodeError as err:
            raise _not_utf8(
                path, data[start + err.start :], start + err.start, compressed
            ) from None
        pieces = _split_text(text, max_doc_bytes)
        if len(pieces) == 1:
            yield Document(text, str(path))
            return
        for line, piece in pieces:
            yield Document(piece, f"{path}#line {line}")

    def _read_jsonl(
        self, field: str, max_doc_bytes: int, compressed: str | None
    ) -> Iterator[Document]:
        path = self.path
        with _guard(path, compressed), _open(path) as f:
            offset = 0
            for number, raw in enumerate(f, 1):
                start = offset
                offset += len(raw)
                if number == 1 and raw.startswith(_BOM):
                    raw, start = raw[len(_BOM) :], start + len(_BOM)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise _not_utf8(path, raw[err.start :], start + err.start, compressed) from None
                if not line.strip():
                    continue
                where = f"{path} line {number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise TokenswapError(
                        f"{where} is not valid JSON ({err.msg}); a .jsonl/.json corpus file "
                        "must hold one JSON object per line"
                    ) from None
                if not isinstance(record, dict):
                    raise TokenswapError(
                        f"{where} is a JSON {type(record).__name__}, not an object; a .jsonl/"
                        f".json corpus file must hold one object with a {field!r} key per line"
                    )
                if field not in record:
                    keys = ", ".join(repr(k) for k in list(record)[:10]) or "none"
                    raise TokenswapError(
                        f"{where} has no {field!r} key (keys: {keys}); choose the text field "
                        "with PATH#FIELD (e.g. data.jsonl#content)"
                    )
                value = record[field]
                if not isinstance(value, str):
                    kind = "null" if value is None else type(value).__name__
                    raise TokenswapError(
                        f"{where}: {field!r} is {kind}, not a string; choose a text field "
                        "with PATH#FIELD (e.g. data.jsonl#content) or fix the line"
                    )
                source = f"{path}#line {number}"
                for _, piece in _split_text(value, max_doc_bytes):
                    yield Document(piece, source)

    def _read_parquet(
        self, field: str, max_doc_bytes: int, compressed: str | None
    ) -> Iterator[Document]:
        path = self.path
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise TokenswapError(
                f"reading {path} needs pyarrow; pip install pyarrow (or 'tokenswap[data]')"
            ) from None
        with _guard(path, compressed):
            if compressed:
                with _open(path) as f:
                    source: object = pa.BufferReader(f.read())
            else:
                source = str(path)
            try:
                parquet = pq.ParquetFile(source)
            except (pa.ArrowException, ValueError) as err:
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise TokenswapError(
                    f"{path} is not a readable parquet file ({reason}); check or remove it"
                ) from None
        schema = parquet.schema_arrow
        if field not in schema.names:
            columns = ", ".join(repr(n) for n in schema.names[:10]) or "none"
            raise TokenswapError(
                f"{path} has no {field!r} column (columns: {columns}); choose the text column "
                "with PATH#FIELD (e.g. data.jsonl#content)"
            )
        kind = schema.field(field).type
        if not (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or getattr(pa.types, "is_string_view", lambda _: False)(kind)
        ):
            raise TokenswapError(
                f"{path} column {field!r} holds {kind}, not strings; choose a text column "
                "with PATH#FIELD (e.g. data.jsonl#content)"
            )
        row = 0
        for values in self._parquet_batches(parquet, field):
            for value in values:
                if value is None:
                    raise TokenswapError(
                        f"{path} row {row}: {field!r} is null; drop null rows or choose "
                        "another column with PATH#FIELD"
                    )
                for _, piece in _split_text(value, max_doc_bytes):
                    yield Document(piece, f"{path}#row {row}")
                row += 1

    def _parquet_batches(self, parquet, field: str) -> Iterator[list]:
        batches = parquet.iter_batches(columns=[field], batch_size=1024)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (ValueError, OSError) as err:  # ArrowInvalid/ArrowIOError: a corrupt file
                raise TokenswapError(
                    f"{self.path} is not a readable parquet file ({err}); check or remove it"
                ) from None
            yield batch.column(0).to_pylist()


@dataclass
class _ManItem(_Item):
    """A man page, rendered to text (:func:`tokenswap.io.manpages.render`)."""

    path: Path
    walked: bool

    def read(self, *, field: str, max_doc_bytes: int, limit: int | None) -> Iterator[Document]:
        from tokenswap.io.manpages import render

        try:
            text = render(self.path)
        except (OSError, EOFError, ValueError) as err:  # not gzip, unreadable
            if self.walked:
                return
            raise TokenswapError(f"{self.path} is not a readable man page ({err})") from None
        pieces = _split_text(text, max_doc_bytes)
        if len(pieces) == 1:
            yield Document(text, str(self.path))
            return
        for line, piece in pieces:
            yield Document(piece, f"{self.path}#line {line}")


def _prerender(paths: list[Path]) -> None:
    """Render many man pages at once (each is a groff process) into the renderer's cache;
    errors surface later, when the page is read."""
    if len(paths) < 2:
        return
    from concurrent.futures import ThreadPoolExecutor

    from tokenswap.io.manpages import render

    def attempt(path: Path) -> None:
        with contextlib.suppress(Exception):
            render(path)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(attempt, paths))


def _parse_hf(spec: str) -> tuple[str, str | None, str]:
    """``hf:NAME[:CONFIG][:SPLIT]`` -> ``(name, config or None, split)``.

    >>> _parse_hf("hf:wikitext:wikitext-2-raw-v1:test")
    ('wikitext', 'wikitext-2-raw-v1', 'test')
    """
    parts = spec[len("hf:") :].split(":")
    if not parts[0] or len(parts) > 3:
        raise TokenswapError(
            f"cannot parse {spec!r}; write hf:NAME, hf:NAME:CONFIG or hf:NAME:CONFIG:SPLIT"
        )
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    return name, config, split


@dataclass
class _HfItem(_Item):
    spec: str

    def read(self, *, field: str, max_doc_bytes: int, limit: int | None) -> Iterator[Document]:
        name, config, split = _parse_hf(self.spec)

        def fail(err: BaseException) -> TokenswapError:
            if isinstance(err, ImportError):
                reason = "the 'datasets' package is not installed (pip install datasets)"
            else:
                lines = str(err).strip().splitlines()
                reason = lines[0] if lines else type(err).__name__
            return TokenswapError(
                f"could not load hf dataset {name}: {reason}; download it and pass local files"
            )

        try:
            import datasets  # optional: `pip install tokenswap[data]`

            rows = iter(datasets.load_dataset(name, config, split=split, streaming=True))
        except Exception as err:  # network, auth, unknown name, missing package
            raise fail(err) from err
        row = 0
        while True:
            try:
                record = next(rows)
            except StopIteration:
                return
            except Exception as err:  # the stream can fail half-way
                raise fail(err) from err
            value = record.get(field) if isinstance(record, dict) else None
            if not isinstance(value, str):
                names = list(record)[:10] if isinstance(record, dict) else []
                keys = ", ".join(repr(k) for k in names)
                raise TokenswapError(
                    f"hf dataset {name} row {row} has no string {field!r} field "
                    f"(fields: {keys or 'none'}); choose the text field with SPEC#FIELD"
                )
            for _, piece in _split_text(value, max_doc_bytes):
                yield Document(piece, f"hf:{name}#row {row}")
            row += 1


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("reading corpus"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("corpus", total=total)
        yield lambda: bar.advance(task)


def corpus_texts(corpus: str | os.PathLike | Sequence[str] | Sequence[Document] | None,
                 max_bytes: int | None = None) -> list[str] | None:
    """Texts from corpus specs (paths, globs, hf:...) or from already-read documents.

    None stays None (no corpus given); a list of :class:`Document` is used as it is.
    """
    if corpus is None:
        return None
    if isinstance(corpus, (str, os.PathLike)):
        corpus = [corpus]
    items = list(corpus)
    if items and isinstance(items[0], Document):
        return [d.text for d in items]
    return [d.text for d in read_corpus([str(c) for c in items], max_bytes=max_bytes)]
