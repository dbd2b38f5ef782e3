"""Byte-level generation and scoring on the tiny float64 models."""

from __future__ import annotations

import math

import pytest
import torch

from tokenswap.bytes import END, ByteLM
from tokenswap.bytes.ensemble import ByteEnsemble
from tokenswap.bytes.generate import generate, score
from tokenswap.errors import TokenswapError


@pytest.fixture
def lm(bl_model, bl_tokenizer):
    return ByteLM(bl_model, bl_tokenizer)


@pytest.mark.parametrize("prompt", [b"", b"ab", b"abca", b"ab ", b"c"])
def test_greedy_takes_the_argmax_and_logprob_matches_prefix_probability(lm, prompt):
    out = generate(lm, prompt, max_bytes=6)
    full = prompt
    for byte in out.output:
        dist = lm.next_byte_distribution(full)
        assert int(torch.argmax(dist)) == byte
        full += bytes([byte])
    if out.stop_reason == "end_of_text":
        assert int(torch.argmax(lm.next_byte_distribution(full))) == END
        expected = lm.logprob(full, end_of_text=True) - lm.prefix_logprob(prompt)
    else:
        assert out.stop_reason == "max_bytes" and len(out.output) == 6
        expected = lm.prefix_logprob(full) - lm.prefix_logprob(prompt)
    assert out.logprob == pytest.approx(expected, abs=1e-9)
    assert out.text == out.output.decode("utf-8", errors="replace")


def test_one_forward_pass_per_generated_byte(bl_model, bl_tokenizer):
    """With at most ``batch_size`` paths per position, each new byte costs one batched pass."""
    lm = ByteLM(bl_model, bl_tokenizer, prune=1e-4, max_nodes=16, batch_size=16)
    lm.next_byte_logprobs(b"abc a")
    before = lm.forward_passes
    out = generate(lm, b"abc a", max_bytes=12, greedy=False, seed=3)
    assert lm.forward_passes - before <= max(1, len(out.output))


def test_stop_string_is_cut(lm):
    free = generate(lm, b"a", max_bytes=8, greedy=False, seed=1)
    assert len(free.output) >= 2, free
    stop = free.output[1:2]
    cut = generate(lm, b"a", max_bytes=8, greedy=False, seed=1, stop=stop)
    assert cut.stop_reason == "stop"
    assert cut.output == free.output[: free.output.find(stop)]


def test_sampling_is_seeded_and_follows_the_distribution(lm):
    runs = [generate(lm, b"ab", max_bytes=1, greedy=False, seed=s).output for s in range(300)]
    assert runs[:20] == [generate(lm, b"ab", max_bytes=1, greedy=False, seed=s).output
                         for s in range(20)]
    dist = lm.next_byte_distribution(b"ab")
    for byte in b"abc ":
        freq = sum(r == bytes([byte]) for r in runs) / len(runs)
        sd = math.sqrt(float(dist[byte]) * (1 - float(dist[byte])) / len(runs))
        assert abs(freq - float(dist[byte])) <= 4 * sd + 1e-9, (byte, freq, float(dist[byte]))


def test_low_temperature_sampling_is_greedy(lm):
    greedy = generate(lm, b"ca", max_bytes=5)
    cold = generate(lm, b"ca", max_bytes=5, greedy=False, temperature=1e-4, seed=7)
    assert cold.output == greedy.output


def test_score_is_minus_log2_prefix_probability(lm):
    text = b"abc ab"
    result = score(lm, text)
    assert result.bytes == 6 and len(result.per_byte) == 6
    assert result.bits == pytest.approx(-lm.prefix_logprob(text) / math.log(2), abs=1e-9)
    with_end = score(lm, text, end_of_text=True)
    assert with_end.bits == pytest.approx(-lm.logprob(text, end_of_text=True) / math.log(2),
                                          abs=1e-9)
    assert with_end.bits_per_byte == with_end.bits / 6
    chain = score(ByteEnsemble([lm]), text, end_of_text=True)  # no prefix_logprob: chain rule
    assert chain.per_byte == pytest.approx(with_end.per_byte, abs=1e-9)


def test_bad_arguments_are_errors(lm):
    with pytest.raises(TokenswapError, match="temperature"):
        generate(lm, b"a", greedy=False, temperature=0)
    with pytest.raises(TokenswapError, match="max_bytes"):
        generate(lm, b"a", max_bytes=-1)


def test_progress_is_called_after_every_generated_byte(lm):
    calls = []
    out = generate(lm, b"ab", max_bytes=5, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 5) for k in range(1, len(out.output) + 1)]
