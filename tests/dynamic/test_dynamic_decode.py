"""Large-vocabulary decoding and scoring on a tiny Llama with hypernet rows and a real index:
greedy steps against a recompute-everything reference, k = all rows equals exact, bits against
brute force and against tokenswap.scoring.bpb, rows cached and refused when unreadable."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ENGLISH, GERMAN, HYPERNET_SMALL
from transformers import AutoModelForCausalLM

from tokenswap.dynamic.ann import build_index
from tokenswap.dynamic.decode import LargeVocabLM
from tokenswap.dynamic.embed import MergedEmbeddings
from tokenswap.dynamic.rows import ExtraRows, extra_rows, predict_rows
from tokenswap.dynamic.vocab import LargeVocab, count_runs
from tokenswap.errors import TokenswapError
from tokenswap.hypernet.model import Hypernet, SourceEmbeddings
from tokenswap.scoring.bpb import bits_per_byte
from tokenswap.vocab.bytes import ByteVocab

TEXTS = ["Der schnelle braune Fuchs springt über den faulen Hund. The lazy dog sleeps.",
         "def add(a, b):\n    return a + b\n"]
PROMPT = "Die Straße ist nass, weil es geregnet hat. Größere"


@pytest.fixture(scope="module")
def setup(tiny_model_dir, source_tokenizer):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    vocab = ByteVocab.from_tokenizer(source_tokenizer)
    counts = count_runs(source_tokenizer, ENGLISH + GERMAN, vocab=vocab)
    large = LargeVocab.from_counts(vocab, len(vocab), counts, len(vocab) + 60)
    source = SourceEmbeddings(model.get_input_embeddings().weight.detach().float())
    hypernet = Hypernet.for_source(source, **HYPERNET_SMALL)
    with torch.no_grad():  # a trained-looking hypernet: rows differ from the piece means
        hypernet.input_head[-1].weight.normal_(0, 0.5)
    rows = predict_rows(hypernet, source, source_tokenizer, large)
    with torch.no_grad():  # make the extra tokens likely, so the model picks them
        rows = ExtraRows(rows.input * 3, rows.output * 3)
    return model, large, rows, source, hypernet


def lm_of(setup, tokenizer, k=None):
    model, large, rows, _, _ = setup
    index = build_index(rows.output, backend="hnswlib")
    return LargeVocabLM(model, tokenizer, large, rows, index, candidates=k or len(rows))


def reference_greedy(model, tokenizer, large, rows, ids, steps):
    """Greedy over base + extra tokens, the whole sequence recomputed at every step."""
    base = large.base_size
    weight = model.get_input_embeddings().weight
    out = []
    for _ in range(steps):
        embeds = torch.stack([weight[t] if t < base else rows.input[t - base] for t in ids])
        with torch.no_grad():
            h = model.model(inputs_embeds=embeds[None]).last_hidden_state[0, -1]
            logits = torch.cat([model.lm_head(h), rows.output @ h])
        tid = int(logits.argmax())
        out.append(tid)
        ids = [*ids, tid]
        if large.token_bytes(tid) is None:
            break
    return out


def test_untrained_hypernet_rows_are_the_piece_means(setup, source_tokenizer, one_thread):
    _, large, _, source, _ = setup
    fresh = Hypernet.for_source(source, **HYPERNET_SMALL)
    rows = predict_rows(fresh, source, source_tokenizer, large)
    mean = MergedEmbeddings(source, source_tokenizer, method="mean").rows(large.extra)
    torch.testing.assert_close(rows.input, mean, atol=1e-5, rtol=1e-5)
    assert rows.output is rows.input and rows.bias is None  # tied, no bias


@pytest.mark.parametrize("mode", ["exact", "approx"])
def test_greedy_steps_equal_the_recompute_reference(setup, source_tokenizer, mode, one_thread):
    model, large, rows, _, _ = setup
    lm = lm_of(setup, source_tokenizer)
    gen = lm.generate(PROMPT, 12, mode=mode)
    ids = [lm.start_id, *large.encode(source_tokenizer, [PROMPT])[0]]
    assert gen.ids == reference_greedy(model, source_tokenizer, large, rows, ids, 12)
    assert any(t >= large.base_size for t in gen.ids)  # extra tokens were picked
    # the bytes are exactly those of the chosen tokens
    assert gen.data == b"".join(large.token_bytes(t) or b"" for t in gen.ids)


def test_base_mode_is_plain_greedy_decoding(setup, source_tokenizer, one_thread):
    model = setup[0]
    lm = lm_of(setup, source_tokenizer)
    gen = lm.generate(PROMPT, 8, mode="base")
    ids = torch.tensor([[lm.start_id, *source_tokenizer(PROMPT, add_special_tokens=False)[
        "input_ids"]]])
    want = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          max_new_tokens=8, pad_token_id=2)[0, ids.shape[1]:].tolist()
    assert gen.ids == want[: len(gen.ids)]


def test_all_rows_as_candidates_equals_exact(setup, source_tokenizer, one_thread):
    lm = lm_of(setup, source_tokenizer)  # k = every extra row
    score = lm.score(TEXTS, max_length=16, stride=8)
    assert score.extra_tokens > 0 and score.missed == 0
    assert score.approx_bits == pytest.approx(score.exact_bits, rel=1e-6)
    assert lm.generate(PROMPT, 10).ids == lm.generate(PROMPT, 10, mode="exact").ids
    few = lm_of(setup, source_tokenizer, k=2).score(TEXTS, max_length=16, stride=8)
    assert few.exact_bits == pytest.approx(score.exact_bits, rel=1e-6)
    assert few.approx_bits < few.exact_bits  # fewer terms in the normaliser


def test_exact_bits_against_brute_force(setup, source_tokenizer, one_thread):
    model, large, rows, _, _ = setup
    lm = lm_of(setup, source_tokenizer)
    text = TEXTS[0]
    ids = [lm.start_id, *large.encode(source_tokenizer, [text])[0]]
    weight = model.get_input_embeddings().weight
    embeds = torch.stack([weight[t] if t < large.base_size else rows.input[t - large.base_size]
                          for t in ids])
    with torch.no_grad():
        h = model.model(inputs_embeds=embeds[None]).last_hidden_state[0]
        logp = torch.log_softmax(torch.cat([model.lm_head(h), h @ rows.output.T], 1).double(), 1)
    want = -sum(float(logp[i, t]) for i, t in enumerate(ids[1:])) / math.log(2)
    got = lm.score([text], max_length=len(ids))
    assert got.exact_bits == pytest.approx(want, rel=1e-5)


def test_no_extra_tokens_scores_like_bits_per_byte(setup, source_tokenizer, one_thread):
    model, large, rows, _, _ = setup
    empty = LargeVocab(large.vocab, large.base_size, [])
    none = ExtraRows(rows.input[:0], rows.output[:0])
    lm = LargeVocabLM(model, source_tokenizer, empty, none)
    got = lm.score(TEXTS, max_length=16, stride=8)
    want = bits_per_byte(model, source_tokenizer, TEXTS, max_length=16, stride=8)
    assert got.exact_bits == pytest.approx(want.bits, rel=1e-5)
    assert got.bytes == want.bytes and got.tokens == want.tokens


def test_rows_are_cached_by_vocabulary(setup, source_tokenizer, tmp_path, one_thread):
    _, large, _, source, hypernet = setup
    first = extra_rows(hypernet, source, source_tokenizer, large, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("rows-*.safetensors"))) == 1
    again = extra_rows(hypernet, source, source_tokenizer, large, cache_dir=tmp_path)
    torch.testing.assert_close(again.input, first.input)
    smaller = LargeVocab(large.vocab, large.base_size, large.extra[:5])
    part = extra_rows(hypernet, source, source_tokenizer, smaller, cache_dir=tmp_path)
    assert len(part) == 5 and len(list(tmp_path.glob("rows-*.safetensors"))) == 2


def test_tokens_with_bytes_the_model_cannot_read_are_refused(wordpiece_tokenizer):
    vocab = ByteVocab.from_tokenizer(wordpiece_tokenizer)
    large = LargeVocab(vocab, len(vocab), ["a🙂".encode()])  # "a" decodes, the emoji not
    source = SourceEmbeddings(torch.randn(len(vocab), 16))
    hypernet = Hypernet.for_source(source, **HYPERNET_SMALL)
    with pytest.raises(TokenswapError, match="has bytes no base token emits"):
        predict_rows(hypernet, source, wordpiece_tokenizer, large)


def test_bad_arguments(setup, source_tokenizer):
    lm = lm_of(setup, source_tokenizer)
    with pytest.raises(TokenswapError, match="unknown mode"):
        lm.generate(PROMPT, 3, mode="beam")
    with pytest.raises(TokenswapError, match="prompt is empty"):
        lm.generate("  ", 3)
    with pytest.raises(TokenswapError, match="needs an index"):
        LargeVocabLM(setup[0], source_tokenizer, setup[1], setup[2]).generate(PROMPT, 2)
