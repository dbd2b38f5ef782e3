"""``omp``: new tokens as k-sparse combinations of shared tokens, found by Orthogonal Matching Pursuit.

The idea of mergekit's ``tokensurgeon`` (Goddard et al., "Training-Free Tokenizer
Transplantation via Orthogonal Matching Pursuit", arXiv 2506.06607), written from the idea:

1. special tokens and tokens whose bytes exactly match a source token (the *shared* tokens) are
   copied from the source;
2. in a *donor* space where every target token has a vector - the input embeddings of a model
   trained with the target tokenizer (``ctx.donor``, ``--donor``), or else fastText vectors
   learned from ``ctx.corpus`` (:mod:`.auxiliary`) - each other target token ``y`` is
   approximated by ``k`` shared tokens with OMP: ``y ~ sum_j x_j donor[shared_j]``;
3. the same coefficients are applied to the shared tokens' *source* embeddings:
   ``new = sum_j x_j source[shared_j]``. The coefficients are unconstrained (any sign, any sum).

Target tokens without a donor vector (fastText never saw them) fall back to ``mean`` (FVT): the
mean of their source pieces, or the mean of all source rows without pieces; their provenance
says ``FALLBACK``. Rows placed by OMP say ``COMPOSED``.

The pursuit (:func:`batched_omp`) runs on many targets at once, in torch, on the device of the
source matrix. Standard OMP costs ``k`` full correlation products per target, ``O(k N d)`` for
``N`` atoms of dimension ``d``; that is hours for a 262k-token vocabulary on a CPU. Here instead:

- the Gram matrix of the atoms, ``G = D D^T`` (``N x N``), is computed once, and the first
  correlations ``c0 = y D^T`` once per target (one GEMM);
- each target works on its ``candidates`` atoms of largest normalised correlation with ``y``
  (default 1024; all atoms when ``N`` is smaller, which makes the result plain OMP). This
  screening is the one approximation: an atom outside the top ``candidates`` by first
  correlation is never picked;
- inside the candidates, correlations are updated without touching ``d``-dimensional vectors
  (Batch-OMP, Rubinstein, Zibulevsky & Elad, Technion CS-2008-08): the selected atoms are
  orthogonalised by Gram-Schmidt carried out on ``G`` (a left-looking Cholesky of the active
  Gram matrix), so step ``j`` costs ``O(j M)`` per target for ``M`` candidates, and the
  coefficients come from one triangular solve at the end. This loop runs in float64.

Options: :class:`OmpOptions` (``omp_k``, ``omp_candidates``, ``omp_batch``, ``omp_mix``,
``omp_positive``, ``omp_norm``, and the ``aux_*`` options of the fastText space used without a
donor, :class:`~tokenswap.init.auxiliary.AuxiliaryOptions`). The codes depend only on the pair,
the donor space and the options, so they are cached in ``ctx.cache`` and reused by the output
matrix and bias.

Donor space matters. With a real donor (an LM's embeddings) OMP is the method of the paper. With
only a corpus, the fastText space is orthographic (n-gram based), and the unconstrained
coefficients found there do not carry over to the source model: on the validation splits of
``benchmarks/choose_options.py`` (SmolLM2-135M, 32k BPEs; ``benchmarks/results/choose_options.md``)
plain OMP scored several times the bits/byte of ``mean`` for every k tried (``omp_k``), and
``omp_mix=0.5`` narrowed the gap without closing it; at the defaults and with no donor,
``benchmarks/results/peers.md`` has the same picture on held-out text. With a corpus and no
donor, use ``focus``.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

import numpy as np
import torch

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.init.auxiliary import AuxiliaryOptions, auxiliary_embeddings
from tokenswap.init.common import copy_single_piece, empty_target, mix_with_mean, piece_means
from tokenswap.init.registry import InitContext, Initialized, register
from tokenswap.vocab.pair import Provenance, TokenPair

_WEIGHTS_KEY = "omp_weights"
_STOP = 1e-9  # relative correlation below which the residual is exhausted (exact fit)


class OmpNorm(str, enum.Enum):
    """The norm of a composed row."""

    FREE = "free"  # as composed
    MEAN = "mean"  # rescaled to the norm of the token's mean (FVT) row


@dataclass(frozen=True)
class OmpOptions(AuxiliaryOptions):
    """Options of ``omp``; the ``aux_*`` options of the fastText space (no donor) are inherited."""

    omp_k: int = option(64, "Shared tokens (atoms) combined into each new token.",
                        why="mergekit-tokensurgeon's default (-k 64, see "
                            "benchmarks/peers/mergekit_tokensurgeon.py), meant for a donor; no k "
                            "beat mean without one (benchmarks/results/choose_options.md)")
    omp_candidates: int | None = option(
        1024, "Atoms of largest first correlation each token's pursuit may pick from; none: "
              "all (exact OMP, slower).",
        why="a speed/accuracy trade-off, not measured in a results file")
    omp_batch: int | None = option(
        None, "Target tokens per batch of the pursuit; none: from a ~256 MB working-set budget.",
        why="bounds memory only")
    omp_mix: float = option(
        0.0, "Share of the mean (FVT) row blended into each composed row, from 0 to 1.",
        why="0 is the paper's row; without a donor 0.5 was less bad but still behind mean "
            "(benchmarks/results/choose_options.md)")
    omp_positive: bool = option(
        False, "Drop negative coefficients and rescale the rest to sum to 1 (a convex mix).",
        why="off: the paper's unconstrained coefficients; no results file measures it switched on")
    omp_norm: OmpNorm = option(
        OmpNorm.FREE, "free: composed rows as they come; mean: each rescaled to the norm of its "
                      "FVT row.",
        why="free: the paper's rows; no results file measures omp_norm=mean")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.omp_k < 1:
            raise TokenswapError(f"omp_k must be at least 1, got {self.omp_k}")
        if self.omp_candidates is not None and self.omp_candidates < 1:
            raise TokenswapError(f"omp_candidates must be at least 1 or none, got "
                                 f"{self.omp_candidates}")
        if self.omp_batch is not None and self.omp_batch < 1:
            raise TokenswapError(f"omp_batch must be at least 1 or none, got {self.omp_batch}")
        if not 0.0 <= self.omp_mix <= 1.0:
            raise TokenswapError(f"omp_mix must be between 0 and 1, got {self.omp_mix}")


def batched_omp(targets: torch.Tensor, atoms: torch.Tensor, k: int, *,
                candidates: int | None = 1024, gram: torch.Tensor | None = None,
                batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """k-sparse codes of every row of ``targets`` (B, d) over the rows of ``atoms`` (N, d).

    Returns ``(indices (B, k) int64, coefficients (B, k) float64)`` with
    ``targets[b] ~ sum_j coefficients[b, j] * atoms[indices[b, j]]``. Each step picks the atom
    of largest ``|<residual, atom>| / ||atom||`` and refits all coefficients by least squares
    (OMP, Pati, Rezaiifar & Krishnaprasad 1993). A target that is fitted exactly before ``k``
    steps, or whose next atom is linearly dependent on those chosen, stops early: its unused
    slots have coefficient 0 (and index 0).

    ``candidates`` restricts each target to that many atoms of largest first correlation (None:
    all atoms, exact OMP). ``gram`` is ``atoms @ atoms.T`` if the caller has it already.

    >>> atoms = torch.eye(3, dtype=torch.float64)
    >>> idx, coef = batched_omp(torch.tensor([[0.0, 2.0, -1.0]], dtype=torch.float64), atoms, 2)
    >>> idx.tolist(), coef.tolist()
    ([[1, 2]], [[2.0, -1.0]])
    """
    n_targets, n_atoms = targets.shape[0], atoms.shape[0]
    device = atoms.device
    k = min(k, n_atoms, atoms.shape[1]) if n_atoms else 0
    out_idx = torch.zeros((n_targets, max(k, 0)), dtype=torch.long, device=device)
    out_coef = torch.zeros((n_targets, max(k, 0)), dtype=torch.float64, device=device)
    if n_targets == 0 or k == 0:
        return out_idx, out_coef
    m = n_atoms if candidates is None else max(k, min(candidates, n_atoms))
    if gram is None:
        gram = atoms @ atoms.T  # (N, N)
    sq_norms = gram.diagonal().double()  # (N,)
    norms = sq_norms.sqrt().clamp(min=1e-30)
    if batch is None:  # U is (batch, k, M) float64: keep it near 256 MB
        batch = max(1, min(4096, (1 << 25) // (k * m)))
    for start in range(0, n_targets, batch):
        y = targets[start:start + batch].to(device=device, dtype=atoms.dtype)
        idx, coef = _omp_block(y, atoms, gram, sq_norms, norms, k, m)
        out_idx[start:start + batch] = idx
        out_coef[start:start + batch] = coef
    return out_idx, out_coef


def _omp_block(y: torch.Tensor, atoms: torch.Tensor, gram: torch.Tensor, sq_norms: torch.Tensor,
               norms: torch.Tensor, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    b, device = y.shape[0], y.device
    rows = torch.arange(b, device=device)
    c0 = y @ atoms.T  # (B, N): the only product in the d-dimensional space
    if m < atoms.shape[0]:
        cand = torch.topk(c0.abs() / norms.to(c0.dtype), m, dim=1).indices  # (B, M)
        # ascending ids: the per-step gathers from a row of the Gram matrix stay near in memory,
        # and ties break to the lowest id, as in a plain argmax over all atoms
        cand = cand.sort(dim=1).values
        c = c0.gather(1, cand).double()
    else:
        cand = torch.arange(m, device=device).expand(b, m)
        c = c0.double()
    del c0
    cand_norms = norms[cand]  # (B, M)
    y_norm = y.double().norm(dim=1)  # (B,)

    u = torch.zeros((b, k, m), dtype=torch.float64, device=device)  # q_j . atoms[cand]
    r = torch.zeros((b, k, k), dtype=torch.float64, device=device)  # atoms[sel] = Q R
    gamma = torch.zeros((b, k), dtype=torch.float64, device=device)  # q_j . y
    chosen = torch.zeros((b, k), dtype=torch.long, device=device)
    taken = torch.zeros((b, m), dtype=torch.bool, device=device)
    active = torch.ones(b, dtype=torch.bool, device=device)
    for j in range(k):
        score = (c.abs() / cand_norms).masked_fill(taken, -1.0)
        best_score, best = score.max(dim=1)  # (B,)
        active &= best_score > _STOP * y_norm
        atom = cand[rows, best]  # (B,)
        r_col = u[:, :j, :].gather(2, best.view(b, 1, 1).expand(b, j, 1)).squeeze(2)  # (B, j)
        diag2 = sq_norms[atom] - (r_col * r_col).sum(1)
        active &= diag2 > 1e-10 * sq_norms[atom]  # the atom is (nearly) in the span: stop
        if not bool(active.any()):
            break
        rjj = torch.where(active, diag2.clamp(min=1e-300).sqrt(), torch.ones_like(diag2))
        g = gram[atom.unsqueeze(1), cand].double()  # (B, M): atom . candidates
        q_row = (g - torch.bmm(r_col.unsqueeze(1), u[:, :j, :]).squeeze(1)) / rjj.unsqueeze(1)
        gam = c[rows, best] / rjj
        keep = active.unsqueeze(1)
        u[:, j, :] = torch.where(keep, q_row, 0.0)
        r[:, :j, j] = torch.where(keep, r_col, 0.0)
        r[:, j, j] = rjj
        gamma[:, j] = torch.where(active, gam, 0.0)
        chosen[:, j] = torch.where(active, atom, 0)
        c = c - gamma[:, j].unsqueeze(1) * u[:, j, :]
        taken[rows[active], best[active]] = True
    # unused slots: R_jj = 1, column zero, gamma 0, so their coefficient solves to 0
    unused = r.diagonal(dim1=1, dim2=2) == 0
    r.diagonal(dim1=1, dim2=2)[unused] = 1.0
    coef = torch.linalg.solve_triangular(r, gamma.unsqueeze(2), upper=True).squeeze(2)
    return chosen, coef


@dataclass
class OmpWeights:
    """``new_ids[i]`` = sum_j ``coef[i, j]`` * source[``source_ids[i, j]``]."""

    new_ids: np.ndarray  # (B,) target ids placed by OMP
    source_ids: torch.Tensor  # (B, k) source ids of the shared tokens used
    coef: torch.Tensor  # (B, k) float64
    space: str  # "donor" or "auxiliary"
    seconds: float = 0.0


def _donor_space(pair: TokenPair, ctx: InitContext, opts: OmpOptions,
                 device) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(vectors (V_t, d) float32, has_vector (V_t,) bool, name)`` on ``device``."""
    n = len(pair)
    if ctx.donor is not None:
        donor = ctx.donor
        if donor.dim() != 2 or donor.shape[0] != n:
            raise TokenswapError(
                f"omp: the donor has {tuple(donor.shape)} embeddings but the target vocabulary has "
                f"{n:,} tokens; the donor must be trained with the target tokenizer (one row per id)")
        vectors = donor.detach().to(device=device, dtype=torch.float32)
        return vectors, torch.isfinite(vectors).all(1) & (vectors.abs().sum(1) > 0), "donor"
    if not ctx.corpus:
        raise TokenswapError("omp needs a donor model trained with the target tokenizer (--donor) "
                             "or target-language text to learn auxiliary embeddings (--corpus)")
    matrix, known = auxiliary_embeddings(ctx, dim=opts.aux_dim, min_count=opts.aux_min_count,
                                         epochs=opts.aux_epochs)
    matrix, known = matrix[:n].float(), known[:n].bool()
    if matrix.shape[0] < n:  # a tokenizer whose len() is below the pair's vocabulary
        pad = n - matrix.shape[0]
        matrix = torch.cat([matrix, torch.zeros(pad, matrix.shape[1])])
        known = torch.cat([known, torch.zeros(pad, dtype=torch.bool)])
    return matrix.to(device), known.to(device), "auxiliary"


def omp_weights(pair: TokenPair, ctx: InitContext, device=None) -> OmpWeights:
    """The OMP codes of every new target token (cached per pair and options in ``ctx.cache``)."""
    opts = ctx.options_as(OmpOptions)
    key = (id(pair), id(ctx.donor), id(ctx.corpus), opts.omp_k, opts.omp_candidates,
           opts.aux_dim, opts.aux_epochs, opts.aux_min_count)
    cache = ctx.cache.setdefault(_WEIGHTS_KEY, {})
    if key in cache:
        return cache[key]
    start = time.perf_counter()
    vectors, has_vector, space = _donor_space(pair, ctx, opts, device)
    has = has_vector.cpu().numpy()
    shared = np.flatnonzero((pair.provenance == Provenance.EXACT) & has)
    new = np.flatnonzero(np.isin(pair.provenance, [Provenance.COMPOSED, Provenance.FALLBACK]) & has)
    if len(shared) == 0:
        new = new[:0]
    atoms = vectors[torch.as_tensor(shared, dtype=torch.long, device=vectors.device)]
    idx, coef = batched_omp(
        vectors[torch.as_tensor(new, dtype=torch.long, device=vectors.device)], atoms, opts.omp_k,
        candidates=opts.omp_candidates, batch=opts.omp_batch)
    shared_source = torch.tensor([pair.pieces[i][0] for i in shared], dtype=torch.long,
                                 device=idx.device)
    weights = OmpWeights(new_ids=new, source_ids=shared_source[idx] if len(shared) else idx,
                         coef=coef, space=space,
                         seconds=time.perf_counter() - start)
    cache[key] = weights
    return weights


@register(
    "omp",
    summary="exact matches copied; other tokens = k-sparse mix of shared tokens, coefficients "
            "found by OMP in a donor model's (or corpus fastText) embedding space",
    paper="Goddard et al., 'Training-Free Tokenizer Transplantation via Orthogonal Matching "
          "Pursuit' (2025; mergekit tokensurgeon)",
    url="https://arxiv.org/abs/2506.06607",
    accepts=("donor", "corpus"),
    options=OmpOptions,
)
def omp_init(source: torch.Tensor, pair: TokenPair, ctx: InitContext) -> Initialized:
    opts = ctx.options_as(OmpOptions)
    device = source.device if ctx.device is None else torch.device(ctx.device)
    source = source.to(device)
    weights = omp_weights(pair, ctx, device)
    target = empty_target(source, pair)
    provenance = pair.provenance.copy()

    # mean (FVT) everywhere first: the fallback for tokens without a donor vector
    means, has_pieces = piece_means(source, pair)
    target[has_pieces] = means[has_pieces]
    target[~has_pieces] = source.float().mean(0)
    content = np.isin(pair.provenance, [Provenance.COMPOSED, Provenance.FALLBACK])
    provenance[content] = Provenance.FALLBACK

    if len(weights.new_ids):
        src = source.double()
        rows = []
        step = max(1, (1 << 24) // (weights.coef.shape[1] * source.shape[1]))
        for i in range(0, len(weights.new_ids), step):  # bounds the (step, k, H) gather
            ids = weights.source_ids[i:i + step].to(device)
            coef = weights.coef[i:i + step].to(device)
            if opts.omp_positive:  # a row with no positive weight becomes zero
                coef = coef.clamp(min=0)
                coef = coef / coef.sum(1, keepdim=True).clamp(min=1e-12)
            rows.append(torch.einsum("bk,bkh->bh", coef, src[ids]).float())
        new = torch.as_tensor(weights.new_ids, device=device)
        target[new] = torch.cat(rows)
        if opts.omp_norm is OmpNorm.MEAN:  # each composed row gets the norm of its FVT row
            size = target[new].norm(dim=1, keepdim=True).clamp(min=1e-12)
            scale = means[new].norm(dim=1, keepdim=True) / size
            target[new] *= torch.where(has_pieces[new].unsqueeze(1), scale, torch.ones_like(scale))
        empty = new[target[new].abs().sum(1) == 0]  # nothing to compose from: keep FVT
        target[empty] = torch.where(has_pieces[empty].unsqueeze(1), means[empty],
                                    source.float().mean(0))
        provenance[weights.new_ids] = Provenance.COMPOSED
        provenance[empty.cpu().numpy()] = Provenance.FALLBACK
        mix_with_mean(target, means, has_pieces, weights.new_ids, opts.omp_mix)
    copy_single_piece(target, source, pair)
    return Initialized(target, provenance)

