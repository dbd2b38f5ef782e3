"""Byte-level ensembles of models whose tokenizers differ (byte-level BPE + SentencePiece)."""

from __future__ import annotations

import pytest
import torch

from tokenswap.bytes import ByteLM
from tokenswap.bytes.ensemble import COMBINERS, ByteEnsemble
from tokenswap.bytes.generate import generate, score
from tokenswap.errors import TokenswapError


@pytest.fixture(scope="module")
def members(bl_model, bl_tokenizer, sp_model, sp_tokenizer):
    return ByteLM(bl_model, bl_tokenizer), ByteLM(sp_model, sp_tokenizer)


@pytest.mark.parametrize("prefix", [b"", b"ab", b"a b", b"c"])
def test_mixture_is_weighted_mean_of_probabilities(members, prefix):
    bl, sp = members
    ens = ByteEnsemble([bl, sp], [3.0, 1.0], "mixture")
    dist = ens.next_byte_distribution(prefix)
    expected = 0.75 * bl.next_byte_distribution(prefix) + 0.25 * sp.next_byte_distribution(prefix)
    assert torch.allclose(dist, expected, atol=1e-12)
    assert abs(float(dist.sum()) - 1) < 1e-12


@pytest.mark.parametrize("prefix", [b"", b"ab", b"c"])
def test_product_is_normalised_geometric_mean(members, prefix):
    bl, sp = members
    dist = ByteEnsemble([bl, sp], [0.5, 0.5], "product").next_byte_distribution(prefix)
    raw = (bl.next_byte_distribution(prefix) * sp.next_byte_distribution(prefix)).sqrt()
    assert torch.allclose(dist, raw / raw.sum(), atol=1e-12)
    assert float(dist[0xC3]) == 0.0  # the byte-level BPE member cannot emit 'é'
    assert float(ByteEnsemble([bl, sp], [0.0, 1.0], "mixture").next_byte_distribution(
        prefix)[0xC3]) > 0


def test_single_member_and_zero_weight_reduce_to_the_member(members):
    bl, sp = members
    for ens in (ByteEnsemble([sp]), ByteEnsemble([bl, sp], [0.0, 2.0], "product")):
        assert torch.allclose(ens.next_byte_logprobs(b"a "), sp.next_byte_logprobs(b"a "),
                              atol=1e-12)


def test_ensemble_scores_and_generates(members):
    bl, sp = members
    ens = ByteEnsemble([bl, sp])
    text = b"ab c"
    result = score(ens, text)
    per_member = [score(m, text).per_byte for m in members]
    # per byte, an equal mixture of two has at least half of either member's probability
    for k in range(len(text)):
        assert result.per_byte[k] <= min(bits[k] for bits in per_member) + 1 + 1e-9
        assert result.per_byte[k] >= min(bits[k] for bits in per_member) - 1e-9
    assert result.bits_per_byte == pytest.approx(result.bits / len(text))
    out = generate(ens, b"ab", max_bytes=5, greedy=False, seed=0)
    assert len(out.output) <= 5


def test_bad_ensembles_are_errors(members):
    bl, sp = members
    with pytest.raises(TokenswapError, match="did you mean 'mixture'"):
        ByteEnsemble([bl, sp], combine="mixtrue")
    with pytest.raises(TokenswapError, match="2 weights for 1 models"):
        ByteEnsemble([bl], [1, 2])
    with pytest.raises(TokenswapError, match="positive sum"):
        ByteEnsemble([bl, sp], [0, 0])
    assert set(COMBINERS) == {"mixture", "product"}
