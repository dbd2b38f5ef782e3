"""Train a hypernet against a frozen base model, one freshly sampled tokenizer per batch.

Minixhofer et al., "Zero-Shot Tokenizer Transfer" (arXiv 2405.07883), section 3. Per step:

1. the step's texts (a deterministic function of seed and step), with ``sample_texts`` minus
   the batch size more random texts, give a UnigramLM tokenizer (:mod:`.sampler`); during
   the first ``identity_steps`` steps the source tokenizer itself is used instead (the
   paper's warm-up on the original tokenizer);
2. :func:`~tokenswap.vocab.pair.build_pair` decomposes its vocabulary into source tokens and
   the hypernet predicts the input (and output, bias) embeddings of the whole sampled vocab;
3. the frozen model reads ``inputs_embeds = E_in[ids]``; logits are its last hidden state
   times the predicted output matrix (plus bias), next-token cross-entropy is the loss;
4. an auxiliary loss pulls the predicted rows of tokens that exist in the source vocabulary
   (``Provenance.EXACT``) toward their source rows: mean squared error divided by the mean
   square of the source matrix (so ``aux_weight`` does not depend on the embedding scale);
5. with ``objective`` ``alm`` or ``lm+alm``, the frozen model reading the same texts with its
   own tokenizer and embeddings is a teacher: its likelihood of every byte chunk both
   tokenizations end on is matched by the student's (:class:`ChunkTeacher`); ``alm`` drops
   the next-token term.

The loop around the step is the shared training skeleton (:mod:`tokenswap.training`), as for
``tokenswap tune``: AdamW, linear warm-up capped at a tenth of the run, then cosine, linear or
no decay over ``steps`` or the time budget (``minutes`` of training steps on the wall or CPU
clock; evaluation and checkpoints do not count), gradient clipping. Checkpoints (weights,
optimizer, RNG states, step, clocks) go atomically to ``out/checkpoint/`` and resuming from one
gives the same weights as an uninterrupted run. A fixed evaluation tokenizer is sampled from
``eval_texts`` with its own seed; evaluation loss and bits per byte go to ``out/log.jsonl``
with the training loss.

With ``WORLD_SIZE`` > 1 (``torchrun``) every rank takes its share of the batch; the loss is
normalised by the global number of predicted tokens and the hypernet's gradients are summed
across ranks, so the update equals a one-process step on the whole batch. Only rank 0 writes.

Not here: mixed precision, gradient accumulation, MLM (encoder) models.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tokenswap.distributed import Dist, process_group
from tokenswap.errors import TokenswapError
from tokenswap.hypernet.config import TrainConfig
from tokenswap.hypernet.model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Hypernet,
    PieceInputs,
    Prediction,
    SourceEmbeddings,
)
from tokenswap.hypernet.sampler import TokenizerSampler
from tokenswap.training.checkpoint import TaskState, open_output, seed_everything
from tokenswap.training.log import LOG_FILE
from tokenswap.training.loop import run
from tokenswap.tuning.config import Objective
from tokenswap.vocab.pair import Provenance, TokenPair, build_pair


@dataclass
class TrainResult:
    hypernet: Hypernet
    step: int  # steps done in total (including resumed ones)
    loss: float | None  # last training loss (language model part)
    out: Path
    seconds: float  # wall time of this call
    train_seconds: float = 0.0  # wall time in training steps, over all resumed runs
    train_cpu_seconds: float = 0.0  # this process's CPU time in those steps


# ----------------------------------------------------------------------------- the frozen model


class FrozenLM:
    """A causal LM that reads embeddings and is scored against any output matrix.

    ``inputs_embeds`` bypass the embedding module, so a scale it would apply (Gemma 3's
    ``embed_scale``) is applied here; logit soft-capping (Gemma 2) and logit scaling
    (Cohere ``logit_scale``, Granite ``logits_scaling``) are applied as the model would.
    """

    def __init__(self, model) -> None:
        if model.get_output_embeddings() is None:
            raise TokenswapError("hypernet training needs a causal LM with an output layer")
        self.model = model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.backbone = model.base_model
        if self.backbone is model:
            raise TokenswapError(f"{type(model).__name__}: cannot find the transformer backbone")
        scale = getattr(model.get_input_embeddings(), "embed_scale", None)
        self.embed_scale = float(scale) if scale is not None else 1.0
        cfg = model.config
        self.softcap = getattr(cfg, "final_logit_softcapping", None)
        self.logit_mult = float(getattr(cfg, "logit_scale", None) or 1.0)
        granite = getattr(cfg, "logits_scaling", None)
        self.logit_div = float(granite) if granite else 1.0

    def logits(self, pred: Prediction, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, V_t) logits of the token ids ``ids`` (B, T) under the predicted embeddings."""
        embeds = pred.input[ids] * self.embed_scale  # (B, T, H)
        hidden = self.backbone(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        out = pred.input if pred.output is None else pred.output  # (V_t, H)
        logits = hidden @ out.T
        if pred.bias is not None:
            logits = logits + pred.bias
        logits = logits * self.logit_mult / self.logit_div
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def loss_sum(self, pred: Prediction, ids: torch.Tensor, mask: torch.Tensor
                 ) -> tuple[torch.Tensor, int]:
        """Summed next-token cross-entropy (nats) over the real tokens, and their number."""
        return nats_sum(self.logits(pred, ids, mask), ids, mask)


def nats_sum(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
             ) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy (nats) of (B, T, V) ``logits`` over the real tokens of
    ``ids``, and their number."""
    logits = logits[:, :-1]
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=-100, reduction="sum")
    return loss, int((targets != -100).sum())


class ChunkTeacher:
    """The frozen model read with its own tokenizer, as the ALM objective's teacher.

    Approximate likelihood matching (Minixhofer, Vulić & Ponti, arXiv 2503.20083; the loss is
    :func:`tokenswap.tuning.distill.alm_loss`): the model's log-likelihood of a byte chunk, read
    with its own embeddings and tokenizer, is a target for the same model reading that chunk
    with the sampled tokenizer and predicted embeddings. Chunks end where both tokenizations
    of a text end on the same byte (:func:`~tokenswap.vocab.align.prefix_chunk_ids`: each side
    is cut at its own token count); the first chunk of a text is not scored (its first token
    has no context). The teacher costs one forward pass without gradients per step, counted in
    the training clock; no second model is loaded.
    """

    def __init__(self, lm: FrozenLM, tokenizer, seq_len: int, temperature: float) -> None:
        from tokenswap.vocab.align import length_table
        from tokenswap.vocab.bytes import ByteVocab

        self.lm, self.tokenizer, self.temperature = lm, tokenizer, temperature
        self.vocab = ByteVocab.from_tokenizer(tokenizer)
        self.table = length_table(self.vocab)
        # the source tokenizer may need more tokens than the sampled one for the same bytes
        self.seq_len = 2 * seq_len

    def loss_sum(self, logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, tokenizer,
                 texts: Sequence[str]) -> tuple[torch.Tensor, int]:
        """Summed ALM loss over the chunks of the student's (B, T, V) ``logits`` of ``ids``
        (tokens of ``tokenizer``, the texts ``texts`` cut at T), and the number of chunks."""
        from tokenswap.tuning.distill import alm_loss, chunk_sums, token_logprobs
        from tokenswap.vocab.align import length_table, prefix_chunk_ids, token_lengths
        from tokenswap.vocab.bytes import ByteVocab

        t_ids, t_mask = encode(self.tokenizer, texts, self.seq_len, ids.device)
        with torch.no_grad():
            t_logits = self.lm.model(input_ids=t_ids, attention_mask=t_mask).logits
            t_logp = token_logprobs(t_logits, t_ids)
        s_logp = token_logprobs(logits, ids)
        s_vocab = ByteVocab.from_tokenizer(tokenizer)
        s_table = length_table(s_vocab)
        s_chunks = torch.full(ids.shape, -1, dtype=torch.long)
        t_chunks = torch.full(t_ids.shape, -1, dtype=torch.long)
        counts = []
        for r in range(ids.shape[0]):
            s_row = ids[r, mask[r].bool()].tolist()
            t_row = t_ids[r, t_mask[r].bool()].tolist()
            a, b, n = prefix_chunk_ids(token_lengths(s_vocab, s_row, s_table),
                                       token_lengths(self.vocab, t_row, self.table))
            # chunk 0 holds the first token, which has no context: not scored
            s_chunks[r, : len(a)] = torch.from_numpy(np.where(a >= 1, a - 1, -1))
            t_chunks[r, : len(b)] = torch.from_numpy(np.where(b >= 1, b - 1, -1))
            counts.append(max(n - 1, 0))
        size = max(1, max(counts))
        s_chunks, t_chunks = s_chunks.to(ids.device), t_chunks.to(ids.device)
        student = chunk_sums(s_logp, s_chunks, size)
        teacher = chunk_sums(t_logp, t_chunks, size)
        valid = torch.arange(size, device=ids.device)[None, :] < torch.tensor(
            counts, device=ids.device)[:, None]
        loss = alm_loss(teacher[valid], student[valid], self.temperature).sum()
        return loss, int(valid.sum())


def aux_loss(pred: Prediction, pair: TokenPair, inputs_device: torch.device,
             source: SourceEmbeddings) -> torch.Tensor:
    """Scaled MSE between predicted and source rows of the target tokens that are EXACT."""
    exact = pair.ids_with(Provenance.EXACT)
    if len(exact) == 0:
        return torch.zeros((), device=inputs_device)
    rows = torch.as_tensor(exact, device=inputs_device)
    src = torch.tensor([pair.pieces[i][0] for i in exact], device=inputs_device)
    total = torch.zeros((), device=inputs_device)
    for got, ref in ((pred.input, source.input), (pred.output, source.output)):
        if got is not None:
            total = total + F.mse_loss(got[rows], ref[src]) / ref.pow(2).mean().clamp(min=1e-12)
    return total


# ----------------------------------------------------------------------------- data


def chunk_texts(texts: Sequence[str], seq_len: int, chars_per_token: int = 6) -> list[str]:
    """Cut texts into pieces of about ``seq_len`` tokens, at whitespace where possible."""
    size = max(16, seq_len * chars_per_token)
    out: list[str] = []
    for text in texts:
        start = 0
        while start < len(text):
            end = min(len(text), start + size)
            if end < len(text):
                cut = text.rfind(" ", start + size // 2, end)
                end = cut if cut > start else end
            piece = text[start:end]
            if piece.strip():
                out.append(piece)
            start = end
    return out


def batch_for_step(chunks: Sequence[str], step: int, batch_size: int, seed: int) -> list[str]:
    """The texts of global batch ``step``: an endless stream of seeded epoch permutations."""
    n = len(chunks)
    batch = []
    for k in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(k, n)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        batch.append(chunks[int(order[pos])])
    return batch


def sample_pool(chunks: Sequence[str], batch: list[str], step: int, cfg: TrainConfig
                ) -> list[str]:
    """The texts step ``step``'s tokenizer is sampled from: the batch and ``sample_texts - len
    (batch)`` more chunks drawn at random (a deterministic function of seed and step).

    A tokenizer drawn from the batch alone (8 x 128 tokens, ~5 KB) has only the few thousand
    substrings that repeat inside it, short and batch-specific; 64 texts (~50 KB) give
    vocabularies of 8k-32k pieces whose statistics look like a tokenizer trained on a corpus,
    as the targets users bring do.
    """
    extra = max(0, cfg.sample_texts - len(batch))
    if not extra:
        return batch
    rng = np.random.default_rng([cfg.seed, step, 2])
    return batch + [chunks[int(i)] for i in rng.integers(0, len(chunks), size=extra)]


def encode(tokenizer, texts: Sequence[str], seq_len: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask (B, T), cut to ``seq_len`` tokens."""
    enc = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=seq_len)
    rows = enc["input_ids"]
    width = max(1, max(len(r) for r in rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


# ----------------------------------------------------------------------------- training


class HypernetTraining:
    """The hypernet :class:`~tokenswap.training.loop.Task`: one sampled tokenizer per step, the
    frozen model's loss under the predicted embeddings plus the auxiliary loss."""

    def __init__(self, hn: Hypernet, optimizer, lm: FrozenLM, source: SourceEmbeddings,
                 source_tok, sampler: TokenizerSampler, chunks: list[str], cfg: TrainConfig,
                 ctx: Dist, device: torch.device, evaluator: _Evaluator | None) -> None:
        self.hn, self.optimizer, self.lm, self.source = hn, optimizer, lm, source
        self.source_tok, self.sampler, self.chunks = source_tok, sampler, chunks
        self.cfg, self.ctx, self.device, self.evaluator = cfg, ctx, device, evaluator
        self.identity_pair: TokenPair | None = None
        self.teacher = None if cfg.objective is Objective.LM else ChunkTeacher(
            lm, source_tok, cfg.seq_len, cfg.alm_temperature)

    def step(self, step: int, progress: float) -> dict:
        cfg, ctx = self.cfg, self.ctx
        batch = batch_for_step(self.chunks, step, cfg.batch_size, cfg.seed)
        if step < cfg.identity_steps:
            tokenizer = self.source_tok
            if self.identity_pair is None:
                self.identity_pair = build_pair(self.source_tok, self.source_tok)
            pair = self.identity_pair
        else:
            tokenizer = self.sampler.sample(sample_pool(self.chunks, batch, step, cfg),
                                            seed=(cfg.seed, step))
            pair = build_pair(self.source_tok, tokenizer)
        inputs = PieceInputs.from_pair(pair, self.hn.config.max_pieces).to(self.device)
        ids, mask = encode(tokenizer, batch[ctx.rank::ctx.world], cfg.seq_len, self.device)

        pred = self.hn(inputs, self.source)
        logits = self.lm.logits(pred, ids, mask)
        nats, count = nats_sum(logits, ids, mask)
        global_count = max(1.0, ctx.sum(count))
        aux = aux_loss(pred, pair, self.device, self.source)
        loss = cfg.aux_weight * aux / ctx.world
        if cfg.objective is not Objective.ALM:
            loss = loss + nats / global_count
        record = {}
        if self.teacher is not None:
            alm, chunks = self.teacher.loss_sum(logits, ids, mask, tokenizer,
                                                batch[ctx.rank::ctx.world])
            global_chunks = max(1.0, ctx.sum(chunks))
            weight = cfg.alm_weight if cfg.objective is Objective.LM_ALM else 1.0
            loss = loss + weight * alm / global_chunks
            record = {"alm": ctx.sum(float(alm.detach())) / global_chunks,
                      "chunks": global_chunks}
        loss.backward()
        return {"loss": ctx.sum(float(nats.detach())) / global_count, "aux": float(aux.detach()),
                **record, "vocab": len(pair), "truncated": inputs.stats.truncated,
                "tokens": global_count}

    def evaluate(self, step: int) -> dict | None:
        return self.evaluator(self.hn, self.lm, self.source) if self.evaluator else None

    def state(self) -> TaskState:
        return TaskState(self.hn.state_dict(), self.optimizer.state_dict(),
                         {"hypernet": asdict(self.hn.config)})

    def load(self, state: TaskState) -> None:
        if state.extra.get("hypernet") != asdict(self.hn.config):
            raise TokenswapError("the checkpoint in this --out is for another model or hypernet "
                                 "shape; choose another --out")
        self.hn.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)


def train_hypernet(
    model_bundle,
    texts: Sequence[str],
    out: str | os.PathLike,
    *,
    eval_texts: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
    **options,
) -> TrainResult:
    """Train a hypernet for ``model_bundle`` (a :class:`~tokenswap.io.models.ModelBundle`).

    ``options`` are :class:`TrainConfig` fields (``steps``, ``minutes``, ``clock``,
    ``batch_size``, ``seq_len``, ``lr``, ``seed``, ...); ``sampler`` may be a
    :class:`SamplerConfig` or a dict. The trained hypernet is saved to ``out``
    (``hypernet.safetensors`` + ``hypernet.json``), checkpoints to ``out/checkpoint/``, log lines
    to ``out/log.jsonl``. ``stop_after`` ends this run after that many steps in total (as if
    interrupted) without changing the schedule.
    """
    cfg = TrainConfig.from_options(**options)
    chunks = chunk_texts(texts, cfg.seq_len)
    if not chunks:
        raise TokenswapError("no text to train the hypernet on; pass --corpus")
    out = Path(out)
    device = torch.device(device) if device is not None else model_bundle.input_embeddings().device
    with process_group(device) as (ctx, device):
        resuming = open_output(out, resume, ctx)
        return _train(model_bundle, chunks, out, cfg, eval_texts, device, ctx, resuming,
                      stop_after, progress)


@torch.enable_grad()  # callers may hold torch.no_grad (benchmarks, inference code)
def _train(bundle, chunks, out: Path, cfg: TrainConfig, eval_texts, device, ctx: Dist,
           resuming: bool, stop_after: int | None, progress: bool) -> TrainResult:
    start_time = time.perf_counter()
    bundle.model.to(device)
    lm = FrozenLM(bundle.model)
    source = SourceEmbeddings.from_bundle(bundle, device)
    sampler = TokenizerSampler(bundle.tokenizer, cfg.sampler)

    seed_everything(cfg.seed)
    hn = _start(bundle, source, cfg, device)
    hn.train()
    optimizer = torch.optim.AdamW(hn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    evaluator = _Evaluator(eval_texts, sampler, bundle.tokenizer, cfg, device,
                           hn.config.max_pieces) if eval_texts and ctx.main else None
    task = HypernetTraining(hn, optimizer, lm, source, bundle.tokenizer, sampler, chunks, cfg,
                            ctx, device, evaluator)
    done = run(task, optimizer, cfg, out, ctx, resuming=resuming, name="hypernet",
               progress=progress, stop_after=stop_after,
               start={"chunks": len(chunks), "parameters": hn.num_parameters()})
    if ctx.main:
        hn.save(out)
    ctx.barrier()
    return TrainResult(hypernet=hn, step=done.step, loss=done.loss, out=out,
                       seconds=time.perf_counter() - start_time, train_seconds=done.train_seconds,
                       train_cpu_seconds=done.train_cpu_seconds)


def _start(bundle, source: SourceEmbeddings, cfg: TrainConfig, device) -> Hypernet:
    """The hypernet training starts from: a fresh one of ``cfg.hypernet``'s shape, or the one
    ``cfg.init`` names (checked to belong to this model), in float32 on ``device``."""
    if cfg.init is None:
        return Hypernet.for_source(source, base_model=bundle.spec, tokenizer=bundle.tokenizer,
                                   **asdict(cfg.hypernet)).to(device)
    if cfg.init == "default":
        from tokenswap.hypernet.shipped import for_model

        return for_model(bundle, device=device)
    from tokenswap.hypernet.model import load_hypernet

    return load_hypernet(cfg.init, source, bundle.name, tokenizer=bundle.tokenizer,
                         device=device)


class _Evaluator:
    """Held-out loss with one fixed tokenizer sampled from the eval texts (own seed)."""

    def __init__(self, texts, sampler: TokenizerSampler, source_tok, cfg: TrainConfig, device,
                 max_pieces: int) -> None:
        chunks = chunk_texts(texts, cfg.seq_len)[: cfg.eval_batches * cfg.batch_size]
        # Three seed words where training draws use two, (seed, step); numpy pads entropy with
        # zeros, hence the final 1. Its own stream: never one of the training tokenizers.
        self.tokenizer = sampler.sample(chunks, seed=(cfg.seed, 0, 1))
        self.pair = build_pair(source_tok, self.tokenizer)
        self.inputs = PieceInputs.from_pair(self.pair, max_pieces).to(device)
        self.batches = [encode(self.tokenizer, chunks[i:i + cfg.batch_size], cfg.seq_len, device)
                        for i in range(0, len(chunks), cfg.batch_size)]
        self.bytes = 0
        for ids, mask in self.batches:
            for row, m in zip(ids.tolist(), mask.tolist(), strict=True):
                real = [t for t, keep in zip(row, m, strict=True) if keep][1:]
                self.bytes += len(self.tokenizer.decode(real).encode("utf-8"))

    @torch.no_grad()
    def __call__(self, hn: Hypernet, lm: FrozenLM, source: SourceEmbeddings) -> dict:
        was = hn.training
        hn.eval()
        pred = hn(self.inputs, source)
        nats, count = 0.0, 0
        for ids, mask in self.batches:
            n, c = lm.loss_sum(pred, ids, mask)
            nats, count = nats + float(n), count + c
        hn.train(was)
        return {"eval_loss": nats / max(1, count),
                "eval_bpb": nats / math.log(2) / max(1, self.bytes),
                "eval_vocab": len(self.pair), "eval_tokens": count}


def trained_files(out: str | os.PathLike) -> bool:
    """True when ``out`` holds a finished hypernet."""
    out = Path(out)
    return (out / WEIGHTS_FILE).is_file() and (out / CONFIG_FILE).is_file()


__all__ = ["LOG_FILE", "ChunkTeacher", "FrozenLM", "HypernetTraining", "TrainConfig",
           "TrainResult", "aux_loss", "batch_for_step", "chunk_texts", "encode", "nats_sum", "train_hypernet"]
