"""The hypernet: step 0 equals FVT, heads per matrix, windowing, save/load and the base check."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import HYPERNET_SMALL as SMALL
from conftest import tiny_llama
from safetensors import safe_open

from tokenswap.errors import TokenswapError
from tokenswap.hypernet.model import (
    FINGERPRINT_KEY,
    Hypernet,
    HypernetConfig,
    PieceInputs,
    SourceEmbeddings,
    embedding_hash,
    load_hypernet,
)
from tokenswap.init import InitContext, get_method
from tokenswap.vocab.pair import Provenance

pytestmark = pytest.mark.usefixtures("one_thread")


def untied_source(pair, bias: bool = False) -> SourceEmbeddings:
    g = torch.Generator().manual_seed(1)
    n = len(pair.source.token_bytes)
    return SourceEmbeddings(torch.randn(n, 16, generator=g), torch.randn(n, 16, generator=g) + 2,
                            torch.randn(n, generator=g) if bias else None)


def test_untrained_hypernet_equals_mean_method(pair, source_matrix):
    hn = Hypernet.for_source(SourceEmbeddings(source_matrix), **SMALL)
    pred, stats = hn.predict(pair, SourceEmbeddings(source_matrix))
    mean = get_method("mean").fn(source_matrix, pair, InitContext()).matrix
    torch.testing.assert_close(pred.input, mean, rtol=0, atol=1e-6)
    assert pred.output is None and pred.bias is None
    assert stats.tokens == len(pair) and stats.empty == len(pair.ids_with(Provenance.FALLBACK))


def test_untied_with_bias_has_three_heads_all_fvt_at_start(pair):
    source = untied_source(pair, bias=True)
    hn = Hypernet.for_source(source, **SMALL)
    assert hn.output_head is not None and hn.bias_head is not None
    pred, _ = hn.predict(pair, source)
    for got, src in ((pred.input, source.input), (pred.output, source.output),
                     (pred.bias.unsqueeze(1), source.bias.unsqueeze(1))):
        mean = get_method("mean").fn(src, pair, InitContext()).matrix
        torch.testing.assert_close(got, mean, rtol=0, atol=1e-5)
    assert not torch.allclose(pred.input, pred.output)


def test_trained_heads_change_predictions_and_gradients_reach_encoder(pair, source_matrix):
    source = SourceEmbeddings(source_matrix)
    hn = Hypernet.for_source(source, **SMALL)
    inputs = PieceInputs.from_pair(pair, hn.config.max_pieces)
    opt = torch.optim.SGD(hn.parameters(), lr=0.1)
    for _ in range(2):  # the zero last layer gets a gradient first, then the encoder
        opt.zero_grad()
        hn(inputs, source).input.pow(2).mean().backward()
        opt.step()
    assert hn.encoder.layers[0].linear1.weight.grad.abs().sum() > 0
    assert hn.empty.grad is not None  # the fallback tokens read the learned empty vector
    pred, _ = hn.predict(pair, source)
    mean = get_method("mean").fn(source_matrix, pair, InitContext()).matrix
    assert (pred.input - mean).abs().max() > 1e-3


def test_window_truncates_but_mean_uses_every_piece(pair, source_matrix):
    inputs = PieceInputs.from_pair(pair, max_pieces=1)
    lengths = torch.tensor([len(p) for p in pair.pieces])
    assert inputs.stats.truncated == int((lengths > 1).sum()) > 0
    assert inputs.window.shape == (len(pair), 1)
    long_id = int(torch.nonzero(lengths > 1)[0])
    assert inputs.window[long_id, 0] == pair.pieces[long_id][0]
    hn = Hypernet.for_source(SourceEmbeddings(source_matrix), **{**SMALL, "max_pieces": 1})
    pred, stats = hn.predict(pair, SourceEmbeddings(source_matrix))
    expected = source_matrix[list(pair.pieces[long_id])].mean(0)
    torch.testing.assert_close(pred.input[long_id], expected)
    assert stats.truncated == inputs.stats.truncated


def test_chunked_prediction_matches_one_pass(pair, source_matrix):
    source = SourceEmbeddings(source_matrix)
    hn = Hypernet.for_source(source, **SMALL)
    torch.nn.init.normal_(hn.input_head[-1].weight, std=0.1)  # make the head non-trivial
    whole, _ = hn.predict(pair, source, chunk=10_000)
    parts, _ = hn.predict(pair, source, chunk=37)
    torch.testing.assert_close(whole.input, parts.input, rtol=1e-5, atol=1e-5)


def test_smollm2_sized_hypernet_is_small(tmp_path):
    # SmolLM2-135M's shape: hidden 576, 49,152 tokens, untied here (two matrices to predict).
    # The saved hypernet must be a small fraction of the embeddings it predicts.
    hn = Hypernet(HypernetConfig(hidden_size=576, tied=False, has_bias=False))
    embeddings = 2 * 49_152 * 576
    assert hn.num_parameters() < 0.1 * embeddings
    size = sum(f.stat().st_size for f in hn.save(tmp_path / "hn").iterdir())
    assert size < 4 * hn.num_parameters() * 1.01 + 100_000  # float32 weights + a small config
    assert size < 0.1 * 4 * embeddings


def test_save_load_round_trip(tmp_path, pair, source_matrix):
    source = SourceEmbeddings(source_matrix)
    hn = Hypernet.for_source(source, base_model="tiny", **SMALL)
    torch.nn.init.normal_(hn.input_head[-1].weight, std=0.1)
    hn.save(tmp_path / "hn")
    back = load_hypernet(tmp_path / "hn", source, "tiny")
    assert back.config == hn.config
    torch.testing.assert_close(back.predict(pair, source)[0].input,
                               hn.predict(pair, source)[0].input)


def test_saved_in_bfloat16_in_half_the_space_loads_as_float32(tmp_path, pair, source_matrix):
    source = SourceEmbeddings(source_matrix)
    hn = Hypernet.for_source(source, base_model="tiny", **SMALL)
    full = (hn.save(tmp_path / "fp32") / "hypernet.safetensors").stat().st_size
    half = hn.save(tmp_path / "bf16", dtype=torch.bfloat16) / "hypernet.safetensors"
    with safe_open(half, "pt") as f:  # the base model's fingerprint stays float32
        assert {f.get_slice(k).get_dtype() for k in f.keys() if k != FINGERPRINT_KEY} == {"BF16"}
    assert half.stat().st_size < 0.7 * full
    back = load_hypernet(tmp_path / "bf16", source, "tiny")
    assert all(p.dtype == torch.float32 for p in back.parameters())
    torch.testing.assert_close(back.predict(pair, source)[0].input,
                               hn.predict(pair, source)[0].input, rtol=0.05, atol=0.02)


def test_saved_files_are_readable_like_save_pretrained_output(tmp_path, source_matrix):
    """safetensors' save_file makes 0600 files: a serving user could not read the hypernet."""
    old = os.umask(0o022)
    try:
        out = Hypernet.for_source(SourceEmbeddings(source_matrix), **SMALL).save(tmp_path / "h")
    finally:
        os.umask(old)
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in out.iterdir()} == dict.fromkeys(
        ["hypernet.safetensors", "hypernet.json", "hypernet.sha256"], "0o644")


def test_other_model_is_refused_with_one_line(tmp_path, source_tokenizer):
    base = tiny_llama(len(source_tokenizer), seed=0)
    other = tiny_llama(len(source_tokenizer), seed=5)
    src = SourceEmbeddings(base.get_input_embeddings().weight.detach())
    Hypernet.for_source(src, base_model="base-model", **SMALL).save(tmp_path / "hn")
    with pytest.raises(TokenswapError) as err:
        load_hypernet(tmp_path / "hn", SourceEmbeddings(other.get_input_embeddings().weight),
                      "other-model")
    msg = str(err.value)
    assert "\n" not in msg
    assert f"was trained for base-model (embeddings {src.hash()[:8]}), not for other-model" in msg


def test_fine_tuned_variant_is_recognised_other_models_need_the_flag(tmp_path,
                                                                    source_tokenizer):
    base = tiny_llama(len(source_tokenizer), seed=0)
    src = SourceEmbeddings(base.get_input_embeddings().weight.detach())
    Hypernet.for_source(src, base_model="base", **SMALL).save(tmp_path / "hn")  # no tokenizer
    # Only the transformer body was fine-tuned: the embeddings hash the same.
    tuned = tiny_llama(len(source_tokenizer), seed=0)
    with torch.no_grad():
        tuned.model.layers[0].mlp.up_proj.weight.add_(0.1)
    emb = tuned.get_input_embeddings().weight
    assert load_hypernet(tmp_path / "hn", SourceEmbeddings(emb), "ft").base_match == "base"
    # Embeddings fine-tuned too (every row moved by a tenth of its norm): still the base's.
    with torch.no_grad():
        emb.add_(0.1 * emb.norm(dim=1, keepdim=True) * torch.randn_like(emb) / emb.shape[1] ** 0.5)
    changed = SourceEmbeddings(emb.detach())
    match = load_hypernet(tmp_path / "hn", changed, "ft").base_match
    assert match.startswith("fine-tuned variant of base (embedding rows 0.99")
    # An unrelated model of the same shape is refused, unless the user insists.
    other = SourceEmbeddings(tiny_llama(len(source_tokenizer), seed=9).get_input_embeddings()
                             .weight.detach())
    with pytest.raises(TokenswapError, match=r"embedding rows -?0\.0\d+ similar, below 0\.5"):
        load_hypernet(tmp_path / "hn", other, "other")
    forced = load_hypernet(tmp_path / "hn", other, "other", allow_other_base=True)
    assert forced.base_match == "another model (allowed)"


def test_a_fine_tuned_variant_keeps_the_base_tokenizer(tmp_path, source_tokenizer,
                                                      german_tokenizer):
    import copy

    base = tiny_llama(len(source_tokenizer), seed=0)
    src = SourceEmbeddings(base.get_input_embeddings().weight.detach())
    Hypernet.for_source(src, base_model="base", tokenizer=source_tokenizer, **SMALL
                        ).save(tmp_path / "hn")
    changed = SourceEmbeddings(src.input + 1e-3)
    match = load_hypernet(tmp_path / "hn", changed, "ft", tokenizer=source_tokenizer).base_match
    assert match.startswith("fine-tuned variant")
    grown = copy.deepcopy(source_tokenizer)  # chat tokens appended by a fine-tune are fine
    grown.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    assert len(grown) == len(source_tokenizer) + 1
    load_hypernet(tmp_path / "hn", changed, "ft", tokenizer=grown)
    for other in (german_tokenizer, None):  # another vocabulary, or none to check
        with pytest.raises(TokenswapError, match=r"not for ft \(its tokenizer is not the base's"):
            load_hypernet(tmp_path / "hn", changed, "ft", tokenizer=other)
    # the base itself is recognised by its embeddings alone
    assert load_hypernet(tmp_path / "hn", src, "b", tokenizer=german_tokenizer).base_match == "base"
    # embedding matrices padded beyond the tokenizer (as Qwen's are) work the same way
    padded = SourceEmbeddings(torch.cat([src.input, torch.randn(9, src.input.shape[1])]))
    Hypernet.for_source(padded, base_model="base", tokenizer=source_tokenizer, **SMALL
                        ).save(tmp_path / "hn-padded")
    tuned = SourceEmbeddings(padded.input + 1e-3)
    for tok in (source_tokenizer, grown):
        assert load_hypernet(tmp_path / "hn-padded", tuned, "ft", tokenizer=tok
                             ).base_match.startswith("fine-tuned variant")


def test_hypernet_without_fingerprint_needs_the_flag_for_changed_embeddings(tmp_path,
                                                                          source_matrix):
    from safetensors.torch import load_file, save_file

    from tokenswap.hypernet.model import FINGERPRINT_KEY, WEIGHTS_FILE

    hn = Hypernet.for_source(SourceEmbeddings(source_matrix), base_model="base", **SMALL)
    hn.save(tmp_path / "hn")
    state = load_file(str(tmp_path / "hn" / WEIGHTS_FILE))
    assert state.pop(FINGERPRINT_KEY).shape == (min(256, len(source_matrix)),
                                                source_matrix.shape[1])
    save_file(state, str(tmp_path / "hn" / WEIGHTS_FILE))  # as saved before fingerprints
    (tmp_path / "hn" / "hypernet.sha256").unlink()  # (and before checksums)
    changed = SourceEmbeddings(source_matrix + 1e-3)
    with pytest.raises(TokenswapError, match="no fingerprint to compare.*--allow-other-base"):
        load_hypernet(tmp_path / "hn", changed, "ft")
    assert load_hypernet(tmp_path / "hn", SourceEmbeddings(source_matrix), "b").base_match == "base"


def test_shape_mismatch_is_an_error_even_with_flag(tmp_path, pair, source_matrix):
    Hypernet.for_source(SourceEmbeddings(source_matrix), **SMALL).save(tmp_path / "hn")
    with pytest.raises(TokenswapError, match="untied"):
        load_hypernet(tmp_path / "hn", untied_source(pair), "x", allow_other_base=True)
    with pytest.raises(TokenswapError, match="not found"):
        load_hypernet(tmp_path / "missing", SourceEmbeddings(source_matrix), "x")


def test_embedding_hash_sensitive_and_dtype_stable():
    a = torch.randn(10, 4)
    assert embedding_hash(a) == embedding_hash(a.clone())
    b = a.clone()
    b[3, 2] += 1e-6
    assert embedding_hash(a) != embedding_hash(b)
    assert embedding_hash(a) != embedding_hash(a, a)
    half = a.bfloat16()
    assert embedding_hash(half) == embedding_hash(half.float())


def test_grouping_by_width_matches_one_fully_padded_pass(pair, source_matrix):
    source = SourceEmbeddings(source_matrix)
    hn = Hypernet.for_source(source, **SMALL).eval()
    inputs = PieceInputs.from_pair(pair, hn.config.max_pieces)
    x = hn.project(source_matrix[inputs.window]) + hn.position
    x[:, 0] = torch.where(inputs.empty.unsqueeze(1), hn.empty, x[:, 0])
    mask = inputs.mask.clone()
    mask[:, 0] |= inputs.empty
    with torch.no_grad():
        full = hn.encoder(x, src_key_padding_mask=~mask)[:, 0]
        grouped = hn._encode(source_matrix, inputs)
    assert len(torch.unique(inputs.mask.sum(1))) > 2  # several widths really occur
    torch.testing.assert_close(grouped, full, rtol=1e-5, atol=1e-5)


def test_a_shared_direction_does_not_make_rows_similar(tmp_path):
    # Real embedding rows share a common direction (random SmolLM2 rows: cosine 0.43); the
    # similarity is centred, so the base's rows in another order are not a fine-tuned variant.
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(500, 32, generator=g) + 2.0  # uncentred cosine of two rows ~0.8
    src = SourceEmbeddings(rows)
    Hypernet.for_source(src, base_model="base", **SMALL).save(tmp_path / "hn")
    shuffled = SourceEmbeddings(rows[torch.randperm(500, generator=g)])
    with pytest.raises(TokenswapError, match=r"embedding rows -?0\.0\d+ similar"):
        load_hypernet(tmp_path / "hn", shuffled, "shuffled")
    assert load_hypernet(tmp_path / "hn", SourceEmbeddings(rows + 0.05), "ft"
                         ).base_match.startswith("fine-tuned variant")
