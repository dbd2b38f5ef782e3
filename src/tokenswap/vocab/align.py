"""Byte-chunk alignment of two tokenizations of the same text.

Two tokenizers split a text at different places, but wherever both have emitted exactly the
same number of bytes, a *chunk* ends: the text between two such common boundaries is spelled
by a run of tokens on each side, and both models assign that run a likelihood. That is the unit
cross-tokenizer distillation compares (Minixhofer, Vulić & Ponti, "Universal Cross-Tokenizer
Distillation via Approximate Likelihood Matching", arXiv 2503.20083, their "unconstrained"
chunks; the toolkit tokenkit builds the same boundaries in ``tokenkit/align.py``).

Everything here works on canonical bytes (:class:`tokenswap.vocab.bytes.ByteVocab`), so
byte-level BPE, SentencePiece (``'▁'``, ``<0xNN>``) and WordPiece (``##``) compare alike:

* :func:`token_lengths` - bytes each token of one encoded document emits (a special token, such
  as the document-start token, counts as one pseudo-byte so both sides can put one at the same
  place; the first token's prepended space is dropped as the decoder drops it);
* :func:`check_bytes` - does an encoding spell the text exactly? (raises with the first
  difference: unknown tokens, lowercasing, NFKC and dropped whitespace all fail here);
* :func:`chunk_ids` - the chunk index of every token on both sides, from the two length
  sequences alone: token ``i`` belongs to chunk ``k`` = the number of common boundaries before
  its end. Chunks are as small as they can be; a zero-byte token joins the chunk that ends
  where it stands.

>>> a, b = chunk_ids([2, 1, 3], [1, 2, 3])   # "abcdef" as ab|c|def and a|bc|def
>>> a.tolist(), b.tolist()
([0, 0, 1], [0, 0, 1])

Left out: tokenkit's "unbiased" chunks (a chunk must also end where no continuation could
re-tokenize across it, which needs a precomputed table per tokenizer pair) and its
space-probability correction of chunk likelihoods.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tokenswap.errors import TokenswapError
from tokenswap.vocab.bytes import ByteVocab


def length_table(vocab: ByteVocab) -> np.ndarray:
    """Bytes emitted by every token id (special tokens: 1, a pseudo-byte), shape (V,)."""
    return np.array([1 if b is None else len(b) for b in vocab.token_bytes], dtype=np.int64)


def token_lengths(vocab: ByteVocab, ids: Sequence[int], table: np.ndarray | None = None
                  ) -> np.ndarray:
    """Bytes each token of one encoded document emits, shape (len(ids),).

    Special tokens count one pseudo-byte each. Under :attr:`ByteVocab.strip_leading_space`
    the first ordinary token's leading space is not counted (the decoder drops it).
    """
    table = length_table(vocab) if table is None else table
    ids = np.asarray(ids, dtype=np.int64)
    out = table[ids] if len(ids) else np.zeros(0, dtype=np.int64)
    if vocab.strip_leading_space:
        for pos, tid in enumerate(ids.tolist()):
            data = vocab.token_bytes[tid]
            if data is None:
                continue
            if data.startswith(b" "):
                out[pos] -= 1
            break
    return out


def check_bytes(vocab: ByteVocab, ids: Sequence[int], text: str, who: str, doc: int) -> None:
    """Raise a one-line :class:`TokenswapError` unless ``ids`` spell ``text`` byte for byte
    (special tokens aside)."""
    got, want = vocab.decode_bytes(ids), text.encode("utf-8")
    if got == want:
        return
    at = next((i for i, (x, y) in enumerate(zip(got, want, strict=False)) if x != y),
              min(len(got), len(want)))
    raise TokenswapError(
        f"the {who}'s tokenizer does not spell the training text exactly (document {doc}, "
        f"byte {at}: {want[at:at + 12]!r} encodes as {got[at:at + 12]!r}); cross-tokenizer "
        "distillation needs both tokenizers to reproduce the text's bytes (no unknown tokens, "
        "no lowercasing or normalization)")


def chunk_ids(lengths_a: Sequence[int], lengths_b: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The chunk index of every token of two tokenizations of the same bytes.

    ``lengths_a``/``lengths_b`` are the bytes each token emits (:func:`token_lengths`); their
    sums must be equal. Returns two non-decreasing int64 arrays (len(a),) and (len(b),): a
    token's chunk is the number of common boundaries (byte offsets where both sides have a
    token end, the start excluded) strictly before its end. Chunk ``k`` of side a and chunk
    ``k`` of side b spell the same bytes, and together the chunks cover the text in order.
    """
    ends_a = np.cumsum(np.asarray(lengths_a, dtype=np.int64))
    ends_b = np.cumsum(np.asarray(lengths_b, dtype=np.int64))
    total_a = int(ends_a[-1]) if len(ends_a) else 0
    total_b = int(ends_b[-1]) if len(ends_b) else 0
    if total_a != total_b:
        raise ValueError(f"the tokenizations spell {total_a} and {total_b} bytes")
    common = np.intersect1d(ends_a, ends_b)
    common = common[common > 0]
    return (np.searchsorted(common, ends_a, side="left"),
            np.searchsorted(common, ends_b, side="left"))


def prefix_chunk_ids(lengths_a: Sequence[int], lengths_b: Sequence[int]
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`chunk_ids` for two tokenizations of *prefixes* of the same bytes (either may run
    further, as two sequences cut at a token count do).

    Returns the chunk of every token of each side, -1 for tokens that end after the last byte
    offset where both sides have a token end, and the number of whole chunks: chunk ``k`` of
    side a and of side b spell the same bytes for every ``k`` below it.
    """
    ends_a = np.cumsum(np.asarray(lengths_a, dtype=np.int64))
    ends_b = np.cumsum(np.asarray(lengths_b, dtype=np.int64))
    common = np.intersect1d(ends_a, ends_b)
    common = common[common > 0]
    a = np.searchsorted(common, ends_a, side="left")
    b = np.searchsorted(common, ends_b, side="left")
    a[a >= len(common)] = -1
    b[b >= len(common)] = -1
    return a, b, len(common)


__all__ = ["check_bytes", "chunk_ids", "length_table", "prefix_chunk_ids", "token_lengths"]
