"""The tuning loop: packed batches, staged parameters, held-out bits/byte, checkpoints, ranks.

Short continued training closes most of what a zero-shot tokenizer transfer leaves open
(Dobler & de Melo, "FOCUS", arXiv 2305.14481; Minixhofer et al., "Zero-Shot Tokenizer
Transfer", arXiv 2405.07883; "Language Adaptation on a Tight Academic Compute Budget: Tokenizer
Swapping Works and Pure bfloat16 Is Enough"). Per optimizer step:

1. the global batch of packed sequences (:mod:`.data`) is a function of ``(seed, step)``; each
   rank takes its share and splits it into ``grad_accum`` micro-batches;
2. next-token cross-entropy is summed in float32 and divided by the *global* number of
   predicted tokens, so gradients summed over micro-batches and ranks equal the gradient of
   one process on the whole batch; with ``objective`` ``alm``/``lm+alm`` a frozen teacher (one
   copy per rank) scores its windows of the same bytes inside the step and the ALM loss of
   :mod:`.distill` is divided by the *global* number of chunks, likewise;
3. the stage (:mod:`.stages`) decides which parameters train: embeddings only during the first
   ``embedding_fraction`` of the run, then the whole model or LoRA adapters;
4. AdamW, linear warm-up, then cosine/linear decay over ``steps`` (or over the time budget
   when only ``minutes`` is given, counted on the wall clock or, with ``clock="cpu"``, on the
   process's CPU clock), gradient clipping.

This module is the tuning :class:`Tuning` task (steps 1-3, held-out scoring, ``out/best``) and
the model's set-up and export; the loop, budget, schedule, checkpoints, log and progress bar
are the shared training skeleton's (:mod:`tokenswap.training`).

Every ``eval_every`` steps the model scores the held-out texts with
:func:`tokenswap.scoring.bpb.bits_per_byte`, the metric and bytes of ``tokenswap eval``; the
result goes to ``out/log.jsonl`` and the progress bar, and the best model so far is kept in
``out/best/`` (a plain model directory). Checkpoints (weights, optimizer, RNG states, step,
training seconds, best score) go atomically to ``out/checkpoint/``; a run killed at any point
resumes from the last one to the same final weights as an uninterrupted run. The final model
(LoRA merged) and the tokenizer are written to ``out/`` itself: a directory
``AutoModelForCausalLM``/``AutoTokenizer`` load as it is.

Ranks (``torchrun``/``accelerate launch`` set ``WORLD_SIZE``): gloo on CPUs, NCCL on GPUs, one
GPU per rank. Data parallel (default): every rank holds the whole model, gradients are summed
across ranks after the backward pass (bucketed all-reduce, not overlapped with the backward
pass: a stage switch changes the trainable set, which ``DistributedDataParallel`` cannot
follow). ``fsdp=True`` shards parameters, gradients and optimizer state with FSDP2
(``torch.distributed.fsdp.fully_shard``, one unit per decoder layer) for models that do not fit
one device; every rank then scores the held-out texts in lock-step. Only rank 0 writes.

Left out: LoRA under FSDP, activation checkpointing, fp32 master weights for bf16 (pure bf16 on
purpose), attention masking at document boundaries inside packed sequences.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tokenswap.distributed import Dist, process_group
from tokenswap.errors import TokenswapError
from tokenswap.io.checkpoint import CHECKPOINT
from tokenswap.io.save import atomic_dir, save_model
from tokenswap.scoring.bpb import BpbResult, bits_per_byte
from tokenswap.training.checkpoint import TaskState, open_output, seed_everything
from tokenswap.training.log import LOG_FILE
from tokenswap.training.loop import run
from tokenswap.tuning.config import Objective, Precision, Stage, TuneConfig
from tokenswap.tuning.data import batch_indices, pack, rank_micro_batches
from tokenswap.tuning.distill import (
    AlignedBlocks,
    alm_loss,
    chunk_sums,
    micro_batch,
    pack_aligned,
    token_logprobs,
)
from tokenswap.tuning.precision import bf16_warning
from tokenswap.tuning.stages import (
    add_lora,
    parameter_groups,
    plain_model,
    set_stage,
    trainable_count,
)

BEST = "best"
ADAPTER = "adapter"


@dataclass
class TuneResult:
    model: nn.Module | None  # the tuned plain model (rank 0; None on other ranks under FSDP)
    tokenizer: object
    step: int  # steps done in total, resumed ones included
    loss: float | None  # last training loss (nats per token)
    eval_bpb: float | None  # held-out bits/byte of the final model
    best_bpb: float | None  # best held-out bits/byte seen (kept in out/best)
    best_step: int | None
    out: Path
    seconds: float  # wall time of this call
    train_seconds: float  # time spent in training steps, over all resumed runs
    train_cpu_seconds: float = 0.0  # this process's CPU time in those steps (the fair clock on
    # a shared CPU: it does not count other jobs; on a GPU it misses the device's time)


# ----------------------------------------------------------------------------- sharding


def _shard(model: nn.Module) -> None:
    """FSDP2: one unit per decoder layer (the classes in ``_no_split_modules``), then the root."""
    from torch.distributed.fsdp import fully_shard

    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)


# ----------------------------------------------------------------------------- state


def _full_state(model: nn.Module, optimizer, ctx: Dist) -> tuple[dict, dict]:
    """Whole-model and optimizer state dicts (gathered on rank 0 under FSDP; collective)."""
    if not ctx.fsdp:
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return (get_model_state_dict(model, options=opts),
            get_optimizer_state_dict(model, optimizer, options=opts))


def _load_state(model: nn.Module, optimizer, model_sd: dict, optim_sd: dict, ctx: Dist) -> None:
    if not ctx.fsdp:
        model.load_state_dict(model_sd)
        optimizer.load_state_dict(optim_sd)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_sd, options=opts)
    set_optimizer_state_dict(model, optimizer, optim_sd, options=opts)


# ----------------------------------------------------------------------------- the task


class Tuning:
    """The tuning :class:`~tokenswap.training.loop.Task`: next-token loss on packed sequences,
    the embedding-only stage, held-out bits/byte and the best model so far in ``out/best``."""

    def __init__(self, model: nn.Module, optimizer, emb: list, body: list, blocks: torch.Tensor,
                 tokenizer, eval_texts: list[str], cfg: TuneConfig, ctx: Dist,
                 device: torch.device, out: Path, provenance: dict,
                 aligned: AlignedBlocks | None = None, teacher: nn.Module | None = None) -> None:
        self.model, self.optimizer, self.emb, self.body = model, optimizer, emb, body
        self.blocks, self.tokenizer, self.eval_texts = blocks, tokenizer, eval_texts
        self.cfg, self.ctx, self.device, self.out, self.provenance = cfg, ctx, device, out, provenance
        self.aligned, self.teacher = aligned, teacher  # both set for the alm objectives
        self.global_count = cfg.batch_size * (cfg.seq_len - 1)  # predicted tokens per step
        self.embeddings_only: bool | None = None  # the stage set on the model now
        self.best_bpb, self.best_step = math.inf, None

    def step(self, step: int, progress: float) -> dict:
        cfg, ctx = self.cfg, self.ctx
        embeddings_only = cfg.stage == Stage.EMBEDDINGS or progress < cfg.embedding_fraction
        if embeddings_only != self.embeddings_only:
            set_stage(self.model, self.emb, self.body, embeddings_only)
            self.embeddings_only = embeddings_only
        rows = batch_indices(len(self.blocks), step, cfg.batch_size, cfg.seed)
        stage = "embeddings" if embeddings_only else cfg.stage.value
        if cfg.objective != Objective.LM:
            return {**self._distill_step(rows), "stage": stage}
        nats_local = 0.0
        # FSDP averages gradients over ranks; the global normalisation wants their sum.
        scale = ctx.world if ctx.fsdp else 1
        for micro in rank_micro_batches(rows, ctx.rank, ctx.world, cfg.grad_accum):
            ids = self.blocks[micro].to(self.device)  # (b, T)
            logits = self.model(input_ids=ids, use_cache=False).logits  # (b, T, V)
            nats = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                   ids[:, 1:].reshape(-1), reduction="sum")
            (nats * scale / self.global_count).backward()
            nats_local += float(nats.detach())
            del logits, nats
        return {"loss": ctx.sum(nats_local) / self.global_count, "tokens": self.global_count,
                "stage": stage}

    def _distill_step(self, rows: list[int]) -> dict:
        """Forward and backward passes of the alm / lm+alm objectives (:mod:`.distill`): the
        teacher scores its windows without gradients inside the step, so its time counts."""
        cfg, ctx = self.cfg, self.ctx
        use_lm = cfg.objective == Objective.LM_ALM
        global_chunks = max(self.aligned.chunk_count(rows), 1)
        scale = ctx.world if ctx.fsdp else 1
        nats_local = alm_local = 0.0
        teacher_tokens = 0
        for micro in rank_micro_batches(rows, ctx.rank, ctx.world, cfg.grad_accum):
            mb = micro_batch(self.aligned, micro)
            ids = mb.ids.to(self.device)  # (b, L)
            logp = token_logprobs(self.model(input_ids=ids, use_cache=False).logits, ids)
            size = max(int(mb.count.max()), 1)
            student = chunk_sums(logp, mb.chunks.to(self.device), size)  # (b, C)
            teacher = self._teacher_chunks(mb, size)  # (b, C)
            valid = torch.arange(size, device=self.device)[None] < mb.count.to(self.device)[:, None]
            alm = alm_loss(teacher[valid], student[valid], cfg.alm_temperature).sum()
            loss = cfg.alm_weight * alm / global_chunks if use_lm else alm / global_chunks
            nats = -logp.sum()  # position 0 holds 0
            if use_lm:
                loss = loss + nats / self.global_count
            (loss * scale).backward()
            nats_local += float(nats.detach())
            alm_local += float(alm.detach())
            teacher_tokens += sum(len(w) for w in mb.teacher)
            del logp, student, loss
        lm_loss = ctx.sum(nats_local) / self.global_count
        alm_value = ctx.sum(alm_local) / global_chunks
        return {"loss": lm_loss + cfg.alm_weight * alm_value if use_lm else alm_value,
                "lm_loss": lm_loss, "alm_loss": alm_value, "chunks": global_chunks,
                "teacher_tokens": int(ctx.sum(teacher_tokens)), "tokens": self.global_count}

    @torch.no_grad()
    def _teacher_chunks(self, mb, size: int) -> torch.Tensor:
        """The teacher's log-likelihood of every scored chunk of the micro-batch, (b, size)."""
        t_device = self.teacher.get_input_embeddings().weight.device
        out = torch.zeros(len(mb.teacher), size, device=self.device)
        for r, (window, chunks) in enumerate(zip(mb.teacher, mb.teacher_chunks, strict=True)):
            ids = window.to(t_device)[None]  # (1, T)
            logp = token_logprobs(self.teacher(input_ids=ids, use_cache=False).logits, ids)
            out[r] = chunk_sums(logp, chunks.to(t_device)[None], size)[0].to(self.device)
        return out

    def evaluate(self, step: int) -> dict | None:
        if not self.eval_texts:
            return None
        res = _held_out(self.model, self.tokenizer, self.eval_texts, self.cfg, self.ctx)
        if res.bits_per_byte < self.best_bpb:
            self.best_bpb, self.best_step = res.bits_per_byte, step
            _export(self.model, self.tokenizer, self.out / BEST, self.ctx, {
                **self.provenance, "tune": {**self.cfg.to_dict(), "step": step,
                                            "eval_bpb": self.best_bpb}})
        return {"eval_bpb": res.bits_per_byte, "eval_bits": res.bits, "eval_bytes": res.bytes,
                "eval_tokens": res.tokens, "best_bpb": self.best_bpb}

    def state(self) -> TaskState:
        model_sd, optim_sd = _full_state(self.model, self.optimizer, self.ctx)  # collective
        return TaskState(model_sd, optim_sd, {"best_bpb": self.best, "best_step": self.best_step})

    def load(self, state: TaskState) -> None:
        _load_state(self.model, self.optimizer, state.model, state.optimizer, self.ctx)
        best = state.extra["best_bpb"]
        self.best_bpb = float(best) if best is not None else math.inf
        self.best_step = state.extra["best_step"]

    @property
    def best(self) -> float | None:
        return None if self.best_bpb == math.inf else self.best_bpb


# ----------------------------------------------------------------------------- entry point


def tune_model(
    bundle,
    texts: Sequence[str],
    out: str | os.PathLike,
    *,
    eval_texts: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    provenance: dict | None = None,
    teacher=None,
    teacher_device: str | torch.device | None = None,
    **options,
) -> TuneResult:
    """Continue training ``bundle`` (a :class:`~tokenswap.io.models.ModelBundle`) on ``texts``.

    ``options`` are :class:`~tokenswap.tuning.config.TuneConfig` fields. The bundle's model is
    trained in place (and converted to bf16 or wrapped with LoRA adapters as asked); the
    returned :class:`TuneResult` holds the plain tuned model. ``out`` receives the final model
    and tokenizer, ``best/``, ``checkpoint/`` and ``log.jsonl``; an existing ``out`` with a
    checkpoint is resumed when ``resume``. ``callback`` is called on every rank after every
    step with that step's log record. ``provenance`` is merged into the saved ``tokenswap.json``.
    ``teacher`` (a ModelBundle with its own tokenizer) is what the ``alm`` objectives match;
    it runs frozen on ``teacher_device`` (default: the student's), one copy per rank.
    """
    cfg = TuneConfig.from_options(**options)
    if cfg.objective != Objective.LM and teacher is None:
        raise TokenswapError(f"--objective {cfg.objective.value} needs a teacher model "
                             "(--teacher)")
    out = Path(out)
    device = torch.device(device) if device is not None else \
        bundle.model.get_input_embeddings().weight.device
    with process_group(device, cfg.fsdp) as (ctx, device):
        if ctx.fsdp and cfg.stage == Stage.LORA:
            raise TokenswapError("LoRA with --fsdp is not supported; LoRA trains few weights, "
                                 "use data parallel (drop --fsdp)")
        rank_micro_batches(list(range(cfg.batch_size)), 0, ctx.world, cfg.grad_accum)  # checks
        aligned, teacher_model = None, None
        if cfg.objective != Objective.LM:
            aligned = pack_aligned(bundle.tokenizer, teacher.tokenizer, texts, cfg.seq_len)
            blocks = aligned.blocks
            teacher_model = teacher.model.to(torch.device(teacher_device) if teacher_device
                                             is not None else device)
            teacher_model.eval().requires_grad_(False)
        else:
            blocks = pack(bundle.tokenizer, texts, cfg.seq_len)
        resuming = open_output(out, resume, ctx)
        return _train(bundle, blocks, out, cfg, list(eval_texts or []), device, ctx, resuming,
                      progress, callback, provenance or {}, aligned, teacher_model)


@torch.enable_grad()  # callers may hold torch.no_grad (benchmarks, inference code)
def _train(bundle, blocks: torch.Tensor, out: Path, cfg: TuneConfig, eval_texts: list[str],
           device: torch.device, ctx: Dist, resuming: bool, progress: bool, callback,
           provenance: dict, aligned: AlignedBlocks | None = None,
           teacher: nn.Module | None = None) -> TuneResult:
    start_time = time.perf_counter()
    seed_everything(cfg.seed)
    model = bundle.model.to(device)
    if cfg.precision == Precision.BF16:
        slow = bf16_warning(device) if ctx.main else None
        if slow:
            warnings.warn(slow, RuntimeWarning, stacklevel=3)
        model.to(torch.bfloat16)
    if cfg.stage == Stage.LORA:
        model = add_lora(model, cfg)
    if ctx.fsdp:
        _shard(model)
    model.train()
    emb, body = parameter_groups(model, cfg)  # after sharding: FSDP2 swaps the parameters
    emb_lr = cfg.embedding_lr if cfg.embedding_lr is not None else cfg.lr
    groups = [{"params": emb, "lr": emb_lr, "weight_decay": 0.0}]
    if body:
        groups.append({"params": body, "lr": cfg.lr, "weight_decay": cfg.weight_decay})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    tokenizer = bundle.tokenizer
    task = Tuning(model, optimizer, emb, body, blocks, tokenizer, eval_texts, cfg, ctx, device,
                  out, provenance, aligned, teacher)
    done = run(task, optimizer, cfg, out, ctx, resuming=resuming, name="tune",
               progress=progress, callback=callback,
               start={"sequences": len(blocks), "tokens": int(blocks.numel()),
                      "trainable_embeddings": sum(p.numel() for p in emb),
                      "trainable_body": sum(p.numel() for p in body)})
    eval_bpb = done.evaluation["eval_bpb"] if done.evaluation is not None else None
    final = _export(model, tokenizer, out / ".final", ctx, {
        **provenance, "tune": {**cfg.to_dict(), "step": done.step, "eval_bpb": eval_bpb,
                               "best_bpb": task.best, "best_step": task.best_step,
                               "train_seconds": done.train_seconds}})
    if ctx.main:
        _publish(out / ".final", out)
        if cfg.stage == Stage.LORA and cfg.save_adapter:
            with atomic_dir(out / ADAPTER, overwrite=True) as tmp:
                model.save_pretrained(tmp)
        if not cfg.keep_checkpoint:
            shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    ctx.barrier()
    bundle.model = final if final is not None else model
    return TuneResult(model=final, tokenizer=tokenizer, step=done.step, loss=done.loss,
                      eval_bpb=eval_bpb, best_bpb=task.best, best_step=task.best_step, out=out,
                      seconds=time.perf_counter() - start_time, train_seconds=done.train_seconds,
                      train_cpu_seconds=done.train_cpu_seconds)


# ----------------------------------------------------------------------------- pieces


def _held_out(model: nn.Module, tokenizer, texts: list[str], cfg: TuneConfig,
              ctx: Dist) -> BpbResult:
    """``bits_per_byte`` of the held-out texts: documents split over ranks (data parallel) or
    scored by every rank in lock-step (FSDP: every forward pass is collective)."""
    mine = texts if ctx.fsdp or ctx.world == 1 else texts[ctx.rank::ctx.world]
    mine = [t for t in mine if t]
    if mine:
        res = bits_per_byte(_OutsideInferenceMode(model) if ctx.fsdp else model, tokenizer, mine,
                            max_length=cfg.eval_max_length, batch_size=cfg.eval_batch_size)
    else:
        res = BpbResult(bits=0.0, bytes=0, tokens=0, documents=0)
    if ctx.world == 1 or ctx.fsdp:
        return res
    return BpbResult(bits=ctx.sum(res.bits), bytes=int(ctx.sum(res.bytes)),
                     tokens=int(ctx.sum(res.tokens)), documents=int(ctx.sum(res.documents)),
                     unk_tokens=int(ctx.sum(res.unk_tokens)))


class _OutsideInferenceMode(nn.Module):
    """Runs the wrapped model with gradients off but outside ``torch.inference_mode``.

    ``bits_per_byte`` scores under inference mode; FSDP2 would then gather parameters into
    inference tensors that its next training step cannot update in place.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.config = model.config

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(self, *args, **kwargs):
        with torch.inference_mode(False), torch.no_grad():
            return self.inner(*args, **kwargs)


def _export(model: nn.Module, tokenizer, where: Path, ctx: Dist, provenance: dict
            ) -> nn.Module | None:
    """Save the plain model (LoRA merged; FSDP gathered) + tokenizer to ``where`` (rank 0)."""
    from tokenswap.io.models import ModelBundle

    if ctx.fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        from transformers import AutoModelForCausalLM

        model_sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                        cpu_offload=True))
        plain = None
        if ctx.main:
            dtype = next(iter(model_sd.values())).dtype
            plain = AutoModelForCausalLM.from_config(model.config, dtype=dtype)
            plain.load_state_dict(model_sd)
            plain.generation_config = model.generation_config
    else:
        plain = plain_model(model) if ctx.main else None
    if ctx.main:
        save_model(ModelBundle(plain, tokenizer, "tuned"), where, overwrite=True,
                   provenance=provenance)
    ctx.barrier()
    return plain


def _publish(staged: Path, out: Path) -> None:
    """Move the files of a finished model directory into ``out`` (each rename is atomic)."""
    for item in sorted(staged.iterdir()):
        target = out / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(item, target)
    staged.rmdir()


__all__ = ["LOG_FILE", "TuneResult", "Tuning", "trainable_count", "tune_model"]
