"""Tokenizer-independent scoring: bits per byte on the same bytes, tokens per byte."""

from tokenswap.scoring.bpb import (
    BpbResult,
    bits_per_byte,
    document_start_id,
    sliding_windows,
    tokens_per_byte,
)

__all__ = [
    "BpbResult",
    "bits_per_byte",
    "document_start_id",
    "sliding_windows",
    "tokens_per_byte",
]
