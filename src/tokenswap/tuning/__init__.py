"""Continued training after a tokenizer transfer (``tokenswap tune``).

:mod:`.config` (the options), :mod:`.data` (sequence packing), :mod:`.distill`
(cross-tokenizer distillation: ALM), :mod:`.stages` (which
parameters train: embeddings, then the full model or LoRA) and :mod:`.loop` (the tuning step,
held-out bits/byte, the best model, data parallel and FSDP ranks, run by the shared training
loop of :mod:`tokenswap.training`: budgets, schedules, checkpoints and exact resume).
"""

import importlib

# Lazy, so that reading the options (the CLI's --help) does not import torch.
_EXPORTS = {"Clock": "config", "Objective": "config", "Precision": "config",
            "Schedule": "config", "Stage": "config", "TuneConfig": "config", "TuneResult": "loop",
            "tune_model": "loop"}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = ["Clock", "Objective", "Precision", "Schedule", "Stage", "TuneConfig", "TuneResult",
           "tune_model"]
