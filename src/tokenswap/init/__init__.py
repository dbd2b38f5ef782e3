"""Embedding-initialisation methods for a new vocabulary; see :mod:`.registry`.

Importing this package registers every built-in method.
"""

from tokenswap.init import (  # noqa: F401  (registers the built-in methods)
    baselines,
    convex,
    focus,
    hypernet,
    mean,
    multivariate,
    omp,
    wechsel,
)
from tokenswap.init.registry import (
    InitContext,
    Initialized,
    InitMethod,
    get_method,
    list_methods,
    method_names,
    register,
)

__all__ = ["InitContext", "InitMethod", "Initialized", "get_method", "list_methods",
           "method_names", "register"]
