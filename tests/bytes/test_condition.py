"""ByteLM.condition (canonical prompt head as context) and pruning relative to the prefix mass."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ENGLISH, GERMAN, tiny_llama
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenswap.bytes import ByteLM
from tokenswap.errors import TokenswapError

pytestmark = pytest.mark.usefixtures("one_thread")
TEXTS = [t.encode() for t in ENGLISH + GERMAN]


@pytest.fixture(scope="module")
def lm_pair(source_tokenizer):
    model = tiny_llama(len(source_tokenizer), seed=3).double()
    return model, source_tokenizer


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.integers(0, len(TEXTS) - 1), cut=st.floats(0, 1), tail=st.integers(1, 3))
def test_head_is_canonical_and_a_prefix(lm_pair, doc, cut, tail):
    model, tok = lm_pair
    data = TEXTS[doc]
    prompt = data[: int(cut * len(data))]
    lm = ByteLM(model, tok)
    head = lm.condition(prompt, tail_words=tail)
    assert prompt.startswith(head)
    head_ids = lm.context[len(lm.base_context):]
    assert lm.vocab.decode_bytes(head_ids) == head
    if head:
        # the head's tokens are the prompt's own leading tokens, and those of the whole doc
        for text in (prompt, data):
            ids = tok(text.decode("utf-8", errors="ignore"), add_special_tokens=False).input_ids
            assert ids[: len(head_ids)] == head_ids
        assert len(head) < len(prompt)  # the last words are always left to the tree


def test_conditioned_model_equals_a_model_with_the_head_as_context(lm_pair):
    model, tok = lm_pair
    prompt = "Die Straße ist nass, weil es gereg".encode()
    lm = ByteLM(model, tok)
    head = lm.condition(prompt)
    assert 0 < len(head) < len(prompt)
    ref = ByteLM(model, tok, context=lm.context)
    for extra in (b"", b"n", b"net"):
        got = lm.next_byte_logprobs(prompt + extra)
        want = ref.next_byte_logprobs(prompt[len(head):] + extra)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        assert abs(float(got.exp().sum()) - 1) < 1e-12
    assert lm.prefix_logprob(prompt + b"net") == pytest.approx(
        ref.prefix_logprob(prompt[len(head):] + b"net"), abs=1e-12)
    assert lm.paths_at(len(prompt)) == ref.paths_at(len(prompt) - len(head))
    with pytest.raises(TokenswapError, match="start with"):
        lm.next_byte_logprobs(b"Der " + prompt)
    lm.condition(b"")  # undone: the whole text is a tree again
    assert lm.head == b"" and lm.context == lm.base_context


def test_condition_reads_the_head_in_one_pass(lm_pair):
    model, tok = lm_pair
    prompt = b"A tokenizer splits text into tokens; a model predicts the next tok"
    exact = ByteLM(model, tok, prune=1e-6, max_nodes=16)
    exact.next_byte_logprobs(prompt)
    cond = ByteLM(model, tok, prune=1e-6, max_nodes=16)
    start = cond.forward_passes
    cond.condition(prompt)
    cond.next_byte_logprobs(prompt)
    assert cond.forward_passes - start < exact.forward_passes / 4


def test_tail_words_must_be_positive(lm_pair):
    model, tok = lm_pair
    with pytest.raises(TokenswapError, match="tail_words"):
        ByteLM(model, tok).condition(b"abc", tail_words=0)


def test_kept_paths_carry_at_least_their_share_of_the_prefix_mass(bl_model, bl_tokenizer):
    r = 0.02
    lm = ByteLM(bl_model, bl_tokenizer, prune=r, max_nodes=64)
    text = b"abcab ab cab"
    lm.next_byte_logprobs(text)
    for p in range(1, len(text) + 1):
        floor = lm.prefix_logprob(text[:p]) + math.log(r)
        assert all(node.logprob >= floor - 1e-12 for node in lm._at(p)), p
    exact = ByteLM(bl_model, bl_tokenizer)
    p_exact = math.exp(exact.prefix_logprob(text))
    p_pruned = math.exp(lm.prefix_logprob(text))
    assert p_pruned <= p_exact * (1 + 1e-9) <= p_pruned + math.exp(lm.dropped_logmass(text)) + 1e-12
    assert lm.dropped_logmass(text) > -math.inf  # the rule dropped something here


def test_complete_next_byte_distributions_keep_every_possible_byte(bl_model, bl_tokenizer):
    exact = ByteLM(bl_model, bl_tokenizer)
    pruned = ByteLM(bl_model, bl_tokenizer, prune=0.2, max_nodes=64)
    fast = ByteLM(bl_model, bl_tokenizer, prune=0.2, max_nodes=64)
    text = b"abcab ab cab"
    zeros = 0
    for k in range(len(text) + 1):
        support = exact.next_byte_logprobs(text[:k]) > -math.inf
        got = pruned.next_byte_logprobs(text[:k])
        assert bool(((got > -math.inf) == support).all()), k
        assert abs(float(got.exp().sum()) - 1) < 1e-12
        zeros += int(((fast.next_byte_logprobs(text[:k], complete=False) == -math.inf)
                      & support).sum())
    assert zeros > 0  # without completing, deferred paths leave some possible bytes at 0
