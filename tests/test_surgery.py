"""install_embeddings keeps the model's own modules: class, scale, padding_idx, tie, dtype.

The tiny Gemma 3 model is built here: its embedding module multiplies by sqrt(hidden), so a
transplant that swaps in a plain ``nn.Embedding`` changes the in-memory logits while a saved and
reloaded copy looks fine.
"""

from __future__ import annotations

import pytest
import torch
from conftest import ENGLISH, tiny_llama, train_sentencepiece_bpe
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
)

import tokenswap
from tokenswap.io.models import ModelBundle
from tokenswap.surgery import SurgeryError, install_embeddings

TEXT = "Die Straße ist nass, the quick brown fox."


def tiny_gemma3(tokenizer, seed: int = 0) -> Gemma3ForCausalLM:
    """Gemma 3 architecture (scaled, tied embedding; pad id -> padding_idx), 2 layers, width 64."""
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
        sliding_window=16, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return Gemma3ForCausalLM(config).eval()


def tiny_gpt2(tokenizer) -> GPT2LMHeadModel:
    torch.manual_seed(2)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                        n_positions=256, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(config).eval()


def with_bias_head(model):
    """An untied head with an output bias (Phi-style) on a tiny Llama."""
    head = nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.get_output_embeddings().weight)
        head.bias.copy_(torch.linspace(-1, 1, head.bias.shape[0]))
    model.set_output_embeddings(head)
    return model


@pytest.fixture(scope="module")
def english_sp_tokenizer():
    """A sentencepiece-style source tokenizer for the Gemma model (targets: ``sentencepiece_tokenizer``)."""
    return train_sentencepiece_bpe(ENGLISH, 380)


MODELS = {  # name -> (build from tokenizer, which tokenizer fixture is the model's own)
    "llama-tied": (lambda tok: tiny_llama(len(tok)), "source_tokenizer"),
    "llama-untied": (lambda tok: tiny_llama(len(tok), tied=False, seed=1), "source_tokenizer"),
    "llama-untied-bias": (lambda tok: with_bias_head(tiny_llama(len(tok), tied=False, seed=1)),
                          "source_tokenizer"),
    "llama-padded": (lambda tok: tiny_llama(len(tok) + 12), "source_tokenizer"),  # rows > tokens
    "llama-bf16": (lambda tok: tiny_llama(len(tok)).to(torch.bfloat16), "source_tokenizer"),
    "gpt2": (tiny_gpt2, "source_tokenizer"),
    "gemma3": (tiny_gemma3, "english_sp_tokenizer"),
}
TARGETS = {"source_tokenizer": "german_tokenizer", "english_sp_tokenizer": "sentencepiece_tokenizer"}


def build(request, name):
    make, tok_fixture = MODELS[name]
    tokenizer = request.getfixturevalue(tok_fixture)
    return make(tokenizer), tokenizer, request.getfixturevalue(TARGETS[tok_fixture])


def logits(model, tokenizer, text=TEXT):
    ids = torch.tensor([tokenizer(text).input_ids])
    with torch.no_grad():
        return model(ids).logits.float()


def same_rows(model):
    """The arguments that put the model's own matrices back: a no-op transplant."""
    head = model.get_output_embeddings()
    tied = head.weight is model.get_input_embeddings().weight
    return (model.get_input_embeddings().weight.detach().clone(),
            None if tied else head.weight.detach().clone(),
            None if head.bias is None else head.bias.detach().clone())


@pytest.mark.parametrize("name", list(MODELS))
def test_noop_transplant_keeps_modules_and_logits(request, name):
    """Putting the model's own rows back must not move its logits: on Gemma 3 a plain
    nn.Embedding in place of the scaled one loses the factor sqrt(64) = 8."""
    model, tokenizer, _ = build(request, name)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    kinds = (type(emb), type(head), emb.weight.dtype, emb.weight.device, emb.padding_idx)
    before = logits(model, tokenizer)
    install_embeddings(model, *same_rows(model), tokenizer=tokenizer)
    torch.testing.assert_close(logits(model, tokenizer), before, rtol=0, atol=0)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert (type(emb), type(head), emb.weight.dtype, emb.weight.device, emb.padding_idx) == kinds


@pytest.mark.parametrize("name", ["llama-tied", "llama-untied", "llama-padded", "gpt2", "gemma3"])
def test_in_memory_model_matches_reloaded(request, name, tmp_path):
    """What transfer() returns (and benchmarks score) computes what the saved model computes."""
    model, tokenizer, target = build(request, name)
    result = tokenswap.transfer(ModelBundle(model, tokenizer, name), target, method="mean",
                                out=tmp_path / "out")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    in_memory = result.bundle.model
    torch.testing.assert_close(logits(in_memory, target), logits(reloaded, target),
                               rtol=1e-5, atol=1e-5)
    assert type(reloaded.get_input_embeddings()) is type(in_memory.get_input_embeddings())
    assert in_memory.get_input_embeddings().padding_idx == \
        reloaded.get_input_embeddings().padding_idx


@pytest.mark.parametrize("name", ["llama-tied", "gpt2", "gemma3"])
def test_tied_model_stays_tied_in_memory(request, name):
    model, _, target = build(request, name)
    torch.manual_seed(5)
    new = torch.randn(len(target), model.get_input_embeddings().weight.shape[1]) * 0.02
    install_embeddings(model, new, tokenizer=target)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert head.weight is emb.weight
    k = 7  # a change to the input matrix shows in the output logits of that token
    assert logits(model, target)[..., k].abs().max() > 0
    with torch.no_grad():
        emb.weight[k].zero_()
    assert logits(model, target)[..., k].abs().max() == 0


def same_rows_for(model, vocab: int):
    """The model's first ``vocab`` rows (a shrinking transplant), in install_embeddings' order."""
    return tuple(None if t is None else t[:vocab] for t in same_rows(model))


@pytest.mark.parametrize("name", ["llama-tied", "llama-untied", "gemma3"])
def test_padding_idx_is_the_new_pad_id(request, name, sentencepiece_tokenizer, german_tokenizer):
    model, tokenizer, _ = build(request, name)
    assert model.get_input_embeddings().padding_idx == tokenizer.pad_token_id
    # a target whose pad id differs from the source's (<pad> is 0, <|im_end|> is 2)
    target = german_tokenizer if tokenizer.pad_token_id == 0 else sentencepiece_tokenizer
    assert target.pad_token_id != tokenizer.pad_token_id
    install_embeddings(model, *same_rows_for(model, len(target)), tokenizer=target)
    assert model.get_input_embeddings().padding_idx == target.pad_token_id
    assert model.config.pad_token_id == target.pad_token_id


def test_padding_idx_follows_the_config_without_a_tokenizer(source_tokenizer):
    model = tiny_llama(len(source_tokenizer))  # pad id 2
    install_embeddings(model, *same_rows_for(model, 50), id_map={1: 1, 2: 5})
    assert model.config.pad_token_id == 5 and model.get_input_embeddings().padding_idx == 5
    model = tiny_llama(len(source_tokenizer))
    install_embeddings(model, *same_rows_for(model, 50), id_map={})  # pad id not carried over
    assert model.config.pad_token_id is None and model.get_input_embeddings().padding_idx is None


def test_wrong_shapes_raise_a_clear_error(source_tokenizer):
    model = tiny_llama(len(source_tokenizer), tied=False)
    width = model.config.hidden_size
    with pytest.raises(SurgeryError, match=f"expected \\(vocab, {width}\\)"):
        install_embeddings(model, torch.zeros(10, width + 1), torch.zeros(10, width + 1))
    with pytest.raises(SurgeryError, match=f"output embeddings have shape \\(9, {width}\\)"):
        install_embeddings(model, torch.zeros(10, width), torch.zeros(9, width))
    with pytest.raises(SurgeryError, match="untied output head"):
        install_embeddings(model, torch.zeros(10, width))
    assert model.get_input_embeddings().weight.shape[0] == len(source_tokenizer)  # untouched


def test_unknown_vocabulary_sized_tensor_is_refused(source_tokenizer):
    model = tiny_llama(len(source_tokenizer))
    model.register_buffer("final_logits_bias", torch.zeros(len(source_tokenizer)))
    with pytest.raises(SurgeryError, match="final_logits_bias"):
        install_embeddings(model, torch.zeros(10, model.config.hidden_size))
