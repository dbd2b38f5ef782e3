"""The large vocabulary: runs counted inside words, exact encode/decode, the file format and
its bad inputs."""

from __future__ import annotations

import pytest
from conftest import ENGLISH, GERMAN

from tokenswap.dynamic.vocab import LargeVocab, count_runs
from tokenswap.errors import TokenswapError
from tokenswap.vocab.bytes import ByteVocab

TEXTS = ["The lazy dog sleeps. The lazy dog dreams of the lazy fox and the lazy cat.",
         "Der schnelle braune Fuchs springt über den faulen Hund. 🙂 日本語 テキスト",
         "def add(a, b):\n    return a + b\n\n\n  \t trailing   ", "x"]


@pytest.fixture(scope="module")
def large(source_tokenizer):
    vocab = ByteVocab.from_tokenizer(source_tokenizer)
    counts = count_runs(source_tokenizer, ENGLISH + GERMAN, vocab=vocab)
    return LargeVocab.from_counts(vocab, len(vocab), counts, len(vocab) + 80)


def test_runs_stay_inside_one_word(source_tokenizer):
    counts = count_runs(source_tokenizer, ["übermorgen übermorgen"], max_pieces=32)
    assert counts  # "übermorgen" is several base tokens of the English tokenizer
    assert all(b" " not in data[1:] for data in counts)  # never joins two words
    assert counts[" übermorgen".encode()] == 1 and counts["übermorgen".encode()] >= 1


def test_extra_tokens_are_new_and_frequent_first(large):
    exact = large.vocab.exact_ids()
    assert len(large.extra) == 80 and len(large) == len(large.vocab) + 80
    assert not any(data in exact for data in large.extra)


def test_encode_decode_is_exact_and_shorter(large, source_tokenizer):
    ids = large.encode(source_tokenizer, TEXTS)
    base = source_tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
    assert [large.decode(i) for i in ids] == [t.encode() for t in TEXTS]
    assert sum(map(len, ids)) < sum(map(len, base))
    assert any(t >= large.base_size for t in ids[0])  # " lazy" and friends are extra tokens


def test_save_load_round_trip_and_bad_files(large, tmp_path):
    path = large.save(tmp_path / "vocab.txt")
    again = LargeVocab.load(path, large.vocab, large.base_size)
    assert again.extra == large.extra and again.hash() == large.hash()
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(TokenswapError, match="has no tokens"):
        LargeVocab.load(tmp_path / "empty.txt", large.vocab, large.base_size)
    (tmp_path / "bad.txt").write_text("6c617a79\nnot hex\n")
    with pytest.raises(TokenswapError, match="bad.txt:2: not a token in hex"):
        LargeVocab.load(tmp_path / "bad.txt", large.vocab, large.base_size)
    with pytest.raises(TokenswapError, match="already a token"):
        LargeVocab(large.vocab, large.base_size, [b"a"])


def test_text_the_tokenizer_cannot_reproduce_is_refused(wordpiece_tokenizer):
    vocab = ByteVocab.from_tokenizer(wordpiece_tokenizer)
    large = LargeVocab(vocab, len(vocab), [])
    with pytest.raises(TokenswapError, match="does not come back"):
        large.encode(wordpiece_tokenizer, ["a smile 🙂"])


def test_encode_takes_the_longest_run_left_to_right(source_tokenizer):
    vocab = ByteVocab.from_tokenizer(source_tokenizer)
    word = source_tokenizer(" übermorgen", add_special_tokens=False)["input_ids"]
    assert len(word) >= 4
    pieces = [vocab.token_bytes[t] for t in word]
    two, three, whole = b"".join(pieces[:2]), b"".join(pieces[:3]), b"".join(pieces)
    large = LargeVocab(vocab, len(vocab), [two, three, whole])
    base = len(vocab)
    assert large.encode(source_tokenizer, [" übermorgen übermorgen"])[0] == [base + 2] * 2
    large = LargeVocab(vocab, len(vocab), [two, three])
    assert large.encode(source_tokenizer, [" übermorgen"])[0] == [base + 1, *word[3:]]
