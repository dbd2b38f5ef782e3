"""Prefill with dynamic tokens; score or generate what follows with the base tokenizer.

A context goes into the model as ``inputs_embeds``: one document-start token (as
:mod:`tokenswap.scoring.bpb` prefixes every document), then one row per token of the merged
sequence (base rows for base tokens, :class:`~tokenswap.dynamic.embed.MergedEmbeddings` rows
for new ones). Positions are the merged sequence's positions (0, 1, 2, ... over the shorter
sequence). The continuation is tokenized by the base tokenizer on its own and scored (or
generated) over the base vocabulary, so a dynamically tokenized context and the base-tokenized
context are compared on the same continuation tokens and bytes:

    bits/byte = sum over continuation tokens of -log2 p(token | context, earlier tokens)
                / UTF-8 bytes of the continuation

With no merges (reduction 0) the prefill is the base tokenization, through the same
``inputs_embeds`` path (tests check it equals scoring with ``input_ids``). Works with any causal
LM whose ``forward`` takes ``inputs_embeds`` (transformers' Llama, GPT-2, Gemma, ...); batches are
padded on the right with an attention mask, on the model's device. A model that scales its
input embeddings inside the embedding module (Gemma's ``embed_scale``) gets new rows scaled
alike.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tokenswap.dynamic.merge import MergedBatch
from tokenswap.errors import TokenswapError

_LN2 = math.log(2.0)


def check_model(model) -> None:
    """One line when ``model``'s forward cannot take ``inputs_embeds``."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}
    if "inputs_embeds" not in params or model.get_input_embeddings() is None:
        raise TokenswapError(f"{type(model).__name__}.forward takes no inputs_embeds: dynamic "
                             "tokenization needs a causal LM that accepts embeddings as input")


def context_embeddings(model, merged: MergedBatch, start_id: int | None, embeddings=None
                       ) -> list[torch.Tensor]:
    """Per text, the (T_i, H) input rows of ``[start] + merged sequence`` in the model's dtype.

    ``embeddings`` (a :class:`~tokenswap.dynamic.embed.MergedEmbeddings`) gives the new tokens'
    rows; it may be None only when the batch has no new tokens.
    """
    check_model(model)
    layer = model.get_input_embeddings()
    weight = layer.weight
    used = merged.used_new_tokens()
    if used and embeddings is None:
        raise TokenswapError("the batch has merged tokens but no embeddings were given for them")
    new = torch.zeros((0, weight.shape[1]), dtype=weight.dtype, device=weight.device)
    if used:
        rows = embeddings.rows([merged.new_tokens[k] for k in used])
        new = (rows * getattr(layer, "embed_scale", 1.0)).to(weight.device, weight.dtype)
    slot = {merged.base_size + k: i for i, k in enumerate(used)}
    out = []
    with torch.no_grad():
        for seq in merged.sequences:
            ids = ([start_id] if start_id is not None else []) + seq
            base = torch.tensor([t if t < merged.base_size else 0 for t in ids],
                                device=weight.device)
            rows = layer(base)
            is_new = [i for i, t in enumerate(ids) if t >= merged.base_size]
            if is_new:
                rows[torch.tensor(is_new, device=weight.device)] = new[
                    torch.tensor([slot[ids[i]] for i in is_new], device=weight.device)]
            out.append(rows)
    return out


def split_continuation(tokenizer, text: str, nbytes: int) -> tuple[str, str]:
    """``(context, continuation)``: the continuation is about the last ``nbytes`` bytes of
    ``text``, starting at the first pre-tokenizer word start at or after that point (so both
    parts tokenize as they would inside the whole text)."""
    from tokenswap.dynamic.merge import _Rules, _word_starts

    if nbytes < 1:
        raise TokenswapError(f"--continuation-bytes must be at least 1, got {nbytes}")
    data = text.encode("utf-8")
    if nbytes >= len(data):
        raise TokenswapError(f"a text of {len(data)} bytes is too short to score its last "
                             f"{nbytes} bytes after a context")
    starts = sorted(p for p in _word_starts(_Rules(tokenizer), text) if p >= len(data) - nbytes)
    if not starts or not text.encode("utf-8")[: starts[0]].strip():
        raise TokenswapError(f"a text of {len(data)} bytes is too short to score its last "
                             f"{nbytes} bytes after a context")
    cut = starts[0]
    return data[:cut].decode("utf-8"), data[cut:].decode("utf-8")


@dataclass
class ContinuationScore:
    """Bits of each text's continuation given its (merged) context."""

    bits: list[float]
    bytes: list[int]
    tokens: list[int]  # continuation tokens per text
    context_tokens: list[int]  # prefilled positions per text (document start included)

    @property
    def bits_per_byte(self) -> float:
        return sum(self.bits) / max(1, sum(self.bytes))

    def to_dict(self) -> dict:
        return {"bits": sum(self.bits), "bytes": sum(self.bytes), "tokens": sum(self.tokens),
                "context_tokens": sum(self.context_tokens), "bits_per_byte": self.bits_per_byte}


@torch.no_grad()
def score_continuations(model, tokenizer, merged: MergedBatch, continuations: Sequence[str],
                        embeddings=None, *, batch_size: int = 4) -> ContinuationScore:
    """Bits of ``continuations[i]`` (base tokens) after the merged context ``i``."""
    from tokenswap.scoring.bpb import document_start_id

    if len(continuations) != len(merged.sequences):
        raise TokenswapError(f"{len(continuations)} continuations for "
                             f"{len(merged.sequences)} contexts")
    if any(not c for c in continuations):
        raise TokenswapError("a continuation is empty: there is nothing to score")
    contexts = context_embeddings(model, merged, document_start_id(tokenizer), embeddings)
    cont_ids = [list(ids) for ids in tokenizer(list(continuations), add_special_tokens=False,
                                               split_special_tokens=True)["input_ids"]]
    layer = model.get_input_embeddings()
    device = layer.weight.device
    bits = [0.0] * len(contexts)
    order = sorted(range(len(contexts)), key=lambda i: -(len(contexts[i]) + len(cont_ids[i])))
    for lo in range(0, len(order), batch_size):
        rows = order[lo: lo + batch_size]
        seqs = [torch.cat([contexts[i], layer(torch.tensor(cont_ids[i], device=device))])
                for i in rows]
        width = max(len(s) for s in seqs)
        embeds = torch.zeros((len(rows), width, seqs[0].shape[1]), dtype=seqs[0].dtype,
                             device=device)  # (B, T, H)
        mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        for r, s in enumerate(seqs):
            embeds[r, : len(s)] = s
            mask[r, : len(s)] = 1
        logits = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
        for r, i in enumerate(rows):
            n, m = len(contexts[i]), len(cont_ids[i])
            picked = logits[r, n - 1: n - 1 + m].float()  # (m, V): predicts the continuation
            target = torch.tensor(cont_ids[i], device=picked.device)
            logp = picked.gather(1, target[:, None]).squeeze(1) - torch.logsumexp(picked, -1)
            bits[i] = float(-logp.double().sum() / _LN2)
        del logits
    return ContinuationScore(bits, [len(c.encode("utf-8")) for c in continuations],
                             [len(c) for c in cont_ids], [len(c) for c in contexts])


@torch.no_grad()
def generate(model, tokenizer, merged: MergedBatch, embeddings=None, *, index: int = 0,
             max_new_tokens: int = 32) -> list[int]:
    """Greedy base tokens after the merged context ``index`` (prefilled through
    ``inputs_embeds``, then decoded with the model's KV cache)."""
    from tokenswap.scoring.bpb import document_start_id

    if max_new_tokens < 1:
        raise TokenswapError(f"--generate must be at least 1, got {max_new_tokens}")
    single = MergedBatch(merged.base_size, [merged.sequences[index]], merged.new_tokens,
                         [merged.base_lengths[index]], merged.merges, merged.vocab)
    embeds = context_embeddings(model, single, document_start_id(tokenizer), embeddings)[0]
    mask = torch.ones((1, len(embeds)), dtype=torch.long, device=embeds.device)
    out = model.generate(inputs_embeds=embeds[None], attention_mask=mask, do_sample=False,
                         max_new_tokens=max_new_tokens,
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return out[0].tolist()


__all__ = ["ContinuationScore", "check_model", "context_embeddings", "generate",
           "score_continuations", "split_continuation"]
