"""A large vocabulary: the model's own tokens plus extra tokens made of whole runs of them.

For generation over a large vocabulary (Feher, Vulić & Minixhofer, arXiv 2411.18553,
section 5). The extra tokens are *merges seen over a corpus*: every run of 2 to ``max_pieces``
adjacent base tokens inside one pre-tokenizer word of the base tokenization (the merges
:mod:`.merge` could make in some batch), counted over the corpus; the most frequent ones not
already a base token are kept. Example: base tokens ``[" Verz", "eich", "nis"]`` of one word
give the candidates ``" Verzeich"``, ``"eichnis"`` and ``" Verzeichnis"``.

Ids: ``0 .. base_size - 1`` are the model's (``base_size`` is its output rows, so padded rows
keep their ids and emit nothing), ``base_size + k`` is ``extra[k]``.

:meth:`LargeVocab.encode` tokenizes a text with the large vocabulary: the base tokenization,
then inside each word, left to right, the longest run of base tokens that is one token of the
vocabulary. It only joins adjacent base tokens, so the bytes are unchanged (tests check
``decode(encode(text)) == text``). Not here: a BPE trained at this size (``tokenswap tokenizer
train``) - its tokens need not be runs of base tokens, so the model's rows could not serve the
ones it shares with the base.

File format (:meth:`LargeVocab.save`): one extra token per line, its bytes in hex.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tokenswap.errors import TokenswapError
from tokenswap.vocab.bytes import ByteVocab


def _words(tokenizer, texts: Sequence[str], vocab: ByteVocab) -> list[list[list[int]]]:
    """Per text, its base tokens grouped by pre-tokenizer word."""
    from tokenswap.dynamic.merge import _base, _Rules

    sequences, joins = _base(tokenizer, texts, vocab, _Rules(tokenizer))
    out = []
    for seq, join in zip(sequences, joins, strict=True):
        words: list[list[int]] = []
        for tid, joined in zip(seq, join, strict=True):
            if joined:
                words[-1].append(tid)
            else:
                words.append([tid])
        out.append(words)
    return out


def count_runs(tokenizer, texts: Iterable[str], *, max_pieces: int = 8,
               vocab: ByteVocab | None = None, batch: int = 64) -> Counter:
    """``bytes -> count`` of every run of 2..``max_pieces`` adjacent base tokens inside one
    pre-tokenizer word of ``texts`` (texts the tokenizer cannot reproduce byte for byte are
    refused, as :func:`tokenswap.dynamic.merge_levels` refuses them)."""
    vocab = vocab or ByteVocab.from_tokenizer(tokenizer)
    texts = [t for t in texts if t.strip()]
    counts: Counter = Counter()
    tb = vocab.token_bytes
    for lo in range(0, len(texts), batch):
        for words in _words(tokenizer, texts[lo: lo + batch], vocab):
            for word in words:
                n = len(word)
                for i in range(n - 1):
                    data = tb[word[i]]
                    for j in range(i + 1, min(n, i + max_pieces)):
                        data += tb[word[j]]
                        counts[data] += 1
    return counts


@dataclass
class LargeVocab:
    """The base vocabulary (``base_size`` output rows of the model) plus ``extra`` tokens."""

    vocab: ByteVocab = field(repr=False)
    base_size: int
    extra: list[bytes]
    _ids: dict[bytes, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.base_size < len(self.vocab):
            raise TokenswapError(f"the model has {self.base_size} output rows, fewer than its "
                                 f"tokenizer's {len(self.vocab)} tokens")
        exact = self.vocab.exact_ids()
        self._ids = dict(exact)
        for k, data in enumerate(self.extra):
            if not data:
                raise TokenswapError(f"extra token {k + 1} of the vocabulary is empty")
            if data in self._ids:
                raise TokenswapError(f"extra token {k + 1} of the vocabulary ({data!r}) is "
                                     "already a token")
            self._ids[data] = self.base_size + k
        self._max_len = max((len(b) for b in self._ids), default=1)

    @classmethod
    def from_counts(cls, vocab: ByteVocab, base_size: int, counts: Counter, size: int, *,
                    min_count: int = 2) -> LargeVocab:
        """The base plus the most frequent runs of ``counts`` (ties: shorter, then bytewise),
        up to ``size`` tokens in all."""
        exact = vocab.exact_ids()
        ranked = sorted((n, data) for data, n in counts.items()
                        if n >= min_count and data not in exact)
        ranked.sort(key=lambda x: (-x[0], len(x[1]), x[1]))
        room = max(0, size - base_size)
        return cls(vocab, base_size, [data for _, data in ranked[:room]])

    def __len__(self) -> int:
        return self.base_size + len(self.extra)

    def token_bytes(self, tid: int) -> bytes | None:
        """The bytes token ``tid`` emits (None: special or padded, emits nothing)."""
        if tid >= self.base_size:
            return self.extra[tid - self.base_size]
        return self.vocab.token_bytes[tid] if tid < len(self.vocab) else None

    def decode(self, ids: Sequence[int]) -> bytes:
        """The bytes of ``ids`` (specials skipped; the tokenizer's leading-space rule)."""
        data = b"".join(self.token_bytes(int(t)) or b"" for t in ids)
        if self.vocab.strip_leading_space and data.startswith(b" "):
            data = data[1:]
        return data

    def encode(self, tokenizer, texts: Sequence[str]) -> list[list[int]]:
        """Per text, its ids: inside each word the longest runs of base tokens that are one
        token (see the module docstring)."""
        tb = self.vocab.token_bytes
        out = []
        for words in _words(tokenizer, texts, self.vocab):
            ids: list[int] = []
            for word in words:
                i = 0
                while i < len(word):
                    best, data, j = word[i], b"", i
                    while j < len(word):
                        data += tb[word[j]]
                        if len(data) > self._max_len:
                            break
                        j += 1
                        tid = self._ids.get(data)
                        if tid is not None and j - i > 1:
                            best, end = tid, j
                    if best == word[i]:
                        end = i + 1
                    ids.append(best)
                    i = end
            out.append(ids)
        return out

    def hash(self) -> str:
        """sha256 (hex) of the base tokens' bytes, ``base_size`` and the extra tokens."""
        h = hashlib.sha256(f"{self.base_size}\0{len(self.vocab)}\0".encode())
        for data in self.vocab.token_bytes:
            h.update(b"\x01" if data is None else b"\x00" + len(data).to_bytes(4, "big") + data)
        for data in self.extra:
            h.update(len(data).to_bytes(4, "big") + data)
        return h.hexdigest()

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        from tokenswap.io.save import write_file

        return write_file(path, "".join(d.hex() + "\n" for d in self.extra), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, vocab: ByteVocab, base_size: int) -> LargeVocab:
        """Read a file written by :meth:`save`; one line on a missing, empty or bad file."""
        path = Path(path)
        if not path.is_file():
            raise TokenswapError(f"vocabulary file {path} not found")
        extra = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                extra.append(bytes.fromhex(line.strip()))
            except ValueError:
                raise TokenswapError(f"{path}:{n}: not a token in hex ({line[:40]!r})") from None
        if not extra:
            raise TokenswapError(f"vocabulary file {path} has no tokens")
        return cls(vocab, base_size, extra)


__all__ = ["LargeVocab", "count_runs"]
