"""ByteLM against brute-force enumeration of token sequences on 9-12 token vocabularies."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenswap.bytes import END, ByteLM
from tokenswap.errors import TokenswapError

TOL = 1e-6
BL_STRINGS = [b"a", b"ab", b"abc", b"ab ", b" a", b"cab", b"ca c", b"abca"]
SP_STRINGS = [b"a", b"ab", b" a", b"\xc3", "é".encode(), b"c a", b"a\xc3\xa9b"]


def rel_close(got: float, expected: float) -> bool:
    return abs(got - expected) <= TOL * max(expected, 1e-300)


@pytest.fixture(scope="module")
def bl(bl_model, bl_tokenizer, brute_force):
    lm = ByteLM(bl_model, bl_tokenizer)
    return lm, brute_force(bl_model, bl_tokenizer, lm.context)


@pytest.fixture(scope="module")
def sp(sp_model, sp_tokenizer, brute_force):
    lm = ByteLM(sp_model, sp_tokenizer)
    return lm, brute_force(sp_model, sp_tokenizer, lm.context)


@pytest.mark.parametrize("which, strings", [("bl", BL_STRINGS), ("sp", SP_STRINGS)])
def test_prefix_probability_matches_enumeration(which, strings, request):
    lm, brute = request.getfixturevalue(which)
    for s in strings:
        expected = brute.prefix_prob(s)
        assert expected > 0
        assert rel_close(math.exp(lm.prefix_logprob(s)), expected), s


@pytest.mark.parametrize("which, prefix", [("bl", b""), ("bl", b"a"), ("bl", b"ab"),
                                           ("bl", b"ab "), ("sp", b"a"), ("sp", b"\xc3"),
                                           ("sp", b" ")])
def test_next_byte_matches_enumeration_and_sums_to_one(which, prefix, request):
    lm, brute = request.getfixturevalue(which)
    dist = lm.next_byte_distribution(prefix)
    assert dist.shape == (257,) and dist.dtype == torch.float64
    assert abs(float(dist.sum()) - 1.0) < 1e-12
    base = brute.prefix_prob(prefix) if prefix else 1.0
    alphabet = {b for data in brute.bytes if data for b in data}
    assert all(dist[b] == 0 for b in range(256) if b not in alphabet)
    for b in sorted(alphabet):
        assert rel_close(float(dist[b]) * base, brute.prefix_prob(prefix + bytes([b]))), b
    ends = sum(math.exp(lp + brute.end_logprob(seq)) for seq, lp in brute.tokenizations(prefix))
    assert rel_close(float(dist[END]) * base, ends)


def test_joint_next_byte_values_add_up_to_prefix_probability(bl):
    lm, _ = bl
    for prefix in [b"a", b"ab ", b"abcab"]:
        joint = lm.next_byte_logprobs(prefix, normalize=False)
        assert abs(float(torch.logsumexp(joint, 0)) - lm.prefix_logprob(prefix)) < 1e-9


@pytest.mark.parametrize("which, text", [("bl", b"abc"), ("bl", b"ab a"), ("sp", b"ab"),
                                         ("sp", "aé".encode())])
def test_string_probability_is_sum_over_tokenizations(which, text, request):
    lm, brute = request.getfixturevalue(which)
    tokenizer = request.getfixturevalue(f"{which}_tokenizer")
    found = brute.tokenizations(text)
    assert len(found) >= 2
    with_end = sum(math.exp(lp + brute.end_logprob(seq)) for seq, lp in found)
    assert rel_close(math.exp(lm.logprob(text, end_of_text=True)), with_end)
    assert rel_close(math.exp(lm.tokenizations_logprob(text)), sum(math.exp(lp) for _, lp in found))
    canonical = tuple(tokenizer(text.decode(), add_special_tokens=False)["input_ids"])
    canon_lp = dict(found)[canonical]
    assert lm.tokenizations_logprob(text) >= canon_lp
    assert lm.logprob(text, end_of_text=True) >= canon_lp + brute.end_logprob(canonical)
    assert lm.prefix_logprob(text) >= lm.tokenizations_logprob(text)
    assert sorted(map(tuple, lm.paths_at(len(text)))) == sorted(seq for seq, _ in found)


def test_chain_rule_over_bytes_gives_prefix_probability(bl):
    lm, _ = bl
    text = b"abca ab"
    total = sum(float(lm.next_byte_logprobs(text[:k])[text[k]]) for k in range(len(text)))
    assert abs(total - lm.prefix_logprob(text)) < 1e-9


def test_gpt2_matches_enumeration(bl_tokenizer, brute_force, make_gpt2):
    model = make_gpt2(len(bl_tokenizer))
    lm = ByteLM(model, bl_tokenizer, batch_size=2)  # several forward passes per position
    brute = brute_force(model, bl_tokenizer, lm.context)
    for s in [b"abc", b" ab", b"cab"]:
        assert rel_close(math.exp(lm.prefix_logprob(s)), brute.prefix_prob(s))


def test_rewinding_and_extending_give_the_same_answers(bl_model, bl_tokenizer):
    fresh = ByteLM(bl_model, bl_tokenizer)
    reused = ByteLM(bl_model, bl_tokenizer)
    for s in [b"abcabc", b"abca", b"ab", b"abcc a", b"", b"c"]:
        fresh.reset()
        assert reused.prefix_logprob(s) == pytest.approx(fresh.prefix_logprob(s), abs=1e-12)
        assert torch.allclose(reused.next_byte_logprobs(s), fresh.next_byte_logprobs(s),
                              atol=1e-10)


def test_one_forward_pass_per_new_byte_position(bl_model, bl_tokenizer):
    lm = ByteLM(bl_model, bl_tokenizer)
    start = lm.forward_passes
    lm.next_byte_logprobs(b"abcab")
    assert lm.forward_passes - start <= 5  # positions 1..5, each one batched pass
    before = lm.forward_passes
    lm.next_byte_logprobs(b"abcabc")
    assert lm.forward_passes - before <= 1


def test_compaction_keeps_every_result(bl_model, bl_tokenizer):
    plain = ByteLM(bl_model, bl_tokenizer, prune=1e-3, max_nodes=8)
    small = ByteLM(bl_model, bl_tokenizer, prune=1e-3, max_nodes=8, compact_at=16)
    text = b"abc abca cab abcab c abc"
    for k in range(len(text) + 1):
        if k % 5 == 4:
            small._compact(force=True)
        assert torch.allclose(small.next_byte_logprobs(text[:k]), plain.next_byte_logprobs(text[:k]),
                              atol=1e-10), k
        assert small.paths_at(k) == plain.paths_at(k)
    assert small._compacted and small.cache_len < plain.cache_len
    assert small.prefix_logprob(b"abc") == pytest.approx(plain.prefix_logprob(b"abc"), abs=1e-10)


def test_pruning_bounds_the_missing_mass(bl_model, bl_tokenizer):
    exact = ByteLM(bl_model, bl_tokenizer)
    pruned = ByteLM(bl_model, bl_tokenizer, prune=0.05, max_nodes=1)
    text = b"abcab ab"
    p_exact = math.exp(exact.prefix_logprob(text))
    p_pruned = math.exp(pruned.prefix_logprob(text))
    dropped = math.exp(pruned.dropped_logmass(text))
    assert dropped > 0
    assert p_pruned <= p_exact * (1 + 1e-9)
    assert p_exact <= p_pruned + dropped + 1e-15


def test_too_many_paths_without_pruning_is_an_error(bl_model, bl_tokenizer):
    lm = ByteLM(bl_model, bl_tokenizer, max_nodes=2)
    with pytest.raises(TokenswapError, match="max_nodes"):
        lm.prefix_logprob(b"abcabcabc")


@pytest.fixture(scope="module")
def spp(sp_model, spp_tokenizer, brute_force):
    lm = ByteLM(sp_model, spp_tokenizer)
    return lm, brute_force(sp_model, spp_tokenizer, lm.context)


def test_prepended_space_tokenizer_matches_enumeration(spp, spp_tokenizer):
    """Llama-2 style: the first token's space is dropped; '▁' alone first emits nothing."""
    lm, brute = spp
    assert lm.vocab.strip_leading_space and lm.silent_ids
    assert spp_tokenizer.decode(spp_tokenizer("ab a")["input_ids"]) == "ab a"
    for s in [b"a", b"ab", b" a", b"b a"]:
        assert rel_close(math.exp(lm.prefix_logprob(s)), brute.prefix_prob(s)), s
    dist = lm.next_byte_distribution(b"")
    assert abs(float(dist.sum()) - 1) < 1e-12
    for b in b"ab ":
        assert rel_close(float(dist[b]), brute.prefix_prob(bytes([b])))
    found = brute.tokenizations(b"ab")
    assert rel_close(math.exp(lm.tokenizations_logprob(b"ab")), sum(math.exp(lp) for _, lp in found))
    assert sorted(map(tuple, lm.paths_at(2))) == sorted(seq for seq, _ in found)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="abc ", min_size=1, max_size=8), data=st.data())
def test_random_cut_next_byte_matches_enumeration(bl, text, data):
    lm, brute = bl
    raw = text.encode()
    cut = data.draw(st.integers(0, min(len(raw), 3)))
    prefix = raw[len(raw) - cut:] if cut else b""
    dist = lm.next_byte_distribution(prefix)
    assert abs(float(dist.sum()) - 1.0) < 1e-12
    base = brute.prefix_prob(prefix) if prefix else 1.0
    b = data.draw(st.sampled_from(list(b"abc ")))
    assert rel_close(float(dist[b]) * base, brute.prefix_prob(prefix + bytes([b])))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="abcé ", min_size=1, max_size=7), data=st.data())
def test_random_cut_consistency_on_longer_prompts(sp, text, data):
    """Prompts cut at any byte offset (inside 'é' too): distributions sum to 1 and the chain
    rule reproduces P(prefix)."""
    lm, _ = sp
    raw = text.encode()
    cut = data.draw(st.integers(1, len(raw)))
    prefix = raw[:cut]
    dist = lm.next_byte_logprobs(prefix)
    assert abs(float(dist.exp().sum()) - 1.0) < 1e-12
    chain = sum(float(lm.next_byte_logprobs(prefix[:k])[prefix[k]]) for k in range(cut))
    assert abs(chain - lm.prefix_logprob(prefix)) < 1e-8
