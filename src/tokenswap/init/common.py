"""Building blocks shared by init methods: copying matched rows, piece means, fallbacks."""

from __future__ import annotations

import numpy as np
import torch

from tokenswap.vocab.pair import Provenance, TokenPair


def empty_target(source: torch.Tensor, pair: TokenPair) -> torch.Tensor:
    """A float32 (V_t, H) matrix of NaN on the source's device; every row must be filled."""
    return torch.full((len(pair), source.shape[1]), float("nan"), dtype=torch.float32,
                      device=source.device)


def copy_single_piece(target: torch.Tensor, source: torch.Tensor, pair: TokenPair,
                      kinds: tuple[Provenance, ...] = (Provenance.SPECIAL, Provenance.EXACT)
                      ) -> np.ndarray:
    """Copy the source row of every target token of ``kinds`` (one piece each); return the ids."""
    ids = pair.ids_with(*kinds)
    if len(ids):
        src = torch.tensor([pair.pieces[i][0] for i in ids], device=source.device)
        target[torch.as_tensor(ids, device=source.device)] = source[src].float()
    return ids


def piece_means(source: torch.Tensor, pair: TokenPair) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the source rows of each target token's pieces: ``(means (V_t, H), has_pieces (V_t,))``.

    Rows of tokens without pieces are zero; ``has_pieces`` says which rows are defined.
    """
    flat, owner = pair.flat_pieces(source.device)
    sums = torch.zeros((len(pair), source.shape[1]), dtype=torch.float32, device=source.device)
    sums.index_add_(0, owner, source[flat].float())
    counts = torch.bincount(owner, minlength=len(pair)).to(sums.dtype)
    means = sums / counts.clamp(min=1).unsqueeze(1)
    return means, counts > 0


def mix_with_mean(target: torch.Tensor, means: torch.Tensor, has_pieces: torch.Tensor,
                  ids: np.ndarray, mix: float) -> None:
    """In place: rows ``ids`` of ``target`` become ``(1 - mix) * row + mix * mean of pieces``.

    Rows without pieces keep their value. ``mix`` 0 is a no-op, 1 is the ``mean`` (FVT) row.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    if mix == 0.0 or len(ids) == 0:
        return
    rows = torch.as_tensor(ids, dtype=torch.long, device=target.device)
    rows = rows[has_pieces[rows]]
    target[rows] = (1.0 - mix) * target[rows] + mix * means[rows]


def fit_normal(source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (H,) and a Cholesky factor (H, H) of the covariance of the source rows."""
    x = source.detach().double()
    mean = x.mean(0)
    if x.shape[1] == 1:
        return mean.float(), x.std(0, unbiased=True).reshape(1, 1).float()
    cov = torch.cov(x.T)
    eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    jitter = 1e-6 * cov.diagonal().mean().clamp(min=1e-12)
    for _ in range(6):  # a rank-deficient covariance (e.g. dead rows) needs more jitter
        factor, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if int(info) == 0:
            return mean.float(), factor.float()
        jitter *= 100
    return mean.float(), torch.diag(cov.diagonal().clamp(min=0).sqrt()).float()


def sample_normal(source: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` rows drawn from a normal with the source rows' mean and covariance, (n, H)."""
    mean, factor = fit_normal(source)
    z = torch.randn((n, source.shape[1]), generator=generator, dtype=torch.float32)
    return (z.to(source.device) @ factor.T.to(source.device)) + mean.to(source.device)


def assert_filled(matrix: torch.Tensor, what: str) -> None:
    """Every row must be finite: one NaN row in a tied matrix turns every softmax into NaN."""
    bad = ~torch.isfinite(matrix).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()[:5].tolist()
        raise AssertionError(f"{what}: {int(bad.sum())} rows not finite (first ids {rows})")
