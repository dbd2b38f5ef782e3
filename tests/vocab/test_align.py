"""Byte-chunk alignment: chunks cover the text exactly and in order, on any Unicode, across
byte-level BPE, SentencePiece-style and WordPiece tokenizers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenswap.errors import TokenswapError
from tokenswap.vocab.align import check_bytes, chunk_ids, prefix_chunk_ids, token_lengths
from tokenswap.vocab.bytes import ByteVocab

FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def pieces(vocab: ByteVocab, ids: list[int]) -> list[bytes]:
    """What each token emits in context (the first token's prepended space dropped)."""
    out = [vocab.token_bytes[i] for i in ids]
    first = next((k for k, b in enumerate(out) if b), None)
    if vocab.strip_leading_space and first is not None and out[first].startswith(b" "):
        out[first] = out[first][1:]
    return out


def assert_chunks_cover(text: str, tok_a, tok_b) -> int:
    """Encode ``text`` with both tokenizers, align, and check every chunk spells the same bytes
    on both sides and the chunks in order spell the text. Returns the chunk count."""
    va, vb = ByteVocab.from_tokenizer(tok_a), ByteVocab.from_tokenizer(tok_b)
    ids_a = tok_a(text, add_special_tokens=False)["input_ids"]
    ids_b = tok_b(text, add_special_tokens=False)["input_ids"]
    check_bytes(va, ids_a, text, "a", 0)
    check_bytes(vb, ids_b, text, "b", 0)
    ca, cb = chunk_ids(token_lengths(va, ids_a), token_lengths(vb, ids_b))
    pa, pb = pieces(va, ids_a), pieces(vb, ids_b)
    n = int(ca[-1]) + 1 if len(ca) else 0
    assert (int(cb[-1]) + 1 if len(cb) else 0) == n
    assert np.all(np.diff(ca) >= 0) and np.all(np.diff(cb) >= 0)
    spelled_a = [b"".join(p for p, c in zip(pa, ca, strict=True) if c == k) for k in range(n)]
    spelled_b = [b"".join(p for p, c in zip(pb, cb, strict=True) if c == k) for k in range(n)]
    assert spelled_a == spelled_b
    assert b"".join(spelled_a) == text.encode()
    assert all(spelled_a)  # no empty chunk
    return n


def test_hand_example():
    a, b = chunk_ids([2, 1, 3], [1, 2, 3])
    assert a.tolist() == [0, 0, 1] and b.tolist() == [0, 0, 1]
    a, b = chunk_ids([1, 1, 1], [1, 1, 1])  # the same tokenization: one token per chunk
    assert a.tolist() == b.tolist() == [0, 1, 2]
    a, b = chunk_ids([0, 2, 0, 1], [3])  # zero-byte tokens join the chunk that ends there
    assert a.tolist() == [0, 0, 0, 0] and b.tolist() == [0]
    with pytest.raises(ValueError, match="3 and 2 bytes"):
        chunk_ids([1, 2], [2])


def test_prefix_hand_example():
    # a spells 6 bytes, b only 4: boundaries at 2 and 3 are common, a's last token is past b's
    a, b, n = prefix_chunk_ids([2, 1, 3], [1, 1, 1, 1])
    assert n == 2 and a.tolist() == [0, 1, -1] and b.tolist() == [0, 0, 1, -1]
    a, b, n = prefix_chunk_ids([2], [1])  # no common end: no chunk
    assert n == 0 and a.tolist() == [-1] and b.tolist() == [-1]


@FAST
@given(st.text(max_size=80), st.integers(1, 40), st.integers(1, 40))
def test_prefix_chunks_of_cut_sequences_spell_the_same_bytes(source_tokenizer, german_tokenizer,
                                                           text, cut_a, cut_b):
    """Both tokenizations cut at a token count (as hypernet training cuts them): every whole
    chunk spells the same bytes on both sides, and together they are a prefix of the text."""
    va, vb = ByteVocab.from_tokenizer(source_tokenizer), ByteVocab.from_tokenizer(german_tokenizer)
    ids_a = source_tokenizer(text, add_special_tokens=False)["input_ids"][:cut_a]
    ids_b = german_tokenizer(text, add_special_tokens=False)["input_ids"][:cut_b]
    ca, cb, n = prefix_chunk_ids(token_lengths(va, ids_a), token_lengths(vb, ids_b))
    pa, pb = pieces(va, ids_a), pieces(vb, ids_b)
    spelled_a = [b"".join(p for p, c in zip(pa, ca, strict=True) if c == k) for k in range(n)]
    spelled_b = [b"".join(p for p, c in zip(pb, cb, strict=True) if c == k) for k in range(n)]
    assert spelled_a == spelled_b and all(spelled_a)
    assert text.encode().startswith(b"".join(spelled_a))
    # every token left out ends after the last whole chunk
    assert all(c == -1 for c in ca[len([c for c in ca if c >= 0]):])


@FAST
@given(st.text(max_size=80))
def test_byte_level_pair_covers_any_unicode(source_tokenizer, german_tokenizer, text):
    assert_chunks_cover(text, source_tokenizer, german_tokenizer)


@FAST
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="▁"),
               max_size=80))
def test_byte_level_against_sentencepiece_covers_any_unicode(source_tokenizer,
                                                             sentencepiece_tokenizer, text):
    assert_chunks_cover(text, source_tokenizer, sentencepiece_tokenizer)


WORDS = st.lists(st.sampled_from(["der", "Fuchs", "springt", "über", "Hunde", "Straße", "a",
                                  "tokens", "quick"]), min_size=1, max_size=12)


@FAST
@given(WORDS)
def test_wordpiece_against_byte_level_on_words(source_tokenizer, wordpiece_tokenizer, words):
    # WordPiece drops whitespace and splits punctuation off: it spells single-spaced words
    assert_chunks_cover(" ".join(words), wordpiece_tokenizer, source_tokenizer)


def test_emoji_and_korean_split_inside_characters(source_tokenizer, sentencepiece_tokenizer):
    # byte-level pieces and <0xNN> fallbacks end inside UTF-8 characters; chunks still match
    assert assert_chunks_cover("한국어 🙂 tokens", source_tokenizer, sentencepiece_tokenizer) >= 2


def test_check_bytes_names_the_first_difference(wordpiece_tokenizer):
    vocab = ByteVocab.from_tokenizer(wordpiece_tokenizer)
    text = "der  Fuchs, 🙂"
    ids = wordpiece_tokenizer(text, add_special_tokens=False)["input_ids"]
    with pytest.raises(TokenswapError, match=r"teacher's tokenizer does not spell .*byte 4"):
        check_bytes(vocab, ids, text, "teacher", 0)
