"""Continued training after a tokenizer transfer (``tokenswap tune``).

:mod:`.config` (the options), :mod:`.data` (sequence packing), :mod:`.distill`
(cross-tokenizer distillation: ALM), :mod:`.stages` (which
parameters train: embeddings, then the full model or LoRA) and :mod:`.loop` (the tuning step,
held-out bits/byte, the best model, data parallel and FSDP ranks, run by the shared training
loop of :mod:`tokenswap.training`: budgets, schedules, checkpoints and exact resume).
"""

from tokenswap.tuning.config import Clock, Objective, Precision, Schedule, Stage, TuneConfig
from tokenswap.tuning.loop import TuneResult, tune_model

__all__ = ["Clock", "Objective", "Precision", "Schedule", "Stage", "TuneConfig", "TuneResult", "tune_model"]
