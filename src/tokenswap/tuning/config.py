"""The options of a tuning run: one typed dataclass, every field with its help text.

The CLI (``tokenswap tune``), the Python API (:func:`tokenswap.api.tune`) and checkpoints all
go through :class:`TuneConfig`. It inherits the budget, schedule, optimizer and checkpoint
options every trainer shares (:class:`tokenswap.training.config.TrainingConfig`) and adds
what tuning alone has: stages, precision, LoRA, FSDP, held-out scoring.
``TuneConfig.from_options`` turns keyword arguments or strings into one, with one-line errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.training.budget import Clock
from tokenswap.training.config import TrainingConfig
from tokenswap.training.schedule import Schedule


class Stage(str, Enum):
    """What trains after the embedding-only warm-up (:mod:`.stages`)."""

    FULL = "full"  # every parameter
    LORA = "lora"  # LoRA adapters on every linear layer (peft) plus the embeddings
    EMBEDDINGS = "embeddings"  # input/output embeddings and output bias only, for the whole run


class Objective(str, Enum):
    """What the training loss compares (:mod:`.distill`)."""

    LM = "lm"  # next-token cross-entropy on the text
    ALM = "alm"  # the teacher's chunk likelihoods, binarised (approximate likelihood matching)
    LM_ALM = "lm+alm"  # their sum (alm weighted by --alm-weight)


class Precision(str, Enum):
    """Number format of weights, gradients and optimizer state."""

    FP32 = "fp32"
    BF16 = "bf16"  # pure bfloat16: weights, gradients and AdamW moments (no fp32 master copy)


@dataclass
class TuneConfig(TrainingConfig):
    """Options of :func:`tokenswap.tuning.loop.tune_model`; each is also a keyword argument."""

    # Changing one of these makes a checkpoint unusable: the data order or the parameter set differ.
    resume_keys: ClassVar[tuple[str, ...]] = ("seed", "batch_size", "seq_len", "stage",
                                              "precision", "lora_rank", "lora_targets",
                                              "objective")
    what: ClassVar[str] = "tuning option"

    batch_size: int = option(
        16, "Packed sequences per optimizer step, over all ranks and micro-steps.")
    lr: float = option(1e-4, "Peak learning rate of the body (full) or the adapters (lora).")
    weight_decay: float = option(
        0.0, "AdamW decoupled weight decay of the body (never the embeddings).")
    stage: Stage = option(
        Stage.FULL, "What trains after the embedding warm-up: full (every parameter), lora "
                    "(LoRA adapters plus the embeddings) or embeddings (only them, all run).")
    embedding_fraction: float = option(
        0.1, "First share of the run (of --steps, else of --minutes) that trains the embeddings "
             "only: the new vocabulary settles before the body moves.")
    grad_accum: int = option(
        1, "Micro-batches per rank per step (batch_size / (ranks * grad_accum) sequences each).")
    seq_len: int = option(256, "Tokens per packed sequence.")
    embedding_lr: float | None = option(
        None, "Peak learning rate of the embeddings; none = --lr.")
    precision: Precision = option(
        Precision.FP32, "fp32, or pure bf16 (weights, gradients and AdamW moments; Dobler & "
                        "de Melo 2024: enough; fast only with native bf16).")
    lora_rank: int = option(16, "LoRA rank r (stage lora).")
    lora_alpha: float = option(32.0, "LoRA scaling numerator (the update is scaled by alpha / r).")
    lora_dropout: float = option(0.0, "Dropout on the LoRA branch.")
    lora_targets: str = option(
        "all-linear", "peft target_modules: all-linear or comma-separated module names.")
    save_adapter: bool = option(
        False, "Also save the LoRA adapter (out/adapter) next to the merged model.")
    fsdp: bool = option(
        False, "Shard parameters, gradients and optimizer state over ranks (FSDP2).")
    eval_max_length: int = option(
        1024, "Window of the held-out bits/byte, in tokens (as `tokenswap eval`).")
    eval_batch_size: int = option(8, "Windows per forward pass when evaluating.")
    objective: Objective = option(
        Objective.LM, "Training loss: lm (next token), alm (match a teacher's likelihood of "
                      "every byte chunk both tokenizers end on; needs a teacher) or lm+alm.")
    alm_temperature: float = option(
        100.0, "Binarisation temperature of alm: chunk likelihoods p become p^(1/T) before "
               "the binary KL (Minixhofer et al. 2025; tokenkit's default 100).")
    alm_weight: float = option(1.0, "Weight of the alm term in lm+alm.")
    keep_checkpoint: bool = option(
        True, "Keep out/checkpoint after the run finished (it can then be resumed).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.embedding_fraction <= 1.0:
            raise TokenswapError(f"embedding_fraction must be in [0, 1], got {self.embedding_fraction}")
        if self.grad_accum < 1:
            raise TokenswapError(f"grad_accum must be at least 1, got {self.grad_accum}")
        if not self.alm_temperature > 0:
            raise TokenswapError(f"alm_temperature must be positive, got {self.alm_temperature}")
        if self.alm_weight < 0:
            raise TokenswapError(f"alm_weight must be >= 0, got {self.alm_weight}")
        if self.seq_len < 2:
            raise TokenswapError(f"seq_len must be at least 2 tokens, got {self.seq_len}")


__all__ = ["Clock", "Objective", "Precision", "Schedule", "Stage", "TuneConfig"]
