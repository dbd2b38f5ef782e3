"""``mean`` (alias ``fvt``): each new token is the mean of its source pieces.

Gee et al., "Fast Vocabulary Transfer for Language Model Compression" (EMNLP industry 2022)
and Gee et al., "Fine-Tuning Transformers: Vocabulary Transfer" (2021, arXiv 2112.14569):
tokens whose bytes match a source token exactly are copied; every other token gets the mean of
the source embeddings of its decomposition by the source tokenizer. Tokens with no pieces at
all (bytes the source cannot emit, unmatched specials) get the mean of all source rows: a
defined, neutral vector instead of NaN.
"""

from __future__ import annotations

import torch

from tokenswap.init.common import copy_single_piece, empty_target, piece_means
from tokenswap.init.registry import InitContext, Initialized, register
from tokenswap.vocab.pair import Provenance, TokenPair


@register(
    "mean",
    aliases=("fvt",),
    summary="exact matches copied; other tokens = mean of their source pieces (FVT)",
    paper="Gee et al., 'Fine-Tuning Transformers: Vocabulary Transfer' (2021)",
    url="https://arxiv.org/abs/2112.14569",
)
def mean_init(source: torch.Tensor, pair: TokenPair, ctx: InitContext) -> Initialized:
    target = empty_target(source, pair)
    means, has_pieces = piece_means(source, pair)
    composed = torch.as_tensor(pair.provenance == Provenance.COMPOSED, device=source.device)
    target[composed] = means[composed]
    copy_single_piece(target, source, pair)
    fallback = ~has_pieces
    target[fallback] = source.float().mean(0)
    return Initialized(target, pair.provenance.copy())
