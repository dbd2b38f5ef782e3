"""The options of a tuning run: one typed dataclass, every field with its help text.

The CLI (``tokenswap tune``), the Python API (:func:`tokenswap.api.tune`) and checkpoints all
go through :class:`TuneConfig`; ``TuneConfig.from_options`` turns keyword arguments (or a
dict read from a checkpoint) into one, with a readable error for unknown names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum

from tokenswap.errors import TokenswapError, did_you_mean


class Stage(str, Enum):
    """What trains after the embedding-only warm-up (:mod:`.stages`)."""

    FULL = "full"  # every parameter
    LORA = "lora"  # LoRA adapters on every linear layer (peft) plus the embeddings
    EMBEDDINGS = "embeddings"  # input/output embeddings and output bias only, for the whole run


class Precision(str, Enum):
    """Number format of weights, gradients and optimizer state."""

    FP32 = "fp32"
    BF16 = "bf16"  # pure bfloat16: weights, gradients and AdamW moments (no fp32 master copy)


class Schedule(str, Enum):
    """Learning rate after the linear warm-up."""

    COSINE = "cosine"
    LINEAR = "linear"
    CONSTANT = "constant"


class Clock(str, Enum):
    """What ``minutes`` counts."""

    WALL = "wall"  # wall-clock seconds spent in training steps
    CPU = "cpu"  # this process's CPU seconds in training steps, all its threads: other jobs on
    #              a shared machine do not inflate it (compare runs with the same thread count)


# Fields whose change makes a checkpoint unusable: the data order or the parameter set differ.
RESUME_KEYS = ("seed", "batch_size", "seq_len", "stage", "precision", "lora_rank", "lora_targets")


@dataclass
class TuneConfig:
    """Options of :func:`tokenswap.tuning.loop.tune_model`; each is also a keyword argument."""

    steps: int | None = None  # optimizer steps (the schedule's length); None = until `minutes` end
    minutes: float | None = None  # training-time budget; evaluation and checkpoints do not count
    clock: Clock = Clock.WALL  # what `minutes` counts: wall-clock or CPU time of training steps
    stage: Stage = Stage.FULL  # what trains after the embedding warm-up: full, lora or embeddings
    embedding_fraction: float = 0.1  # first share of the run (of steps, else of minutes) that
    #                                  trains the embeddings only (the new vocabulary settles
    #                                  before the body moves)
    batch_size: int = 16  # packed sequences per optimizer step, over all ranks and micro-steps
    grad_accum: int = 1  # micro-batches per rank per step (batch_size / (ranks * grad_accum) each)
    seq_len: int = 256  # tokens per packed sequence
    lr: float = 1e-4  # peak learning rate of the body (full) or the adapters (lora)
    embedding_lr: float | None = None  # peak learning rate of the embeddings; None = `lr`
    weight_decay: float = 0.0  # AdamW decoupled weight decay of the body (never the embeddings)
    warmup_steps: int = 20  # linear warm-up (capped at a tenth of `steps`)
    schedule: Schedule = Schedule.COSINE  # decay to zero over the run (steps, else the budget)
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    precision: Precision = Precision.FP32  # fp32, or pure bf16 (Dobler & de Melo 2024: enough)
    lora_rank: int = 16  # LoRA rank r (stage lora)
    lora_alpha: float = 32.0  # LoRA scaling numerator (the update is scaled by alpha / r)
    lora_dropout: float = 0.0  # dropout on the LoRA branch
    lora_targets: str = "all-linear"  # peft target_modules: "all-linear" or comma-separated names
    save_adapter: bool = False  # also save the LoRA adapter (out/adapter) next to the merged model
    fsdp: bool = False  # shard parameters, gradients and optimizer state over ranks (FSDP2)
    seed: int = 0  # data order and any randomness in the model (dropout)
    eval_every: int = 50  # steps between held-out evaluations (needs eval texts)
    eval_max_length: int = 1024  # window of the held-out bits/byte (as `tokenswap eval`)
    eval_batch_size: int = 8  # windows per forward pass when evaluating
    checkpoint_every: int = 50  # steps between checkpoints (and one at the end of every run)
    keep_checkpoint: bool = True  # keep out/checkpoint after the run finished (resumable)
    log_every: int = 1  # steps between training-loss lines in log.jsonl

    def __post_init__(self) -> None:
        for name, kind in (("stage", Stage), ("precision", Precision), ("schedule", Schedule),
                           ("clock", Clock)):
            value = getattr(self, name)
            if not isinstance(value, kind):
                choices = [k.value for k in kind]
                if value not in choices:
                    raise TokenswapError(f"{name} must be one of {', '.join(choices)} "
                                         f"(got {value!r}){did_you_mean(str(value), choices)}")
                setattr(self, name, kind(value))
        if self.steps is None and self.minutes is None:
            raise TokenswapError("say how long to tune: --steps or --minutes")
        if self.steps is not None and self.steps < 0:
            raise TokenswapError(f"--steps must be >= 0, got {self.steps}")
        if not 0.0 <= self.embedding_fraction <= 1.0:
            raise TokenswapError(f"embedding_fraction must be in [0, 1], got {self.embedding_fraction}")
        for name in ("batch_size", "grad_accum", "eval_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise TokenswapError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise TokenswapError(f"seq_len must be at least 2 tokens, got {self.seq_len}")

    @classmethod
    def from_options(cls, **options) -> TuneConfig:
        known = [f.name for f in fields(cls)]
        for key in options:
            if key not in known:
                raise TokenswapError(f"unknown tuning option {key!r}{did_you_mean(key, known)}")
        return cls(**options)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, Enum):
                d[key] = value.value
        return d
