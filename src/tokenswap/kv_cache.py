"""Passing a key/value cache to a transformers model, whatever the keyword is called.

transformers 5.x renamed the ``past_key_values`` argument and output field of its models to
``cache`` (the old name warns and goes away in 5.40); models with remote code may still use the
old one. These two helpers pick the name the model's ``forward`` declares.
"""

from __future__ import annotations

import inspect
from typing import Any


def cache_kwarg(model: Any, cache: Any) -> dict[str, Any]:
    """``{"cache": cache}`` or ``{"past_key_values": cache}``, as ``model.forward`` takes it."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def returned_cache(output: Any) -> Any:
    """The cache a forward pass returned (``output.cache``, else ``past_key_values``), or None."""
    cache = getattr(output, "cache", None)
    if cache is None and "past_key_values" in getattr(output, "keys", lambda: ())():
        cache = output["past_key_values"]
    return cache
