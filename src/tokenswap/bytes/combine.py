"""The names of the byte-level ensemble rules (:data:`tokenswap.bytes.ensemble.COMBINERS`), as
the CLI's choices; imports no torch so that ``tokenswap bytes generate --help`` stays fast."""

from __future__ import annotations

import enum


class Combine(str, enum.Enum):
    MIXTURE = "mixture"
    PRODUCT = "product"


__all__ = ["Combine"]
