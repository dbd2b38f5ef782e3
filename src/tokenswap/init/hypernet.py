"""``hypernet``: embeddings predicted by a trained zero-shot tokenizer-transfer hypernet.

Minixhofer, Ponti & Vulić, "Zero-Shot Tokenizer Transfer" (NeurIPS 2024, arXiv 2405.07883).
The hypernet (:mod:`tokenswap.hypernet.model`, trained with ``tokenswap hypernet train``)
reads each target token's decomposition into source tokens and predicts its input embedding,
and for untied models its output embedding and output bias, all in one pass. The predictions
for a pair are made once and cached in ``ctx.cache``; each call returns the matrix
``ctx.matrix`` asks for.

Special tokens matched to a source special token are copied (``SPECIAL``); tokens with no
source pieces keep ``FALLBACK`` (the hypernet predicts them from its learned "empty" input on
top of the mean of all source rows).

Tokens the source vocabulary also has (``EXACT``) are handled by the option ``hypernet_exact``
(:class:`HypernetOptions`):

- ``"align"`` (default): a trained hypernet's rows can carry a common offset, the same for every
  row. It is measured as the mean of (predicted - source row) over the shared tokens and
  subtracted from every predicted row; the shared tokens then get their source rows (``EXACT``).
  Copying alone would put new rows predicted in a shifted frame next to unshifted shared rows;
  removing the offset first keeps the two consistent;
- ``"predict"``: every row as predicted (the paper); shared tokens are ``COMPOSED``;
- ``"copy"``: shared tokens get their source rows, the others stay as predicted.

``benchmarks/results/hypernet.md`` was measured with ``align`` and
``benchmarks/results/hypernet-batch.md`` with ``predict``, but by hypernets trained differently
(learning-rate schedule, sampled texts), so neither compares the modes; no results file has
``copy``. Run ``benchmarks/hypernet.py --exact MODE`` on one hypernet to compare them.

Needs ``ctx.hypernet`` (a loaded :class:`~tokenswap.hypernet.model.Hypernet`, checked against
the model by :func:`~tokenswap.hypernet.model.load_hypernet`) and, for untied models or models
with an output bias, ``ctx.sources`` (every source matrix). An untrained hypernet gives exactly
the ``mean`` rows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.init.common import copy_single_piece
from tokenswap.init.registry import InitContext, Initialized, register
from tokenswap.vocab.pair import Provenance, TokenPair

_CACHE_KEY = "hypernet"


class ExactMode(str, enum.Enum):
    """What the hypernet method does with the target tokens the source also has."""

    ALIGN = "align"  # remove the common offset, then copy the shared rows
    PREDICT = "predict"  # keep every predicted row (the paper)
    COPY = "copy"  # copy the shared rows, keep the others as predicted


@dataclass(frozen=True)
class HypernetOptions:
    """Options of ``hypernet``."""

    hypernet_exact: ExactMode = option(
        ExactMode.ALIGN, "Tokens the source also has: align (remove the predictions' common "
                         "offset, copy their source rows), predict (keep predicted) or copy.",
        why="keeps shared tokens exact and new rows in their frame; no results file compares "
            "the modes on one hypernet (see src/tokenswap/init/hypernet.py)")


def _sources(source: torch.Tensor, ctx: InitContext):
    from tokenswap.hypernet.model import SourceEmbeddings

    given = ctx.sources or {}
    if "input" not in given:
        if ctx.matrix != "input":
            raise TokenswapError("the hypernet method needs every source matrix (ctx.sources) "
                                 "for an output matrix or bias")
        given = {**given, "input": source}
    return SourceEmbeddings(*(None if given.get(k) is None else given[k].detach().float()
                              for k in ("input", "output", "bias")))


@register(
    "hypernet",
    requires=("hypernet",),
    summary="input/output embeddings (and bias) predicted by a trained zero-shot "
            "tokenizer-transfer hypernet; special tokens copied",
    paper="Minixhofer, Ponti & Vulić, 'Zero-Shot Tokenizer Transfer' (NeurIPS 2024)",
    url="https://arxiv.org/abs/2405.07883",
    options=HypernetOptions,
)
def hypernet_init(source: torch.Tensor, pair: TokenPair, ctx: InitContext) -> Initialized:
    mode = ctx.options_as(HypernetOptions).hypernet_exact
    if ctx.hypernet is None:
        raise TokenswapError("the hypernet method needs a trained hypernet (--hypernet)")
    cache = ctx.cache.setdefault(_CACHE_KEY, {})
    if id(pair) not in cache:
        pred, stats = ctx.hypernet.predict(pair, _sources(source, ctx))
        cache[id(pair)] = (pred, stats)
    pred, _ = cache[id(pair)]
    matrix = {"input": pred.input, "output": pred.output,
              "bias": None if pred.bias is None else pred.bias.reshape(-1, 1)}.get(ctx.matrix)
    if matrix is None:
        raise TokenswapError(f"the hypernet predicts no {ctx.matrix} matrix for this model")
    if matrix.shape[1] != source.shape[1]:
        raise TokenswapError(f"hypernet {ctx.matrix} rows have width {matrix.shape[1]}, the "
                             f"model's have {source.shape[1]}")
    target = matrix.to(source.device, torch.float32).clone()
    provenance = pair.provenance.copy()
    if mode is ExactMode.PREDICT:
        provenance[provenance == Provenance.EXACT] = Provenance.COMPOSED
        copy_single_piece(target, source, pair, kinds=(Provenance.SPECIAL,))
        return Initialized(target, provenance)
    if mode is ExactMode.ALIGN:
        target -= common_offset(target, source, pair)
    copy_single_piece(target, source, pair, kinds=(Provenance.SPECIAL, Provenance.EXACT))
    return Initialized(target, provenance)


def common_offset(predicted: torch.Tensor, source: torch.Tensor, pair: TokenPair) -> torch.Tensor:
    """Mean of (predicted - source row) over the target tokens the source also has; zero when
    there are none."""
    exact = pair.ids_with(Provenance.EXACT)
    if not len(exact):
        return torch.zeros(predicted.shape[1], device=predicted.device)
    rows = torch.as_tensor([pair.pieces[i][0] for i in exact], device=source.device)
    ids = torch.as_tensor(exact, device=predicted.device)
    return (predicted[ids] - source[rows].float()).mean(0)
