"""Which parameters train: the embeddings first, then the whole model or LoRA adapters.

A transferred model's new embeddings sit in a body that has never seen them. Tuning the
embeddings alone first (input and output embeddings and the output bias; the body frozen)
lets the new vocabulary settle before the body moves (the two-stage recipe of Dobler & de Melo,
"FOCUS", arXiv 2305.14481, and of "Language Adaptation on a Tight Academic Compute Budget:
Tokenizer Swapping Works and Pure bfloat16 Is Enough"). Then one of

* ``full``: every parameter;
* ``lora``: low-rank adapters (Hu et al., arXiv 2106.09685) on the linear layers, built by
  ``peft``; the embeddings keep training (a new vocabulary cannot be learned by adapters on the
  body). The output is merged: a plain model with no adapter left;
* ``embeddings``: the embeddings for the whole run.

One optimizer holds every parameter that trains in any stage, in two groups (embeddings, body);
a stage switch only flips ``requires_grad``, and AdamW skips parameters without a gradient, so
checkpoints and resumes see the same optimizer throughout.
"""

from __future__ import annotations

import copy

from torch import nn

from tokenswap.errors import TokenswapError
from tokenswap.tuning.config import Stage, TuneConfig


def embedding_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Input embeddings, output embeddings (when untied) and output bias, each once."""
    params: list[nn.Parameter] = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None:
        for p in (head.weight, getattr(head, "bias", None)):
            if isinstance(p, nn.Parameter) and all(p is not q for q in params):
                params.append(p)
    return params


def add_lora(model: nn.Module, cfg: TuneConfig) -> nn.Module:
    """Wrap ``model`` with peft LoRA adapters (the base weights stay as they are)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise TokenswapError("stage lora needs peft: pip install 'tokenswap[lora]' "
                             "(or pip install peft)") from err
    targets = cfg.lora_targets if cfg.lora_targets == "all-linear" else \
        [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as err:
        raise TokenswapError(f"cannot add LoRA adapters: {str(err).splitlines()[0]}; check "
                             "--option lora_targets") from err


def parameter_groups(model: nn.Module, cfg: TuneConfig) -> tuple[list[nn.Parameter],
                                                                  list[nn.Parameter]]:
    """(embedding parameters, body parameters that ever train) of a prepared model."""
    emb = embedding_parameters(model)
    if cfg.stage == Stage.EMBEDDINGS:
        return emb, []
    ids = {id(p) for p in emb}
    named = list(model.named_parameters())
    if cfg.stage == Stage.LORA:
        body = [p for n, p in named if "lora_" in n and id(p) not in ids]
    else:
        body = [p for _, p in named if id(p) not in ids]
    return emb, body


def set_stage(model: nn.Module, emb: list[nn.Parameter], body: list[nn.Parameter],
              embeddings_only: bool) -> None:
    """Freeze everything but the parameters of the current stage."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in emb:
        p.requires_grad_(True)
    if not embeddings_only:
        for p in body:
            p.requires_grad_(True)


def plain_model(model: nn.Module) -> nn.Module:
    """A transformers model without adapters: LoRA merged into a copy, else ``model`` itself."""
    if hasattr(model, "merge_and_unload"):
        merged = copy.deepcopy(model).merge_and_unload()
        for p in merged.parameters():
            p.requires_grad_(False)
        return merged
    return model


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

