"""``hypernet``: embeddings predicted by a trained zero-shot tokenizer-transfer hypernet.

Minixhofer, Ponti & Vulić, "Zero-Shot Tokenizer Transfer" (NeurIPS 2024, arXiv 2405.07883).
The hypernet (:mod:`tokenswap.hypernet.model`, trained with ``tokenswap hypernet train``)
reads each target token's decomposition into source tokens and predicts its input embedding,
and for untied models its output embedding and output bias, all in one pass. The predictions
for a pair are made once and cached in ``ctx.options['_hypernet']``; each call returns the
matrix ``ctx.matrix`` asks for.

Special tokens matched to a source special token are copied (``SPECIAL``); tokens with no
source pieces keep ``FALLBACK`` (the hypernet predicts them from its learned "empty" input on
top of the mean of all source rows); every other row is ``COMPOSED``, exact matches included,
since the hypernet's row for them is its own prediction, not a copy.

The option ``hypernet_exact="copy"`` copies the source rows of tokens that exist in the source
vocabulary instead (provenance ``EXACT``). It is not the default because it measured worse:
the predicted rows of new tokens are made to work next to the *predicted* rows of shared
tokens. SmolLM2 with the step-200 hypernet of ``benchmarks/hypernet.py`` on the 32k BPEs,
bits/byte predicted -> copied: German 2.268 -> 2.486, Russian 1.725 -> 1.895, code 1.146 ->
1.102 (90% of the code tokens are shared; FVT 1.037).

Needs ``ctx.hypernet`` (a loaded :class:`~tokenswap.hypernet.model.Hypernet`, checked against
the model by :func:`~tokenswap.hypernet.model.load_hypernet`) and, for untied models or models
with an output bias, ``ctx.sources`` (every source matrix). An untrained hypernet gives exactly
the ``mean`` rows.
"""

from __future__ import annotations

import torch

from tokenswap.errors import TokenswapError
from tokenswap.init.common import copy_single_piece
from tokenswap.init.registry import InitContext, Initialized, register
from tokenswap.vocab.pair import Provenance, TokenPair

_CACHE_KEY = "_hypernet"


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
)
def hypernet_init(source: torch.Tensor, pair: TokenPair, ctx: InitContext) -> Initialized:
    if ctx.hypernet is None:
        raise TokenswapError("the hypernet method needs a trained hypernet (--hypernet)")
    cache = ctx.options.setdefault(_CACHE_KEY, {})
    assert isinstance(cache, dict)
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
    mode = str(ctx.options.get("hypernet_exact", "predict"))
    if mode not in ("copy", "predict"):
        raise TokenswapError(f"hypernet_exact must be 'copy' or 'predict', got {mode!r}")
    target = matrix.to(source.device, torch.float32).clone()
    provenance = pair.provenance.copy()
    if mode == "predict":
        provenance[provenance == Provenance.EXACT] = Provenance.COMPOSED
    kinds = (Provenance.SPECIAL,) if mode == "predict" else (Provenance.SPECIAL, Provenance.EXACT)
    copy_single_piece(target, source, pair, kinds=kinds)
    return Initialized(target, provenance)
