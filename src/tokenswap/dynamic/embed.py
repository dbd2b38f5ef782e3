"""Input embeddings for merged tokens, computed once per byte string (an LRU cache).

A merged token is decomposed into source pieces the way the source tokenizer itself would split
its bytes (the decomposition :func:`tokenswap.vocab.pair.build_pair` uses, so a hypernet sees the
same kind of input it was trained on), then embedded by

- ``hypernet``: a zero-shot tokenizer-transfer hypernet (:class:`~tokenswap.hypernet.model.
  Hypernet`; Minixhofer et al., arXiv 2405.07883), as the paper does. With ``align`` (the
  default of the ``hypernet`` init method) the hypernet's common offset is removed first: the
  mean of (prediction - source row) over source tokens predicted from themselves (up to
  ``OFFSET_SAMPLE`` evenly spaced ones), so merged rows live in the frame of the rows they sit
  next to in the sequence;
- any init method that needs nothing but the source model (``mean``, ``random``,
  ``multivariate``, ...), applied to the merged tokens as a target vocabulary of their own.

Only input rows are made: what follows the merged context is predicted over the base
vocabulary, whose output rows the model has. The cache maps bytes to a row (float32, on the
source's device). It holds at most ``capacity`` rows; when it is full the least recently used
rows are dropped, never one of the current call's tokens (a call larger than the capacity keeps
all of its own rows until the next call). :attr:`MergedEmbeddings.stats` counts hits and misses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tokenswap.errors import TokenswapError
from tokenswap.vocab.bytes import ByteVocab, FrozenMap

OFFSET_SAMPLE = 8192  # source tokens the hypernet's common offset is measured on
HYPERNET = "hypernet"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evicted: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def to_dict(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "evicted": self.evicted,
                "hit_rate": self.hit_rate}


class MergedEmbeddings:
    """Rows (H,) for merged tokens given by their bytes; see the module docstring.

    ``source`` is a :class:`~tokenswap.hypernet.model.SourceEmbeddings` of the base model;
    ``method`` is ``"hypernet"`` (then ``hypernet`` is required) or an init method's name.
    ``offset``: the hypernet's common offset when already measured (:meth:`offset` of another
    instance with the same hypernet and source).
    """

    def __init__(self, source, tokenizer, *, method: str = HYPERNET, hypernet=None,
                 align: bool = True, capacity: int = 65536, vocab: ByteVocab | None = None,
                 offset: torch.Tensor | None = None) -> None:
        from tokenswap.init.registry import get_method
        from tokenswap.vocab.pair import _Decomposer

        if capacity < 1:
            raise TokenswapError(f"--cache-size must be at least 1, got {capacity}")
        self.source = source
        self.vocab = vocab or ByteVocab.from_tokenizer(tokenizer)
        self.decompose = _Decomposer(self.vocab, tokenizer)
        self.tokenizer = tokenizer
        self.capacity = capacity
        self.cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.stats = CacheStats()
        self.method = method if method == HYPERNET else get_method(method).name
        if self.method == HYPERNET:
            if hypernet is None:
                raise TokenswapError("hypernet embeddings need a hypernet (--hypernet)")
            self.hypernet = hypernet.to(source.input.device).eval()
            self._offset = offset if align else torch.zeros(source.input.shape[1])
        else:
            init = get_method(self.method)
            if init.requires:
                raise TokenswapError(f"method {init.name} needs {', '.join(init.requires)}; "
                                     "dynamic tokenization takes hypernet or a method that "
                                     "needs only the model (mean, random, ...)")
            self.init = init

    def pieces(self, data: bytes) -> tuple[int, ...]:
        return self.decompose(data)[0]

    def rows(self, tokens: Sequence[bytes]) -> torch.Tensor:
        """(len(tokens), H) float32 rows, from the cache where present."""
        tokens = list(tokens)
        missing = list(dict.fromkeys(t for t in tokens if t not in self.cache))
        self.stats.misses += len(missing)
        self.stats.hits += len(set(tokens)) - len(missing)
        if missing:
            for data, row in zip(missing, self._compute(missing), strict=True):
                self.cache[data] = row
        for data in tokens:
            self.cache.move_to_end(data)
        keep = set(tokens)
        while len(self.cache) > self.capacity:
            oldest = next(iter(self.cache))
            if oldest in keep:
                break  # everything older is in use by this call
            del self.cache[oldest]
            self.stats.evicted += 1
        if not tokens:
            return torch.zeros((0, self.source.input.shape[1]))
        return torch.stack([self.cache[t] for t in tokens])

    def _compute(self, tokens: list[bytes]) -> torch.Tensor:
        pieces = [self.pieces(t) for t in tokens]
        rows = self._hypernet(pieces) if self.method == HYPERNET else self._init(tokens, pieces)
        if not torch.isfinite(rows).all():
            raise TokenswapError(f"{self.method} gave non-finite embeddings for merged tokens")
        return rows

    @torch.no_grad()
    def _hypernet(self, pieces: list[tuple[int, ...]]) -> torch.Tensor:
        from tokenswap.hypernet.model import PieceInputs

        device = self.source.input.device
        inputs = PieceInputs.from_pieces(pieces, self.hypernet.config.max_pieces).to(device)
        rows = self.hypernet(inputs, self.source).input.float()
        return rows - self.offset().to(rows.device)

    def offset(self) -> torch.Tensor:
        """The hypernet's common offset (zero without ``align``), measured once."""
        if self._offset is None:
            ids = [i for i, b in enumerate(self.vocab.token_bytes[: self.source.input.shape[0]])
                   if b is not None]
            ids = [ids[int(k)] for k in np.unique(np.linspace(0, len(ids) - 1,
                                                              min(OFFSET_SAMPLE, len(ids)))
                                                  .round().astype(np.int64))]
            from tokenswap.hypernet.model import PieceInputs

            device = self.source.input.device
            inputs = PieceInputs.from_pieces([(i,) for i in ids],
                                             self.hypernet.config.max_pieces).to(device)
            with torch.no_grad():
                pred = self.hypernet(inputs, self.source).input.float()
            rows = self.source.input[torch.as_tensor(ids, device=device)].float()
            self._offset = (pred - rows).mean(0)
        return self._offset

    def _init(self, tokens: list[bytes], pieces: list[tuple[int, ...]]) -> torch.Tensor:
        from tokenswap.init.registry import InitContext
        from tokenswap.vocab.pair import Provenance, TokenPair

        target = ByteVocab(family=self.vocab.family, token_bytes=tuple(tokens),
                           special_ids=FrozenMap(), roles=FrozenMap(), strip_leading_space=False,
                           byte_fallback_ids=FrozenMap())
        provenance = np.array([Provenance.COMPOSED if p else Provenance.FALLBACK for p in pieces],
                              dtype=np.int8)
        pair = TokenPair(source=self.vocab, target=target, pieces=list(pieces),
                         provenance=provenance)
        ctx = InitContext(matrix="input", source_tokenizer=self.tokenizer,
                          device=self.source.input.device)
        return self.init.fn(self.source.input, pair, ctx).matrix.float()


__all__ = ["CacheStats", "HYPERNET", "MergedEmbeddings"]
