"""Zero-shot tokenizer transfer with a hypernetwork (Minixhofer et al., arXiv 2405.07883).

:mod:`.model` is the hypernet, :mod:`.sampler` draws a fresh UnigramLM tokenizer per batch,
:mod:`.train` trains the hypernet against a frozen base model. The ``hypernet`` init method
(:mod:`tokenswap.init.hypernet`) applies a trained one.
"""

import importlib

# Lazy, so that reading the options (the CLI's --help) does not import torch.
_EXPORTS = dict.fromkeys(["Hypernet", "HypernetConfig", "PieceInputs", "Prediction",
                          "SourceEmbeddings", "embedding_hash", "load_hypernet"], "model")


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = ["Hypernet", "HypernetConfig", "PieceInputs", "Prediction", "SourceEmbeddings",
           "embedding_hash", "load_hypernet"]
