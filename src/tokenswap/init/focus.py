"""``focus``: new tokens as sparse convex combinations of overlapping tokens (FOCUS).

Dobler & de Melo, "FOCUS: Effective Embedding Initialization for Monolingual Specialization of
Multilingual Models" (EMNLP 2023, arXiv 2305.14481):

1. special tokens and tokens whose bytes exactly match a source token (the *overlap*) are
   copied from the source;
2. fastText is trained on the target corpus tokenized with the target tokenizer
   (:mod:`.auxiliary`), giving every target token an auxiliary vector;
3. every other target token gets ``sum_j w_j * source[overlap_j]`` with
   ``w = sparsemax(cos(aux[token], aux[overlap]) / temperature)``: non-negative weights summing
   to one, zero outside a few most similar overlapping tokens.

Anchors are the overlapping tokens with a fastText vector of their own (seen ``min_count``
times). New tokens use their own vector when known, else fastText's subword vector from the
trained character n-grams (FOCUS's reference leaves those at random). A new token with no
auxiliary vector at all - no trained n-gram, or a special token without a source match - falls
back to the ``mean`` (FVT) initialisation: the mean of its source pieces (``COMPOSED``), or
the mean of all source rows when it has no pieces (``FALLBACK``). Every row is finite.

Options: :class:`FocusOptions` (``focus_temperature``, ``focus_mix`` and the fastText model's
``aux_*``, :class:`~tokenswap.init.auxiliary.AuxiliaryOptions`).

Deviations from the paper, and how the defaults were chosen: the paper applies sparsemax to raw
cosine similarities (temperature 1) and uses the FOCUS row as is (mix 0). With SmolLM2-135M and
32k BPEs trained here, a temperature of 1 mixes ~35 anchors per token and is worse than ``mean``
on German and Russian man pages; averaging many dissimilar rows shrinks the vector, so a sharper
mix is better, and blending in the FVT row helps further. ``benchmarks/choose_options.py`` grid
searched temperature {0.03, 0.1, 0.3, 1} x mix {0, 0.25, 0.5} on a *validation* split (16 KB
set aside from the training documents, never the benchmark's held-out bytes) for German, Russian
and Python code; T=0.03, mix=0.5 had the lowest mean ratio to ``mean`` (0.954: de 0.990, ru
0.940, code 0.931), tied with T=0.03, mix=0.25 (0.954: de 0.969, ru 0.933, code 0.959) and
ahead of the paper's T=1, mix=0 (1.100). Results in ``benchmarks/results/choose_options.md``.

The sparsemax weights depend only on the token pair, the corpus and the options, so they are
cached in ``ctx.cache`` and reused for the output matrix and bias of an untied model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.init.auxiliary import AuxiliaryOptions, auxiliary_space
from tokenswap.init.common import copy_single_piece, empty_target, mix_with_mean, piece_means
from tokenswap.init.registry import InitContext, Initialized, register
from tokenswap.vocab.pair import Provenance, TokenPair

_WEIGHTS_KEY = "focus_weights"
_CHOSEN = "grid on validation splits, benchmarks/results/choose_options.md"


@dataclass(frozen=True)
class FocusOptions(AuxiliaryOptions):
    """Options of ``focus``; the fastText space's ``aux_*`` options are inherited."""

    focus_temperature: float = option(
        0.03, "Similarities are divided by it before sparsemax; lower mixes fewer anchors.",
        why=f"{_CHOSEN} (the paper uses 1)")
    focus_mix: float = option(
        0.5, "Share of the mean (FVT) row blended into each FOCUS row, from 0 to 1.",
        why=f"{_CHOSEN}: tied with 0.25 (the paper uses 0)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.focus_temperature > 0:
            raise TokenswapError(f"focus_temperature must be above 0, got {self.focus_temperature}")
        if not 0.0 <= self.focus_mix <= 1.0:
            raise TokenswapError(f"focus_mix must be between 0 and 1, got {self.focus_mix}")


def sparsemax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Euclidean projection of ``z`` onto the probability simplex along ``dim``.

    Martins & Astudillo, "From Softmax to Sparsemax" (ICML 2016): ``max(z - tau, 0)`` where
    ``tau`` makes the result sum to one; unlike softmax, far-below-the-top entries get exactly 0.

    >>> sparsemax(torch.tensor([2.0, 1.0, 0.1]))
    tensor([1., 0., 0.])
    >>> sparsemax(torch.tensor([0.5, 0.4, -1.0]))
    tensor([0.5500, 0.4500, 0.0000])
    """
    z = z.transpose(dim, -1)
    ordered = torch.sort(z, dim=-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    cumsum = ordered.cumsum(-1)
    # The support is a prefix of the sorted entries: those with 1 + k z_(k) > sum_{j<=k} z_(j).
    support = (1 + k * ordered > cumsum).sum(-1, keepdim=True)
    tau = (cumsum.gather(-1, support - 1) - 1) / support.to(z.dtype)
    return (z - tau).clamp(min=0).transpose(dim, -1)


def topk_sparsemax(scores: torch.Tensor, k: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparsemax of each row of ``scores`` (B, N) computed on its ``k`` largest entries.

    Returns ``(weights (B, k'), indices (B, k'))`` with ``k' = min(k, N)``. Exact: when the
    support of a row fills all ``k`` entries, that row is redone with the full sort.
    """
    k = min(k, scores.shape[1])
    values, indices = torch.topk(scores, k, dim=1)
    weights = sparsemax(values)
    full = (weights[:, -1] > 0).nonzero().flatten() if k < scores.shape[1] else []
    for row in full:  # rare: a very flat similarity profile
        dense = sparsemax(scores[row])
        nz = dense.nonzero().flatten()
        if len(nz) > k:  # keep the k largest weights, renormalised
            nz = nz[torch.topk(dense[nz], k).indices]
        weights[row] = 0
        weights[row, : len(nz)] = dense[nz] / dense[nz].sum()
        indices[row, : len(nz)] = nz
    return weights, indices


@dataclass
class FocusWeights:
    """Sparse weights: target ``rows[i]`` takes ``weights[i]`` of anchor ``anchors[i]``."""

    rows: torch.Tensor  # (nnz,) target ids
    anchors: torch.Tensor  # (nnz,) source ids of the overlapping tokens
    weights: torch.Tensor  # (nnz,) float32
    new_ids: np.ndarray  # target ids initialised by FOCUS
    support: float  # mean number of anchors per new token


def focus_weights(pair: TokenPair, aux_matrix: torch.Tensor, anchor_ids: np.ndarray,
                  new_ids: np.ndarray, *, temperature: float = 0.03, chunk: int = 2048,
                  k: int = 128) -> FocusWeights:
    """Sparsemax weights over the anchors (target ids ``anchor_ids``) for ``new_ids``.

    ``aux_matrix`` is (V_t, D); cosine similarities are taken between its rows.
    """
    unit = torch.nn.functional.normalize(aux_matrix.float(), dim=1)
    anchors = unit[torch.as_tensor(anchor_ids, dtype=torch.long)]  # (A, D)
    anchor_source = torch.tensor([pair.pieces[i][0] for i in anchor_ids], dtype=torch.long)
    rows, cols, vals = [], [], []
    for start in range(0, len(new_ids), chunk):
        ids = torch.as_tensor(new_ids[start:start + chunk], dtype=torch.long)
        scores = unit[ids] @ anchors.T / temperature  # (B, A)
        w, idx = topk_sparsemax(scores, k)
        keep = w > 0
        rows.append(ids.unsqueeze(1).expand_as(w)[keep])
        cols.append(anchor_source[idx[keep]])
        vals.append(w[keep])
    r = _cat(rows, torch.long)
    return FocusWeights(rows=r, anchors=_cat(cols, torch.long), weights=_cat(vals, torch.float32),
                        new_ids=new_ids, support=len(r) / max(1, len(new_ids)))


def _cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.empty(0, dtype=dtype)


def _weights(pair: TokenPair, ctx: InitContext, opts: FocusOptions) -> FocusWeights:
    key = (id(pair), opts.aux_dim, opts.aux_epochs, opts.aux_min_count, opts.focus_temperature)
    cache = ctx.cache.setdefault(_WEIGHTS_KEY, {})
    if key not in cache:
        aux = auxiliary_space(ctx, dim=opts.aux_dim, min_count=opts.aux_min_count,
                              epochs=opts.aux_epochs)
        n = len(pair)
        if aux.matrix.shape[0] < n:  # a tokenizer whose len() is below the pair's vocabulary
            pad = torch.zeros(n - aux.matrix.shape[0], aux.matrix.shape[1])
            aux_matrix = torch.cat([aux.matrix, pad])
            defined = torch.cat([aux.defined, torch.zeros(len(pad), dtype=torch.bool)])
            known = torch.cat([aux.known, torch.zeros(len(pad), dtype=torch.bool)])
        else:
            aux_matrix, defined, known = aux.matrix[:n], aux.defined[:n], aux.known[:n]
        exact = pair.provenance == Provenance.EXACT
        anchor_ids = np.flatnonzero(exact & known.numpy())
        new = np.isin(pair.provenance, [Provenance.COMPOSED, Provenance.FALLBACK])
        new_ids = np.flatnonzero(new & defined.numpy())
        if len(anchor_ids) == 0:
            new_ids = new_ids[:0]
        cache[key] = focus_weights(pair, aux_matrix, anchor_ids, new_ids,
                                   temperature=opts.focus_temperature)
    return cache[key]


@register(
    "focus",
    requires=("corpus",),
    summary="exact matches copied; other tokens = sparsemax-weighted mix of overlapping tokens, "
            "similar in fastText trained on the target corpus",
    paper="Dobler & de Melo, 'FOCUS: Effective Embedding Initialization for Monolingual "
          "Specialization of Multilingual Models' (EMNLP 2023)",
    url="https://arxiv.org/abs/2305.14481",
    options=FocusOptions,
)
def focus_init(source: torch.Tensor, pair: TokenPair, ctx: InitContext) -> Initialized:
    opts = ctx.options_as(FocusOptions)
    weights = _weights(pair, ctx, opts)
    target = empty_target(source, pair)
    provenance = pair.provenance.copy()

    # FVT first, for every token FOCUS cannot place (no auxiliary vector)
    means, has_pieces = piece_means(source, pair)
    target[has_pieces] = means[has_pieces]
    target[~has_pieces] = source.float().mean(0)

    if len(weights.new_ids):
        device = source.device
        new = torch.as_tensor(weights.new_ids, device=device)
        target[new] = 0
        step = 1 << 18  # nonzero weights per step: bounds the (step, H) temporary
        for i in range(0, len(weights.rows), step):
            anchors = weights.anchors[i:i + step].to(device)
            w = weights.weights[i:i + step].to(device)[:, None]
            target.index_add_(0, weights.rows[i:i + step].to(device), source[anchors].float() * w)
        provenance[weights.new_ids] = Provenance.COMPOSED
        mix_with_mean(target, means, has_pieces, weights.new_ids, opts.focus_mix)
    copy_single_piece(target, source, pair)
    return Initialized(target, provenance)
