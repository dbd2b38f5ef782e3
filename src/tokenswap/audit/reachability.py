"""Which tokens a tokenizer can never produce, and which cannot be decoded on their own.

Follows the re-encoding test of Land & Bartolo, "Fishing for Magikarp: Automatically Detecting
Under-trained Tokens in Large Language Models" (arXiv 2405.05417): a token is *unreachable*
when encoding its own decoded text never yields it - a normalizer rewrites its characters
(lowercasing, accent stripping, NFKC), a pre-tokenizer splits it apart, or a merge order
always builds something else. Such a token's embedding is never trained.

A token is *undecodable* when its canonical bytes (:mod:`tokenswap.vocab.bytes`) are not valid
UTF-8 on their own: byte-level BPE pieces of a multi-byte character (``'ä¸'``), SentencePiece
``<0xNN>`` byte-fallback tokens above 0x7F. They are normal parts of a byte-level vocabulary
(they combine into characters) but decoding one alone gives U+FFFD.

How reachability is tested, in two batched passes of the ``tokenizers`` encoder:

1. encode the token's text alone (no special tokens); reachable if the token id appears;
2. for tokens not found and whose bytes do not start with a space, encode ``anchor + text``
   where ``anchor`` is a letter that the vocabulary holds only as a single-character token
   and that the normalizer keeps: it never merges with what follows, so the text is
   tokenized as the inside of a word (WordPiece ``##`` pieces, SentencePiece pieces after
   the prepended ``'▁'``).

Undecodable tokens of a byte-level BPE are tested on their byte-level string by the BPE model
alone (there is no text to encode); other undecodable tokens (``<0xNN>``) are not tested and
never reported unreachable. Special tokens are neither.

Left out: the converse direction (a token found by the test may still be rare in practice:
that is what under-trained-token detection from the embeddings measures) and contexts other
than the two above, so an "unreachable" token could in principle appear in some longer text;
a "reachable" one is always witnessed by a real input.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenswap.vocab.bytes import ByteVocab, TokenizerFamily

__all__ = ["Reachability", "check_reachability", "undecodable_tokens", "unreachable_tokens"]


@dataclass(frozen=True)
class Reachability:
    """Per-token flags over a vocabulary of ``V`` ids (every array has shape (V,))."""

    special: np.ndarray  # bool: special token (emits no text); never reachable or undecodable
    undecodable: np.ndarray  # bool: bytes are not valid UTF-8 alone
    unreachable: np.ndarray  # bool: the encoder never produced it in the tests above
    tested: np.ndarray  # bool: reachability was tested (False for specials, <0xNN> tokens)

    def unreachable_ids(self) -> np.ndarray:
        return np.flatnonzero(self.unreachable)

    def undecodable_ids(self) -> np.ndarray:
        return np.flatnonzero(self.undecodable)


def _backend(tokenizer: Any) -> Any:
    return getattr(tokenizer, "backend_tokenizer", tokenizer)


def _vocab(tokenizer: Any) -> ByteVocab:
    return tokenizer if isinstance(tokenizer, ByteVocab) else ByteVocab.from_tokenizer(tokenizer)


def undecodable_tokens(tokenizer: Any) -> np.ndarray:
    """Ids (sorted, int64) of non-special tokens whose bytes are not valid UTF-8 alone.

    ``tokenizer``: a transformers fast tokenizer, a ``tokenizers.Tokenizer`` or a
    :class:`~tokenswap.vocab.bytes.ByteVocab`.
    """
    return np.flatnonzero(_undecodable(_vocab(tokenizer)))


def unreachable_tokens(tokenizer: Any) -> np.ndarray:
    """Ids (sorted, int64) of tokens that encoding their own decoded text never produces.

    ``tokenizer``: a transformers fast tokenizer or a ``tokenizers.Tokenizer`` (the encoder
    is needed, so not a bare ByteVocab). See the module docstring for the test.
    """
    return check_reachability(tokenizer).unreachable_ids()


def _undecodable(vocab: ByteVocab) -> np.ndarray:
    out = np.zeros(len(vocab), dtype=bool)
    for tid, data in enumerate(vocab.token_bytes):
        if data is None:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            out[tid] = True
    return out


def _contains(encodings: list, ids: list[int]) -> np.ndarray:
    return np.array([tid in enc.ids for enc, tid in zip(encodings, ids, strict=True)], dtype=bool)


def _anchor(backend: Any, vocab: dict[str, int], family: TokenizerFamily) -> str | None:
    """A letter, kept as it is by the normalizer, that the model never joins with what follows.

    BPE: no longer token contains it (no merge involves it). WordPiece (greedy longest match
    from the word start): no longer word-initial token starts with it.
    """
    inside: set[str] = set()
    for token in vocab:
        if family is TokenizerFamily.WORDPIECE:
            if len(token) > 1 and not token.startswith("##"):
                inside.add(token[0])
        elif len(token) > 1:
            inside.update(token)
    normalizer = backend.normalizer
    for token in sorted(vocab, key=vocab.get):
        if len(token) != 1 or token in inside or not token.isalpha():
            continue
        if unicodedata.normalize("NFD", token) != token or token.lower() != token:
            continue
        if normalizer is not None and normalizer.normalize_str(token) not in (token, "▁" + token):
            continue
        return token
    return None


def check_reachability(tokenizer: Any, *, batch_size: int = 8192) -> Reachability:
    """Flag every token of ``tokenizer`` as special, undecodable, unreachable (see module doc)."""
    backend = _backend(tokenizer)
    vocab = ByteVocab.from_tokenizer(tokenizer)
    size = len(vocab)
    special = np.array([b is None for b in vocab.token_bytes], dtype=bool)
    undecodable = _undecodable(vocab)
    unreachable = np.zeros(size, dtype=bool)
    tested = np.zeros(size, dtype=bool)

    text_ids = [t for t in range(size) if not special[t] and not undecodable[t]]
    texts = [vocab.token_bytes[t].decode("utf-8") for t in text_ids]
    found = np.zeros(len(text_ids), dtype=bool)
    for start in range(0, len(texts), batch_size):
        chunk = slice(start, start + batch_size)
        encodings = backend.encode_batch(texts[chunk], add_special_tokens=False)
        found[chunk] = _contains(encodings, text_ids[chunk])

    anchor = _anchor(backend, backend.get_vocab(with_added_tokens=False), vocab.family)
    retry = [k for k in np.flatnonzero(~found) if not texts[k].startswith(" ")]
    if anchor is not None and retry:
        for start in range(0, len(retry), batch_size):
            ks = retry[start:start + batch_size]
            encodings = backend.encode_batch([anchor + texts[k] for k in ks], add_special_tokens=False)
            found[ks] = _contains(encodings, [text_ids[k] for k in ks])
    ids = np.asarray(text_ids, dtype=np.int64)
    tested[ids] = True
    unreachable[ids[~found]] = True

    if vocab.family is TokenizerFamily.BYTE_LEVEL:
        model = backend.model
        for tid in np.flatnonzero(undecodable):
            token = backend.id_to_token(int(tid))
            pieces = [t.id for t in model.tokenize(token)]
            tested[tid] = True
            unreachable[tid] = pieces != [tid]
    return Reachability(special=special, undecodable=undecodable, unreachable=unreachable,
                        tested=tested)
