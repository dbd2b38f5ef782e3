"""``convex``: every new token is a convex combination of source tokens (inside their hull).

Mundra et al., "An Empirical Comparison of Vocabulary Expansion and Initialization Approaches
for Language Models" (CoNLL 2024, arXiv 2407.05841) argue that new embeddings should lie in the
convex hull of the existing ones, and propose Constrained Word2Vec (CW2V): each new embedding
is ``softmax(a_t) @ E`` over the source embeddings ``E``, and the logits ``a_t`` are learned by
skip-gram with negative sampling (SGNS) on target-language text tokenized with the new
tokenizer, with the source rows frozen and the model's own embeddings as the word vectors.
Their reference code (AI4Bharat/VocabAdaptation_LLM, ``cw2v_llama.py``) uses the input
embeddings for centre words and the LM head for context words, window 5, 5 negatives drawn from
unigram^0.75, Adam.

What is implemented here, and how it differs:

- **Support.** The paper's softmax runs over the whole source vocabulary (a dense 32k x 32k
  logit matrix, factorised to rank 1024 on a GPU). Here each new token mixes only its own
  source pieces (its decomposition, :mod:`tokenswap.vocab.pair`) and its ``convex_neighbors``
  (default 8) nearest source tokens by cosine to the mean of those pieces. That keeps the
  logits sparse (V_new x S) and the method feasible on a CPU; the rows are still convex
  combinations of source rows.
- **Start.** Logits start at 0 for the pieces and ``log(convex_neighbor_mass)`` (default 0.05,
  relative) for the neighbours, so step 0 is close to FVT (mean of pieces); the paper starts
  from random logits.
- **Training (with a corpus).** SGNS as in the paper, on the single matrix being initialised
  (a method receives one matrix, so an untied model's input and output matrices are each
  trained as both centre and context vectors: a deviation). Only pairs that involve a new token
  are used (the others carry no gradient). ``convex_steps`` (default 300) Adam steps of
  ``convex_batch`` (default 4096) pairs at learning rate ``convex_lr`` (default 0.05).
- **Without a corpus** (zero-shot): weights are a random convex combination of the pieces,
  ``w ~ Dirichlet(1, ..., 1)`` (uniform on the simplex), seeded; the neighbours get weight 0.
  The expected row is the piece mean.
- The output bias (a (V, 1) matrix) gets the plain piece mean.

Tokens without pieces get the mean of all source rows (the centre of the hull). The weights of
the last call are kept in ``ctx.cache['convex_weights']`` (:class:`ConvexWeights`) so that
callers and tests can check them: non-negative, summing to one. Options: :class:`ConvexOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.init.common import copy_single_piece, empty_target, piece_means
from tokenswap.init.registry import InitContext, Initialized, register
from tokenswap.vocab.pair import Provenance, TokenPair

_WEIGHTS_KEY = "convex_weights"
_REFERENCE = "as the paper's reference code (cw2v_llama.py)"
_UNTUNED = "not tuned: no results file compares other values"


@dataclass(frozen=True)
class ConvexOptions:
    """Options of ``convex``; all but ``convex_neighbors`` matter only with a corpus."""

    convex_neighbors: int = option(
        8, "Nearest source tokens (cosine to the piece mean) added to each token's pieces as "
           "candidates of its mix.", why=f"{_UNTUNED} (the paper mixes all source tokens)")
    convex_neighbor_mass: float = option(
        0.05, "Starting weight of a neighbour relative to a piece (its logit starts at log of "
              "this), so training starts near the mean of the pieces.", why=_UNTUNED)
    convex_steps: int = option(300, "Adam steps of skip-gram training.", why=_UNTUNED)
    convex_batch: int = option(4096, "(centre, context) pairs per step.", why=_UNTUNED)
    convex_lr: float = option(0.05, "Adam learning rate of the mixing logits.", why=_UNTUNED)
    convex_negatives: int = option(5, "Negative samples per pair, drawn from unigram^0.75.",
                                   why=_REFERENCE)
    convex_window: int = option(5, "Context window, in target tokens, on each side.",
                                why=_REFERENCE)
    convex_pairs: int = option(
        4_000_000, "At most this many training pairs are kept (a random sample).",
        why="bounds memory")

    def __post_init__(self) -> None:
        if self.convex_neighbors < 0:
            raise TokenswapError(f"convex_neighbors must be at least 0, got {self.convex_neighbors}")
        if not self.convex_neighbor_mass > 0:
            raise TokenswapError(f"convex_neighbor_mass must be above 0, got "
                                 f"{self.convex_neighbor_mass}")
        for name in ("convex_steps", "convex_batch", "convex_negatives", "convex_window",
                     "convex_pairs"):
            if getattr(self, name) < 1:
                raise TokenswapError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.convex_lr > 0:
            raise TokenswapError(f"convex_lr must be above 0, got {self.convex_lr}")


@dataclass
class ConvexWeights:
    """Target ``new_ids[i]`` = sum_s ``weights[i, s]`` * source[``support[i, s]``]."""

    new_ids: np.ndarray  # (B,) target ids
    support: torch.Tensor  # (B, S) source ids (padding: 0 with weight 0)
    weights: torch.Tensor  # (B, S) float32, >= 0, rows sum to 1
    trained: bool  # True: SGNS on the corpus (CW2V); False: Dirichlet draw
    final_loss: float | None = None


def build_support(source: torch.Tensor, pair: TokenPair, new_ids: np.ndarray,
                  neighbors: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(support (B, S), is_piece (B, S), valid (B, S))`` for the target ids ``new_ids``.

    Support = the distinct source pieces of each token, then its ``neighbors`` nearest source
    rows (cosine to the piece mean) that are not pieces.
    """
    device = source.device
    pieces = [list(dict.fromkeys(pair.pieces[i])) for i in new_ids]
    width = max((len(p) for p in pieces), default=0)
    n = len(new_ids)
    piece_ids = torch.zeros((n, width), dtype=torch.long)
    piece_valid = torch.zeros((n, width), dtype=torch.bool)
    for row, p in enumerate(pieces):
        piece_ids[row, :len(p)] = torch.tensor(p, dtype=torch.long)
        piece_valid[row, :len(p)] = True
    piece_ids, piece_valid = piece_ids.to(device), piece_valid.to(device)
    neighbors = min(neighbors, source.shape[0])
    if neighbors <= 0 or n == 0:
        return piece_ids, piece_valid.clone(), piece_valid
    src = source.float()
    unit = F.normalize(src, dim=1)
    near = []
    step = max(1, min(4096, (1 << 25) // max(1, width * src.shape[1])))  # bounds (b, width, H)
    for start in range(0, n, step):
        ids, ok = piece_ids[start:start + step], piece_valid[start:start + step]
        centre = (src[ids] * ok.unsqueeze(2)).sum(1) / ok.sum(1, keepdim=True)
        sims = F.normalize(centre, dim=1) @ unit.T  # (b, V_s)
        rows = torch.arange(sims.shape[0], device=device).unsqueeze(1)
        sims[rows, ids] = -2.0  # pieces are in the support already
        near.append(torch.topk(sims, neighbors, dim=1).indices)
    near_ids = torch.cat(near)
    support = torch.cat([piece_ids, near_ids], dim=1)
    is_piece = torch.cat([piece_valid, torch.zeros_like(near_ids, dtype=torch.bool)], dim=1)
    valid = torch.cat([piece_valid, torch.ones_like(near_ids, dtype=torch.bool)], dim=1)
    return support, is_piece, valid


def _dirichlet(is_piece: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Weights uniform on each row's simplex of pieces, Dirichlet(1, ..., 1); 0 elsewhere.

    Normalised standard exponentials are Dirichlet(1); drawn with the seeded generator.
    """
    u = torch.rand(tuple(is_piece.shape), generator=generator, dtype=torch.float64)
    gam = -u.clamp(min=1e-300).log().to(is_piece.device) * is_piece
    return (gam / gam.sum(1, keepdim=True).clamp(min=1e-300)).float()


def _corpus_pairs(ctx: InitContext, is_new: torch.Tensor, window: int,
                  limit: int, generator: torch.Generator) -> torch.Tensor:
    """(P, 2) (centre, context) target-id pairs within ``window`` that involve a new token."""
    tok = ctx.target_tokenizer
    texts = [t for t in (ctx.corpus or []) if t and not t.isspace()]
    if tok is None or not texts:
        return torch.empty((0, 2), dtype=torch.long)
    n = len(is_new)
    new = is_new.cpu()
    out = []
    for start in range(0, len(texts), 256):
        for ids in tok(texts[start:start + 256], add_special_tokens=False)["input_ids"]:
            seq = torch.tensor([i for i in ids if i < n], dtype=torch.long)
            for off in range(1, window + 1):
                if len(seq) <= off:
                    break
                a, b = seq[:-off], seq[off:]
                keep = new[a] | new[b]
                out.append(torch.stack([a[keep], b[keep]], 1))
                out.append(torch.stack([b[keep], a[keep]], 1))
    if not out:
        return torch.empty((0, 2), dtype=torch.long)
    pairs = torch.cat(out)
    if len(pairs) > limit:
        pairs = pairs[torch.randperm(len(pairs), generator=generator)[:limit]]
    return pairs


@torch.enable_grad()  # callers often run under no_grad (inference, benchmarks)
def _train(source: torch.Tensor, fixed: torch.Tensor, new_ids: np.ndarray, support: torch.Tensor,
           logits: torch.Tensor, pairs: torch.Tensor, opts: ConvexOptions,
           generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """SGNS on ``pairs`` over the new tokens' logits; returns (logits, last loss)."""
    device = source.device
    n = fixed.shape[0]
    steps, batch, negatives = opts.convex_steps, opts.convex_batch, opts.convex_negatives
    lr = opts.convex_lr
    counts = torch.bincount(pairs[:, 0], minlength=n).double()
    noise = (counts ** 0.75).clamp(min=0)
    noise = noise / noise.sum()
    slot = torch.full((n,), -1, dtype=torch.long, device=device)
    slot[torch.as_tensor(new_ids, device=device)] = torch.arange(len(new_ids), device=device)
    src = source.float()
    logits = logits.clone().requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    loss_value = float("nan")
    for _ in range(steps):
        sel = torch.randint(0, len(pairs), (min(batch, len(pairs)),), generator=generator)
        centre, context = pairs[sel, 0], pairs[sel, 1]
        neg = torch.multinomial(noise, len(sel) * negatives, replacement=True,
                                generator=generator).view(len(sel), negatives)
        ids = torch.cat([centre, context, neg.flatten()]).to(device)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        pos = slot[uniq]
        rows = fixed[uniq].clone()
        is_new = pos >= 0
        p = pos[is_new]
        w = torch.softmax(logits[p], dim=1)  # (u, S)
        rows[is_new] = torch.einsum("us,ush->uh", w, src[support[p]])
        emb = rows[inverse]
        b = len(sel)
        e_c, e_o, e_n = emb[:b], emb[b:2 * b], emb[2 * b:].view(b, negatives, -1)
        loss = (-F.logsigmoid((e_c * e_o).sum(1))
                - F.logsigmoid(-torch.einsum("bh,bnh->bn", e_c, e_n)).sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_value = float(loss.detach())
    return logits.detach(), loss_value


@register(
    "convex",
    summary="exact matches copied; other tokens = convex mix of their source pieces and nearest "
            "source tokens, weights learned by constrained word2vec on --corpus (else Dirichlet)",
    paper="Mundra et al., 'An Empirical Comparison of Vocabulary Expansion and Initialization "
          "Approaches for Language Models' (CoNLL 2024)",
    url="https://arxiv.org/abs/2407.05841",
    accepts=("corpus",),
    options=ConvexOptions,
)
def convex_init(source: torch.Tensor, pair: TokenPair, ctx: InitContext) -> Initialized:
    opts = ctx.options_as(ConvexOptions)
    device = source.device if ctx.device is None else torch.device(ctx.device)
    source = source.to(device)
    generator = ctx.generator()
    target = empty_target(source, pair)
    provenance = pair.provenance.copy()
    means, has_pieces = piece_means(source, pair)
    target[has_pieces] = means[has_pieces]
    target[~has_pieces] = source.float().mean(0)  # centre of the hull
    copy_single_piece(target, source, pair)
    new_ids = np.flatnonzero((pair.provenance == Provenance.COMPOSED) & has_pieces.cpu().numpy())
    if ctx.matrix == "bias" or len(new_ids) == 0:
        return Initialized(target, provenance)

    support, is_piece, valid = build_support(source, pair, new_ids, opts.convex_neighbors)
    is_new = torch.zeros(len(pair), dtype=torch.bool)
    is_new[torch.as_tensor(new_ids)] = True
    pairs = _corpus_pairs(ctx, is_new, opts.convex_window, opts.convex_pairs, generator)
    if len(pairs):
        logits = torch.where(is_piece, 0.0, float(np.log(opts.convex_neighbor_mass))).to(device)
        logits = logits.masked_fill(~valid, float("-inf"))
        logits, loss = _train(source, target, new_ids, support, logits, pairs, opts, generator)
        weights = torch.softmax(logits, dim=1)
        result = ConvexWeights(new_ids, support, weights, trained=True, final_loss=loss)
    else:
        weights = _dirichlet(is_piece, generator)
        result = ConvexWeights(new_ids, support, weights, trained=False)
    ids = torch.as_tensor(new_ids, device=device)
    step = max(1, (1 << 25) // (result.support.shape[1] * source.shape[1]))
    for start in range(0, len(new_ids), step):  # bounds the (b, S, H) gather
        sl = slice(start, start + step)
        target[ids[sl]] = torch.einsum("bs,bsh->bh", result.weights[sl],
                                       source.float()[result.support[sl]])
    ctx.cache[_WEIGHTS_KEY] = result
    return Initialized(target, provenance)
