"""A source and a target vocabulary side by side: overlap and decompositions.

For every target token, :func:`build_pair` records how it can be expressed with source tokens:

- ``SPECIAL``: a special token, matched to a source special token by content, then by role
  (bos, eos, pad, unk, ...); its source id is the only piece.
- ``EXACT``: a source token emits exactly the same bytes; it is the only piece.
- ``COMPOSED``: the target bytes split into several source tokens (the pieces). The split is the
  one the source tokenizer itself would produce for those bytes (its BPE model applied to the
  bytes directly, so partial UTF-8 tokens decompose correctly); when that is not possible, the
  shortest segmentation over the source byte vocabulary.
- ``FALLBACK``: nothing in the source covers the token (an unmatched special token, or bytes the
  source vocabulary cannot emit at all); init methods give it a defined fallback vector.

Bytes the source cannot emit (SmolLM2 lacks 21 of the 256 byte symbols) are skipped inside a
composition and counted in :attr:`TokenPair.partial`; a token made only of such bytes falls
back. Comparisons happen on canonical bytes (:class:`~tokenswap.vocab.bytes.ByteVocab`), so
pairs of different tokenizer families (byte-level BPE, SentencePiece, WordPiece) work alike.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tokenswap.vocab.bytes import ByteVocab, TokenizerFamily, bytes_to_unicode

_SKIP_COST = 1000  # a byte no source token emits: skipped, at a cost above any real split


class Provenance(enum.IntEnum):
    """How a target token's embedding was obtained from the source."""

    SPECIAL = 0
    EXACT = 1
    COMPOSED = 2
    FALLBACK = 3


@dataclass
class TokenPair:
    """Source and target vocabularies with, for each target id, its source pieces."""

    source: ByteVocab
    target: ByteVocab
    pieces: list[tuple[int, ...]]  # per target id: source ids (empty for FALLBACK)
    provenance: np.ndarray  # (Vt,) int8 values of Provenance
    skipped: np.ndarray | None = None  # (Vt,) bytes of each token that no source piece covers

    @property
    def partial(self) -> int:
        """COMPOSED tokens with some bytes the source cannot emit."""
        if self.skipped is None:
            return 0
        return int(((self.skipped > 0) & (self.provenance == Provenance.COMPOSED)).sum())

    def __len__(self) -> int:
        return len(self.pieces)

    def counts(self) -> dict[str, int]:
        """Number of target tokens per provenance, e.g. ``{"exact": 120, ...}``."""
        values = np.bincount(self.provenance, minlength=len(Provenance))
        out = {p.name.lower(): int(values[p]) for p in Provenance}
        out["partial"] = self.partial
        out["total"] = len(self)
        return out

    def flat_pieces(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(piece_ids, owner)``: every piece id and the target id it belongs to, as int64.

        ``source[piece_ids]`` summed by ``owner`` gives the sum of piece embeddings per token.
        """
        lengths = torch.tensor([len(p) for p in self.pieces], dtype=torch.long)
        owner = torch.repeat_interleave(torch.arange(len(self.pieces)), lengths)
        flat = torch.tensor([i for p in self.pieces for i in p], dtype=torch.long)
        return flat.to(device), owner.to(device)

    def ids_with(self, *kinds: Provenance) -> np.ndarray:
        return np.flatnonzero(np.isin(self.provenance, [int(k) for k in kinds]))


def build_pair(source_tokenizer, target_tokenizer) -> TokenPair:
    """Match every target token to source pieces (see module docstring)."""
    source = ByteVocab.from_tokenizer(source_tokenizer)
    target = ByteVocab.from_tokenizer(target_tokenizer)
    decompose = _Decomposer(source, source_tokenizer)
    exact = source.exact_ids()
    special_map = _match_specials(source, target)

    pieces: list[tuple[int, ...]] = []
    provenance = np.empty(len(target), dtype=np.int8)
    skipped = np.zeros(len(target), dtype=np.int32)
    for tid, data in enumerate(target.token_bytes):
        if data is None:
            sid = special_map.get(tid)
            pieces.append(() if sid is None else (sid,))
            provenance[tid] = Provenance.SPECIAL if sid is not None else Provenance.FALLBACK
            continue
        if data in exact:
            pieces.append((exact[data],))
            provenance[tid] = Provenance.EXACT
            continue
        ids, skipped[tid] = decompose(data)
        pieces.append(ids)
        provenance[tid] = Provenance.COMPOSED if ids else Provenance.FALLBACK
    return TokenPair(source=source, target=target, pieces=pieces, provenance=provenance,
                     skipped=skipped)


def _match_specials(source: ByteVocab, target: ByteVocab) -> dict[int, int]:
    """Target special id -> source special id, by identical content first, then by role."""
    mapping = {tid: source.special_ids[content]
               for content, tid in target.special_ids.items() if content in source.special_ids}
    for role, tid in target.roles.items():
        if tid not in mapping and role in source.roles:
            mapping[tid] = source.roles[role]
    return mapping


class _Decomposer:
    """Split bytes into source token ids, the way the source tokenizer would."""

    def __init__(self, vocab: ByteVocab, tokenizer) -> None:
        self.vocab = vocab
        self.exact = vocab.exact_ids()
        self.max_len = min(64, max((len(b) for b in self.exact), default=1))
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        spec = json.loads(backend.to_str())
        self.bpe = backend.model if spec["model"]["type"] == "BPE" else None
        self.byte_to_char = bytes_to_unicode() if vocab.family is TokenizerFamily.BYTE_LEVEL else None
        self.cache: dict[bytes, tuple[tuple[int, ...], int]] = {}

    def __call__(self, data: bytes) -> tuple[tuple[int, ...], int]:
        """``(ids, skipped_bytes)`` for ``data``."""
        if data not in self.cache:
            ids = self._with_source_model(data)
            self.cache[data] = (ids, 0) if ids is not None else self._shortest(data)
        return self.cache[data]

    def _with_source_model(self, data: bytes) -> tuple[int, ...] | None:
        if self.bpe is None:
            return None
        if self.byte_to_char is not None:
            text = "".join(self.byte_to_char[b] for b in data)
        elif self.vocab.family is TokenizerFamily.SENTENCEPIECE:
            try:
                text = data.decode("utf-8").replace(" ", "▁")
            except UnicodeDecodeError:
                return None
        else:
            return None
        ids = tuple(t.id for t in self.bpe.tokenize(text))
        if ids and b"".join(self.vocab.token_bytes[i] or b"" for i in ids) == data:
            return ids
        return None

    def _shortest(self, data: bytes) -> tuple[tuple[int, ...], int]:
        """Fewest-token segmentation over the source byte vocabulary (skipping impossible bytes)."""
        n = len(data)
        cost = [0] + [1 << 30] * n
        back: list[tuple[int, int]] = [(0, -1)] * (n + 1)  # (start, id or -1 for a skipped byte)
        for end in range(1, n + 1):
            for start in range(max(0, end - self.max_len), end):
                tid = self.exact.get(data[start:end])
                if tid is not None and cost[start] + 1 < cost[end]:
                    cost[end], back[end] = cost[start] + 1, (start, tid)
            if cost[end - 1] + _SKIP_COST < cost[end]:
                cost[end], back[end] = cost[end - 1] + _SKIP_COST, (end - 1, -1)
        ids: list[int] = []
        skipped, pos = 0, n
        while pos > 0:
            start, tid = back[pos]
            if tid < 0:
                skipped += 1
            else:
                ids.append(tid)
            pos = start
        return tuple(reversed(ids)), skipped


def describe(counts: dict[str, int]) -> str:
    """One line: ``exact 1,234 (12.3%) · composed ... · fallback ... · special ...``."""
    total = max(1, counts["total"])
    parts = [f"{k} {counts[k]:,} ({100 * counts[k] / total:.1f}%)"
             for k in ("exact", "composed", "fallback", "special")]
    return " · ".join(parts)


__all__: Sequence[str] = ["Provenance", "TokenPair", "build_pair", "describe"]
