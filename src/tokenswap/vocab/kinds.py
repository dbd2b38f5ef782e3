"""The kinds of tokenizer ``tokenswap tokenizer train`` makes (no heavy imports: the CLI reads it)."""

from __future__ import annotations

import enum


class TokenizerKind(str, enum.Enum):
    BPE = "bpe"  # byte-level BPE (GPT-2, Llama 3, SmolLM style)
    UNIGRAM = "unigram"  # UnigramLM with byte fallback (SentencePiece style)
