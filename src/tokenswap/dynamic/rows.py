"""Input and output rows of a large vocabulary's extra tokens, predicted by the hypernet once.

Each extra token of a :class:`~tokenswap.dynamic.vocab.LargeVocab` is decomposed into base
pieces as :mod:`.embed` does (the way the source tokenizer splits its bytes) and the hypernet
(Minixhofer et al., arXiv 2405.07883) predicts its input row, and for untied models its output
row and output bias, in batches of ``chunk`` tokens. As in :mod:`.embed` (``align``), each
predicted matrix has the hypernet's common offset removed: the mean of (prediction - base row)
over base tokens predicted from themselves, so extra rows sit in the frame of the base rows
they compete with in the softmax. A tied model's output rows are its input rows.

Predicting takes minutes for a few hundred thousand tokens on one CPU thread, so
:func:`extra_rows` keeps the result in ``cache_dir`` as safetensors, named by a sha256 of the
hypernet's files, the base model's embeddings and the vocabulary (:meth:`LargeVocab.hash`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from tokenswap.dynamic.embed import OFFSET_SAMPLE
from tokenswap.errors import TokenswapError


@dataclass
class ExtraRows:
    """Rows of the extra tokens: input (N, H), output (N, H) (the input rows when tied),
    bias (N,) or None."""

    input: torch.Tensor
    output: torch.Tensor
    bias: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.input.shape[0]


def _key(hypernet, source, vocab) -> str:
    h = hashlib.sha256(vocab.hash().encode())
    h.update(source.hash().encode())
    path = getattr(hypernet, "path", None)
    sums = Path(path, "hypernet.sha256") if path else None
    if sums is not None and sums.is_file():
        h.update(sums.read_bytes())
    else:  # an unsaved hypernet: its weights
        for name, t in sorted(hypernet.state_dict().items()):
            h.update(name.encode() + t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def predict_rows(hypernet, source, tokenizer, vocab, *, chunk: int = 8192,
                 progress=None) -> ExtraRows:
    """The extra tokens' rows (float32, on the source's device); see the module docstring."""
    import numpy as np

    from tokenswap.hypernet.model import PieceInputs
    from tokenswap.vocab.pair import _Decomposer

    decompose = _Decomposer(vocab.vocab, tokenizer)
    pieces = []
    for k, data in enumerate(vocab.extra):
        ids, skipped = decompose(data)
        if skipped or not ids:
            raise TokenswapError(f"extra token {k + 1} ({data!r}) has bytes no base token "
                                 "emits; the model cannot read it")
        pieces.append(ids)
    device = source.input.device
    hypernet = hypernet.to(device).eval()
    # the common offset, measured on evenly spaced base tokens predicted from themselves
    ids = [i for i, b in enumerate(vocab.vocab.token_bytes[: source.input.shape[0]])
           if b is not None]
    ids = [ids[int(k)] for k in np.unique(np.linspace(0, len(ids) - 1, min(OFFSET_SAMPLE, len(ids)))
                                          .round().astype(np.int64))]
    own = hypernet(PieceInputs.from_pieces([(i,) for i in ids], hypernet.config.max_pieces)
                   .to(device), source)
    at = torch.as_tensor(ids, device=device)
    offsets = {name: (getattr(own, name).float() - getattr(source, name)[at].float()).mean(0)
               for name in ("input", "output", "bias") if getattr(own, name) is not None}
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in offsets}
    for lo in range(0, len(pieces), chunk):
        inputs = PieceInputs.from_pieces(pieces[lo: lo + chunk], hypernet.config.max_pieces)
        pred = hypernet(inputs.to(device), source)
        for name, offset in offsets.items():
            parts[name].append(getattr(pred, name).float() - offset)
        if progress is not None:
            progress(min(lo + chunk, len(pieces)), len(pieces))
    rows = {name: torch.cat(p) if p else torch.zeros((0, source.input.shape[1]))
            for name, p in parts.items()}
    if not all(torch.isfinite(r).all() for r in rows.values()):
        raise TokenswapError("the hypernet gave non-finite rows for extra tokens")
    return ExtraRows(rows["input"], rows.get("output", rows["input"]), rows.get("bias"))


def extra_rows(hypernet, source, tokenizer, vocab, *, cache_dir: str | os.PathLike | None = None,
               chunk: int = 8192, progress=None) -> ExtraRows:
    """:func:`predict_rows`, read from / written to ``cache_dir`` when given."""
    from safetensors.torch import load_file, save_file

    if cache_dir is None:
        return predict_rows(hypernet, source, tokenizer, vocab, chunk=chunk, progress=progress)
    path = Path(cache_dir) / f"rows-{_key(hypernet, source, vocab)[:32]}.safetensors"
    if path.is_file():
        state = load_file(str(path), device=str(source.input.device))
        return ExtraRows(state["input"], state.get("output", state["input"]), state.get("bias"))
    rows = predict_rows(hypernet, source, tokenizer, vocab, chunk=chunk, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"input": rows.input.cpu().contiguous()}
    if rows.output is not rows.input:
        state["output"] = rows.output.cpu().contiguous()
    if rows.bias is not None:
        state["bias"] = rows.bias.cpu().contiguous()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(state, str(tmp))
    os.replace(tmp, path)
    return rows


__all__ = ["ExtraRows", "extra_rows", "predict_rows"]
