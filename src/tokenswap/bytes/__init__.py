"""Byte-level views of tokenized language models: exact next-byte probabilities, byte-level
generation from prompts that end anywhere, and ensembles of models with different tokenizers.

- :mod:`tokenswap.bytes.cover`: the vocabulary sorted by bytes (cover-token lookups);
- :mod:`tokenswap.bytes.exact`: :class:`ByteLM`, exact ``P(prefix)`` and next-byte distributions;
- :mod:`tokenswap.bytes.generate`: greedy / sampled byte-level generation;
- :mod:`tokenswap.bytes.ensemble`: byte-level ensembles (mixture, product of experts); the names
  of its rules in :mod:`tokenswap.bytes.combine`, which imports no torch (the CLI's --help).
"""

import importlib

# Lazy, so that reading the options (the CLI's --help) does not import torch.
_EXPORTS = {"END": "exact", "ByteLM": "exact", "CoverIndex": "cover", "Combine": "combine"}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = ["END", "ByteLM", "Combine", "CoverIndex"]
