"""``tokenswap tune``: continue training a (transferred) model on your text.

The loop, its stages, precision and distributed training live in :mod:`tokenswap.tuning`; its
options are :class:`tokenswap.tuning.config.TuneConfig`. Here the text is read, the model
loaded, the output checked before anything long starts, and provenance recorded. Several ranks:
``torchrun --nproc-per-node N -m tokenswap.cli tune ...``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenswap.config import option
from tokenswap.tuning.config import Objective, TuneConfig


@dataclass
class Config:
    corpus: list[str] | None = option(None, "Training text: files, dirs, globs, hf:name.",
                                      required=True)
    out: Path | None = option(None, "Output model directory.", short="-o", required=True)
    model: str | None = option(None, "Model to tune (e.g. a transferred model dir); any model "
                                     "spec, in Python also a loaded ModelBundle.", short="-m",
                               required=True)
    eval_corpus: list[str] | None = option(None, "Held-out text scored in bits/byte during "
                                                 "training (log.jsonl, best/).")
    max_bytes: int | None = option(None, "Read at most this much training text.")
    resume: bool = option(True, "Continue from --out's checkpoint when there is one.")
    device: str | None = option(None, "torch device, e.g. cpu, cuda, cuda:1.")
    teacher: str | None = option(None, "Teacher of --objective alm / lm+alm (any model spec, with "
                                       "its own tokenizer); default: the source model recorded "
                                       "in --model's tokenswap.json.")
    teacher_device: str | None = option(None, "torch device of the frozen teacher; default: "
                                              "--device (one copy per rank).")
    training: TuneConfig | None = option(None, help="The tuning options.")
    texts: Sequence[str] | None = option(None, "Training texts (Python only).", cli=False)
    eval_texts: Sequence[str] | None = option(None, "Held-out texts (Python only).", cli=False)
    progress: bool = option(True, "Show a progress bar.", cli=False)
    callback: Callable[[dict], None] | None = option(None, "Called after every step with its "
                                                           "log record (Python only).", cli=False)


def run(cfg: Config):
    """A :class:`~tokenswap.tuning.loop.TuneResult`; ``out`` is a plain transformers model
    directory with the model's tokenizer, plus ``best/``, ``checkpoint/`` and ``log.jsonl``."""
    from tokenswap import __version__
    from tokenswap.errors import TokenswapError
    from tokenswap.io.checkpoint import prepare_out
    from tokenswap.io.corpus import corpus_texts
    from tokenswap.io.models import as_bundle
    from tokenswap.tuning import tune_model

    if cfg.training is None:
        raise TokenswapError("say how long to train: --steps or --minutes")
    if os.environ.get("RANK", "0") == "0":  # bad outputs fail before any model loads
        prepare_out(Path(cfg.out), cfg.resume)
    texts = cfg.texts if cfg.texts is not None else corpus_texts(cfg.corpus,
                                                                 max_bytes=cfg.max_bytes)
    if not texts:
        raise TokenswapError("no text to tune on; pass --corpus")
    eval_texts = cfg.eval_texts
    if eval_texts is None and cfg.eval_corpus is not None:
        eval_texts = corpus_texts(cfg.eval_corpus)
    bundle = as_bundle(cfg.model, device=cfg.device)
    provenance = {"tokenswap": __version__, "tuned_from": bundle.spec}
    if bundle.path is not None and (bundle.path / "tokenswap.json").is_file():
        provenance["transfer"] = json.loads((bundle.path / "tokenswap.json").read_text())
    teacher = None
    if cfg.training.objective != Objective.LM:
        spec = cfg.teacher or recorded_source(provenance.get("transfer"))
        if spec is None:
            raise TokenswapError(
                f"--objective {cfg.training.objective.value} needs a teacher: pass --teacher "
                f"MODEL ({bundle.spec} records no source model in a tokenswap.json)")
        teacher = as_bundle(spec, device=cfg.teacher_device or cfg.device)
        provenance["teacher"] = teacher.spec
    return tune_model(bundle, texts, cfg.out, eval_texts=eval_texts, device=cfg.device,
                      resume=cfg.resume, progress=cfg.progress, callback=cfg.callback,
                      provenance=provenance, teacher=teacher,
                      teacher_device=cfg.teacher_device, **vars(cfg.training))


def recorded_source(record: dict | None) -> str | None:
    """The source model a transferred (or transferred, then tuned) model records.

    >>> recorded_source({"tuned_from": "x", "transfer": {"source_model": "default"}})
    'default'
    """
    while isinstance(record, dict):
        if isinstance(record.get("source_model"), str):
            return record["source_model"]
        record = record.get("transfer")
    return None


def show(result, cfg: Config, console) -> None:
    loss = "n/a" if result.loss is None else f"{result.loss:.4f}"  # of the objective
    held = "" if result.eval_bpb is None else (
        f", held-out {result.eval_bpb:.4f} bits/byte (best {result.best_bpb:.4f} at step "
        f"{result.best_step} -> {result.out / 'best'})")
    console.print(f"tuned {result.step} steps in {result.train_seconds:.0f} s, last loss "
                  f"{loss}{held} -> {result.out}")
