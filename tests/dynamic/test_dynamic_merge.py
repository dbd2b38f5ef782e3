"""Batch merges: exact bytes for any Unicode batch, no merge across a word boundary, the
requested reduction reached, existing tokens reused, bad input refused."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenswap.dynamic import merge_batch, merge_levels
from tokenswap.errors import TokenswapError

GERMAN = ["Der schnelle braune Fuchs springt über den faulen Hund.",
          "Die Straße ist nass, weil es geregnet hat. Größere Häuser stehen am Fluss.",
          "Übung macht den Meister, und Ärger hilft niemandem."] * 3

# characters the merges must keep exact: emoji (4-byte UTF-8, split by byte-level BPEs), CJK,
# combining marks, whitespace runs of every kind, NBSP and ideographic space
ALPHABET = st.sampled_from(list("abcdeäöüßxyz ABC.,;:!?'\"()[]{}=+-*/0123456789")
                           + ["\n", "\t", "\r", "  ", "\n\n", "\u00a0", "\u3000", "😀", "👋🏽",
                              "中", "文", "字", "e\u0301", "\u0301", "\u200d", "мир", "日本語"])
TEXTS = st.lists(st.lists(ALPHABET, min_size=0, max_size=40).map("".join), min_size=1,
                 max_size=4)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def merged_tokens(batch):
    return [(n, batch.token_bytes(t)) for n, s in enumerate(batch.sequences) for t in s
            if t >= batch.base_size]


@SETTINGS
@given(texts=TEXTS, reduction=st.floats(0, 0.95))
def test_merges_keep_every_byte(source_tokenizer, texts, reduction):
    if all(not t.strip() for t in texts):
        with pytest.raises(TokenswapError, match="all whitespace"):
            merge_batch(source_tokenizer, texts, reduction=reduction)
        return
    batch = merge_batch(source_tokenizer, texts, reduction=reduction)
    assert [batch.decode(i) for i in range(len(texts))] == [t.encode() for t in texts]
    assert batch.tokens <= batch.base_tokens


@SETTINGS
@given(texts=TEXTS)
def test_sentencepiece_merges_keep_every_byte(sentencepiece_tokenizer, texts):
    if all(not t.strip() for t in texts):
        return
    batch = merge_batch(sentencepiece_tokenizer, texts, reduction=0.9)
    assert [batch.decode(i) for i in range(len(texts))] == [t.encode() for t in texts]
    for _, data in merged_tokens(batch):
        assert b" " not in data[1:]  # SentencePiece words: one leading space at most


def word_spans(tokenizer, text):
    """Byte spans of the tokenizer's pre-tokenizer words in ``text``."""
    offsets = [0]
    for ch in text:
        offsets.append(offsets[-1] + len(ch.encode()))
    pre = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
    return [(offsets[a], offsets[b]) for _, (a, b) in pre]


@SETTINGS
@given(texts=TEXTS)
def test_no_merge_crosses_a_word_boundary(source_tokenizer, texts):
    if all(not t.strip() for t in texts):
        return
    batch = merge_batch(source_tokenizer, texts, reduction=0.95)
    pre = source_tokenizer.backend_tokenizer.pre_tokenizer
    for n, seq in enumerate(batch.sequences):
        spans = word_spans(source_tokenizer, texts[n])
        pos = 0
        for t in seq:
            data = batch.token_bytes(t)
            if t >= batch.base_size:
                # inside one word of the text
                assert any(a <= pos and pos + len(data) <= b for a, b in spans), data
                try:
                    assert len(pre.pre_tokenize_str(data.decode())) == 1, data
                except UnicodeDecodeError:
                    pass
                body = data[1:] if data[:1] == b" " else data
                assert data.isspace() or not any(c in b" \t\n\r" for c in body), data
            pos += len(data)


def test_reduction_is_reached_and_levels_are_prefixes(source_tokenizer):
    levels = merge_levels(source_tokenizer, GERMAN, [0.0, 0.1, 0.2, 0.3])
    assert levels[0].merges == 0 and levels[0].tokens == levels[0].base_tokens
    for want, batch in zip([0.1, 0.2, 0.3], levels[1:], strict=True):
        assert batch.reduction >= want
        one = merge_batch(source_tokenizer, GERMAN, reduction=want)
        assert one.sequences == batch.sequences and one.merges == batch.merges
    # the last merge was needed: one merge fewer does not reach the reduction
    fewer = merge_batch(source_tokenizer, GERMAN, max_merges=levels[2].merges - 1)
    assert fewer.reduction < 0.2


def test_most_frequent_pair_first_and_every_occurrence(source_tokenizer):
    texts = ["the lazy dog " * 3, "a lazy cat, qzxv qzxv"]
    base = merge_batch(source_tokenizer, texts, reduction=0.0)
    one = merge_batch(source_tokenizer, texts, max_merges=1)
    tokens = merged_tokens(one)
    assert len({d for _, d in tokens}) == 1
    counts = {}  # pairs inside one pre-tokenizer word
    for text, seq in zip(texts, base.sequences, strict=True):
        starts = {a for a, _ in word_spans(source_tokenizer, text)}
        pos = 0
        for a, b in zip(seq, seq[1:], strict=False):
            pos += len(base.token_bytes(a))
            if pos not in starts:
                counts[(a, b)] = counts.get((a, b), 0) + 1
    assert len(tokens) == max(counts.values()) > 1
    assert one.tokens == base.tokens - len(tokens)


def test_merged_bytes_of_an_existing_token_get_its_id(source_tokenizer):
    vocab = source_tokenizer.get_vocab()
    # ' the' is one base token; a batch where it only appears split cannot be built from the
    # base tokenizer, so check that no new token duplicates a base token's bytes
    batch = merge_batch(source_tokenizer, GERMAN + ["the quick brown fox"], reduction=0.9)
    base_bytes = {batch.vocab.token_bytes[i] for i in vocab.values()}
    assert not set(batch.new_tokens) & base_bytes


@pytest.mark.parametrize("texts, kwargs, message", [
    (["a b"], {"reduction": 1.0}, r"\[0, 1\)"),
    (["a b"], {"reduction": -0.1}, r"\[0, 1\)"),
    ([], {"reduction": 0.2}, "empty"),
    (["  \n\t "], {"reduction": 0.2}, "all whitespace"),
    (["a b"], {}, "reduction or a number of merges"),
])
def test_bad_input(source_tokenizer, texts, kwargs, message):
    with pytest.raises(TokenswapError, match=message):
        merge_batch(source_tokenizer, texts, **kwargs)


def test_text_the_tokenizer_cannot_encode_is_refused(wordpiece_tokenizer):
    with pytest.raises(TokenswapError, match="byte for byte"):
        merge_batch(wordpiece_tokenizer, ["Der Hund ☃ bellt"], reduction=0.2)


def test_whitespace_joins_only_as_a_leading_space_without_a_pre_tokenizer():
    # No pre-tokenizer: the whole text is one "word", so only the whitespace rule keeps
    # merges from joining words ('Hund' + '.' may merge, '.' + ' Der' may not).
    from conftest import train_sentencepiece_bpe

    tok = train_sentencepiece_bpe(GERMAN, 300)
    tok.backend_tokenizer.pre_tokenizer = None
    batch = merge_batch(tok, GERMAN, reduction=0.9)
    assert [batch.decode(i) for i in range(len(GERMAN))] == [t.encode() for t in GERMAN]
    new = {d for _, d in merged_tokens(batch)}
    assert b"Hund." in new or b" Hund." in new
    for data in new:
        assert b" " not in data[1:], data
