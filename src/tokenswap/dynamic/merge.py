"""Batch merges: a batch's most frequent adjacent token pairs become single tokens.

Feher, Vulić & Minixhofer, "Retrofitting (Large) Language Models with Dynamic Tokenization"
(arXiv 2411.18553), section 3, written from the paper. Every text of the batch is first
tokenized by the model's own tokenizer (``add_special_tokens=False``,
``split_special_tokens=True``, as :mod:`tokenswap.scoring.bpb` does). Then, round after round,
adjacent pairs are counted across the whole batch and every occurrence of the most frequent
*allowed* pair is merged (left to right, non-overlapping). A pair is allowed when

- the join lies inside one pre-tokenizer word: the source tokenizer's own pre-tokenizer
  (``backend_tokenizer.pre_tokenizer.pre_tokenize_str``, after its normalizer) does not start a
  word at that byte;
- the merged bytes, when they are whole UTF-8, pre-tokenize to one word themselves;
- whitespace joins non-whitespace only as one leading space (the word-initial space byte-level
  and SentencePiece tokenizers attach themselves): ``b" foo"`` is allowed, ``b"foo "``,
  ``b"\\nfoo"`` and ``b"a b"`` are not; a token made only of whitespace is allowed.

Merging stops after ``max_merges`` rounds, or once the batch has at most ``(1 - reduction)``
times its base token count, or when no allowed pair is left (every word is one token: the
word-level limit the paper names). Merged bytes that an existing base token emits get that
token's id; all other merged tokens get new ids from ``base_size`` on, one per distinct byte
string. Merges only concatenate adjacent tokens, so every sequence decodes to exactly the bytes
of its text (:meth:`MergedBatch.decode`).

Cost: each round recounts the pairs of the whole batch (``O(tokens)`` in Python), so a batch of
a few thousand tokens takes about a second for a few hundred merges. :func:`merge_levels`
returns several reductions from one run, since fewer merges are a prefix of more.

Out of scope: tokenizers whose normalizer changes the number of characters other than by one
prepended space (lowercasing is fine, NFKC decomposition is not: the text's bytes would not come
back); the paper's mapping from merge counts to reductions per data set (here the reduction is
measured on the batch itself).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenswap.errors import TokenswapError
from tokenswap.vocab.bytes import ByteVocab

_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")


@dataclass
class MergedBatch:
    """A batch after merges: one id sequence per text.

    Ids below ``base_size`` are the source tokenizer's; id ``base_size + k`` is the new token
    whose bytes are ``new_tokens[k]``.
    """

    base_size: int
    sequences: list[list[int]]
    new_tokens: list[bytes]
    base_lengths: list[int]  # tokens per text under the base tokenization
    merges: int  # rounds of merging applied
    vocab: ByteVocab = field(repr=False)

    def token_bytes(self, tid: int) -> bytes:
        if tid >= self.base_size:
            return self.new_tokens[tid - self.base_size]
        data = self.vocab.token_bytes[tid]
        if data is None:
            raise ValueError(f"token {tid} is special and emits no bytes")
        return data

    def decode(self, index: int) -> bytes:
        """The bytes sequence ``index`` emits (with the tokenizer's leading-space rule)."""
        data = b"".join(self.token_bytes(t) for t in self.sequences[index])
        if self.vocab.strip_leading_space and data.startswith(b" "):
            data = data[1:]
        return data

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.sequences)

    @property
    def base_tokens(self) -> int:
        return sum(self.base_lengths)

    @property
    def reduction(self) -> float:
        """Share of the base tokens the merges removed (0.3 = 30% fewer tokens)."""
        return 1 - self.tokens / self.base_tokens if self.base_tokens else 0.0

    def used_new_tokens(self) -> list[int]:
        """Indices into ``new_tokens`` that occur in the sequences (ascending)."""
        used = {t - self.base_size for s in self.sequences for t in s if t >= self.base_size}
        return sorted(used)

    def to_dict(self) -> dict:
        return {"texts": len(self.sequences), "base_tokens": self.base_tokens,
                "tokens": self.tokens, "reduction": self.reduction, "merges": self.merges,
                "new_tokens": len(self.used_new_tokens())}


class _Rules:
    """Which merged byte strings are allowed (cached per byte string)."""

    def __init__(self, tokenizer) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        self.normalizer = backend.normalizer
        self.pre_tokenizer = backend.pre_tokenizer
        self.cache: dict[bytes, bool] = {}

    def words(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the pre-tokenizer's words in ``text``."""
        normalized = self.normalizer.normalize_str(text) if self.normalizer else text
        shift = len(normalized) - len(text)
        if shift not in (0, 1):
            raise TokenswapError("the tokenizer's normalizer changes the text's length; dynamic "
                                 "tokenization needs a tokenizer that keeps the text's characters")
        if self.pre_tokenizer is None:
            return [(0, len(text))]
        spans = [(max(0, a - shift), max(0, b - shift))
                 for _, (a, b) in self.pre_tokenizer.pre_tokenize_str(normalized)]
        return [s for s in spans if s[1] > s[0]]

    def allowed(self, data: bytes) -> bool:
        ok = self.cache.get(data)
        if ok is None:
            ok = self.cache[data] = self._allowed(data)
        return ok

    def _allowed(self, data: bytes) -> bool:
        spaces = [b in _WHITESPACE for b in data]
        if not all(spaces):
            body = data[1:] if data[:1] == b" " else data
            if any(b in _WHITESPACE for b in body):
                return False
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return True  # part of a character: the join already lies inside one word
        if any(c.isspace() for c in text.lstrip(" ")) and not text.isspace():
            return False  # non-ASCII whitespace (NBSP, ideographic space) inside a token
        return len(self.words(text)) <= 1


def _word_starts(rules: _Rules, text: str) -> set[int]:
    """Byte offsets at which a pre-tokenizer word starts (0 excluded)."""
    offsets = [0]
    for ch in text:
        offsets.append(offsets[-1] + len(ch.encode("utf-8")))
    return {offsets[a] for a, _ in rules.words(text) if a > 0}


def _base(tokenizer, texts: Sequence[str], vocab: ByteVocab, rules: _Rules
          ) -> tuple[list[list[int]], list[list[bool]]]:
    """Base ids per text and, per token, whether it may join the token before it."""
    if isinstance(texts, str) or not len(texts):
        raise TokenswapError("the batch is empty: give at least one text")
    if all(not t.strip() for t in texts):
        raise TokenswapError("the batch is empty or all whitespace: there is nothing to merge")
    encoded = tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True)
    sequences, joins = [], []
    for n, (text, ids) in enumerate(zip(texts, encoded["input_ids"], strict=True)):
        ids = list(ids)
        data = text.encode("utf-8")
        if any(vocab.token_bytes[i] is None for i in ids) or vocab.decode_bytes(ids) != data:
            raise TokenswapError(
                f"text {n + 1} of the batch does not come back from the tokenizer byte for byte "
                "(an unknown token or a normalizer that rewrites it); dynamic tokenization needs "
                "exact tokenizations")
        lead = 1 if vocab.strip_leading_space and b"".join(
            vocab.token_bytes[i] for i in ids[:1]).startswith(b" ") else 0
        starts = _word_starts(rules, text)
        join, pos = [], -lead
        for i in ids:
            join.append(bool(join) and pos not in starts)
            pos += len(vocab.token_bytes[i])
        sequences.append(ids)
        joins.append(join)
    return sequences, joins


def merge_levels(tokenizer, texts: Sequence[str], reductions: Sequence[float] = (),
                 *, max_merges: int | None = None, vocab: ByteVocab | None = None
                 ) -> list[MergedBatch]:
    """The batch merged to each of ``reductions`` (ascending order not needed), one run.

    With ``max_merges`` alone, one batch after that many merge rounds. A reduction the batch
    cannot reach (the word-level limit) gives the batch with every allowed merge done; its
    :attr:`MergedBatch.reduction` says what was reached.
    """
    for r in reductions:
        if not 0 <= r < 1:
            raise TokenswapError(f"--reduction must be in [0, 1), got {r}")
    if max_merges is not None and max_merges < 0:
        raise TokenswapError(f"--merges must be at least 0, got {max_merges}")
    if not reductions and max_merges is None:
        raise TokenswapError("give a reduction or a number of merges")
    vocab = vocab or ByteVocab.from_tokenizer(tokenizer)
    rules = _Rules(tokenizer)
    sequences, joins = _base(tokenizer, texts, vocab, rules)
    base_lengths = [len(s) for s in sequences]
    base_total = sum(base_lengths)
    exact = vocab.exact_ids()
    base_size = len(vocab)
    new_tokens: list[bytes] = []
    new_ids: dict[bytes, int] = {}

    def token_bytes(tid: int) -> bytes:
        return new_tokens[tid - base_size] if tid >= base_size else vocab.token_bytes[tid]

    def snapshot(merges: int) -> MergedBatch:
        return MergedBatch(base_size, [list(s) for s in sequences], list(new_tokens),
                           base_lengths, merges, vocab)

    # targets in tokens, largest first (fewest merges first)
    pending = sorted(((math.floor((1 - r) * base_total + 1e-9), i)
                      for i, r in enumerate(reductions)), reverse=True)
    out: dict[int, MergedBatch] = {}
    total, merges, banned = base_total, 0, set()
    while True:
        while pending and total <= pending[0][0]:
            out[pending.pop(0)[1]] = snapshot(merges)
        if (reductions and not pending) or (max_merges is not None and merges >= max_merges):
            break
        counts: Counter = Counter()
        for seq, join in zip(sequences, joins, strict=True):
            counts.update((seq[i - 1], seq[i]) for i in range(1, len(seq)) if join[i])
        best = None
        for pair_, _ in counts.most_common():
            if pair_ in banned:
                continue
            if rules.allowed(token_bytes(pair_[0]) + token_bytes(pair_[1])):
                best = pair_
                break
            banned.add(pair_)
        if best is None:
            break  # the word-level limit: no allowed pair left
        data = token_bytes(best[0]) + token_bytes(best[1])
        merged = exact.get(data)
        if merged is None:
            merged = new_ids.get(data)
            if merged is None:
                merged = new_ids[data] = base_size + len(new_tokens)
                new_tokens.append(data)
        a, b = best
        for n, (seq, join) in enumerate(zip(sequences, joins, strict=True)):
            new_seq, new_join, i = [], [], 0
            while i < len(seq):
                if i + 1 < len(seq) and join[i + 1] and seq[i] == a and seq[i + 1] == b:
                    new_seq.append(merged)
                    new_join.append(join[i])
                    i += 2
                else:
                    new_seq.append(seq[i])
                    new_join.append(join[i])
                    i += 1
            total -= len(seq) - len(new_seq)
            sequences[n], joins[n] = new_seq, new_join
        merges += 1
    final = snapshot(merges)
    if not reductions:
        return [final]
    return [out.get(i, final) for i in range(len(reductions))]


def merge_batch(tokenizer, texts: Sequence[str], *, reduction: float | None = None,
                max_merges: int | None = None, vocab: ByteVocab | None = None) -> MergedBatch:
    """Merge ``texts`` until ``reduction`` is reached or after ``max_merges`` rounds (whichever
    comes first); see the module docstring."""
    reductions = () if reduction is None else (reduction,)
    return merge_levels(tokenizer, texts, reductions, max_merges=max_merges, vocab=vocab)[0]


__all__ = ["MergedBatch", "merge_batch", "merge_levels"]
