"""Install new embedding matrices into a model, checking every tensor name and shape.

The transplant changes exactly the vocabulary-sized tensors (input embeddings, output
embeddings, output bias), the config fields that name the vocabulary size or token ids, and
the embedding's ``padding_idx``; everything else must come out with the same names and shapes,
which :func:`install_embeddings` checks. The model keeps its own modules: only their weight
parameters are swapped, so a subclass such as Gemma 3's ``Gemma3TextScaledWordEmbedding``
keeps its ``embed_scale`` and the in-memory model computes what a saved and reloaded copy
computes. Tied models stay tied (one shared parameter); untied heads get their own matrix.

This is what ``PreTrainedModel.resize_token_embeddings`` does, minus its work on rows we are
about to overwrite: it initialises added rows at random (moving the global RNG, and slow for a
262k vocabulary) and copies the old rows over, and it replaces an untied head with a plain
``nn.Linear``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tokenswap.init.common import assert_filled

ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id",
             "decoder_start_token_id")


class SurgeryError(ValueError):
    """The new matrices do not fit the model, or the model did not come out as it should."""


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
    An embedding that has a ``padding_idx`` gets the new config's pad id (None if there is none).

    The rows are copied into new parameters of the old weights' dtype and device. Raises
    :class:`SurgeryError` when a matrix has the wrong shape or the model has a vocabulary-sized
    tensor this function does not know how to replace.
    """
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    old_vocab, width = emb.weight.shape
    new_vocab = input_embeddings.shape[0]
    has_bias = head is not None and getattr(head, "bias", None) is not None
    _check_inputs(input_embeddings, output_embeddings, output_bias, width=width, tied=tied,
                  head=head is not None, has_bias=has_bias)
    if head is not None and tuple(head.weight.shape) != (old_vocab, width):
        raise SurgeryError(f"output head {type(head).__name__} has a weight of shape "
                           f"{tuple(head.weight.shape)}, expected ({old_vocab}, {width}); "
                           "only (vocab, hidden) heads such as nn.Linear are supported")

    before = _tensors(model)
    ours = {id(emb.weight)} | ({id(head.weight)} if head is not None else set())
    ours |= {id(head.bias)} if has_bias else set()
    resized = {name for name, t in before.items() if id(t) in ours}
    strangers = sorted(name for name, t in before.items()
                       if name not in resized and t.dim() > 0 and t.shape[0] == old_vocab)
    if strangers:
        raise SurgeryError(f"the model has vocabulary-sized tensors besides its embeddings and "
                           f"head ({', '.join(strangers)}); tokenswap cannot resize them")
    shapes = {name: tuple(t.shape) for name, t in before.items()}
    classes = (type(emb), type(head))
    old_sizes = {old_vocab, getattr(model.config.get_text_config(), "vocab_size", old_vocab)}

    emb.weight = _parameter(input_embeddings, like=emb.weight)
    emb.num_embeddings = new_vocab
    if head is not None:
        head.weight = emb.weight if tied else _parameter(output_embeddings, like=head.weight)
        if has_bias:
            head.bias = _parameter(output_bias.reshape(-1), like=head.bias)
        if hasattr(head, "out_features"):
            head.out_features = new_vocab

    configs = {id(c): c for c in (model.config, model.config.get_text_config())}.values()
    for config in configs:
        if hasattr(config, "vocab_size"):
            config.vocab_size = new_vocab
    for module in model.modules():  # e.g. Gemma3ForCausalLM passes self.vocab_size to its loss
        if isinstance(getattr(module, "vocab_size", None), int) and module.vocab_size in old_sizes:
            module.vocab_size = new_vocab
    _update_ids(model, tokenizer, id_map or {})
    if emb.padding_idx is not None:
        emb.padding_idx = _padding_idx(model.config.get_text_config(), new_vocab)

    _check_result(model, shapes, resized, classes, new_vocab=new_vocab, tied=tied)
    return model


def _check_inputs(input_embeddings, output_embeddings, output_bias, *, width: int, tied: bool,
                  head: bool, has_bias: bool) -> None:
    if input_embeddings.dim() != 2 or input_embeddings.shape[1] != width:
        raise SurgeryError(f"input embeddings have shape {tuple(input_embeddings.shape)}, "
                           f"expected (vocab, {width}): width {width} is the model's")
    new_vocab = input_embeddings.shape[0]
    if tied and output_embeddings is not None:
        raise SurgeryError("the model is tied: pass only input embeddings")
    if head and not tied and output_embeddings is None:
        raise SurgeryError("the model has an untied output head: pass output embeddings too")
    if not head and output_embeddings is not None:
        raise SurgeryError("the model has no output head: pass only input embeddings")
    if has_bias != (output_bias is not None):
        raise SurgeryError(f"the model's head {'has' if has_bias else 'has no'} bias; "
                           f"output_bias {'missing' if has_bias else 'must be None'}")
    assert_filled(input_embeddings, "input embeddings")
    if output_embeddings is not None:
        if tuple(output_embeddings.shape) != (new_vocab, width):
            raise SurgeryError(f"output embeddings have shape {tuple(output_embeddings.shape)}, "
                               f"expected ({new_vocab}, {width}) like the input embeddings")
        assert_filled(output_embeddings, "output embeddings")
    if output_bias is not None and output_bias.numel() != new_vocab:
        raise SurgeryError(f"output bias has {output_bias.numel()} values, expected {new_vocab}")


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every state-dict entry, as the live parameter or buffer (tied weights appear twice)."""
    return model.state_dict(keep_vars=True)


def _parameter(rows: torch.Tensor, like: nn.Parameter) -> nn.Parameter:
    """A new parameter holding a copy of ``rows`` with the dtype, device and grad flag of ``like``."""
    data = torch.empty(rows.shape, dtype=like.dtype, device=like.device)
    with torch.no_grad():
        data.copy_(rows.detach())
    return nn.Parameter(data, requires_grad=like.requires_grad)


def _padding_idx(config, new_vocab: int) -> int | None:
    """The new pad id as the (already updated) config names it, as transformers would load it."""
    pad = getattr(config, "pad_token_id", None)
    if pad is None:
        return None
    if not 0 <= pad < new_vocab:
        raise SurgeryError(f"pad token id {pad} is outside the new vocabulary of {new_vocab}")
    return pad


def _check_result(model: PreTrainedModel, shapes: dict[str, tuple[int, ...]], resized: set[str],
                  classes: tuple[type, type], *, new_vocab: int, tied: bool) -> None:
    """Same tensor names, same module classes, new shapes only where the vocabulary is."""
    after = {name: tuple(t.shape) for name, t in _tensors(model).items()}
    if set(after) != set(shapes):
        raise SurgeryError(f"tensor names changed: +{sorted(set(after) - set(shapes))} "
                           f"-{sorted(set(shapes) - set(after))}")
    for name, shape in shapes.items():
        expected = (new_vocab, *shape[1:]) if name in resized else shape
        if after[name] != expected:
            raise SurgeryError(f"{name} came out with shape {after[name]}, expected {expected}")
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if (type(emb), type(head)) != classes:
        raise SurgeryError(f"embedding modules changed class: {classes[0].__name__} -> "
                           f"{type(emb).__name__}, {classes[1].__name__} -> {type(head).__name__}")
    if tied and head.weight is not emb.weight:
        raise SurgeryError("the tied model came out untied: the head has its own weight")
    config_vocab = getattr(model.config.get_text_config(), "vocab_size", new_vocab)
    if config_vocab != new_vocab:
        raise SurgeryError(f"config vocab_size is {config_vocab}, the embeddings have {new_vocab} rows")


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

    targets = list({id(c): c for c in (model.config, model.config.get_text_config())}.values())
    if getattr(model, "generation_config", None) is not None:
        targets.append(model.generation_config)
    for config in targets:
        for field in ID_FIELDS:
            if hasattr(config, field):
                setattr(config, field, translate(getattr(config, field), field))
