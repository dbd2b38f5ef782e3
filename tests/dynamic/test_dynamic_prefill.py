"""Merged-token embeddings (mean, hypernet, the LRU cache) and the prefill through
inputs_embeds: no merges equals scoring with input_ids, padding changes nothing, generation
after the prefill, models without inputs_embeds refused."""

from __future__ import annotations

import pytest
import torch
from conftest import HYPERNET_SMALL
from transformers import AutoModelForCausalLM

from tokenswap.dynamic import merge_batch, merge_levels
from tokenswap.dynamic.embed import MergedEmbeddings
from tokenswap.dynamic.prefill import (
    check_model,
    context_embeddings,
    generate,
    score_continuations,
    split_continuation,
)
from tokenswap.errors import TokenswapError
from tokenswap.hypernet.model import Hypernet, SourceEmbeddings

CONTEXTS = ["The lazy dog sleeps. The lazy dog dreams of the lazy fox and the lazy cat.",
            "She sells sea shells by the sea shore; the shells she sells are sea shells.",
            "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n"]
CONTINUATIONS = [" The fox jumps.", " Surely sea shells!", "\ndef mul(a, b):"]


@pytest.fixture(scope="module")
def models(tiny_model_dir, tiny_gpt2_dir):
    return {name: AutoModelForCausalLM.from_pretrained(path).eval()
            for name, path in (("llama", tiny_model_dir), ("gpt2", tiny_gpt2_dir))}


def mean_rows(source, tokenizer, tokens):
    emb = MergedEmbeddings(source, tokenizer, method="mean")
    return torch.stack([source.input[list(emb.pieces(t))].mean(0) for t in tokens])


def test_mean_rows_are_the_mean_of_the_source_pieces(source_tokenizer, source_matrix):
    source = SourceEmbeddings(source_matrix)
    tokens = [b" lazy dog", b"shells", b" \xc3\xbcber"]
    emb = MergedEmbeddings(source, source_tokenizer, method="mean")
    assert all(len(emb.pieces(t)) >= 1 for t in tokens)
    torch.testing.assert_close(emb.rows(tokens), mean_rows(source, source_tokenizer, tokens))


def test_untrained_hypernet_gives_the_mean_rows(source_tokenizer, source_matrix, one_thread):
    source = SourceEmbeddings(source_matrix)
    hypernet = Hypernet.for_source(source, **HYPERNET_SMALL)
    tokens = [b" lazy dog", b"shells", b" sea shells by"]
    emb = MergedEmbeddings(source, source_tokenizer, hypernet=hypernet)
    torch.testing.assert_close(emb.offset(), torch.zeros(source_matrix.shape[1]), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(emb.rows(tokens), mean_rows(source, source_tokenizer, tokens),
                               atol=1e-5, rtol=1e-5)


def test_hypernet_offset_is_removed(source_tokenizer, source_matrix, one_thread):
    source = SourceEmbeddings(source_matrix)
    hypernet = Hypernet.for_source(source, **HYPERNET_SMALL)
    with torch.no_grad():
        hypernet.input_head[-1].bias.fill_(0.5)  # every prediction shifted by 0.5
    tokens = [b" lazy dog", b"shells"]
    aligned = MergedEmbeddings(source, source_tokenizer, hypernet=hypernet).rows(tokens)
    raw = MergedEmbeddings(source, source_tokenizer, hypernet=hypernet, align=False).rows(tokens)
    torch.testing.assert_close(raw - aligned, torch.full_like(raw, 0.5), atol=1e-5, rtol=0)


def test_cache_counts_hits_and_never_evicts_the_current_call(source_tokenizer, source_matrix):
    emb = MergedEmbeddings(SourceEmbeddings(source_matrix), source_tokenizer, method="mean",
                           capacity=2)
    a, b, c = b" lazy dog", b"shells", b" sea shore"
    emb.rows([a, b, a])
    assert (emb.stats.hits, emb.stats.misses) == (0, 2)
    emb.rows([a])
    assert (emb.stats.hits, emb.stats.misses) == (1, 2)
    emb.rows([c])  # full: b is the least recently used
    assert list(emb.cache) == [a, c] and emb.stats.evicted == 1
    rows = emb.rows([a, b, c])  # larger than the capacity: all three kept for this call
    assert set(emb.cache) == {a, b, c} and rows.shape[0] == 3
    assert (emb.stats.hits, emb.stats.misses) == (3, 4)  # b was evicted, c was not


def direct_bits(model, tokenizer, context, continuation):
    """-log2 p(continuation | [start] + context) with input_ids, the plain way."""
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[tokenizer.bos_token_id, *ctx, *cont]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    n = 1 + len(ctx)
    return float(-sum(logp[n - 1 + j, t] for j, t in enumerate(cont)) / torch.log(
        torch.tensor(2.0, dtype=torch.float64)))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_no_merges_equals_scoring_with_input_ids(models, source_tokenizer, arch, one_thread):
    model = models[arch]
    base = merge_batch(source_tokenizer, CONTEXTS, reduction=0.0)
    for batch_size in (1, 3):  # padding changes nothing
        score = score_continuations(model, source_tokenizer, base, CONTINUATIONS,
                                    batch_size=batch_size)
        want = [direct_bits(model, source_tokenizer, c, k)
                for c, k in zip(CONTEXTS, CONTINUATIONS, strict=True)]
        assert score.bits == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert score.bytes == [len(k.encode()) for k in CONTINUATIONS]


def test_merged_context_is_shorter_and_scores_the_same_continuation(
        models, source_tokenizer, one_thread):
    model = models["llama"]
    base, merged = merge_levels(source_tokenizer, CONTEXTS, [0.0, 0.3])
    emb = MergedEmbeddings(SourceEmbeddings.from_bundle(_Bundle(model)), source_tokenizer,
                           method="mean")
    rows = context_embeddings(model, merged, source_tokenizer.bos_token_id, emb)
    assert [len(r) for r in rows] == [1 + len(s) for s in merged.sequences]
    # a new token's position holds its mean row, a base token's position its own row
    seq = merged.sequences[0]
    k = next(i for i, t in enumerate(seq) if t >= merged.base_size)
    data = merged.token_bytes(seq[k])
    torch.testing.assert_close(rows[0][1 + k], emb.rows([data])[0])
    j = next(i for i, t in enumerate(seq) if t < merged.base_size)
    torch.testing.assert_close(rows[0][1 + j], model.get_input_embeddings().weight[seq[j]])
    s0 = score_continuations(model, source_tokenizer, base, CONTINUATIONS, emb)
    s1 = score_continuations(model, source_tokenizer, merged, CONTINUATIONS, emb)
    assert s0.bytes == s1.bytes and s0.tokens == s1.tokens
    assert s1.context_tokens == [1 + len(s) for s in merged.sequences]
    assert merged.tokens < base.tokens
    assert s0.bits != s1.bits


class _Bundle:
    """The two methods SourceEmbeddings.from_bundle reads, for a bare model."""

    def __init__(self, model):
        self.model = model

    def input_embeddings(self):
        return self.model.get_input_embeddings().weight

    def output_embeddings(self):
        return None

    def output_bias(self):
        return None


def test_generation_after_an_unmerged_prefill_equals_input_ids(models, source_tokenizer,
                                                               one_thread):
    model = models["llama"]
    base = merge_batch(source_tokenizer, CONTEXTS[:1], reduction=0.0)
    got = generate(model, source_tokenizer, base, max_new_tokens=8)
    ids = torch.tensor([[source_tokenizer.bos_token_id, *base.sequences[0]]])
    want = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          max_new_tokens=8, pad_token_id=2)[0, ids.shape[1]:].tolist()
    assert got == want


def test_model_without_inputs_embeds_is_refused(models):
    class IdsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def get_input_embeddings(self):
            return self.inner.get_input_embeddings()

        def forward(self, input_ids, attention_mask=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    check_model(models["llama"])
    with pytest.raises(TokenswapError, match="inputs_embeds"):
        check_model(IdsOnly(models["llama"]))


def test_split_continuation_cuts_at_a_word_start(source_tokenizer):
    text = "Der schnelle braune Fuchs springt über den faulen Hund."
    for nbytes, want in ((12, " Hund."), (13, " faulen Hund.")):
        context, continuation = split_continuation(source_tokenizer, text, nbytes)
        assert context + continuation == text
        assert continuation == want
    with pytest.raises(TokenswapError, match="too short"):
        split_continuation(source_tokenizer, text, 200)
