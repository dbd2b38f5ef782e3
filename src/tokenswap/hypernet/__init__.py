"""Zero-shot tokenizer transfer with a hypernetwork (Minixhofer et al., arXiv 2405.07883).

:mod:`.model` is the hypernet, :mod:`.sampler` draws a fresh UnigramLM tokenizer per batch,
:mod:`.train` trains the hypernet against a frozen base model. The ``hypernet`` init method
(:mod:`tokenswap.init.hypernet`) applies a trained one.
"""

from tokenswap.hypernet.model import (
    Hypernet,
    HypernetConfig,
    PieceInputs,
    Prediction,
    SourceEmbeddings,
    embedding_hash,
    load_hypernet,
)

__all__ = ["Hypernet", "HypernetConfig", "PieceInputs", "Prediction", "SourceEmbeddings",
           "embedding_hash", "load_hypernet"]
