"""``multivariate``: new tokens drawn from a normal fitted to the source rows, centred on their pieces.

Hewitt, "Initializing New Word Embeddings for Pretrained Language Models" (2021) recommends
drawing new embeddings from ``N(mu, 1e-5 * Sigma)``, with ``mu`` and ``Sigma`` the mean and
covariance of the existing embeddings: close to the mean, so that no new token dominates the
softmax, yet distinct. Mundra et al. (arXiv 2407.05841) evaluate this "multivariate"
initialisation for vocabulary expansion. Drawn around the global mean it says nothing about
which token it is; our ``random`` baseline (:mod:`.baselines`) already samples ``N(mu, Sigma)``.

So ``multivariate`` centres each draw on the token's own piece mean (FVT) and keeps Hewitt's
scaled covariance:

    new_t ~ N(mean of the source pieces of t, scale * Sigma),   scale = 1e-5 by default

Tokens without pieces are drawn around ``mu``. Special and exact tokens are copied. With the
default scale the rows are FVT plus a small, seeded, covariance-shaped perturbation that breaks
ties between tokens with the same pieces; the option ``multivariate_scale``
(:class:`MultivariateOptions`) widens it (``1.0`` draws with the full source covariance around
the piece mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.init.common import copy_single_piece, empty_target, fit_normal, piece_means
from tokenswap.init.registry import InitContext, Initialized, register
from tokenswap.vocab.pair import TokenPair

DEFAULT_SCALE = 1e-5  # Hewitt (2021)


@dataclass(frozen=True)
class MultivariateOptions:
    """Options of ``multivariate``."""

    multivariate_scale: float = option(
        DEFAULT_SCALE, "Covariance of the draws as a multiple of the source rows' covariance.",
        why="Hewitt (2021)'s 1e-5; not tuned here")

    def __post_init__(self) -> None:
        if self.multivariate_scale < 0:
            raise TokenswapError(f"multivariate_scale must be at least 0, got "
                                 f"{self.multivariate_scale}")


@register(
    "multivariate",
    summary="exact matches copied; other tokens drawn from N(mean of their source pieces, "
            "1e-5 x source covariance)",
    paper="Hewitt, 'Initializing New Word Embeddings for Pretrained Language Models' (2021); "
          "Mundra et al. (CoNLL 2024)",
    url="https://nlp.stanford.edu/~johnhew/vocab-expansion.html",
    options=MultivariateOptions,
)
def multivariate_init(source: torch.Tensor, pair: TokenPair, ctx: InitContext) -> Initialized:
    device = source.device if ctx.device is None else torch.device(ctx.device)
    source = source.to(device)
    scale = ctx.options_as(MultivariateOptions).multivariate_scale
    target = empty_target(source, pair)
    means, has_pieces = piece_means(source, pair)
    mu, factor = fit_normal(source)  # (H,), (H, H) lower Cholesky factor of Sigma
    centre = torch.where(has_pieces.unsqueeze(1), means, mu.to(device))
    z = torch.randn((len(pair), source.shape[1]), generator=ctx.generator(), dtype=torch.float32)
    target[:] = centre + scale ** 0.5 * (z.to(device) @ factor.T.to(device))
    copy_single_piece(target, source, pair)
    # COMPOSED rows are centred on their pieces, FALLBACK rows on mu: the pair's provenance holds
    return Initialized(target, pair.provenance.copy())
