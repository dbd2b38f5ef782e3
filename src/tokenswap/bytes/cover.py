"""A vocabulary sorted by canonical bytes: which tokens start with given bytes, in one lookup.

Computing byte-level probabilities from a tokenized model (Phan et al., "Exact Byte-Level
Probabilities from Tokenized Language Models for FIM-Tasks and Model Ensembles", arXiv
2410.09303) keeps asking two questions about the vocabulary:

- which tokens emit bytes that *start with* ``r`` (the last token of a cover encoding, the one
  that straddles the end of the prefix)? Sorting the text tokens by their bytes makes that set
  one contiguous range ``[lo, hi)`` of the sorted order, found with two binary searches, so the
  probability mass of all of them is one ``logsumexp`` over a slice of the sorted
  log-probabilities;
- which tokens emit *exactly* ``r`` (a token that ends on a byte boundary inside the prefix)?
  They are the first tokens of the same range.

Inside the range of ``r`` the tokens are sorted by their byte at offset ``len(r)``, so the
mass of "starts with ``r + b``" for all 256 ``b`` at once is a scatter over that column of
:attr:`CoverIndex.byte_matrix`.

Tokens that emit no text (special tokens, the unknown token, rows of the model's output
matrix beyond the tokenizer) are *end* tokens: when the model emits one, the text ends. They
are listed in :attr:`CoverIndex.end_ids` and never appear in the sorted order. Several tokens
may emit the same bytes (SentencePiece ``'a'`` and ``'<0x61>'``); they are distinct token
paths and all of them count.

Out of scope: the tokenizer's merge rules (which tokenization is canonical) - see
:mod:`tokenswap.bytes.exact` for how paths are enumerated.

>>> index = CoverIndex([b"a", b"ab", None, b"b", b"abc"])
>>> index.prefix_range(b"ab"), [index.sorted_bytes[i] for i in range(*index.prefix_range(b"ab"))]
((1, 3), [b'ab', b'abc'])
>>> index.exact_ids(b"ab"), index.end_ids.tolist()
([1], [2])
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

import torch

from tokenswap.errors import TokenswapError


def successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with ``prefix``.

    ``None`` when there is none (``prefix`` is empty or all ``0xff``).

    >>> successor(b"ab"), successor(b"a\\xff"), successor(b"\\xff")
    (b'ac', b'b', None)
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class CoverIndex:
    """Text tokens sorted by their bytes, plus the ids of the tokens that end the text.

    ``token_bytes[i]`` is what token ``i`` emits (``None`` or ``b""``: an end token);
    ``model_vocab`` (default ``len(token_bytes)``) is the width of the model's output, whose
    extra rows are end tokens too.

    Attributes (``V_t`` text tokens, ``L`` = longest token in bytes):

    - ``order``: ``(V_t,)`` long, token ids in byte order; ``sorted_bytes[k]`` their bytes;
    - ``byte_matrix``: ``(V_t, L + 1)`` int16, ``byte_matrix[k, d]`` = byte ``d`` of sorted
      token ``k``, ``-1`` past its end;
    - ``end_ids``: ``(V_e,)`` long, tokens that emit no text.
    """

    def __init__(self, token_bytes: Sequence[bytes | None], model_vocab: int | None = None):
        size = len(token_bytes) if model_vocab is None else int(model_vocab)
        if size < len(token_bytes):
            raise TokenswapError(
                f"the model has {size} output rows but the tokenizer {len(token_bytes)} tokens;"
                " the tokenizer does not belong to this model"
            )
        text = [(data, tid) for tid, data in enumerate(token_bytes) if data]
        if not text:
            raise TokenswapError("the vocabulary has no token that emits text")
        text.sort()
        self.size = size
        self.sorted_bytes: list[bytes] = [data for data, _ in text]
        self.order = torch.tensor([tid for _, tid in text], dtype=torch.long)
        text_ids = set(self.order.tolist())
        self.end_ids = torch.tensor([t for t in range(size) if t not in text_ids], dtype=torch.long)
        longest = max(len(data) for data in self.sorted_bytes)
        matrix = torch.full((len(text), longest + 1), -1, dtype=torch.int16)
        for k, data in enumerate(self.sorted_bytes):
            matrix[k, : len(data)] = torch.tensor(list(data), dtype=torch.int16)
        self.byte_matrix = matrix
        self.token_bytes: tuple[bytes | None, ...] = tuple(token_bytes) + (None,) * (
            size - len(token_bytes))

    def __len__(self) -> int:
        return len(self.sorted_bytes)

    def prefix_range(self, prefix: bytes) -> tuple[int, int]:
        """``[lo, hi)`` in sorted order of the text tokens whose bytes start with ``prefix``."""
        lo = bisect_left(self.sorted_bytes, prefix)
        after = successor(prefix)
        hi = len(self.sorted_bytes) if after is None else bisect_left(self.sorted_bytes, after, lo)
        return lo, hi

    def exact_range(self, data: bytes) -> tuple[int, int]:
        """``[lo, hi)`` in sorted order of the tokens whose bytes are exactly ``data``."""
        lo = bisect_left(self.sorted_bytes, data)
        hi = lo
        while hi < len(self.sorted_bytes) and self.sorted_bytes[hi] == data:
            hi += 1
        return lo, hi

    def exact_ids(self, data: bytes) -> list[int]:
        """Token ids that emit exactly ``data``."""
        lo, hi = self.exact_range(data)
        return self.order[lo:hi].tolist()


def range_logsumexp(sorted_logprobs: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """``log sum exp`` of ``sorted_logprobs[..., lo:hi]`` (``-inf`` for an empty range)."""
    if hi <= lo:
        return torch.full(sorted_logprobs.shape[:-1], -torch.inf, dtype=sorted_logprobs.dtype)
    return torch.logsumexp(sorted_logprobs[..., lo:hi], dim=-1)


def grouped_logsumexp(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """``out[g] = log sum exp(values[groups == g])``, ``-inf`` for empty groups; 1-D inputs.

    Each group is shifted by its own maximum, so a group far below the others keeps its value
    instead of underflowing.

    >>> grouped_logsumexp(torch.tensor([0.0, 0.0, -1000.0]), torch.tensor([1, 1, 0]), 3)
    tensor([-1000.0000,     0.6931,       -inf])
    """
    groups = groups.long()
    peak = torch.full((n_groups,), -torch.inf, dtype=values.dtype)
    peak = peak.scatter_reduce(0, groups, values, reduce="amax")
    safe = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = torch.zeros(n_groups, dtype=values.dtype).scatter_add(0, groups,
                                                                   torch.exp(values - safe[groups]))
    return torch.log(total) + safe


__all__ = ["CoverIndex", "grouped_logsumexp", "range_logsumexp", "successor"]
