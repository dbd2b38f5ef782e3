"""The ``hypernet`` init method and its hooks in api.transfer (src/tokenswap/init/hypernet.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import ENGLISH, GERMAN, tiny_llama
from conftest import HYPERNET_SMALL as SMALL

from tokenswap import api
from tokenswap.errors import TokenswapError
from tokenswap.hypernet.model import Hypernet, SourceEmbeddings
from tokenswap.init import InitContext, get_method, resolve_options
from tokenswap.init.hypernet import ExactMode, HypernetOptions
from tokenswap.io.models import ModelBundle, load_model
from tokenswap.vocab.pair import Provenance

pytestmark = pytest.mark.usefixtures("one_thread")


def test_registered_with_requirement():
    method = get_method("hypernet")
    assert method.requires == ("hypernet",) and "2405.07883" in method.url


@pytest.mark.parametrize("mode", ["align", "predict", "copy"])
def test_untrained_equals_mean_specials_copied_provenance(pair, source_matrix, mode):
    hn = Hypernet.for_source(SourceEmbeddings(source_matrix), **SMALL)
    ctx = InitContext(hypernet=hn, options=HypernetOptions(ExactMode(mode)))
    result = get_method("hypernet").fn(source_matrix, pair, ctx)
    mean = get_method("mean").fn(source_matrix, pair, InitContext())
    torch.testing.assert_close(result.matrix, mean.matrix, rtol=0, atol=1e-6)
    special = pair.ids_with(Provenance.SPECIAL)
    assert len(special) and (result.provenance[special] == Provenance.SPECIAL).all()
    exact = pair.ids_with(Provenance.EXACT)
    kind = Provenance.COMPOSED if mode == "predict" else Provenance.EXACT
    assert len(exact) and (result.provenance[exact] == kind).all()


def _trained(source_matrix, offset: torch.Tensor) -> Hypernet:
    """A hypernet whose input head adds small token-dependent changes and the same ``offset``
    to every row."""
    hn = Hypernet.for_source(SourceEmbeddings(source_matrix), **SMALL)
    torch.nn.init.normal_(hn.input_head[-1].weight, std=0.05)
    with torch.no_grad():
        hn.input_head[-1].bias.copy_(offset)
    return hn


@pytest.mark.parametrize("mode", ["align", "predict", "copy"])
def test_exact_tokens_aligned_copied_or_predicted(pair, source_matrix, mode):
    offset = torch.full((source_matrix.shape[1],), 3.0)
    hn = _trained(source_matrix, offset)
    ctx = InitContext(hypernet=hn, options=HypernetOptions(ExactMode(mode)))
    result = get_method("hypernet").fn(source_matrix, pair, ctx)
    raw = get_method("hypernet").fn(source_matrix, pair, InitContext(
        hypernet=hn, options=HypernetOptions(ExactMode.PREDICT))).matrix
    exact = pair.ids_with(Provenance.EXACT)
    rows = source_matrix[[pair.pieces[i][0] for i in exact]]
    gap = (result.matrix[exact] - rows).abs().max()
    composed = pair.ids_with(Provenance.COMPOSED)
    if mode == "predict":
        assert gap > 1e-3 and (result.provenance[exact] == Provenance.COMPOSED).all()
    else:
        assert gap == 0 and (result.provenance[exact] == Provenance.EXACT).all()
    shift = raw[composed] - result.matrix[composed]  # what was taken off the new rows
    if mode == "align":  # the measured common offset: the bias plus the noise's mean
        expected = (raw[exact] - rows).mean(0)
        torch.testing.assert_close(shift, expected.expand_as(shift))
        assert (expected - offset).abs().max() < 0.5
    else:
        assert shift.abs().max() == 0


def test_exact_mode_checked():
    with pytest.raises(TokenswapError, match="hypernet_exact must be one of align, predict, copy"):
        resolve_options(get_method("hypernet"), {"hypernet_exact": "yes"})


def test_predicts_once_per_pair_and_serves_every_matrix(pair, monkeypatch):
    g = torch.Generator().manual_seed(0)
    n = len(pair.source.token_bytes)
    src = {"input": torch.randn(n, 16, generator=g), "output": torch.randn(n, 16, generator=g),
           "bias": torch.randn(n, generator=g)}
    hn = Hypernet.for_source(SourceEmbeddings(**src), **SMALL)
    for head in (hn.input_head, hn.output_head, hn.bias_head):
        torch.nn.init.normal_(head[-1].weight, std=0.5)
    calls = []
    real = hn.predict
    monkeypatch.setattr(hn, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache: dict = {}  # what api.transfer shares between the calls of one transfer
    got = {}
    for which, matrix in (("input", src["input"]), ("output", src["output"]),
                          ("bias", src["bias"].reshape(-1, 1))):
        ctx = InitContext(matrix=which, hypernet=hn, sources=src, cache=cache)
        got[which] = get_method("hypernet").fn(matrix, pair, ctx).matrix
    assert len(calls) == 1
    assert got["bias"].shape == (len(pair), 1)
    assert not torch.allclose(got["input"], got["output"])
    special = int(pair.ids_with(Provenance.SPECIAL)[0])
    torch.testing.assert_close(got["bias"][special, 0], src["bias"][pair.pieces[special][0]])
    composed = int(pair.ids_with(Provenance.COMPOSED)[0])
    fvt = src["output"][list(pair.pieces[composed])].mean(0)
    assert (got["output"][composed] - fvt).abs().max() > 1e-3  # the trained head is used


def test_transfer_with_hypernet_and_base_check(tmp_path, source_tokenizer, german_tokenizer):
    base = ModelBundle(tiny_llama(len(source_tokenizer), tied=False, seed=1), source_tokenizer,
                       "tiny-base")
    hn = Hypernet.for_source(SourceEmbeddings.from_bundle(base), base_model="tiny-base", **SMALL)
    torch.nn.init.normal_(hn.input_head[-1].weight, std=0.01)
    hn.save(tmp_path / "hn")
    result = api.transfer(base, german_tokenizer, method="hypernet", hypernet=tmp_path / "hn",
                          out=tmp_path / "model")
    assert result.stats.output is not None and result.stats.input["composed"] > 0
    saved = load_model(tmp_path / "model")
    ids = german_tokenizer(GERMAN[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(saved.model(ids).logits).all()

    other = ModelBundle(tiny_llama(len(source_tokenizer), tied=False, seed=4), source_tokenizer,
                        "tiny-finetuned")
    with pytest.raises(TokenswapError, match="trained for tiny-base .* not for tiny-finetuned"):
        api.transfer(other, german_tokenizer, method="hypernet", hypernet=tmp_path / "hn")
    api.transfer(other, german_tokenizer, method="hypernet", hypernet=tmp_path / "hn",
                 allow_other_base=True)
    with pytest.raises(TokenswapError, match="--hypernet"):
        api.transfer(base, german_tokenizer, method="hypernet")


HELD_OUT_GERMAN = [
    "Der Hund schläft unter dem Tisch, weil es draußen regnet.",
    "Am Fluss stehen größere Häuser mit nassen Straßen davor.",
    "Das Modell zerlegt den nächsten Text in größere Tokens.",
    "Ärger über den faulen Fuchs hilft dem Meister nicht.",
]


def test_hypernet_applies_unchanged_to_a_fine_tuned_copy(tmp_path, source_tokenizer,
                                                         german_tokenizer):
    """The paper applies a base model's hypernet to its fine-tuned variants without
    retraining. A copy of the base is fine-tuned here (every weight, embeddings included); the
    hypernet recognises it without a flag, reads the copy's own embeddings, and what it learned
    on the base still beats FVT on the copy."""
    import copy

    from test_train import TINY

    from tokenswap.hypernet.train import train_hypernet
    from tokenswap.scoring.bpb import bits_per_byte
    from tokenswap.tuning import tune_model

    base = ModelBundle(tiny_llama(len(source_tokenizer), seed=0), source_tokenizer, "tiny-base")
    train_hypernet(base, GERMAN * 2, tmp_path / "hn", steps=40, identity_steps=2,
                   checkpoint_every=100, **TINY)
    tuned = ModelBundle(copy.deepcopy(base.model), source_tokenizer, "tiny-tuned")
    tune_model(tuned, ENGLISH, tmp_path / "tuned", steps=8, embedding_fraction=0.25,
               batch_size=4, seq_len=32, lr=3e-3, warmup_steps=1, progress=False)
    tuned = load_model(tmp_path / "tuned")
    moved = (tuned.input_embeddings() - base.input_embeddings()).norm(dim=1)
    assert (moved > 1e-3).float().mean() > 0.5  # most rows were trained

    def transferred(bundle, **kw):
        bundle = ModelBundle(copy.deepcopy(bundle.model), bundle.tokenizer, bundle.spec)
        result = api.transfer(bundle, german_tokenizer, **kw)
        bpb = bits_per_byte(bundle.model, german_tokenizer, HELD_OUT_GERMAN).bits_per_byte
        return result, bpb

    hyper, hyper_bpb = transferred(tuned, method="hypernet", hypernet=tmp_path / "hn")
    assert hyper.stats.hypernet_base.startswith("fine-tuned variant of tiny-base")
    _, mean_bpb = transferred(tuned, method="mean")
    on_base, base_hyper_bpb = transferred(base, method="hypernet", hypernet=tmp_path / "hn")
    _, base_mean_bpb = transferred(base, method="mean")
    assert on_base.stats.hypernet_base == "base"
    assert hyper_bpb != base_hyper_bpb  # the copy's own embeddings were read
    # measured: the gain over FVT is 0.070 bits/byte on the base and 0.067 on the copy
    gain_on_base, gain_on_copy = base_mean_bpb - base_hyper_bpb, mean_bpb - hyper_bpb
    assert gain_on_base > 0.03 and gain_on_copy > 0.5 * gain_on_base, (gain_on_base,
                                                                       gain_on_copy)
    # an unrelated model with the same shapes is still refused
    stranger = ModelBundle(tiny_llama(len(source_tokenizer), seed=9), source_tokenizer, "x")
    with pytest.raises(TokenswapError, match="not for x .*below 0.5"):
        api.transfer(stranger, german_tokenizer, method="hypernet", hypernet=tmp_path / "hn")
