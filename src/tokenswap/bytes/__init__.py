"""Byte-level views of tokenized language models: exact next-byte probabilities, byte-level
generation from prompts that end anywhere, and ensembles of models with different tokenizers.

- :mod:`tokenswap.bytes.cover`: the vocabulary sorted by bytes (cover-token lookups);
- :mod:`tokenswap.bytes.exact`: :class:`ByteLM`, exact ``P(prefix)`` and next-byte distributions;
- :mod:`tokenswap.bytes.generate`: greedy / sampled byte-level generation;
- :mod:`tokenswap.bytes.ensemble`: byte-level ensembles (mixture, product of experts).
"""

from tokenswap.bytes.cover import CoverIndex
from tokenswap.bytes.exact import END, ByteLM

__all__ = ["END", "ByteLM", "CoverIndex"]
