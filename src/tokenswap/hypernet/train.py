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
   square of the source matrix (so ``aux_weight`` does not depend on the embedding scale).

AdamW, linear warm-up then cosine or linear decay (constant after warm-up when only a time
budget is given), gradient clipping. Checkpoints (weights, optimizer, scheduler, RNG states,
step) go atomically to ``out/checkpoint/`` and resuming from one gives the same weights as an
uninterrupted run. A fixed evaluation tokenizer is sampled from ``eval_texts`` with its own
seed; evaluation loss and bits per byte go to ``out/log.jsonl`` with the training loss.

With ``WORLD_SIZE`` > 1 (``torchrun``) every rank takes its share of the batch; the loss is
normalised by the global number of predicted tokens and the hypernet's gradients are summed
across ranks, so the update equals a one-process step on the whole batch. Only rank 0 writes.

Not here: mixed precision, gradient accumulation, MLM (encoder) models.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tokenswap.distributed import Dist, process_group
from tokenswap.errors import TokenswapError
from tokenswap.hypernet.model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Hypernet,
    PieceInputs,
    Prediction,
    SourceEmbeddings,
)
from tokenswap.hypernet.sampler import SamplerConfig, TokenizerSampler
from tokenswap.io.checkpoint import CHECKPOINT, prepare_out, rng_state, set_rng_state, write_jsonl
from tokenswap.io.save import atomic_dir
from tokenswap.vocab.pair import Provenance, TokenPair, build_pair

LOG_FILE = "log.jsonl"


@dataclass
class TrainConfig:
    """Options of :func:`train_hypernet`; every field is also a keyword argument."""

    steps: int | None = None  # optimizer steps (schedule length); None = until `minutes` run out
    minutes: float | None = None  # wall-clock budget for this run
    batch_size: int = 8  # texts per step (global, over all ranks)
    seq_len: int = 128  # tokens per text (longer texts are cut into chunks of ~6 chars/token)
    lr: float = 1e-4  # peak learning rate
    weight_decay: float = 0.01
    warmup_steps: int = 100  # linear warm-up (capped at a tenth of `steps`)
    schedule: str = "cosine"  # "cosine" or "linear" decay to zero after warm-up
    grad_clip: float = 1.0  # max global gradient norm
    aux_weight: float = 0.5  # weight of the auxiliary loss on exact-match tokens
    identity_steps: int = 0  # first steps train on the source tokenizer itself
    seed: int = 0
    sample_texts: int = 64  # texts each step's tokenizer is drawn from: the batch and random others
    checkpoint_every: int = 100  # steps between checkpoints (and one at the end of every run)
    eval_every: int = 100  # steps between held-out evaluations (needs eval_texts)
    eval_batches: int = 4  # batches of eval texts scored per evaluation
    log_every: int = 10  # steps between training-loss lines in log.jsonl
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    hypernet: dict = field(default_factory=dict)  # HypernetConfig fields, e.g. {"d_model": 128}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    hypernet: Hypernet
    step: int  # steps done in total (including resumed ones)
    loss: float | None  # last training loss (language model part)
    out: Path
    seconds: float


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
        logits = self.logits(pred, ids, mask)[:, :-1]
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                               ignore_index=-100, reduction="sum")
        return loss, int((targets != -100).sum())


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


# ----------------------------------------------------------------------------- checkpoints


def _schedule(cfg: TrainConfig):
    warmup = cfg.warmup_steps if cfg.steps is None else min(cfg.warmup_steps, max(1, cfg.steps // 10))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.steps is None:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, cfg.steps - warmup))
        if cfg.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def save_checkpoint(out: Path, hn: Hypernet, optimizer, scheduler, step: int,
                    cfg: TrainConfig) -> Path:
    """Write ``out/checkpoint/`` atomically: weights, optimizer, scheduler, RNG, step."""
    with atomic_dir(out / CHECKPOINT, overwrite=True) as tmp:
        hn.save(tmp)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_state(), "step": step}, tmp / "state.pt")
        (tmp / "state.json").write_text(json.dumps(
            {"step": step, "data_position": step * cfg.batch_size, "config": cfg.to_dict()},
            indent=2) + "\n")
    return out / CHECKPOINT


# ----------------------------------------------------------------------------- training


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

    ``options`` are :class:`TrainConfig` fields (``steps``, ``minutes``, ``batch_size``,
    ``seq_len``, ``lr``, ``seed``, ...); ``sampler`` may be a :class:`SamplerConfig` or a dict.
    The trained hypernet is saved to ``out`` (``hypernet.safetensors`` + ``hypernet.json``),
    checkpoints to ``out/checkpoint/``, log lines to ``out/log.jsonl``. ``stop_after`` ends
    this run after that many steps in total (as if interrupted) without changing the schedule.
    """
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(options) - known
    if unknown:
        raise TokenswapError(f"unknown hypernet training options {sorted(unknown)}")
    if isinstance(options.get("sampler"), dict):
        options["sampler"] = SamplerConfig(**options["sampler"])
    cfg = TrainConfig(**options)
    if cfg.steps is None and cfg.minutes is None:
        raise TokenswapError("say how long to train: --steps or --minutes")
    if cfg.schedule not in ("cosine", "linear"):
        raise TokenswapError(f"schedule must be cosine or linear, got {cfg.schedule!r}")
    chunks = chunk_texts(texts, cfg.seq_len)
    if not chunks:
        raise TokenswapError("no text to train the hypernet on; pass --corpus")
    out = Path(out)

    device = torch.device(device) if device is not None else model_bundle.input_embeddings().device
    with process_group(device) as (ctx, device):
        resuming = prepare_out(out, resume)
        ctx.barrier()  # every rank has checked `out` before rank 0 creates it
        if ctx.main:
            out.mkdir(exist_ok=True)
        return _train(model_bundle, chunks, out, cfg, eval_texts, device, ctx, resuming,
                      stop_after, progress)


@torch.enable_grad()  # callers may hold torch.no_grad (benchmarks, inference code)
def _train(bundle, chunks, out: Path, cfg: TrainConfig, eval_texts, device, ctx: Dist,
           resuming: bool, stop_after: int | None, progress: bool) -> TrainResult:
    start_time = time.perf_counter()
    bundle.model.to(device)
    lm = FrozenLM(bundle.model)
    source = SourceEmbeddings.from_bundle(bundle, device)
    source_tok = bundle.tokenizer
    sampler = TokenizerSampler(source_tok, cfg.sampler)

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    hn = Hypernet.for_source(source, base_model=bundle.spec, tokenizer=bundle.tokenizer,
                             **cfg.hypernet).to(device)
    hn.train()
    optimizer = torch.optim.AdamW(hn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg))
    step = 0
    if resuming:
        ckpt = out / CHECKPOINT
        saved_cfg = json.loads((ckpt / "state.json").read_text()).get("config", {})
        changed = [k for k in ("seed", "batch_size", "seq_len", "identity_steps")
                   if k in saved_cfg and saved_cfg[k] != getattr(cfg, k)]
        if changed:
            raise TokenswapError(
                f"checkpoint {ckpt} was written with other {', '.join(changed)} "
                f"({', '.join(f'{k}={saved_cfg[k]}' for k in changed)}); resume with the same "
                "values or pass --no-resume with a new --out")
        # On the CPU: RNG states must stay CPU tensors; the optimizer moves its own state.
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
        saved = Hypernet.load(ckpt, device=device)
        for key in ("base_vocab_size", "base_vocab_hash", "base_tokenizer_size"):  # older files
            if not getattr(saved.config, key):
                setattr(saved.config, key, getattr(hn.config, key))
        if saved.config != hn.config:
            raise TokenswapError(f"checkpoint {ckpt} is for another model or hypernet shape")
        hn.load_state_dict(saved.state_dict())
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step = int(state["step"])

    evaluator = _Evaluator(eval_texts, sampler, source_tok, cfg, device, hn.config.max_pieces) \
        if eval_texts and ctx.main else None
    identity_pair = None
    log = (out / LOG_FILE).open("a") if ctx.main else None
    deadline = start_time + cfg.minutes * 60 if cfg.minutes is not None else math.inf
    last = stop_after if stop_after is not None else cfg.steps
    loss_value = None
    bar = _progress_bar(progress and ctx.main, cfg.steps, step)
    try:
        if evaluator is not None and step == 0:  # the untrained hypernet is FVT: the baseline
            write_jsonl(log, {"step": 0, **evaluator(hn, lm, source)})
        while (last is None or step < last) and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            batch = batch_for_step(chunks, step, cfg.batch_size, cfg.seed)
            if step < cfg.identity_steps:
                tokenizer = source_tok
                if identity_pair is None:
                    identity_pair = build_pair(source_tok, source_tok)
                pair = identity_pair
            else:
                tokenizer = sampler.sample(sample_pool(chunks, batch, step, cfg),
                                           seed=(cfg.seed, step))
                pair = build_pair(source_tok, tokenizer)
            inputs = PieceInputs.from_pair(pair, hn.config.max_pieces).to(device)
            ids, mask = encode(tokenizer, batch[ctx.rank::ctx.world], cfg.seq_len, device)

            pred = hn(inputs, source)
            nats, count = lm.loss_sum(pred, ids, mask)
            global_count = max(1.0, ctx.sum(count))
            aux = aux_loss(pred, pair, device, source)
            loss = nats / global_count + cfg.aux_weight * aux / ctx.world
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ctx.sum_grads(list(hn.parameters()))
            grad_norm = torch.nn.utils.clip_grad_norm_(hn.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1

            loss_value = ctx.sum(float(nats.detach())) / global_count
            seconds = time.perf_counter() - t0
            tokens_per_s = global_count / max(seconds, 1e-9)
            if log is not None and (step % cfg.log_every == 0 or step == 1):
                write_jsonl(log, {"step": step, "loss": loss_value, "aux": float(aux.detach()),
                             "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0],
                             "vocab": len(pair), "truncated": inputs.stats.truncated,
                             "tokens_per_s": tokens_per_s, "seconds": seconds})
            if bar is not None:
                bar.update(step, loss=loss_value, tps=tokens_per_s)
            if evaluator is not None and step % cfg.eval_every == 0:
                write_jsonl(log, {"step": step, **evaluator(hn, lm, source)})
            if step % cfg.checkpoint_every == 0 and ctx.main:
                save_checkpoint(out, hn, optimizer, scheduler, step, cfg)
            ctx.barrier()
        if ctx.main:
            save_checkpoint(out, hn, optimizer, scheduler, step, cfg)
            if evaluator is not None and step % cfg.eval_every != 0:
                write_jsonl(log, {"step": step, **evaluator(hn, lm, source)})
            hn.save(out)
        ctx.barrier()
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    return TrainResult(hypernet=hn, step=step, loss=loss_value, out=out,
                       seconds=time.perf_counter() - start_time)


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


class _Bar:
    def __init__(self, total: int | None, done: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("hypernet"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.3f}"),
                                 TextColumn("{task.fields[tps]:,.0f} tok/s"),
                                 TimeRemainingColumn(), transient=False)
        self.task = self.progress.add_task("train", total=total, completed=done, loss=float("nan"),
                                           tps=0.0)
        self.progress.start()

    def update(self, step: int, *, loss: float, tps: float) -> None:
        self.progress.update(self.task, completed=step, loss=loss, tps=tps)

    def close(self) -> None:
        self.progress.stop()


def _progress_bar(enabled: bool, total: int | None, done: int) -> _Bar | None:
    return _Bar(total, done) if enabled else None


def trained_files(out: str | os.PathLike) -> bool:
    """True when ``out`` holds a finished hypernet."""
    out = Path(out)
    return (out / WEIGHTS_FILE).is_file() and (out / CONFIG_FILE).is_file()


__all__ = ["FrozenLM", "TrainConfig", "TrainResult", "aux_loss", "batch_for_step", "chunk_texts",
           "encode", "save_checkpoint", "train_hypernet"]
