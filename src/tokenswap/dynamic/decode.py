"""Greedy generation and scoring over a large vocabulary through a nearest-neighbour index.

Feher, Vulić & Minixhofer (arXiv 2411.18553), section 5: the model keeps its own output layer
for its base vocabulary and gets hypernet rows (:mod:`.rows`) for a large set of extra tokens
(:mod:`.vocab`). At each step the final hidden state ``h`` (B=1) gives

- the base vocabulary's exact logits (the model's own, from its forward pass);
- the extra tokens' candidates: the ``candidates`` rows with the largest ``h . row + bias``
  as found by the index (:mod:`.ann`), and their exact logits ``h . row + bias``.

The softmax is taken over the union and the most probable token is picked (greedy); its input
row (the model's for a base token, the hypernet's for an extra one) is the next step's
``inputs_embeds``, with the KV cache. ``mode="exact"`` scores every extra row instead of asking
the index; ``mode="base"`` decodes with the base vocabulary alone (the base tokenization of
the prompt, no extra tokens): the baseline of the benchmark.

Scoring (:meth:`LargeVocabLM.score`): a text is tokenized with the large vocabulary
(:meth:`~tokenswap.dynamic.vocab.LargeVocab.encode`), prefixed with the document-start token and
scored in the windows of :func:`tokenswap.scoring.bpb.sliding_windows`; bits/byte as in
:mod:`tokenswap.scoring.bpb`. Two normalisers per position:

- exact: ``log Z`` over the base vocabulary and *every* extra token;
- approximate: ``log Z`` over the base vocabulary, the index's candidates and the target token
  itself (when it is an extra token the index missed, its exact logit is added, so every
  position has a finite probability; those positions are counted in ``missed``). The
  approximate ``Z`` leaves out the extra tokens outside the candidates, so it is at most the
  exact one and approximate bits are never above exact bits; the gap is the probability mass
  the index's candidates do not see.

Needs a causal LM whose ``forward`` takes ``inputs_embeds`` and whose logits are its output
layer applied to the last hidden state (checked on the first forward pass; models with final
logit soft-capping are refused).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from tokenswap.errors import TokenswapError

_LN2 = math.log(2.0)
MODES = ("approx", "exact", "base")


@dataclass
class LargeScore:
    """Totals of :meth:`LargeVocabLM.score`."""

    exact_bits: float
    approx_bits: float
    bytes: int
    tokens: int  # scored tokens (large vocabulary)
    extra_tokens: int  # of which extra tokens
    missed: int  # extra target tokens not among the index's candidates
    outside_top: int = 0  # extra target tokens not among the exact top ``candidates`` either

    @property
    def exact_bits_per_byte(self) -> float:
        return self.exact_bits / max(1, self.bytes)

    @property
    def approx_bits_per_byte(self) -> float:
        return self.approx_bits / max(1, self.bytes)

    def to_dict(self) -> dict:
        return {**vars(self), "exact_bits_per_byte": self.exact_bits_per_byte,
                "approx_bits_per_byte": self.approx_bits_per_byte,
                "bytes_per_token": self.bytes / max(1, self.tokens)}


@dataclass
class Generation:
    ids: list[int]  # generated ids (large vocabulary), the stop token included
    data: bytes  # the bytes they emit
    prompt_tokens: int  # prefilled positions, document start included
    steps: int = field(init=False)

    def __post_init__(self) -> None:
        self.steps = len(self.ids)


class LargeVocabLM:
    """A model with a :class:`~tokenswap.dynamic.vocab.LargeVocab`'s extra rows (see the module
    docstring). ``index``: a :class:`~tokenswap.dynamic.ann.RowIndex` over ``rows.output``
    (needed for ``mode="approx"``); ``candidates``: extra tokens taken from it per step."""

    def __init__(self, model, tokenizer, vocab, rows, index=None, *, candidates: int = 32) -> None:
        from tokenswap.dynamic.prefill import check_model
        from tokenswap.scoring.bpb import document_start_id

        check_model(model)
        if len(rows) != len(vocab.extra):
            raise TokenswapError(f"{len(rows)} rows for {len(vocab.extra)} extra tokens")
        if index is not None and index.size != len(rows):
            raise TokenswapError(f"the index holds {index.size} rows, the vocabulary has "
                                 f"{len(rows)} extra tokens")
        if candidates < 1:
            raise TokenswapError(f"candidates per step must be at least 1, got {candidates}")
        self.model, self.tokenizer, self.vocab, self.index = model, tokenizer, vocab, index
        self.candidates = candidates
        self.layer = model.get_input_embeddings()
        weight = self.layer.weight
        out_rows = model.get_output_embeddings().weight.shape[0]
        if out_rows != vocab.base_size:
            raise TokenswapError(f"the vocabulary's base has {vocab.base_size} tokens, the "
                                 f"model {out_rows} output rows")
        self.start_id = document_start_id(tokenizer)
        scale = getattr(self.layer, "embed_scale", 1.0)
        self.in_rows = (rows.input * scale).to(weight.device, weight.dtype)  # (N, H)
        self.out_rows = rows.output.to(weight.device, torch.float32)  # (N, H)
        self.bias = None if rows.bias is None else rows.bias.to(weight.device, torch.float32)
        self._checked = False

    # ------------------------------------------------------------------ pieces

    def embed(self, ids: Sequence[int]) -> torch.Tensor:
        """(T, H) input rows of large-vocabulary ids, in the model's dtype."""
        base = self.vocab.base_size
        device = self.layer.weight.device
        t = torch.as_tensor(list(ids), dtype=torch.long, device=device)
        with torch.no_grad():
            rows = self.layer(torch.where(t < base, t, 0))
            extra = t >= base
            if extra.any():
                rows[extra] = self.in_rows[t[extra] - base]
        return rows

    def forward(self, ids: Sequence[int], past=None):
        """``(base logits (T, V) float32, hidden (T, H) float32, past)`` of ``ids`` after
        ``past``."""
        from tokenswap.kv_cache import cache_kwarg, returned_cache

        embeds = self.embed(ids)[None]
        with torch.no_grad():
            out = self.model(inputs_embeds=embeds, use_cache=True, output_hidden_states=True,
                             **cache_kwarg(self.model, past))
        logits, hidden = out.logits[0].float(), out.hidden_states[-1][0].float()
        if not self._checked:
            head = self.model.get_output_embeddings()
            with torch.no_grad():
                again = head(hidden[-1:].to(head.weight.dtype)).float()
            if not torch.allclose(again, logits[-1:], atol=1e-3 * (1 + logits.abs().max()),
                                  rtol=1e-3):
                raise TokenswapError(f"{type(self.model).__name__}'s logits are not its output "
                                     "layer applied to the last hidden state (soft-capping or "
                                     "scaling?): large-vocabulary decoding needs plain logits")
            self._checked = True
        return logits, hidden, returned_cache(out)

    def extra_logits(self, hidden: torch.Tensor, rows: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Exact ``h . row + bias`` for extra rows ``rows`` ((B, K) row numbers) or all rows
        (then (B, N))."""
        if rows is None:
            out = torch.nn.functional.linear(hidden, self.out_rows)
            return out if self.bias is None else out + self.bias
        out = torch.einsum("bh,bkh->bk", hidden, self.out_rows[rows])
        return out if self.bias is None else out + self.bias[rows]

    def candidates_of(self, hidden: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """(B, K) extra row numbers from the index (-1 where it found fewer)."""
        if self.index is None:
            raise TokenswapError("approximate decoding needs an index over the extra rows")
        found = self.index.search(hidden, k or self.candidates)
        return torch.as_tensor(found, dtype=torch.long, device=hidden.device)

    # ------------------------------------------------------------------ generation

    def pick(self, logits: torch.Tensor, hidden: torch.Tensor, mode: str) -> int:
        """The greedy next id from one position's base logits (V,) and hidden state (H,)."""
        base = self.vocab.base_size
        if mode == "base" or not len(self.out_rows):
            return int(logits.argmax())
        if mode == "exact":
            scores = torch.cat([logits, self.extra_logits(hidden[None])[0]])
            return int(scores.argmax())
        rows = self.candidates_of(hidden[None])
        rows = rows[rows >= 0][None]
        scores = torch.cat([logits, self.extra_logits(hidden[None], rows)[0]])
        best = int(scores.argmax())
        return best if best < base else base + int(rows[0, best - base])

    def prompt_ids(self, prompt: str, mode: str) -> list[int]:
        if mode == "base":
            return list(self.tokenizer(prompt, add_special_tokens=False,
                                       split_special_tokens=True)["input_ids"])
        return self.vocab.encode(self.tokenizer, [prompt])[0]

    def generate(self, prompt: str, max_new_tokens: int = 32, *, mode: str = "approx"
                 ) -> Generation:
        """Greedy tokens after ``prompt`` (see the module docstring); stops early at a token
        that emits no bytes (end of text)."""
        if mode not in MODES:
            raise TokenswapError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
        if max_new_tokens < 1:
            raise TokenswapError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if not prompt.strip():
            raise TokenswapError("the prompt is empty")
        ids = [self.start_id, *self.prompt_ids(prompt, mode)]
        logits, hidden, past = self.forward(ids)
        out: list[int] = []
        for _ in range(max_new_tokens):
            tid = self.pick(logits[-1], hidden[-1], mode)
            out.append(tid)
            if self.vocab.token_bytes(tid) is None:
                break
            logits, hidden, past = self.forward([tid], past)
        data = b"".join(self.vocab.token_bytes(t) or b"" for t in out)
        return Generation(out, data, len(ids))

    # ------------------------------------------------------------------ scoring

    def score(self, texts: Sequence[str], *, max_length: int = 512, stride: int | None = None,
              chunk: int = 64) -> LargeScore:
        """Bits of ``texts`` tokenized with the large vocabulary, exact and approximate (see the
        module docstring); the approximate normaliser needs the index."""
        from tokenswap.scoring.bpb import sliding_windows

        if isinstance(texts, str) or not texts:
            raise TokenswapError("no text to score")
        stride = stride or max(1, max_length // 2)
        total = LargeScore(0.0, 0.0, 0, 0, 0, 0)
        for ids in self.vocab.encode(self.tokenizer, list(texts)):
            seq = [self.start_id, *ids]
            for w in sliding_windows(len(seq), max_length, stride):
                logits, hidden, _ = self.forward(seq[w.start: w.end])
                for lo in range(w.score_from, w.end, chunk):
                    hi = min(w.end, lo + chunk)
                    rows = slice(lo - 1 - w.start, hi - 1 - w.start)
                    target = torch.tensor(seq[lo:hi], device=logits.device)
                    self._score_rows(logits[rows], hidden[rows], target, total)
        total.bytes = sum(len(t.encode("utf-8")) for t in texts)
        return total

    def _score_rows(self, logits, hidden, target, total: LargeScore) -> None:
        base = self.vocab.base_size
        is_extra = target >= base
        extra_row = torch.where(is_extra, target - base, 0)
        scores = torch.cat([logits, self.extra_logits(hidden)], 1)  # (B, V + N)
        exact_z = torch.logsumexp(scores, -1)
        target_logit = scores.gather(1, target[:, None]).squeeze(1)
        total.exact_bits += float(-(target_logit - exact_z).double().sum() / _LN2)
        if self.index is not None and len(self.out_rows):
            rows = self.candidates_of(hidden)  # (B, K)
            found = (rows == extra_row[:, None]).any(1)
            missed = is_extra & ~found
            cand = self.extra_logits(hidden, rows.clamp(min=0))
            cand = cand.masked_fill(rows < 0, -math.inf)
            parts = [logits, cand, torch.where(missed, target_logit, -math.inf)[:, None]]
            approx_z = torch.logsumexp(torch.cat(parts, 1), -1)
            total.approx_bits += float(-(target_logit - approx_z).double().sum() / _LN2)
            total.missed += int(missed.sum())
            extra_rank = (scores[:, base:] > target_logit[:, None]).sum(1)
            total.outside_top += int((is_extra & (extra_rank >= rows.shape[1])).sum())
        else:
            total.approx_bits = math.nan
        total.tokens += len(target)
        total.extra_tokens += int(is_extra.sum())


def exact_top_k(lm: LargeVocabLM, hidden: torch.Tensor, k: int) -> np.ndarray:
    """(B, k) extra row numbers with the largest exact logits (the index's reference)."""
    return lm.extra_logits(hidden).topk(min(k, len(lm.out_rows)), dim=1).indices.cpu().numpy()


__all__ = ["Generation", "LargeScore", "LargeVocabLM", "MODES", "exact_top_k"]
