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
    NoOptions,
    get_method,
    list_methods,
    method_names,
    register,
    resolve_options,
)

__all__ = ["InitContext", "InitMethod", "Initialized", "NoOptions", "get_method", "list_methods",
           "method_names", "register", "resolve_options"]
