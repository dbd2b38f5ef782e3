"""Pair counts of several text samples while a BPE merge list is replayed on them.

Data mixture inference (Hayase et al., "Data Mixture Inference: What do BPE Tokenizers Reveal
about their Training Data?", arXiv 2407.16607) needs, for every merge step ``t`` and every
category ``i``, how often each adjacent symbol pair occurs in category ``i``'s sample after the
first ``t - 1`` merges were applied. This module computes exactly that, the way a BPE trainer
does: text is pre-tokenized into words with the tokenizer's own normalizer and pre-tokenizer,
each category becomes a table of word frequencies, and merges are applied in order with
incremental count updates (only the words that contain the merged pair are rescanned; the
count deltas of one merge are applied to a ``(pairs, categories)`` array in one vectorised
step).

Pairs are counted at every adjacent position, overlapping ones included (``aaa`` holds ``aa``
twice), as the ``tokenizers`` BPE trainer counts them; a merge rewrites a word left to right.

SentencePiece-style tokenizers (Gemma, Llama-2) have no pre-tokenizer that splits words; the
SentencePiece trainer splits at whitespace (``'▁'`` starts a word), between letters and other
scripts, and between digits. :data:`SP_WORDS` reproduces that split approximately.

Left out: SentencePiece's character coverage and its sentence-level sampling; merges whose
result was already produced by an earlier merge (GGUF-converted vocabularies list every split
of a token) are applied but not reported as a new step.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tokenswap.errors import TokenswapError

# SentencePiece's word split, approximately: '▁' opens a word; letters, single digits and runs
# of other symbols are separate pieces; newlines and other whitespace stand alone.
SP_WORDS = re.compile(r"▁*[^\W\d_]+|▁*\d|▁*[^\w\s▁]+|▁*_+|▁+|\s+")


def merge_list(tokenizer) -> list[tuple[str, str]]:
    """The ordered merges ``[(left, right), ...]`` of a BPE tokenizer (transformers or raw).

    Raises :class:`TokenswapError` for tokenizers without a merge list (Unigram, WordPiece).
    """
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if not hasattr(backend, "to_str"):
        raise TokenswapError("mixture inference needs a fast (tokenizer.json) BPE tokenizer")
    model = json.loads(backend.to_str()).get("model") or {}
    merges = model.get("merges") or []
    if model.get("type") != "BPE" or not merges:
        raise TokenswapError(
            f"mixture inference needs a BPE tokenizer with an ordered merge list; this one is "
            f"{model.get('type') or 'unknown'} with {len(merges)} merges")
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in merges]


def word_splitter(tokenizer):
    """A function ``text -> list of words`` (as BPE symbol strings) for ``tokenizer``.

    Uses the tokenizer's normalizer and pre-tokenizer; when they leave the text in one piece
    (SentencePiece-style), words are split with :data:`SP_WORDS` after normalisation.
    """
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    normalizer = backend.normalizer
    pre = backend.pre_tokenizer

    probe = "one two, three 4"
    if normalizer is not None:
        probe = normalizer.normalize_str(probe)
    splits = pre is not None and len(pre.pre_tokenize_str(probe)) > 1

    def split(text: str) -> list[str]:
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        if not splits:  # no real pre-tokenizer (Gemma): split like SentencePiece's trainer
            return SP_WORDS.findall(text)
        return [w for w, _ in pre.pre_tokenize_str(text)]

    return split


def word_table(texts: Iterable[str], split) -> tuple[Counter, int]:
    """``(Counter word -> frequency, UTF-8 bytes of the texts)``."""
    counts: Counter = Counter()
    total = 0
    for text in texts:
        total += len(text.encode("utf-8"))
        for line in text.splitlines(keepends=True):  # bounded pieces for the pre-tokenizer
            counts.update(split(line))
    return counts, total


@dataclass
class MergeStep:
    """Counts at one merge step: the merge's own row and its strongest competitors.

    ``merge`` is (C,) counts per byte of each category's sample; ``others`` is (K, C) for the K
    competing pairs (the top pairs of each category at that moment, the merge excluded).
    """

    index: int  # position in the merge list
    merge: np.ndarray  # (C,)
    others: np.ndarray  # (K, C)
    other_ids: np.ndarray  # (K,) pair ids of the competitors (stable across steps)


class PairCounter:
    """Word tables of C categories and their pair counts under a replayed merge list."""

    def __init__(self, tables: Sequence[Counter], sizes: Sequence[int]) -> None:
        self.n = len(tables)
        self.sizes = np.asarray(sizes, dtype=np.float64)  # (C,) bytes per category
        self.symbols: dict[str, int] = {}
        index: dict[str, int] = {}
        rows: list[dict[int, float]] = []
        for c, table in enumerate(tables):
            for word, freq in table.items():
                w = index.setdefault(word, len(index))
                if w == len(rows):
                    rows.append({})
                rows[w][c] = rows[w].get(c, 0) + freq
        self.words: list[list[int]] = [[self._symbol(ch) for ch in word] for word in index]
        self.freq = np.zeros((len(index), self.n))  # (W, C)
        for w, row in enumerate(rows):
            for c, f in row.items():
                self.freq[w, c] = f
        self.pair_ids: dict[tuple[int, int], int] = {}
        self.counts = np.zeros((1024, self.n))  # (P_capacity, C)
        self.where: dict[int, set[int]] = {}
        pids, wids = [], []
        for w, word in enumerate(self.words):
            for pair in zip(word, word[1:], strict=False):
                p = self._pair(pair)
                self.where.setdefault(p, set()).add(w)
                pids.append(p)
                wids.append(w)
        self._apply(pids, wids, [])

    def _symbol(self, s: str) -> int:
        return self.symbols.setdefault(s, len(self.symbols))

    def _pair(self, pair: tuple[int, int]) -> int:
        p = self.pair_ids.get(pair)
        if p is None:
            p = self.pair_ids[pair] = len(self.pair_ids)
            if p >= len(self.counts):
                self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
        return p

    def _apply(self, add_p: list[int], add_w: list[int], sub: list[tuple[int, int]]) -> None:
        if add_p:
            np.add.at(self.counts, np.asarray(add_p), self.freq[np.asarray(add_w)])
        if sub:
            p, w = np.asarray(sub).T
            np.subtract.at(self.counts, p, self.freq[w])

    def rates(self) -> np.ndarray:
        """(P, C) current pair counts per byte of each category's sample."""
        return self.counts[: len(self.pair_ids)] / np.maximum(self.sizes, 1)

    def pair_id(self, left: str, right: str) -> int | None:
        a, b = self.symbols.get(left), self.symbols.get(right)
        return None if a is None or b is None else self.pair_ids.get((a, b))

    def merge(self, left: str, right: str) -> None:
        """Apply one merge to every word that holds the pair, updating the counts."""
        a, b = self._symbol(left), self._symbol(right)
        p = self.pair_ids.get((a, b))
        if p is None:
            self._symbol(left + right)
            return
        new = self._symbol(left + right)
        add_p: list[int] = []
        add_w: list[int] = []
        sub: list[tuple[int, int]] = []
        for w in self.where.pop(p, ()):
            word = self.words[w]
            out: list[int] = []
            i = 0
            changed = False
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(new)
                    i += 2
                    changed = True
                else:
                    out.append(word[i])
                    i += 1
            if not changed:
                continue
            sub.extend((self.pair_ids[q], w) for q in zip(word, word[1:], strict=False))
            for q in zip(out, out[1:], strict=False):
                pid = self._pair(q)
                self.where.setdefault(pid, set()).add(w)
                add_p.append(pid)
                add_w.append(w)
            self.words[w] = out
        self._apply(add_p, add_w, sub)
        self.counts[p] = 0.0  # rounding of the float sums must not leave a ghost count


def replay(merges: Sequence[tuple[str, str]], counter: PairCounter, *, steps: int,
           competitors: int = 100, progress=None) -> tuple[list[MergeStep], int]:
    """Apply the first ``steps`` merges; record each one's counts and its top competitors.

    Returns ``(steps, unseen)``: the recorded steps (merges that occur in at least one sample
    and produce a token not produced before) and how many of the first ``steps`` merges never
    occurred in any sample. ``competitors`` pairs per category (the most frequent at that
    moment) are kept per step.
    """
    recorded: list[MergeStep] = []
    produced: set[str] = set()
    unseen = 0
    for t, (left, right) in enumerate(merges[:steps]):
        token = left + right
        fresh = token not in produced
        produced.add(token)
        p = counter.pair_id(left, right)
        if fresh:
            rates = counter.rates()  # (P, C)
            mine = rates[p] if p is not None else np.zeros(counter.n)
            if mine.sum() <= 0:
                unseen += 1
            else:
                k = min(competitors + 1, len(rates))
                top = np.argpartition(-rates, k - 1, axis=0)[:k]  # (k, C) best pair ids per category
                ids = np.unique(top)
                ids = ids[ids != p]
                recorded.append(MergeStep(index=t, merge=mine.copy(), others=rates[ids].copy(),
                                          other_ids=ids))
        counter.merge(left, right)
        if progress is not None:
            progress()
    return recorded, unseen
