"""transfer() on tiny random models: surgery, saving, reloading with plain transformers."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import tokenswap
from tokenswap.errors import TokenswapError
from tokenswap.io.models import load_model
from tokenswap.surgery import install_embeddings
from tokenswap.vocab.pair import Provenance


def _reload_and_generate(out):
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("Die Straße", return_tensors="pt")
    with torch.inference_mode():
        gen = model.generate(**ids, max_new_tokens=5, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 5
    return model, tok


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_untied_model_dir", "tiny_gpt2_dir"])
@pytest.mark.parametrize("method", ["mean", "random", "copy-overlap"])
def test_transfer_saves_a_plain_model(request, fixture, method, german_tokenizer, tmp_path):
    src = request.getfixturevalue(fixture)
    out = tmp_path / "out"
    result = tokenswap.transfer(str(src), german_tokenizer, method=method, out=out)
    assert result.out == out and (out / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left
    model, tok = _reload_and_generate(out)
    assert model.config.vocab_size == len(german_tokenizer) == len(tok)
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    source = load_model(str(src))
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == \
        source.tied
    stats = json.loads((out / "tokenswap.json").read_text())["stats"]
    assert stats["method"] == method and stats["target_vocab"] == len(tok)
    assert sum(stats["input"].values()) == len(tok)
    assert (stats["output"] is None) == source.tied


def test_mean_copies_exact_rows_into_saved_model(tiny_untied_model_dir, german_tokenizer, tmp_path):
    source = load_model(str(tiny_untied_model_dir))
    src_in = source.input_embeddings().detach().clone()
    src_out = source.output_embeddings().detach().clone()
    result = tokenswap.transfer(source, german_tokenizer, method="mean", out=tmp_path / "m")
    from tokenswap.vocab.pair import build_pair

    pair = build_pair(load_model(str(tiny_untied_model_dir)).tokenizer, german_tokenizer)
    new = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    for tid in pair.ids_with(Provenance.EXACT)[:30]:
        sid = pair.pieces[tid][0]
        torch.testing.assert_close(new.get_input_embeddings().weight[tid], src_in[sid])
        torch.testing.assert_close(new.get_output_embeddings().weight[tid], src_out[sid])
    assert result.stats.pair["exact"] == len(pair.ids_with(Provenance.EXACT))


def test_transfer_keeps_chat_template_and_special_ids(tiny_model_dir, source_tokenizer, tmp_path):
    tok = tokenswap.tokenizer_train(None, 400, texts=["Guten Morgen, wie geht es dir heute?"] * 30,
                                    like=source_tokenizer)
    out = tmp_path / "chat"
    tokenswap.transfer(str(tiny_model_dir), tok, out=out)
    reloaded = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    msgs = [{"role": "user", "content": "Hallo"}]
    text = reloaded.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>user\nHallo<|im_end|>")
    assert model.config.bos_token_id == reloaded.bos_token_id == 1
    assert model.config.eos_token_id == reloaded.eos_token_id == 2
    assert model.generation_config.eos_token_id in (2, [2])


def test_existing_output_is_refused_and_untouched(tiny_model_dir, german_tokenizer, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(TokenswapError, match="--overwrite"):
        tokenswap.transfer(str(tiny_model_dir), german_tokenizer, out=out)
    assert (out / "keep.txt").read_text() == "mine"
    tokenswap.transfer(str(tiny_model_dir), german_tokenizer, out=out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "config.json").exists()


def test_failure_during_save_leaves_nothing(tiny_model_dir, german_tokenizer, tmp_path,
                                            monkeypatch):
    from transformers import PreTrainedModel

    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", boom)
    with pytest.raises(OSError):
        tokenswap.transfer(str(tiny_model_dir), german_tokenizer, out=tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_surgery_rejects_wrong_shapes(tiny_model_dir):
    bundle = load_model(str(tiny_model_dir))
    hidden = bundle.input_embeddings().shape[1]
    with pytest.raises(ValueError, match="width"):
        install_embeddings(bundle.model, torch.zeros(10, hidden + 1))
    with pytest.raises(ValueError, match="tied"):
        install_embeddings(bundle.model, torch.zeros(10, hidden), torch.zeros(10, hidden))
    bad = torch.zeros(10, hidden)
    bad[3, 0] = float("nan")
    with pytest.raises(AssertionError, match="not finite"):
        install_embeddings(bundle.model, bad)


def test_output_bias_is_transferred(tiny_model_dir, german_tokenizer):
    bundle = load_model(str(tiny_model_dir))
    # give the (untied) head a bias, as some models (e.g. Phi, some OPT variants) have
    head = torch.nn.Linear(bundle.model.config.hidden_size, bundle.model.config.vocab_size,
                           bias=True)
    with torch.no_grad():
        head.weight.copy_(bundle.input_embeddings())
        head.bias.copy_(torch.linspace(-1, 1, head.bias.shape[0]))
    bundle.model.set_output_embeddings(head)
    bundle.model.config.tie_word_embeddings = False
    result = tokenswap.transfer(bundle, german_tokenizer, method="mean")
    new_bias = result.bundle.model.get_output_embeddings().bias
    assert new_bias.shape == (len(german_tokenizer),) and torch.isfinite(new_bias).all()
    assert result.stats.output is not None


def test_vocabulary_too_large_for_memory(tiny_model_dir, german_tokenizer, tmp_path, monkeypatch):
    import tokenswap.commands.transfer as transfer_command

    monkeypatch.setattr(transfer_command, "available_memory", lambda: 1000)
    with pytest.raises(TokenswapError, match="GiB is free"):
        tokenswap.transfer(str(tiny_model_dir), german_tokenizer, out=tmp_path / "big")
    assert not (tmp_path / "big").exists()
