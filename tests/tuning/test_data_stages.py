"""Packing, batch order and which parameters each stage trains."""

from __future__ import annotations

import pytest
import torch
from conftest import ENGLISH, GERMAN, tiny_llama

from tokenswap.errors import TokenswapError
from tokenswap.scoring.bpb import document_start_id
from tokenswap.tuning.config import Stage, TuneConfig
from tokenswap.tuning.data import batch_indices, pack, rank_micro_batches
from tokenswap.tuning.stages import (
    add_lora,
    embedding_parameters,
    parameter_groups,
    plain_model,
    set_stage,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pack_is_the_bpb_encoding_with_document_starts(german_tokenizer):
    blocks = pack(german_tokenizer, GERMAN[:4], 8)  # (N, 8)
    start = document_start_id(german_tokenizer)
    stream = []
    for text in GERMAN[:4]:
        stream += [start, *german_tokenizer(text, add_special_tokens=False)["input_ids"]]
    assert blocks.shape == (len(stream) // 8, 8)
    assert blocks.reshape(-1).tolist() == stream[: blocks.numel()]
    assert german_tokenizer.decode([t for t in blocks.reshape(-1).tolist() if t != start]
                                   ).startswith(GERMAN[0] + GERMAN[1])


def test_pack_refuses_too_little_text(german_tokenizer):
    with pytest.raises(TokenswapError, match="less than one sequence of --seq-len 512"):
        pack(german_tokenizer, ["kurz"], 512)


def test_batches_cover_each_epoch_and_split_over_ranks():
    seen = [i for s in range(5) for i in batch_indices(10, s, 2, seed=1)]
    assert sorted(seen) == list(range(10))
    assert batch_indices(10, 7, 4, seed=1) == batch_indices(10, 7, 4, seed=1)
    assert batch_indices(10, 0, 4, seed=1) != batch_indices(10, 0, 4, seed=2)
    batch = list(range(8))
    parts = [rank_micro_batches(batch, r, 2, 2) for r in range(2)]
    assert sorted(i for p in parts for mb in p for i in mb) == batch
    with pytest.raises(TokenswapError, match="multiple of ranks x grad_accum"):
        rank_micro_batches(list(range(6)), 0, 2, 2)


def test_config_errors_are_readable():
    with pytest.raises(TokenswapError, match="--steps or --minutes"):
        TuneConfig()
    with pytest.raises(TokenswapError, match="did you mean 'lora'"):
        TuneConfig(steps=1, stage="lorra")
    with pytest.raises(TokenswapError, match="unknown tuning option 'stpes'"):
        TuneConfig.from_options(stpes=3)
    assert TuneConfig(steps=1, precision="bf16").to_dict()["precision"] == "bf16"


@pytest.mark.parametrize("tied", [True, False])
def test_stages_pick_the_embeddings_and_the_body(source_tokenizer, tied):
    model = tiny_llama(len(source_tokenizer), tied=tied)
    emb = embedding_parameters(model)
    assert len(emb) == (1 if tied else 2)
    cfg = TuneConfig(steps=1)
    emb, body = parameter_groups(model, cfg)
    everything = {id(p) for p in model.parameters()}
    assert {id(p) for p in emb} | {id(p) for p in body} == everything
    set_stage(model, emb, body, embeddings_only=True)
    assert {id(p) for p in model.parameters() if p.requires_grad} == {id(p) for p in emb}
    set_stage(model, emb, body, embeddings_only=False)
    assert all(p.requires_grad for p in model.parameters())
    assert parameter_groups(model, TuneConfig(steps=1, stage="embeddings"))[1] == []


def test_lora_trains_adapters_and_embeddings_and_merges_to_a_plain_model(source_tokenizer):
    cfg = TuneConfig(steps=1, stage=Stage.LORA, lora_rank=4)
    base = tiny_llama(len(source_tokenizer))
    ids = torch.tensor([source_tokenizer(ENGLISH[0])["input_ids"]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
    model = add_lora(base, cfg)
    emb, body = parameter_groups(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    assert body and all("lora_" in names[id(p)] for p in body)
    assert model.get_input_embeddings().weight in emb
    with torch.no_grad():  # lora_B starts at zero: the adapted model is the base model
        torch.testing.assert_close(model(input_ids=ids).logits, before)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
        adapted = model(input_ids=ids).logits
    plain = plain_model(model)
    assert not any("lora" in n for n, _ in plain.named_parameters())
    assert type(plain).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, adapted, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(adapted, before)


def test_lora_with_a_bad_target_is_a_readable_error(source_tokenizer):
    cfg = TuneConfig(steps=1, stage=Stage.LORA, lora_targets="no_such_module")
    with pytest.raises(TokenswapError, match="cannot add LoRA adapters"):
        add_lora(tiny_llama(len(source_tokenizer)), cfg)
