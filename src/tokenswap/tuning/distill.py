"""Cross-tokenizer distillation: the student's chunk likelihoods matched to the teacher's.

ALM (Minixhofer, Vulić & Ponti, "Universal Cross-Tokenizer Distillation via Approximate
Likelihood Matching", arXiv 2503.20083). The training text is tokenized by both the student
(the transferred model) and the teacher (e.g. the source model with its own tokenizer); the two
token streams are cut into byte chunks where both end at the same byte
(:func:`tokenswap.vocab.align.chunk_ids`). A chunk's log-likelihood is the sum of its tokens'
log-probabilities, for each model; the loss compares the two per chunk.

The comparison (:func:`alm_loss`) is the paper's binarised one: each chunk likelihood, raised
to ``1 / temperature``, is read as the probability of a Bernoulli variable, and the student's
is pulled to the teacher's by the binary KL divergence. Its gradient is that of tokenkit's
default ``binary_ce`` at ``binarization_temp`` 100 (the KL differs from the cross-entropy only
by the teacher's entropy, a constant); we report the KL so a perfect match reads 0. The KL is
multiplied by the temperature: at large temperatures it tends to
``|t| (r - 1 - ln r)`` with ``r = s / t`` per chunk (``t``, ``s`` the teacher's and student's
chunk log-likelihoods; the limit tokenkit calls ``binary_kl_temp_limit``; about
``(t - s)^2 / (2 |t|)`` when they are close), so its scale does not vanish as the temperature
grows and it adds to the next-token loss (``lm+alm``) without a
tuned weight. Chunks are weighted equally: the loss is the mean over the step's chunks.

Packing (:func:`pack_aligned`) keeps the student's packed sequences of :mod:`.data` (the same
rows and data order as ``--objective lm``) and gives each one a teacher window: the teacher
tokens of every chunk that lies wholly inside the student's sequence. The first chunk of a
window is not scored (the teacher's first token has no context), nor are chunks cut by the
sequence's edges. Both streams start every document with their own document-start token,
counted as one pseudo-byte, so chunk boundaries line up across documents too.

Left out: tokenkit's "unbiased" chunks and space-probability correction (the chunk ends at a
word boundary on both sides here, but a model's probability of a chunk also includes how it
goes on), its auxiliary hidden-state losses, and a cap on the teacher window's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tokenswap.errors import TokenswapError
from tokenswap.scoring.bpb import _encode, document_start_id
from tokenswap.vocab.align import check_bytes, chunk_ids, length_table, token_lengths
from tokenswap.vocab.bytes import ByteVocab


@dataclass
class AlignedBlocks:
    """Student sequences with their teacher windows and chunk indices (sparse, per token).

    ``blocks`` (N, L) are the student's packed sequences (as :func:`.data.pack`);
    ``student_chunks`` (N * L,) the chunk of every token of their stream; ``teacher`` (M,) the
    teacher's token stream and ``teacher_chunks`` (M,) its chunks; per sequence, ``first``/
    ``last`` the first and last chunk wholly inside it and ``t_start``/``t_end`` its teacher
    window. Scored chunks of sequence ``r``: ``first[r] + 1 .. last[r]``.
    """

    blocks: torch.Tensor
    student_chunks: np.ndarray
    teacher: np.ndarray
    teacher_chunks: np.ndarray
    first: np.ndarray
    last: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray

    def chunk_count(self, rows: Sequence[int]) -> int:
        """Scored chunks in the sequences ``rows``."""
        return int(np.maximum(self.last[rows] - self.first[rows], 0).sum())


@dataclass
class MicroBatch:
    """One micro-batch for :func:`alm_loss`: chunk -1 = not scored."""

    ids: torch.Tensor  # (b, L) student tokens
    chunks: torch.Tensor  # (b, L) chunk of each student token, counted from 0 per row
    teacher: list[torch.Tensor]  # b teacher windows, (T_r,) each
    teacher_chunks: list[torch.Tensor]  # (T_r,) chunk of each teacher token
    count: torch.Tensor  # (b,) scored chunks per row


def _start_role(tokenizer) -> str:
    return "bos" if getattr(tokenizer, "bos_token_id", None) is not None else "eos"


def pack_aligned(student, teacher, texts: Sequence[str], seq_len: int) -> AlignedBlocks:
    """Pack ``texts`` for the student as :func:`.data.pack` does and align the teacher to it.

    Raises a one-line :class:`TokenswapError` when either tokenizer does not reproduce the
    text's bytes, or when the two start documents with tokens of different roles.
    """
    s_start, t_start = document_start_id(student), document_start_id(teacher)
    if _start_role(student) != _start_role(teacher):
        raise TokenswapError(
            f"the student starts documents with its {_start_role(student)} token and the teacher "
            f"with its {_start_role(teacher)} token: their document boundaries do not "
            "correspond; give both tokenizers the same convention (e.g. set a bos token)")
    s_vocab, t_vocab = ByteVocab.from_tokenizer(student), ByteVocab.from_tokenizer(teacher)
    s_table, t_table = length_table(s_vocab), length_table(t_vocab)
    texts = [t for t in texts if t]
    s_enc, t_enc = _encode(student, texts), _encode(teacher, texts)
    s_ids, t_ids, s_len, t_len = [], [], [], []
    for doc, (text, s, t) in enumerate(zip(texts, s_enc, t_enc, strict=True)):
        check_bytes(s_vocab, s, text, "student", doc)
        check_bytes(t_vocab, t, text, "teacher", doc)
        s_ids += [s_start, *s]
        t_ids += [t_start, *t]
        s_len += [np.ones(1, np.int64), token_lengths(s_vocab, s, s_table)]
        t_len += [np.ones(1, np.int64), token_lengths(t_vocab, t, t_table)]
    n = len(s_ids) // seq_len
    if n == 0:
        raise TokenswapError(f"the training text is {len(s_ids):,} tokens, less than one "
                             f"sequence of --seq-len {seq_len}; add text or lower --seq-len")
    cs, ct = chunk_ids(np.concatenate(s_len), np.concatenate(t_len))
    starts = np.arange(n) * seq_len
    ends = starts + seq_len
    # a sequence's first whole chunk starts at its first token unless that token continues
    # the previous sequence's chunk; likewise its last whole chunk ends at its last token
    cont_left = np.zeros(n, dtype=bool)
    cont_left[1:] = cs[starts[1:]] == cs[starts[1:] - 1]
    first = cs[starts] + cont_left
    cut_right = np.zeros(n, dtype=bool)
    inside = ends < len(cs)
    cut_right[inside] = cs[ends[inside]] == cs[ends[inside] - 1]
    last = cs[ends - 1] - cut_right
    return AlignedBlocks(
        blocks=torch.tensor(s_ids[: n * seq_len], dtype=torch.long).reshape(n, seq_len),
        student_chunks=cs[: n * seq_len], teacher=np.asarray(t_ids, dtype=np.int64),
        teacher_chunks=ct, first=first, last=last,
        t_start=np.searchsorted(ct, first, side="left"),
        t_end=np.searchsorted(ct, last, side="right"))


def micro_batch(aligned: AlignedBlocks, rows: Sequence[int]) -> MicroBatch:
    """The student sequences ``rows``, their teacher windows and chunk indices."""
    seq_len = aligned.blocks.shape[1]
    chunks, windows, w_chunks, counts = [], [], [], []
    for r in rows:
        lo, hi = int(aligned.first[r]) + 1, int(aligned.last[r])
        cs = aligned.student_chunks[r * seq_len:(r + 1) * seq_len]
        chunks.append(np.where((cs >= lo) & (cs <= hi), cs - lo, -1))
        a, b = int(aligned.t_start[r]), int(aligned.t_end[r])
        ct = aligned.teacher_chunks[a:b]
        windows.append(torch.from_numpy(aligned.teacher[a:b].copy()))
        w_chunks.append(torch.from_numpy(np.where(ct >= lo, ct - lo, -1)))
        counts.append(max(hi - lo + 1, 0))
    return MicroBatch(ids=aligned.blocks[list(rows)],
                      chunks=torch.from_numpy(np.stack(chunks)),
                      teacher=windows, teacher_chunks=w_chunks,
                      count=torch.tensor(counts, dtype=torch.long))


def chunk_sums(token_logp: torch.Tensor, chunks: torch.Tensor, size: int) -> torch.Tensor:
    """Sum per chunk of per-token values: (b, T) values, (b, T) chunk (-1 = none) -> (b, size).

    >>> chunk_sums(torch.tensor([[1., 2., 4.]]), torch.tensor([[-1, 0, 0]]), 2).tolist()
    [[6.0, 0.0]]
    """
    keep = chunks >= 0
    out = token_logp.new_zeros(token_logp.shape[0], size)
    return out.scatter_add(1, chunks.clamp(min=0), torch.where(keep, token_logp, 0.0))


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(token t | tokens < t) for t >= 1 of every row, float32; position 0 gets 0.

    (b, T, V) logits of (b, T) ids -> (b, T).
    """
    nats = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                           ids[:, 1:].reshape(-1), reduction="none").view(ids.shape[0], -1)
    return F.pad(-nats, (1, 0))


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable at both ends (Mächler 2012)."""
    return torch.where(x < -0.693, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def alm_loss(teacher: torch.Tensor, student: torch.Tensor, temperature: float,
             eps: float = 1e-6) -> torch.Tensor:
    """Per-chunk binarised KL, times ``temperature``: (C,) chunk log-likelihoods each -> (C,).

    ``p = exp(logp / temperature)`` of each side is a Bernoulli probability;
    ``temperature * KL(Bern(p_teacher) || Bern(p_student))``. Zero where they agree.

    >>> round(float(alm_loss(torch.tensor([-2.0]), torch.tensor([-2.0]), 100.0)[0]), 6)
    0.0
    """
    t = teacher.float() / temperature - eps  # log p, kept below 0
    s = student.float() / temperature - eps
    pt = torch.exp(t)
    return temperature * (pt * (t - s) + (1 - pt) * (log1mexp(t) - log1mexp(s)))


__all__ = ["AlignedBlocks", "MicroBatch", "alm_loss", "chunk_sums", "log1mexp", "micro_batch",
           "pack_aligned", "token_logprobs"]
