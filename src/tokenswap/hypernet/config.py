"""Options of hypernet training: the trainer's (:class:`TrainConfig`), the tokenizer sampler's
(:class:`SamplerConfig`) and a new hypernet's shape (:class:`HypernetShape`).

Imports no torch and no transformers, so that the CLI can read them for ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.training.config import TrainingConfig
from tokenswap.tuning.config import Objective


@dataclass
class SamplerConfig:
    """How tokenizers are drawn (see module docstring)."""

    vocab_min: int = option(8192, "Smallest vocabulary drawn (bytes and specials included).")
    vocab_max: int = option(32768, "Largest vocabulary drawn.")
    noise_std: float = option(1.0, "Std of the Gaussian noise added to log substring counts.")
    max_chars: int = option(16, "Longest substring counted, in byte-level characters.")
    min_count: int = option(2, "Substrings seen fewer times are never pieces.")


@dataclass
class HypernetShape:
    """The shape of a new hypernet (:class:`~tokenswap.hypernet.model.HypernetConfig`)."""

    d_model: int = option(256, "Width of the hypernet's transformer.")
    n_layers: int = option(3, "Transformer encoder layers.")
    n_heads: int = option(4, "Attention heads per layer.")
    d_ff: int = option(1024, "Feed-forward width per layer.")
    max_pieces: int = option(8, "Source pieces per target token fed to the transformer.")
    dropout: float = option(0.0, "Dropout inside the transformer (0 keeps training "
                                 "deterministic).")


@dataclass
class TrainConfig(TrainingConfig):
    """Options of :func:`train_hypernet`; every field is also a keyword argument."""

    # Changing one of these makes a checkpoint unusable: other batches, other tokenizers.
    resume_keys: ClassVar[tuple[str, ...]] = ("seed", "batch_size", "seq_len", "identity_steps")
    what: ClassVar[str] = "hypernet training option"

    init: str | None = option(
        None, "Start from this hypernet's weights instead of a fresh one: a directory, or "
              "'default' (the hypernet shipped for the model). Its shape replaces "
              "--hypernet.* and its base must be the model's.")
    batch_size: int = option(8, "Texts per step, over all ranks.")
    weight_decay: float = option(0.01, "AdamW decoupled weight decay of the hypernet.")
    warmup_steps: int = option(
        100, "Linear warm-up steps, capped at a tenth of the run (of --steps, or of the steps "
             "--minutes is on course for).")
    eval_every: int = option(100, "Steps between held-out evaluations (needs held-out text).")
    checkpoint_every: int = option(
        100, "Steps between checkpoints (and one at the end of every run).")
    log_every: int = option(10, "Steps between training-loss lines in log.jsonl.")
    seq_len: int = option(
        128, "Tokens per text (longer texts are cut into chunks of about 6 characters a token).")
    aux_weight: float = option(
        0.5, "Weight of the auxiliary loss pulling tokens the source vocabulary has (exact "
             "matches) toward their source rows.")
    identity_steps: int = option(
        0, "First steps train on the source tokenizer itself (the paper's warm-up).")
    objective: Objective = option(
        Objective.LM, "Training loss: lm (next token under the predicted embeddings), alm (match "
                      "the frozen model's own likelihood, with its own tokenizer, of every byte "
                      "chunk both tokenizations end on) or lm+alm.")
    alm_temperature: float = option(
        100.0, "Binarisation temperature of alm (as `tokenswap tune --alm-temperature`).")
    alm_weight: float = option(1.0, "Weight of the alm term in lm+alm.")
    sample_texts: int = option(
        64, "Texts each step's tokenizer is drawn from: the batch and random others.")
    eval_batches: int = option(4, "Batches of held-out texts scored per evaluation.")
    sampler: SamplerConfig = option(
        default_factory=SamplerConfig,
        help="How each step's tokenizer is drawn (vocab_min, vocab_max, noise_std, ...).")
    hypernet: HypernetShape = option(
        default_factory=HypernetShape,
        help="Shape of a new hypernet (d_model, n_layers, ...); a dict in Python.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.alm_temperature > 0:
            raise TokenswapError(f"alm_temperature must be positive, got {self.alm_temperature}")
        for name in ("seq_len", "sample_texts", "eval_batches"):
            if getattr(self, name) < 1:
                raise TokenswapError(f"{name} must be at least 1, got {getattr(self, name)}")
