"""Train a target tokenizer on the user's text with the `tokenizers` library.

The new tokenizer carries over the source model's special and added tokens (same contents, same
order, so ChatML's ``<|im_start|>`` stays id 1 for SmolLM2), its roles (bos, eos, pad, unk) and
its chat template, so the transferred model still speaks its chat format.

Two kinds:

- ``bpe``: byte-level BPE (GPT-2 / SmolLM2 / Llama-3 style). It can encode any byte string. When
  the source is byte-level too, its pre-tokenizer (regex split, digit handling) is reused.
- ``unigram``: a SentencePiece-style UnigramLM with ``▁`` for spaces and ``<0xNN>`` byte
  fallback pieces for every byte, so it also encodes any text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from tokenswap.errors import TokenswapError
from tokenswap.vocab.kinds import TokenizerKind

ROLES = ("bos_token", "eos_token", "pad_token", "unk_token")


def carried_tokens(like: PreTrainedTokenizerBase | None) -> tuple[list[str], dict[str, str]]:
    """Added/special token contents of ``like`` in id order, and its roles (role -> content)."""
    if like is None:
        return ["<|endoftext|>"], {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                                   "unk_token": "<|endoftext|>"}
    added = sorted(like.added_tokens_decoder.items())
    contents = [tok.content for _, tok in added]
    roles = {role: str(getattr(like, role)) for role in ROLES if getattr(like, role, None)}
    for content in roles.values():
        if content not in contents:
            contents.append(content)
    return contents, roles


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    kind: TokenizerKind | str = TokenizerKind.BPE,
    like: PreTrainedTokenizerBase | None = None,
    min_frequency: int = 2,
    progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a tokenizer of ``vocab_size`` tokens in total (special and byte tokens included)."""
    kind = TokenizerKind(kind)
    specials, roles = carried_tokens(like)
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise TokenswapError("cannot train a tokenizer on an empty corpus; pass files with text")
    floor = len(specials) + 256 + 1
    if vocab_size < floor:
        raise TokenswapError(
            f"--vocab-size {vocab_size} is too small: the {len(specials)} carried special tokens and "
            f"256 byte tokens need at least {floor}"
        )
    if kind is TokenizerKind.BPE:
        tok = _train_bpe(texts, vocab_size, specials, like, min_frequency, progress)
    else:
        tok = _train_unigram(texts, vocab_size, specials, roles, progress)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **roles)
    if like is not None:
        fast.chat_template = getattr(like, "chat_template", None)
        fast.model_max_length = like.model_max_length
        fast.add_bos_token = getattr(like, "add_bos_token", False)
    return fast


def _source_pre_tokenizer(like: PreTrainedTokenizerBase | None):
    if like is None or not hasattr(like, "backend_tokenizer"):
        return None
    spec = json.loads(like.backend_tokenizer.to_str())
    pre = spec.get("pre_tokenizer")
    if pre and "ByteLevel" in json.dumps(pre):
        return like.backend_tokenizer.pre_tokenizer
    return None


def _train_bpe(texts: Sequence[str], vocab_size: int, specials: list[str], like,
               min_frequency: int, progress: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = _source_pre_tokenizer(like) or pre_tokenizers.ByteLevel(
        add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=progress,
    )
    interruptible(tok.train_from_iterator, texts, trainer, length=len(texts))
    return tok


def _train_unigram(texts: Sequence[str], vocab_size: int, specials: list[str],
                   roles: dict[str, str], progress: bool) -> Tokenizer:
    unk = roles.get("unk_token") or "<unk>"
    if unk not in specials:
        specials = [*specials, unk]
        roles["unk_token"] = unk
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size - 256, special_tokens=specials, unk_token=unk,
        max_piece_length=16, show_progress=progress,
    )
    interruptible(tok.train_from_iterator, texts, trainer, length=len(texts))
    # Append one <0xNN> piece per byte (lowest score) and turn byte fallback on, as
    # SentencePiece does, so that characters never seen in training still encode exactly.
    spec = json.loads(tok.to_str())
    pieces = spec["model"]["vocab"]
    floor = min(score for _, score in pieces) - 10.0
    known = {piece for piece, _ in pieces}
    pieces.extend([f"<0x{b:02X}>", floor] for b in range(256) if f"<0x{b:02X}>" not in known)
    spec["model"]["byte_fallback"] = True
    spec["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}]}
    return Tokenizer.from_str(json.dumps(spec))


ABANDONED_NAME = "tokenswap-train"  # the worker thread of :func:`interruptible`


def interruptible(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a worker thread, so that Ctrl-C reaches this thread.

    The tokenizers library trains in Rust without checking Python's signals: called directly,
    Ctrl-C waits for the whole training and the output is then written. Here the main thread
    waits in short slices and raises ``KeyboardInterrupt`` at once; the daemon worker is
    abandoned (its result is never saved) and ends with the process. Under the ``tokenswap``
    command the process exits right here (:func:`tokenswap.cli.exit_if_entry_point`): the
    worker, still inside Rust and pulling texts from a Python iterator, crashed the process
    while it unwound and finalized (seen: SIGSEGV instead of exit 130, at finalization and,
    under load, between the message and the exit). Called from Python, the
    ``KeyboardInterrupt`` propagates to the caller.
    """
    import threading

    result: dict = {}

    def work() -> None:
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as err:  # re-raised in the caller's thread
            result["error"] = err

    worker = threading.Thread(target=work, name=ABANDONED_NAME, daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        cli = sys.modules.get("tokenswap.cli")
        if cli is not None:
            cli.exit_if_entry_point(130)  # the command line: out at once, the worker with it
        raise
    if "error" in result:
        raise result["error"]
    return result.get("value")

