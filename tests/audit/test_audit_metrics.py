"""Tokenizer metrics: exact values on hand-built tokenizers, and every corpus metric crossed with
a plain-Python reference (token by token, word by word) on byte-level, SentencePiece and
WordPiece tokenizers trained here."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import (
    ENGLISH,
    GERMAN,
    hand_byte_level_tokenizer,
    hand_prepended_sentencepiece_tokenizer,
    train_byte_level_bpe,
)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tokenswap.audit.metrics import (
    METRICS,
    UNSPACED_CHARS_PER_WORD,
    TokenizerInfo,
    corpus_metrics,
    encode_corpus,
    metric,
    vocab_metrics,
)
from tokenswap.errors import TokenswapError

TEXTS = [
    "The quick brown fox jumps over the lazy dog. Größere Häuser!\n\n    indented line\n",
    "Numbers: 12345 and 3.14159; emoji 🙂 and ☃ snowman.",
    "",
    "日本語のテキストには空白がありません。漢字と仮名。",
    "def f(x):\n\tif x:\n\t\treturn 42\n",
]
SPACE = rb"[^ \t\n\r\x0b\x0c]+"


def info_of(tokenizer, name="t") -> TokenizerInfo:
    return TokenizerInfo.from_tokenizer(tokenizer, name)


def reference_metrics(info: TokenizerInfo, texts: list[str]) -> dict[str, float]:
    """The corpus metrics the slow, obvious way: one token, one word at a time."""
    backend = info.backend
    n_tokens = n_bytes = n_chars = 0
    word_counts, digit_tokens, digits, ws_tokens, ws_runs = [], 0, 0, 0, 0
    used, unk, fallback, lossless_bytes = set(), 0, 0, 0
    for text in texts:
        data = text.encode()
        enc = backend.encode(text, add_special_tokens=False)
        emitted = info.vocab.decode_bytes(enc.ids)
        if emitted == data:  # byte ranges from the tokens' own bytes
            spans, pos, first = [], 0, True
            for tid in enc.ids:
                piece = info.vocab.token_bytes[tid] or b""
                if first and piece and info.vocab.strip_leading_space and piece[:1] == b" ":
                    piece = piece[1:]
                first = first and not piece
                spans.append((pos, pos + len(piece)))
                pos += len(piece)
            lossless_bytes += len(data)
        else:  # the tokenizer's character offsets, in bytes
            spans = [(len(text[:s].encode()), len(text[:e].encode())) for s, e in enc.offsets]
        n_tokens += len(enc.ids)
        n_bytes += len(data)
        n_chars += len(text)
        used.update(enc.ids)
        unk += sum(t == info.unk_id for t in enc.ids)
        fallback += sum(bool(info.fallback[t]) for t in enc.ids)

        def overlapping(s, e, spans=spans):
            return sum(1 for a, b in spans if a < e and b > s)

        for m in re.finditer(SPACE, data):
            word_counts.append((overlapping(m.start(), m.end()), len(m.group().decode())))
        for m in re.finditer(rb"[0-9]+", data):
            digit_tokens += overlapping(m.start(), m.end())
            digits += m.end() - m.start()
        for m in re.finditer(rb"[ \t\n\r\x0b\x0c]{2,}", data):
            ws_tokens += overlapping(m.start(), m.end())
            ws_runs += 1
    counts = np.array([c for c, _ in word_counts])
    lengths = np.array([n for _, n in word_counts])
    per_word = counts.sum() / len(counts)
    per_char = counts.sum() / lengths.sum()
    spaced = (lengths**2).sum() / lengths.sum() <= UNSPACED_CHARS_PER_WORD
    text_ids = ~info.special
    return {
        "tokens_per_byte": n_tokens / n_bytes, "bytes_per_token": n_bytes / n_tokens,
        "chars_per_token": n_chars / n_tokens,
        "fertility": per_word if spaced else per_char,
        "tokens_per_word": per_word, "tokens_per_char": per_char,
        "continued_words": float((counts >= 2).mean()),
        "vocab_used": len({t for t in used if text_ids[t]}) / text_ids.sum(),
        "unk_rate": unk / n_tokens, "byte_fallback_rate": fallback / n_tokens,
        "roundtrip": lossless_bytes / n_bytes,
        "tokens_per_digit": digit_tokens / digits,
        "whitespace_run_tokens": ws_tokens / ws_runs,
    }


@pytest.mark.parametrize("which", ["byte_level", "sentencepiece", "wordpiece", "prepended"])
def test_every_corpus_metric_matches_the_reference(which, source_tokenizer,
                                                   sentencepiece_tokenizer, wordpiece_tokenizer):
    tok = {"byte_level": source_tokenizer, "sentencepiece": sentencepiece_tokenizer,
           "wordpiece": wordpiece_tokenizer,
           "prepended": hand_prepended_sentencepiece_tokenizer()}[which]
    info = info_of(tok)
    enc = encode_corpus(info, TEXTS, batch_bytes=64)  # several batches
    got = corpus_metrics(enc)
    want = reference_metrics(info, TEXTS)
    assert set(got) == {m.name for m in METRICS.values() if m.scope == "corpus"}
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name


def test_hand_counts_on_a_tiny_byte_level_bpe():
    """'ab ca abca' -> ab Ġ ca Ġ abc a: 6 tokens; words ab, ca (1 each), abca (2: continued)."""
    tok = hand_byte_level_tokenizer()
    enc = encode_corpus(info_of(tok), ["ab ca abca"])
    assert tok.convert_ids_to_tokens(enc.ids.tolist()) == ["ab", "Ġ", "ca", "Ġ", "abc", "a"]
    assert enc.start.tolist() == [0, 2, 3, 5, 6, 9]
    assert enc.end.tolist() == [2, 3, 5, 6, 9, 10]
    assert enc.word_tokens.tolist() == [1, 1, 2]
    m = corpus_metrics(enc)
    assert m["tokens_per_byte"] == pytest.approx(6 / 10)
    assert m["fertility"] == pytest.approx(4 / 3)
    assert m["continued_words"] == pytest.approx(1 / 3)
    assert m["roundtrip"] == 1.0


def test_a_character_split_over_byte_tokens_counts_every_piece(german_tokenizer):
    """Byte ranges are exact even inside a UTF-8 character: the pieces tile the text."""
    enc = encode_corpus(info_of(german_tokenizer), ["☃☃ Größe"])
    assert enc.lossless.all()
    assert enc.start[0] == 0 and enc.end[-1] == len("☃☃ Größe".encode())
    assert (enc.start[1:] == enc.end[:-1]).all()
    assert enc.word_tokens[0] >= 2 * 2  # two snowmen, at least two byte tokens each


def test_unspaced_text_is_measured_per_character(source_tokenizer):
    info = info_of(source_tokenizer)
    ja = encode_corpus(info, ["日本語のテキストには空白がありません。" * 3])
    en = encode_corpus(info, ["There are spaces between these words."])
    assert not ja.spaced and en.spaced
    assert corpus_metrics(ja)["fertility"] == corpus_metrics(ja)["tokens_per_char"]
    assert corpus_metrics(en)["fertility"] == corpus_metrics(en)["tokens_per_word"]


def _digit_splitting_bpe() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["pay 12345 or 678 now"] * 50, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_digits_split_one_by_one():
    info = info_of(_digit_splitting_bpe())
    assert corpus_metrics(encode_corpus(info, ["pay 12345 or 678"]))["tokens_per_digit"] == 1.0
    assert vocab_metrics(info, ["max_digits_per_token"])["max_digits_per_token"] == 1
    grouped = info_of(train_byte_level_bpe(["pay 12345 or 678 now"] * 50, 300))
    assert corpus_metrics(encode_corpus(grouped, ["pay 12345"]))["tokens_per_digit"] < 0.5
    assert vocab_metrics(grouped, ["max_digits_per_token"])["max_digits_per_token"] >= 4


def test_unknown_and_byte_fallback_tokens_are_counted(wordpiece_tokenizer, sentencepiece_tokenizer):
    wp = encode_corpus(info_of(wordpiece_tokenizer), ["the ☃ dog ☃"])
    assert int((wp.ids == wordpiece_tokenizer.unk_token_id).sum()) == 2
    assert corpus_metrics(wp)["unk_rate"] == pytest.approx(2 / wp.n_tokens)
    sp = encode_corpus(info_of(sentencepiece_tokenizer), ["☃"])  # 3 bytes, no piece for it
    assert sp.n_tokens == 3 and corpus_metrics(sp)["byte_fallback_rate"] == 1.0


def test_truncation_of_the_saved_tokenizer_is_ignored(source_tokenizer):
    backend = Tokenizer.from_str(source_tokenizer.backend_tokenizer.to_str())
    backend.enable_truncation(4)
    backend.enable_padding(length=64)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    text = " ".join(ENGLISH[:3])
    assert encode_corpus(info_of(tok), [text]).n_tokens == len(
        source_tokenizer(text, add_special_tokens=False)["input_ids"])


def test_vocab_metrics(source_tokenizer, wordpiece_tokenizer):
    got = vocab_metrics(info_of(source_tokenizer))
    assert set(got) == {m.name for m in METRICS.values() if m.scope == "vocab"}
    assert got["vocab_size"] == len(source_tokenizer)
    assert got["unreachable"] == 0 and got["decode_mismatch"] == 0
    assert got["missing_bytes"] == 0  # the initial alphabet holds all 256 bytes
    assert got["max_digits_per_token"] >= 3  # '12345' is frequent in ENGLISH
    wp = vocab_metrics(info_of(wordpiece_tokenizer))
    assert wp["whitespace_tokens"] == 0 and wp["decode_mismatch"] == 0


def test_registry_rejects_duplicates_and_bad_scopes():
    with pytest.raises(ValueError, match="twice"):
        metric("tokens_per_byte", summary="again")(lambda enc: 0.0)
    with pytest.raises(ValueError, match="scope"):
        metric("x", summary="x", scope="model")
    assert all(m.summary and (m.paper or m.scope == "vocab") for m in METRICS.values())


def test_empty_corpus_is_an_error(source_tokenizer):
    with pytest.raises(TokenswapError, match="no text"):
        encode_corpus(info_of(source_tokenizer), [])


def test_german_costs_more_than_english_for_an_english_tokenizer(source_tokenizer):
    info = info_of(source_tokenizer)
    en = corpus_metrics(encode_corpus(info, ENGLISH[:5]))
    de = corpus_metrics(encode_corpus(info, GERMAN[:4]))
    assert de["tokens_per_byte"] > en["tokens_per_byte"]
    assert de["continued_words"] > en["continued_words"]
