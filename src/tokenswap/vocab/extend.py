"""Vocabulary extension: keep the source vocabulary and add the most useful target tokens.

The low-resource setting of "Vocabulary Expansion for Low-resource Cross-lingual Transfer"
(Yamaguchi et al., 2024, arXiv 2406.11477): instead of replacing the tokenizer, append the new
tokens of a target tokenizer trained on the target language to the source one. Every source
token keeps its id (and therefore its embedding), so the model reads the source language as
before, and the appended tokens shorten the target language.

For two BPE tokenizers of the same family the merge lists are combined: the source's merges
keep their priority, then the target's merges (in the target's order, most frequent first)
whose result is new are appended, up to ``max_new`` new tokens. Base symbols the source lacks
(SmolLM2 lacks 21 of the 256 byte symbols) are added first, so the extended tokenizer can
encode every byte the target can.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from tokenswap.errors import TokenswapError
from tokenswap.vocab.bytes import ByteVocab


def _merge_pair(merge) -> tuple[str, str]:
    return tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ", 1))


def extend_tokenizer(source: PreTrainedTokenizerBase, target: PreTrainedTokenizerBase,
                     max_new: int | None = None) -> PreTrainedTokenizerFast:
    """The source tokenizer plus up to ``max_new`` new tokens learned from ``target``'s merges."""
    src_spec = json.loads(source.backend_tokenizer.to_str())
    tgt_spec = json.loads(target.backend_tokenizer.to_str())
    if src_spec["model"]["type"] != "BPE" or tgt_spec["model"]["type"] != "BPE":
        raise TokenswapError("vocabulary extension needs two BPE tokenizers (got "
                             f"{src_spec['model']['type']} and {tgt_spec['model']['type']})")
    src_family = ByteVocab.from_tokenizer(source).family
    tgt_family = ByteVocab.from_tokenizer(target).family
    if src_family != tgt_family:
        raise TokenswapError(f"vocabulary extension needs tokenizers of one family (source "
                             f"{src_family.value}, target {tgt_family.value}); train the target "
                             "with the source's kind")

    model = src_spec["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [list(_merge_pair(m)) for m in model["merges"]]
    next_id = max([*vocab.values(), *(t["id"] for t in src_spec["added_tokens"])]) + 1
    limit = float("inf") if max_new is None else max_new
    added = 0
    target_specials = set(target.all_special_tokens)

    def add(token: str) -> None:
        nonlocal next_id, added
        vocab[token] = next_id
        next_id += 1
        added += 1

    # 1. base symbols of the target (single characters) the source cannot produce
    for token in tgt_spec["model"]["vocab"]:
        if added >= limit:
            break
        if len(token) == 1 and token not in vocab and token not in target_specials:
            add(token)
    # 2. the target's merges, in its priority order
    for left, right in (_merge_pair(m) for m in tgt_spec["model"]["merges"]):
        if added >= limit:
            break
        merged = left + right
        if merged in vocab or left not in vocab or right not in vocab:
            continue
        add(merged)
        merges.append([left, right])
    model["vocab"] = vocab
    model["merges"] = merges
    tok = Tokenizer.from_str(json.dumps(src_spec))
    roles = {r: str(getattr(source, r)) for r in ("bos_token", "eos_token", "pad_token",
                                                   "unk_token") if getattr(source, r, None)}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **roles)
    fast.chat_template = getattr(source, "chat_template", None)
    fast.model_max_length = source.model_max_length
    return fast
