"""tokenswap: give any pretrained language model a new tokenizer.

The Python API mirrors the CLI: :func:`transfer`, :func:`evaluate`, :func:`tokenizer_train`,
:func:`tune`, ... Names are imported on first use, so importing a leaf module
(``tokenswap.vocab.bytes``) does not load transformers or every init method.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily by __getattr__). No name may equal a
# subpackage's: importing tokenswap.audit.x sets tokenswap.audit to the package (the audit
# workflow is tokenswap.api.audit; bits per byte live in tokenswap.scoring, not .evaluate).
_EXPORTS = {
    "transfer": "tokenswap.api",
    "evaluate": "tokenswap.api",
    "tokenizer_train": "tokenswap.api",
    "tune": "tokenswap.api",
    "hypernet_train": "tokenswap.api",
    "glitch": "tokenswap.api",
    "mixture": "tokenswap.api",
    "lm_eval_task": "tokenswap.api",
    "save_model": "tokenswap.api",
    "load_model": "tokenswap.io.models",
    "load_tokenizer": "tokenswap.io.models",
    "TokenswapError": "tokenswap.errors",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from tokenswap.api import (  # noqa: F401
        evaluate,
        glitch,
        hypernet_train,
        lm_eval_task,
        mixture,
        save_model,
        tokenizer_train,
        transfer,
        tune,
    )
    from tokenswap.errors import TokenswapError  # noqa: F401
    from tokenswap.io.models import load_model, load_tokenizer  # noqa: F401


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tokenswap' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", *_EXPORTS]
