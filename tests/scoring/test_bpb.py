"""Bits per byte: hand-computed values, a brute-force window reference, and invariants."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
from conftest import ENGLISH, GERMAN, tiny_llama
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tokenswap.errors import TokenswapError
from tokenswap.scoring import (
    BpbResult,
    bits_per_byte,
    document_start_id,
    sliding_windows,
    tokens_per_byte,
)

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Größere Häuser stehen am Fluss. 漢字 and emoji 🦊 too.",
    "def add(a, b):\n    return a + b\n",
    "x",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells. "
    "Numbers like 12345 and 3.14159 appear in text, too.",
]


@pytest.fixture(scope="module")
def model(source_tokenizer):
    return tiny_llama(len(source_tokenizer))


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _logprob(model, prefix: list[int], target: int) -> float:
    """log p(target | prefix) from one full forward pass, in float64."""
    with torch.no_grad():
        logits = model(torch.tensor([prefix])).logits[0, -1]
    return torch.log_softmax(logits.double(), dim=-1)[target].item()


def _reference_bits(model, tokenizer, text: str, max_length: int, stride: int) -> float:
    """Brute force: for every token, find its window by the rule and run that prefix alone.

    Windows start at multiples of ``stride``; a token at position ``p`` of ``[bos] + tokens``
    belongs to the first window whose end ``start + max_length`` lies beyond ``p``.
    """
    seq = [tokenizer.bos_token_id, *_encode(tokenizer, text)]
    bits = 0.0
    for p in range(1, len(seq)):
        start = 0 if p < max_length else ((p - max_length) // stride + 1) * stride
        assert start == 0 or p - start >= max_length - stride
        bits -= _logprob(model, seq[start:p], seq[p]) / math.log(2)
    return bits


def test_hand_computed_single_document(model, source_tokenizer):
    text = "The quick brown fox jumps over the lazy dog."
    seq = [1, *_encode(source_tokenizer, text)]
    bits = 0.0
    for t in range(1, len(seq)):
        bits += -_logprob(model, seq[:t], seq[t]) / math.log(2)
    expected = bits / len(text.encode("utf-8"))

    result = bits_per_byte(model, source_tokenizer, [text])
    assert result.bits_per_byte == pytest.approx(expected, rel=1e-5)
    assert result.bytes == 44
    assert result.tokens == len(seq) - 1
    assert result.documents == 1
    assert result.unk_tokens == 0


def test_uniform_model_golden_value_in_bits(source_tokenizer):
    """Zero output weights give uniform predictions: log2(V) bits per token (float32 tolerance)."""
    model = tiny_llama(len(source_tokenizer), tied=False)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    result = bits_per_byte(model, source_tokenizer, TEXTS)
    n_tokens = sum(len(_encode(source_tokenizer, t)) for t in TEXTS)
    assert result.tokens == n_tokens
    assert result.bits == pytest.approx(n_tokens * math.log2(len(source_tokenizer)), rel=1e-6)


def test_window_longer_than_document_equals_no_window(model, source_tokenizer):
    full = bits_per_byte(model, source_tokenizer, TEXTS, max_length=256)
    longest = max(len(_encode(source_tokenizer, t)) for t in TEXTS) + 1
    exact_fit = bits_per_byte(model, source_tokenizer, TEXTS, max_length=longest, stride=3)
    assert exact_fit.bits == pytest.approx(full.bits, rel=1e-6)
    assert exact_fit.tokens == full.tokens


def test_small_window_matches_brute_force_reference(model, source_tokenizer):
    texts = [TEXTS[0], TEXTS[4], TEXTS[1]]
    assert max(len(_encode(source_tokenizer, t)) for t in texts) > 20  # several windows
    result = bits_per_byte(model, source_tokenizer, texts, max_length=8, stride=4, batch_size=3)
    full = bits_per_byte(model, source_tokenizer, texts, max_length=256)

    assert result.tokens == sum(len(_encode(source_tokenizer, t)) for t in texts)
    reference = sum(_reference_bits(model, source_tokenizer, t, 8, 4) for t in texts)
    assert result.bits == pytest.approx(reference, rel=1e-6)
    # Less context changes the numbers a little, but not much.
    assert result.bits != pytest.approx(full.bits, rel=1e-6)
    assert result.bits == pytest.approx(full.bits, rel=0.05)


def test_default_stride_is_half_the_window(model, source_tokenizer):
    default = bits_per_byte(model, source_tokenizer, TEXTS[4:], max_length=10)
    explicit = bits_per_byte(model, source_tokenizer, TEXTS[4:], max_length=10, stride=5)
    other = bits_per_byte(model, source_tokenizer, TEXTS[4:], max_length=10, stride=3)
    assert default.bits == explicit.bits
    assert default.bits != other.bits


@given(
    length=st.integers(1, 200), max_length=st.integers(2, 40), data=st.data()
)
def test_sliding_windows_score_every_position_once(length, max_length, data):
    stride = data.draw(st.integers(1, max_length - 1))
    windows = sliding_windows(length, max_length, stride)
    scored = [p for w in windows for p in range(w.score_from, w.end)]
    assert scored == list(range(1, length))
    for w in windows:
        assert w.end - w.start <= max_length
        assert w.start < w.score_from
        if w.start > 0:
            assert w.score_from - w.start >= max_length - stride
    assert windows[0].start == 0


def test_batch_size_and_document_order_do_not_matter(model, source_tokenizer):
    texts = TEXTS + ENGLISH[:3] + GERMAN[:3]
    one = bits_per_byte(model, source_tokenizer, texts, batch_size=1, max_length=16)
    five = bits_per_byte(model, source_tokenizer, texts, batch_size=5, max_length=16)
    shuffled = texts[:]
    random.Random(0).shuffle(shuffled)
    reordered = bits_per_byte(model, source_tokenizer, shuffled, batch_size=5, max_length=16)

    assert five.bits == pytest.approx(one.bits, rel=1e-6)
    assert reordered.bits == pytest.approx(one.bits, rel=1e-6)
    assert (one.bytes, one.tokens, one.documents) == (five.bytes, five.tokens, five.documents)


def test_padding_is_never_scored(model, source_tokenizer):
    """A long and a short document batched together score as they do alone."""
    alone = [bits_per_byte(model, source_tokenizer, [t]).bits for t in (TEXTS[4], TEXTS[3])]
    together = bits_per_byte(model, source_tokenizer, [TEXTS[4], TEXTS[3]], batch_size=2)
    assert together.bits == pytest.approx(sum(alone), rel=1e-6)


def test_different_tokenizers_score_the_same_bytes(model, source_tokenizer, german_tokenizer):
    german_model = tiny_llama(len(german_tokenizer), seed=3)
    a = bits_per_byte(model, source_tokenizer, TEXTS)
    b = bits_per_byte(german_model, german_tokenizer, TEXTS)
    assert a.bytes == b.bytes == sum(len(t.encode("utf-8")) for t in TEXTS)
    assert a.tokens != b.tokens  # the comparison is not vacuous


def test_literal_special_token_text_is_scored_as_text(model, source_tokenizer):
    result = bits_per_byte(model, source_tokenizer, ["a<|im_end|>b"])
    assert result.tokens > 3
    assert result.bytes == 12


def test_empty_documents_are_skipped(model, source_tokenizer):
    with_empty = bits_per_byte(model, source_tokenizer, ["", TEXTS[0], ""])
    without = bits_per_byte(model, source_tokenizer, [TEXTS[0]])
    assert with_empty == without
    assert with_empty.documents == 1


@pytest.mark.parametrize("texts", [[], ["", ""]])
def test_nothing_to_score_is_an_error(model, source_tokenizer, texts):
    with pytest.raises(TokenswapError, match="no text to score"):
        bits_per_byte(model, source_tokenizer, texts)


def test_one_string_instead_of_documents_is_an_error(model, source_tokenizer):
    with pytest.raises(TokenswapError, match="not one string"):
        bits_per_byte(model, source_tokenizer, "hello")


@pytest.mark.parametrize(("max_length", "stride"), [(1, None), (8, 8), (8, 0)])
def test_bad_window_is_an_error(model, source_tokenizer, max_length, stride):
    with pytest.raises(TokenswapError):
        bits_per_byte(model, source_tokenizer, TEXTS, max_length=max_length, stride=stride)


def test_document_start_id(source_tokenizer, wordpiece_tokenizer):
    assert document_start_id(source_tokenizer) == 1
    no_bos = copy.deepcopy(source_tokenizer)
    no_bos.bos_token = None
    assert document_start_id(no_bos) == 2
    with pytest.raises(TokenswapError, match="neither a bos nor an eos"):
        document_start_id(wordpiece_tokenizer)


def test_tokenizer_without_start_token_cannot_be_scored(wordpiece_tokenizer):
    model = tiny_llama(len(wordpiece_tokenizer))
    with pytest.raises(TokenswapError, match="neither a bos nor an eos"):
        bits_per_byte(model, wordpiece_tokenizer, TEXTS)


def _explicit_byte_level_bpe() -> PreTrainedTokenizerFast:
    """Byte-level BPE with the 256 byte symbols, specials at 256/257 and one merge 'a b'."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab |= {"<s>": 256, "</s>": 257, "ab": 258}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.add_special_tokens(["<s>", "</s>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def test_tokens_per_byte_hand_count():
    tok = _explicit_byte_level_bpe()
    # "abab" -> ab ab; " é" -> Ġ Ã © (space + two UTF-8 bytes); "c" -> c.
    assert tokens_per_byte(tok, ["abab é", "c"]) == pytest.approx(6 / 8)
    model = tiny_llama(len(tok))
    result = bits_per_byte(model, tok, ["abab é", "c"])
    assert (result.tokens, result.bytes) == (6, 8)
    assert result.tokens_per_byte == pytest.approx(6 / 8)


def test_tokens_per_byte_of_empty_input_is_an_error(source_tokenizer):
    with pytest.raises(TokenswapError, match="no text to score"):
        tokens_per_byte(source_tokenizer, [""])


def test_unk_tokens_are_scored_and_counted():
    vocab = {"<unk>": 0, "<s>": 1, "hello": 2, "world": 3}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", unk_token="<unk>")
    model = tiny_llama(len(fast))
    result = bits_per_byte(model, fast, ["hello zzz world qq", "world"])
    assert result.unk_tokens == 2
    assert result.tokens == 5
    assert result.bits > 0


def test_result_arithmetic_and_dict():
    result = BpbResult(bits=30.0, bytes=12, tokens=6, documents=2, unk_tokens=1)
    assert result.bits_per_byte == 2.5
    assert result.tokens_per_byte == 0.5
    assert result.to_dict() == {
        "bits": 30.0, "bytes": 12, "tokens": 6, "documents": 2, "unk_tokens": 1,
        "bits_per_byte": 2.5, "tokens_per_byte": 0.5,
    }


def test_model_mode_is_restored_and_progress_runs(model, source_tokenizer):
    model.train()
    try:
        quiet = bits_per_byte(model, source_tokenizer, TEXTS)
        shown = bits_per_byte(model, source_tokenizer, TEXTS, progress="scoring")
        assert model.training
    finally:
        model.eval()
    assert shown == quiet


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(source_tokenizer):
    cpu = bits_per_byte(tiny_llama(len(source_tokenizer)), source_tokenizer, TEXTS)
    gpu = bits_per_byte(tiny_llama(len(source_tokenizer)), source_tokenizer, TEXTS, device="cuda")
    assert gpu.bits == pytest.approx(cpu.bits, rel=1e-4)
