"""Install new embedding matrices into a model, asserting every tensor name and shape.

The transplant changes exactly the vocabulary-sized tensors (input embeddings, output
embeddings, output bias) and the config fields that name token ids; everything else must come
out with the same names and shapes, which :func:`install_embeddings` checks. Tied models stay
tied (one shared parameter); untied heads get their own matrix.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tokenswap.init.common import assert_filled

ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id",
             "decoder_start_token_id")


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def install_embeddings(
    model: PreTrainedModel,
    input_embeddings: torch.Tensor,
    output_embeddings: torch.Tensor | None = None,
    output_bias: torch.Tensor | None = None,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    id_map: dict[int, int] | None = None,
) -> PreTrainedModel:
    """Replace the vocabulary of ``model`` in place and return it.

    ``input_embeddings`` is (V_t, H). ``output_embeddings`` is (V_t, H) for an untied model and
    must be None for a tied one. ``output_bias`` (V_t,) is required iff the head has a bias.
    ``tokenizer`` supplies the new bos/eos/pad/unk ids; ``id_map`` (source id -> target id)
    translates any other id the config names (e.g. a list of eos ids in generation_config).
    """
    old_in = model.get_input_embeddings()
    old_out = model.get_output_embeddings()
    tied = old_out is not None and old_out.weight is old_in.weight
    new_vocab, hidden = input_embeddings.shape
    old_vocab = old_in.weight.shape[0]
    if hidden != old_in.weight.shape[1]:
        raise ValueError(f"input embeddings have width {hidden}, the model {old_in.weight.shape[1]}")
    if tied and output_embeddings is not None:
        raise ValueError("the model is tied: pass only input embeddings")
    if old_out is not None and not tied and output_embeddings is None:
        raise ValueError("the model has an untied output head: pass output embeddings too")
    has_bias = old_out is not None and getattr(old_out, "bias", None) is not None
    if has_bias != (output_bias is not None):
        raise ValueError(f"the model's head {'has' if has_bias else 'has no'} bias; "
                         f"output_bias {'missing' if has_bias else 'must be None'}")
    assert_filled(input_embeddings, "input embeddings")
    if output_embeddings is not None:
        assert_filled(output_embeddings, "output embeddings")
        assert output_embeddings.shape == (new_vocab, hidden), output_embeddings.shape

    before = _shapes(model)
    vocab_keys = {n for n, s in before.items() if s[:1] == (old_vocab,)
                  and ("embed" in n or "wte" in n or "lm_head" in n or "word_embeddings" in n)}
    dtype, device = old_in.weight.dtype, old_in.weight.device

    new_in = nn.Embedding(new_vocab, hidden, padding_idx=None, dtype=dtype, device=device)
    with torch.no_grad():
        new_in.weight.copy_(input_embeddings.to(device=device, dtype=dtype))
    model.set_input_embeddings(new_in)
    if old_out is not None:
        new_out = nn.Linear(hidden, new_vocab, bias=has_bias, dtype=dtype, device=device)
        if tied:
            new_out.weight = new_in.weight
        else:
            with torch.no_grad():
                new_out.weight.copy_(output_embeddings.to(device=device, dtype=dtype))
        if has_bias:
            with torch.no_grad():
                new_out.bias.copy_(output_bias.reshape(-1).to(device=device, dtype=dtype))
        model.set_output_embeddings(new_out)

    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.vocab_size = new_vocab
    _update_ids(model, tokenizer, id_map or {})

    after = _shapes(model)
    if set(after) != set(before):
        raise AssertionError(f"tensor names changed: +{set(after) - set(before)} "
                             f"-{set(before) - set(after)}")
    for name, shape in before.items():
        expected = (new_vocab, *shape[1:]) if name in vocab_keys else shape
        if after[name] != expected:
            raise AssertionError(f"{name}: shape {after[name]}, expected {expected}")
    new_out = model.get_output_embeddings()
    if tied and new_out is not None:
        assert new_out.weight is model.get_input_embeddings().weight, "tied model came out untied"
    return model


def _update_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None,
                id_map: dict[int, int]) -> None:
    def translate(value, field):
        from_tokenizer = getattr(tokenizer, field, None) if tokenizer is not None else None
        if isinstance(value, list):
            mapped = [id_map[v] for v in value if v in id_map]
            if from_tokenizer is not None and from_tokenizer not in mapped:
                mapped.insert(0, from_tokenizer)
            return mapped or None
        if from_tokenizer is not None:
            return from_tokenizer
        return id_map.get(value) if value is not None else None

    targets = [model.config]
    if getattr(model, "generation_config", None) is not None:
        targets.append(model.generation_config)
    for config in targets:
        for field in ID_FIELDS:
            if hasattr(config, field):
                setattr(config, field, translate(getattr(config, field), field))
