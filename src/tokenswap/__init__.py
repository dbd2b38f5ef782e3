"""tokenswap: give any pretrained language model a new tokenizer.

The Python API mirrors the CLI: :func:`transfer`, :func:`evaluate`, :func:`tokenizer_train`,
:func:`tune`.
"""

__version__ = "0.1.0"

from tokenswap.api import evaluate, save_model, tokenizer_train, transfer, tune  # noqa: E402
from tokenswap.errors import TokenswapError  # noqa: E402
from tokenswap.io.models import load_model, load_tokenizer  # noqa: E402

__all__ = ["TokenswapError", "__version__", "evaluate", "load_model", "load_tokenizer",
           "save_model", "tokenizer_train", "transfer", "tune"]
