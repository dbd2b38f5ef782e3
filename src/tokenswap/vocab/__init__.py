"""Vocabularies in canonical bytes, source/target token pairs, and tokenizer training."""

from tokenswap.vocab.bytes import ByteVocab, TokenizerFamily

__all__ = ["ByteVocab", "TokenizerFamily"]
