"""Continued training after a tokenizer transfer (``tokenswap tune``).

:mod:`.config` (the options), :mod:`.data` (sequence packing), :mod:`.stages` (which
parameters train: embeddings, then the full model or LoRA) and :mod:`.loop` (the training
loop with held-out bits/byte, checkpoints, exact resume, data parallel and FSDP ranks).
"""

from tokenswap.tuning.config import Precision, Schedule, Stage, TuneConfig
from tokenswap.tuning.loop import TuneResult, tune_model

__all__ = ["Precision", "Schedule", "Stage", "TuneConfig", "TuneResult", "tune_model"]
