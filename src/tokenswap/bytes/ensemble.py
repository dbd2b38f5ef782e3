"""Ensembles of models with different tokenizers, combined at the byte level.

Models with different vocabularies cannot average next-token distributions, but every model
seen through :class:`~tokenswap.bytes.exact.ByteLM` has a next-byte distribution over the same
257 outcomes (256 bytes and end of text), so they combine byte by byte (Phan et al., "Exact
Byte-Level Probabilities from Tokenized Language Models for FIM-Tasks and Model Ensembles",
arXiv 2410.09303, section on model ensembles). Combination rules live in a registry
(:data:`COMBINERS`), each a typed function ``(logprobs (M, 257), weights (M,)) -> (257,)``:

- ``mixture``: ``p(b) = sum_m w_m p_m(b)`` with weights normalised to sum 1;
- ``product``: ``p(b) ∝ prod_m p_m(b) ** w_m`` with weights normalised to sum 1 (product of
  experts; a normalised weighted mean of log-probabilities). A byte any member with positive
  weight rules out stays ruled out.

Both are applied per byte, so the ensemble is itself a next-byte model and
:func:`~tokenswap.bytes.generate.generate` and :func:`~tokenswap.bytes.generate.score` work
with it unchanged. A per-byte mixture is not the mixture of the members' whole-text
distributions (that would reweight members by how well each predicted the prefix); it is the
ensemble the paper evaluates, and the one that can be sampled byte by byte.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tokenswap.bytes.combine import Combine
from tokenswap.bytes.generate import NextByteModel
from tokenswap.errors import TokenswapError, did_you_mean

CombineFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Combiner:
    name: str
    summary: str
    fn: CombineFn


COMBINERS: dict[str, Combiner] = {}


def combiner(name: str, summary: str) -> Callable[[CombineFn], CombineFn]:
    """Register a byte-level combination rule under ``name``."""

    def register(fn: CombineFn) -> CombineFn:
        COMBINERS[name] = Combiner(name=name, summary=summary, fn=fn)
        return fn

    return register


@combiner("mixture", "weighted mean of next-byte probabilities")
def mixture(logprobs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``log sum_m w_m p_m(b)``, weights normalised; ``logprobs`` (M, 257) -> (257,)."""
    log_w = torch.log(weights / weights.sum()).to(logprobs.dtype)
    return torch.logsumexp(logprobs + log_w[:, None], dim=0)


@combiner("product", "normalised weighted mean of log-probabilities (product of experts)")
def product(logprobs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_m w_m log p_m(b)`` (weights normalised to sum 1: a weighted mean), renormalised
    over the 257 outcomes; ``logprobs`` (M, 257) -> (257,)."""
    w = (weights / weights.sum()).to(logprobs.dtype)[:, None]
    terms = torch.where(w > 0, w * logprobs, torch.zeros_like(logprobs))  # 0 * -inf -> 0
    joint = terms.sum(0)
    total = torch.logsumexp(joint, 0)
    if not torch.isfinite(total):
        raise TokenswapError("the product ensemble gives every next byte probability 0: the "
                             "members rule out each other's bytes; use --combine mixture")
    return joint - total


def get_combiner(name: str | Combine) -> Combiner:
    key = name.value if isinstance(name, Combine) else str(name)
    if key not in COMBINERS:
        raise TokenswapError(f"unknown combination {key!r}{did_you_mean(key, list(COMBINERS))};"
                             f" choose from {', '.join(COMBINERS)}")
    return COMBINERS[key]


class ByteEnsemble:
    """Several next-byte models (usually :class:`ByteLM` with different tokenizers) as one.

    ``weights`` default to equal; they must be non-negative with a positive sum.
    """

    def __init__(self, members: Sequence[NextByteModel], weights: Sequence[float] | None = None,
                 combine: str | Combine = Combine.MIXTURE) -> None:
        if not members:
            raise TokenswapError("an ensemble needs at least one model")
        weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members):
            raise TokenswapError(f"{len(weights)} weights for {len(members)} models; give one "
                                 "--weight per --model")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise TokenswapError(f"weights must be >= 0 with a positive sum (got {weights})")
        self.members = list(members)
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.combiner = get_combiner(combine)

    def member_logprobs(self, prefix: bytes, *, complete: bool = True) -> torch.Tensor:
        """(M, 257) next-byte log-probabilities of every member."""
        return torch.stack([m.next_byte_logprobs(prefix, complete=complete).double()
                            for m in self.members])

    def next_byte_logprobs(self, prefix: bytes, *, complete: bool = True) -> torch.Tensor:
        return self.combiner.fn(self.member_logprobs(bytes(prefix), complete=complete),
                                self.weights)

    def next_byte_distribution(self, prefix: bytes) -> torch.Tensor:
        return self.next_byte_logprobs(prefix).exp()


__all__ = ["COMBINERS", "ByteEnsemble", "Combine", "Combiner", "combiner", "get_combiner",
           "mixture", "product"]
