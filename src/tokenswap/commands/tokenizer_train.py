"""``tokenswap tokenizer train``: train a byte-level BPE or Unigram tokenizer on your text.

It carries the special tokens and chat template of a model (:mod:`tokenswap.vocab.train`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenswap.config import option
from tokenswap.vocab.kinds import TokenizerKind


@dataclass
class Config:
    corpus: list[str] = option(help="Training text: files, dirs, globs, hf:name (in Python also "
                                    "read documents).")
    out: Path | None = option(None, "Output tokenizer directory.", short="-o", required=True)
    vocab_size: int = option(32000, "Total vocabulary size.")
    kind: TokenizerKind = option(TokenizerKind.BPE, "bpe (byte-level) or unigram (byte fallback).")
    like: str | None = option("default", "Carry special tokens and chat template over from this "
                                         "model/tokenizer ('none': no specials).")
    max_bytes: int | None = option(None, "Train on at most this many bytes.")
    overwrite: bool = option(False, "Replace an existing --out.")
    texts: list[str] | None = option(None, "The training texts themselves (Python only; instead "
                                           "of corpus).", cli=False)
    progress: bool = option(True, "Show progress.", cli=False)


def run(cfg: Config):
    """The trained tokenizer (a transformers fast tokenizer), saved atomically to ``out``."""
    from tokenswap.errors import TokenswapError
    from tokenswap.io.corpus import corpus_texts
    from tokenswap.io.models import as_tokenizer
    from tokenswap.io.save import atomic_dir, check_output_dir
    from tokenswap.vocab.train import train_tokenizer

    if cfg.vocab_size < 1:
        raise TokenswapError(f"--vocab-size must be positive, got {cfg.vocab_size}")
    if cfg.out is not None:
        check_output_dir(cfg.out, overwrite=cfg.overwrite)
    texts = cfg.texts if cfg.texts is not None else corpus_texts(cfg.corpus,
                                                                 max_bytes=cfg.max_bytes)
    if not texts:
        raise TokenswapError("no text to train a tokenizer on; pass --corpus")
    like = cfg.like
    like_tok = None if like is None or (isinstance(like, str) and like in ("", "none")) \
        else as_tokenizer(like)
    tok = train_tokenizer(texts, cfg.vocab_size, kind=cfg.kind, like=like_tok,
                          progress=cfg.progress)
    if cfg.out is not None:
        with atomic_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
            tok.save_pretrained(tmp)
    return tok


def show(tok, cfg: Config, console) -> None:
    console.print(f"trained {cfg.kind.value} tokenizer with {len(tok):,} tokens -> {cfg.out}")
