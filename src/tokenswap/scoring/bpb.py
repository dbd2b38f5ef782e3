"""Bits per byte that compare across tokenizers.

Two models with different tokenizers are comparable only if they score exactly the same bytes
with the same treatment of document starts. This module fixes that treatment:

* Every document is scored on its own. Its text is encoded with ``add_special_tokens=False``
  and ``split_special_tokens=True`` (a literal ``"<|im_end|>"`` in the text is text, not a
  control token, for every tokenizer alike), then prefixed with ONE document-start token
  (:func:`document_start_id`: ``bos_token_id``, else ``eos_token_id``). The document-start
  token is context only; its own probability is not scored. Every content token is scored.
* ``bits`` is the sum of ``-log2 p(token | context)`` over all scored tokens, accumulated in
  float64 from float32 log-softmax values (logits are upcast first, so a bf16 model is scored
  with float32 normalisation). Bits, not nats.
* ``bytes`` is ``len(text.encode("utf-8"))`` of the original text, whatever the tokenizer
  does with it. Bits per byte is ``bits / bytes``.
* A document longer than ``max_length`` tokens (counting the document-start token) is scored
  with a sliding window (:func:`sliding_windows`): windows of ``max_length`` tokens start at
  ``0, stride, 2 * stride, ...`` of the sequence ``[start] + tokens``; each window scores the
  tokens the previous window did not reach. Every token is scored exactly once, and every
  token outside the first window has at least ``max_length - stride`` tokens of context.
  Later windows are plain slices of the sequence: they get no fresh document-start token.
* Windows from many documents are batched, padded on the right with an attention mask, sorted
  by length to waste little padding. Padding never changes a result: padded positions are
  never scored and, with causal attention, never seen by real positions.
* Tokens equal to the tokenizer's ``unk_token_id`` are scored like any other token (the unk
  token is what the model sees) and counted in :attr:`BpbResult.unk_tokens`, so callers can
  warn: bytes the model never saw make its score look better than it is.

Memory: the model still returns logits for a whole batch, ``(B, T, V)`` in the model's dtype;
batches are split so that this tensor stays under ``_LOGITS_BUDGET_BYTES`` (2 GiB). The
float32 log-softmax is then taken over chunks of scored rows only, so no float32 copy of the
full logits ever exists. Left out: chunking the language-model head itself over the sequence
(that needs architecture-specific access to the final hidden states) and multi-GPU sharding.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from tokenswap.errors import TokenswapError

_LN2 = math.log(2.0)
_LOGITS_BUDGET_BYTES = 2 << 30  # largest (B, T, V) logits tensor one forward pass may return
_ROW_CHUNK_ELEMENTS = 1 << 25  # float32 elements per log-softmax chunk (128 MiB)


@dataclass
class BpbResult:
    """Totals of one scoring run; the ratios are properties so results can be summed."""

    bits: float
    """Total ``-log2 p`` over all scored tokens."""
    bytes: int
    """Total UTF-8 bytes of the scored documents."""
    tokens: int
    """Number of scored (predicted) content tokens; document-start tokens are not counted."""
    documents: int
    """Number of non-empty documents scored."""
    unk_tokens: int = 0
    """How many scored tokens were the tokenizer's unk token."""

    @property
    def bits_per_byte(self) -> float:
        return self.bits / self.bytes

    @property
    def tokens_per_byte(self) -> float:
        return self.tokens / self.bytes

    def to_dict(self) -> dict:
        return {
            "bits": self.bits,
            "bytes": self.bytes,
            "tokens": self.tokens,
            "documents": self.documents,
            "unk_tokens": self.unk_tokens,
            "bits_per_byte": self.bits_per_byte,
            "tokens_per_byte": self.tokens_per_byte,
        }


@dataclass(frozen=True)
class Window:
    """One model input: ``sequence[start:end]``, scoring positions ``score_from .. end - 1``.

    Positions are absolute in the sequence ``[document start] + tokens``; position ``p`` is
    predicted from the logits at ``p - 1``, which lie inside the window (``score_from > start``).
    """

    start: int
    end: int
    score_from: int


def document_start_id(tokenizer) -> int:
    """The token every document is prefixed with: ``bos_token_id``, else ``eos_token_id``.

    Raises :class:`TokenswapError` when the tokenizer has neither.
    """
    for name in ("bos_token_id", "eos_token_id"):
        token_id = getattr(tokenizer, name, None)
        if token_id is not None:
            return int(token_id)
    raise TokenswapError(
        "the tokenizer has neither a bos nor an eos token, so documents have no start token; "
        "set tokenizer.bos_token (or eos_token) before scoring"
    )


def sliding_windows(length: int, max_length: int, stride: int) -> list[Window]:
    """Windows that score positions ``1 .. length - 1`` of a sequence exactly once.

    ``length`` counts the document-start token. Windows start at ``0, stride, 2 * stride, ...``
    and are ``max_length`` long (the last one may be shorter); each scores from where the
    previous one ended, so tokens outside the first window keep ``max_length - stride`` tokens
    of context.

    >>> sliding_windows(10, 6, 2)
    [Window(start=0, end=6, score_from=1), Window(start=2, end=8, score_from=6), \
Window(start=4, end=10, score_from=8)]
    """
    _check_window(max_length, stride)
    windows = [Window(0, min(length, max_length), 1)]
    while windows[-1].end < length:
        start = windows[-1].start + stride
        windows.append(Window(start, min(length, start + max_length), windows[-1].end))
    return windows


def tokens_per_byte(tokenizer, texts: Sequence[str]) -> float:
    """Content tokens per UTF-8 byte, without a model (no document-start tokens counted).

    Uses the same encoding as :func:`bits_per_byte`, so it equals that result's
    ``tokens_per_byte``.
    """
    ids = _encode(tokenizer, texts)
    n_bytes = sum(len(text.encode("utf-8")) for text in texts)
    if n_bytes == 0:
        raise TokenswapError("no text to score: every document is empty")
    return sum(len(x) for x in ids) / n_bytes


def bits_per_byte(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int = 1024,
    stride: int | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    progress: bool | str = False,
) -> BpbResult:
    """Score ``texts`` with a causal LM under the contract in the module docstring.

    ``max_length`` is the window length in tokens including the document-start token;
    ``stride`` defaults to ``max_length // 2``. ``device=None`` keeps the model where it is
    (inputs go to the device of its first parameter); a given device moves the model there.
    The model is put in eval mode for the run and its training flag restored afterwards.
    ``progress`` shows a rich progress bar over windows, labelled with the string if given.
    """
    if stride is None:
        stride = max_length // 2
    _check_window(max_length, stride)
    if batch_size < 1:
        raise TokenswapError(f"batch_size must be at least 1, got {batch_size}")

    start_id = document_start_id(tokenizer)
    unk_id = getattr(tokenizer, "unk_token_id", None)
    encoded = _encode(tokenizer, texts)
    docs = [(text, ids) for text, ids in zip(texts, encoded, strict=True) if text]
    if not docs:
        raise TokenswapError("no text to score: the input is empty or every document is empty")

    n_bytes = sum(len(text.encode("utf-8")) for text, _ in docs)
    sequences = [[start_id, *ids] for _, ids in docs]
    n_tokens = sum(len(s) - 1 for s in sequences)
    n_unk = 0 if unk_id is None else sum(ids.count(unk_id) for _, ids in docs)

    # Longest first: little padding per batch, and an out-of-memory error shows up at once.
    jobs = [
        (seq[w.start : w.end], w.score_from - w.start)
        for seq in sequences
        for w in sliding_windows(len(seq), max_length, stride)
        if w.end - w.score_from > 0
    ]
    jobs.sort(key=lambda job: -len(job[0]))

    if device is not None:
        model.to(device)
    target = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    window_bits: list[float] = []
    try:
        with torch.inference_mode(), _progress_bar(progress, len(jobs)) as advance:
            for lo in range(0, len(jobs), batch_size):
                batch = jobs[lo : lo + batch_size]
                for part in _fit_budget(batch, _vocab_size(model)):
                    window_bits.extend(_score_batch(model, part, target))
                advance(len(batch))
    finally:
        model.train(was_training)

    return BpbResult(
        bits=math.fsum(window_bits),  # exact sum: document order cannot change the result
        bytes=n_bytes,
        tokens=n_tokens,
        documents=len(docs),
        unk_tokens=n_unk,
    )


def _score_batch(model, batch: list[tuple[list[int], int]], device: torch.device) -> list[float]:
    """Bits of each window: sum of ``-log2 p`` at positions ``>= first`` (window-relative)."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width - 1), dtype=torch.bool)  # by predicting position
    for row, (ids, first) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        scored[row, first - 1 : len(ids) - 1] = True
    input_ids = input_ids.to(device)
    attention_mask = attention_mask.to(device)

    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    vocab = logits.shape[-1]  # (B, T, V)
    rows, cols = scored.nonzero(as_tuple=True)  # predicting position (row, col) -> target col + 1
    rows, cols = rows.to(logits.device), cols.to(logits.device)
    targets = input_ids.to(logits.device)[rows, cols + 1]
    totals = torch.zeros(len(batch), dtype=torch.float64, device=logits.device)
    chunk = max(1, _ROW_CHUNK_ELEMENTS // vocab)
    for lo in range(0, len(rows), chunk):
        r, c, t = rows[lo : lo + chunk], cols[lo : lo + chunk], targets[lo : lo + chunk]
        picked = logits[r, c].float()  # (N, V): only scored rows are ever upcast
        logp = picked.gather(1, t[:, None]).squeeze(1) - torch.logsumexp(picked, dim=-1)
        totals.index_add_(0, r, logp.double())
    del logits
    return (-totals / _LN2).tolist()


def _fit_budget(
    batch: list[tuple[list[int], int]], vocab: int
) -> Iterator[list[tuple[list[int], int]]]:
    """Split a batch so one forward pass returns at most ``_LOGITS_BUDGET_BYTES`` of logits."""
    width = max(len(ids) for ids, _ in batch)
    per_row = max(1, width * vocab * 4)  # float32 upper bound for the model's logits dtype
    size = max(1, min(len(batch), _LOGITS_BUDGET_BYTES // per_row))
    for lo in range(0, len(batch), size):
        yield batch[lo : lo + size]


def _encode(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    if isinstance(texts, str):
        raise TokenswapError("texts must be a sequence of documents, not one string")
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True)
    return [list(ids) for ids in encoded["input_ids"]]


def _check_window(max_length: int, stride: int) -> None:
    if max_length < 2:
        raise TokenswapError(f"max_length must be at least 2 tokens, got {max_length}")
    if not 1 <= stride < max_length:
        raise TokenswapError(
            f"stride must be between 1 and max_length - 1 = {max_length - 1}, got {stride}"
        )


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _vocab_size(model) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    return int(model.config.vocab_size)


@contextlib.contextmanager
def _progress_bar(progress: bool | str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over windows, or a no-op; yields an ``advance(n)`` callable."""
    if not progress:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    label = progress if isinstance(progress, str) else "bits per byte"
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
