"""Baselines: ``random`` and ``copy-overlap``.

Both copy special tokens (matched by content or role), so that the chat format survives and
comparisons between methods measure the content tokens only.
"""

from __future__ import annotations

import numpy as np
import torch

from tokenswap.init.common import copy_single_piece, empty_target, sample_normal
from tokenswap.init.registry import InitContext, Initialized, register
from tokenswap.vocab.pair import Provenance, TokenPair


def _random_rest(target: torch.Tensor, source: torch.Tensor, done: np.ndarray,
                 ctx: InitContext) -> np.ndarray:
    rest = np.setdiff1d(np.arange(target.shape[0]), done)
    if len(rest):
        target[torch.as_tensor(rest, device=target.device)] = sample_normal(
            source, len(rest), ctx.generator())
    return rest


@register(
    "random",
    summary="every content token drawn from a normal fitted to the source rows (mean, covariance)",
    paper="baseline (full covariance; Hewitt 2021 discusses why a tighter normal is better)",
    url="https://nlp.stanford.edu/~johnhew/vocab-expansion.html",
)
def random_init(source: torch.Tensor, pair: TokenPair, ctx: InitContext) -> Initialized:
    target = empty_target(source, pair)
    provenance = np.full(len(pair), Provenance.FALLBACK, dtype=np.int8)
    done = copy_single_piece(target, source, pair, (Provenance.SPECIAL,))
    provenance[done] = Provenance.SPECIAL
    _random_rest(target, source, done, ctx)
    return Initialized(target, provenance)


@register(
    "copy-overlap",
    aliases=("overlap",),
    summary="tokens with identical bytes copied; all others random (normal fitted to the source)",
    paper="Gee et al., 'Fast Vocabulary Transfer for Language Model Compression' (2022)",
    url="https://aclanthology.org/2022.emnlp-industry.41/",
)
def copy_overlap(source: torch.Tensor, pair: TokenPair, ctx: InitContext) -> Initialized:
    target = empty_target(source, pair)
    provenance = pair.provenance.copy()
    done = copy_single_piece(target, source, pair)
    rest = _random_rest(target, source, done, ctx)
    provenance[rest] = Provenance.FALLBACK
    return Initialized(target, provenance)
