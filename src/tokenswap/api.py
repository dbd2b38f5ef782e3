"""The Python API: one function per command, keyword options as on the command line.

>>> import tokenswap
>>> result = tokenswap.transfer("default", "tok/", method="mean", out="model-new/")  # doctest: +SKIP
>>> report = tokenswap.evaluate(["default", "model-new/"], texts)                     # doctest: +SKIP

Each function builds the command's ``Config`` (:mod:`tokenswap.commands`; its fields document
every option) and calls its ``run``. Besides what the command line takes, Python callers may
pass loaded objects: a :class:`~tokenswap.io.models.ModelBundle` as a model, a transformers
tokenizer as a tokenizer, read documents as a corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenswap.commands.eval import EvalReport, EvalRow, evaluate_models
from tokenswap.commands.transfer import TransferResult, TransferStats, donor_embeddings
from tokenswap.config import build
from tokenswap.io.corpus import corpus_texts
from tokenswap.io.models import ModelBundle, as_bundle, as_tokenizer
from tokenswap.io.save import save_model


def transfer(model: Any = None, tokenizer: Any = None, **options: Any) -> TransferResult:
    """Give ``model`` (None = the packaged SmolLM2) the vocabulary of ``tokenizer``.

    ``options``: the fields of :class:`tokenswap.commands.transfer.Config` (``method``,
    ``out``, ``corpus``, ``options`` for the method, ...). A loaded bundle is changed in place.
    """
    from tokenswap.commands import transfer as command

    cfg = build(command.Config, "transfer option", tokenizer=tokenizer,
                model="default" if model is None else model, **options)
    return command.run(cfg)


def evaluate(models: Sequence[Any], texts: Sequence[str], **options: Any) -> EvalReport:
    """Bits and tokens per byte of every model (spec or bundle) on the same ``texts``.

    ``options``: ``names``, ``max_length``, ``batch_size``, ``device``, ``dtype``, ``progress``
    (:func:`tokenswap.commands.eval.evaluate_models`).
    """
    return evaluate_models(models, texts, **options)


def tokenizer_train(corpus: Any = None, vocab_size: int = 32000, **options: Any):
    """Train a target tokenizer carrying ``like``'s special tokens and chat template.

    ``options``: the fields of :class:`tokenswap.commands.tokenizer_train.Config` (``out``,
    ``kind``, ``like`` (None: no specials), ``texts`` instead of a corpus, ...).
    """
    from tokenswap.commands import tokenizer_train as command

    options.setdefault("like", None)
    options.setdefault("progress", False)
    cfg = build(command.Config, "tokenizer option", corpus=corpus, vocab_size=vocab_size,
                **options)
    return command.run(cfg)


def tune(model: Any, corpus: Any, out: Any, **options: Any):
    """Continue training ``model`` on ``corpus``; the result is saved to ``out``.

    ``options``: the fields of :class:`tokenswap.commands.tune.Config` (``eval_corpus``,
    ``texts``, ``resume``, ...) and of :class:`tokenswap.tuning.config.TuneConfig` (``steps``,
    ``minutes``, ``stage``, ``lr``, ...), flat.
    """
    from tokenswap.commands import tune as command

    return command.run(build(command.Config, "tuning option", model=model, corpus=corpus,
                             out=out, **options))


def hypernet_train(model: Any, corpus: Any, out: Any, **options: Any):
    """Train a zero-shot tokenizer-transfer hypernet for ``model`` on ``corpus`` into ``out``.

    ``options``: the fields of :class:`tokenswap.commands.hypernet_train.Config` and of its
    training config, flat (``steps``, ``minutes``, ``batch_size``, ...).
    """
    from tokenswap.commands import hypernet_train as command

    return command.run(build(command.Config, "hypernet option", model=model, corpus=corpus,
                             out=out, **options))


def audit(tokenizers: Sequence[Any], corpora: dict, **options: Any):
    """Tokenizer metrics of every tokenizer on every corpus, parity against a reference.

    ``corpora`` maps a language or domain to corpus specs, read documents or a
    :class:`~tokenswap.audit.parity.ParallelCorpus`; ``options``: ``out``, ``overwrite``,
    ``names``, ``reference``, ``max_bytes``, ``examples``, ``progress``
    (:func:`tokenswap.commands.audit.audit_tokenizers`).
    """
    from tokenswap.commands.audit import audit_tokenizers

    return audit_tokenizers(tokenizers, corpora, **options)


def glitch(model: Any = None, **options: Any):
    """Under-trained token candidates of ``model``; ``options``: the fields of
    :class:`tokenswap.commands.glitch.Config` (``out``, ``max_verify``, ...)."""
    from tokenswap.commands import glitch as command

    options.setdefault("progress", False)
    return command.run(build(command.Config, "glitch option",
                             model="default" if model is None else model, **options))


def mixture(tokenizer: Any, samples: dict, **options: Any):
    """The proportions of the categories in ``samples`` (name -> corpus specs or documents) in
    ``tokenizer``'s training data; ``options``: the fields of
    :class:`tokenswap.commands.mixture.Config`."""
    from tokenswap.commands import mixture as command

    options.setdefault("progress", False)
    return command.run(build(command.Config, "mixture option", tokenizer=tokenizer,
                             sample=samples, **options))


def lm_eval_task(text: Any, out: Any, **options: Any):
    """Write held-out ``text`` (corpus specs) and an lm-eval task that reads it into the new
    directory ``out``; returns a :class:`tokenswap.io.lm_eval_task.LmEvalTask`.

    ``options``: ``name``, ``max_bytes``, ``overwrite``
    (:class:`tokenswap.commands.lm_eval_task.Config`). For documents already in memory, call
    :func:`tokenswap.io.lm_eval_task.write_task`.
    """
    from tokenswap.commands import lm_eval_task as command

    return command.run(build(command.Config, "lm-eval task option",
                             text=[text] if isinstance(text, str) else text, out=out, **options))


__all__ = ["EvalReport", "EvalRow", "ModelBundle", "TransferResult", "TransferStats", "as_bundle",
           "as_tokenizer", "audit", "corpus_texts", "donor_embeddings", "evaluate", "glitch",
           "hypernet_train", "lm_eval_task", "mixture", "save_model", "tokenizer_train", "transfer",
           "tune"]

