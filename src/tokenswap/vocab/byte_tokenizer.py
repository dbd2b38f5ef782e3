"""A byte-level target tokenizer: one token per byte, plus the source model's special tokens.

``tokenswap transfer --tokenizer bytes`` makes a model read raw UTF-8 bytes (the "to bytes"
target of ALM, Minixhofer, Vulić & Ponti, arXiv 2503.20083). :func:`byte_tokenizer` builds it
with the ``tokenizers`` library as a byte-level BPE with no merges, so it is an ordinary
``PreTrainedTokenizerFast``: ``save_pretrained`` writes it and ``AutoTokenizer`` loads it back.

- The 256 byte tokens are written in GPT-2's ``bytes_to_unicode`` alphabet (``'Ġ'`` is the
  space byte), so :class:`~tokenswap.vocab.bytes.ByteVocab` reads it as ``BYTE_LEVEL`` and every
  token emits exactly one byte. A source token that emits the same single byte is an exact
  match (its row is copied); a byte no source token emits alone falls back (SmolLM2: 21 of 256).
- The source's special tokens come first, with the same contents, order and strip flags (ChatML's
  ``<|im_start|>`` stays id 1 for SmolLM2), then byte ``b`` at id ``len(specials) + b``. Roles
  (bos, eos, pad, unk) naming a carried special keep it; the chat template, the maximum length
  and the post-processor (a bos the source adds on encoding) are carried over, with ids remapped.
- The pre-tokenizer is GPT-2's regex ``ByteLevel`` (no prefix space): with no merges it cannot
  change the ids. ``tokenswap export`` still refuses the model: a GGUF cannot hold the empty
  merge list llama.cpp's gpt2 vocabulary requires.

Left out: the source's non-special added tokens (a byte tokenizer emits bytes, not words), and
roles pointing at ordinary text tokens; both are dropped.

>>> tok = byte_tokenizer()
>>> ids = tok.encode("Grüße", add_special_tokens=False)
>>> len(ids), tok.decode(ids)
(7, 'Grüße')
"""

from __future__ import annotations

import json
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from tokenswap.errors import TokenswapError
from tokenswap.vocab.bytes import ByteVocab, bytes_to_unicode
from tokenswap.vocab.train import ROLES

BYTES = "bytes"  # the --tokenizer spec that names this tokenizer


def carried_specials(like: PreTrainedTokenizerBase | None) -> list[AddedToken]:
    """The special tokens of ``like`` in id order, with their added-token flags (none without
    ``like``). Special as :class:`~tokenswap.vocab.bytes.ByteVocab` reads them: SentencePiece
    ``<0xNN>`` byte-fallback tokens registered as special are bytes, not carried."""
    if like is None:
        return []
    added = getattr(like, "added_tokens_decoder", {})
    out = []
    for content, tid in sorted(ByteVocab.from_tokenizer(like).special_ids.items(),
                               key=lambda item: item[1]):
        flags = added.get(tid)
        out.append(AddedToken(content, special=True, normalized=False, **(
            {"single_word": flags.single_word, "lstrip": flags.lstrip, "rstrip": flags.rstrip}
            if flags is not None else {})))
    return out


def byte_tokenizer(like: PreTrainedTokenizerBase | None = None) -> PreTrainedTokenizerFast:
    """256 byte tokens plus ``like``'s special tokens, roles, chat template and post-processor
    (see module docstring); without ``like``, the 256 byte tokens alone."""
    specials = carried_specials(like)
    table = bytes_to_unicode()
    vocab = {t.content: i for i, t in enumerate(specials)}
    clash = [c for c in vocab if c in table.values()]
    if clash:
        raise TokenswapError(f"cannot build a byte tokenizer: the special token {clash[0]!r} is "
                             "also a byte symbol")
    vocab.update({table[b]: len(specials) + b for b in range(256)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    post = _post_processor(like, vocab)
    if post is not None:
        spec = json.loads(tok.to_str())
        spec["post_processor"] = post
        tok = Tokenizer.from_str(json.dumps(spec))
    carried = {t.content for t in specials}
    roles = {role: str(getattr(like, role)) for role in ROLES
             if str(getattr(like, role, None)) in carried}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False,
                                   **roles)
    if like is not None:
        fast.chat_template = getattr(like, "chat_template", None)
        fast.model_max_length = like.model_max_length
    return fast


def _post_processor(like: PreTrainedTokenizerBase | None, vocab: dict[str, int]
                    ) -> dict[str, Any] | None:
    """``like``'s post-processor definition with every special token id remapped to ``vocab``."""
    backend = getattr(like, "backend_tokenizer", None)
    if backend is None:
        return None
    post = json.loads(backend.to_str()).get("post_processor")

    def new_id(content: str) -> int:
        if content not in vocab:
            raise TokenswapError(f"cannot build a byte tokenizer: the source adds {content!r} "
                                 "on encoding but it is not one of its special tokens")
        return vocab[content]

    def remap(node: Any) -> Any:
        if isinstance(node, list):
            return [remap(x) for x in node]
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        if kind == "TemplateProcessing":
            tokens = {name: {**t, "ids": [new_id(c) for c in t["tokens"]]}
                      for name, t in node.get("special_tokens", {}).items()}
            return {**node, "special_tokens": tokens}
        if kind in ("BertProcessing", "RobertaProcessing"):
            return {**node, **{k: [node[k][0], new_id(node[k][0])] for k in ("cls", "sep")}}
        return {k: remap(v) for k, v in node.items()}

    return remap(post) if post is not None else None


__all__ = ["BYTES", "byte_tokenizer", "carried_specials"]
