"""``tokenswap hypernet train``: train a hypernet that predicts embeddings for any tokenizer.

Minixhofer et al., "Zero-Shot Tokenizer Transfer" (arXiv 2405.07883). The training loop is
:mod:`tokenswap.hypernet.train`, its options :class:`tokenswap.hypernet.train.TrainConfig`;
here the text is read and the model loaded. Several ranks: ``torchrun``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenswap.config import option
from tokenswap.hypernet.config import TrainConfig


@dataclass
class Config:
    corpus: list[str] | None = option(None, "Training text: files, dirs, globs, hf:name (in "
                                            "Python also read documents).", required=True)
    out: Path | None = option(None, "Output hypernet directory.", short="-o", required=True)
    model: str = option("default", "Base model: HF dir, hub id, .gguf file, or 'default' "
                                   "(SmolLM2-135M); in Python also a loaded ModelBundle.",
                        short="-m")
    eval_corpus: list[str] | None = option(None, "Held-out text scored with a fixed sampled "
                                                 "tokenizer (log.jsonl).")
    max_bytes: int | None = option(None, "Read at most this much text.")
    resume: bool = option(True, "Continue from --out's checkpoint when there is one.")
    device: str | None = option(None, "torch device, e.g. cpu, cuda, cuda:1.")
    training: TrainConfig | None = option(None, help="The training options.")
    eval_texts: Sequence[str] | None = option(None, "Held-out texts (Python only).", cli=False)
    progress: bool = option(True, "Show a progress bar.", cli=False)


def run(cfg: Config):
    """A :class:`~tokenswap.hypernet.train.TrainResult`; the hypernet is saved to ``out``."""
    import os

    from tokenswap.errors import TokenswapError
    from tokenswap.hypernet.train import train_hypernet
    from tokenswap.io.checkpoint import prepare_out
    from tokenswap.io.corpus import corpus_texts
    from tokenswap.io.models import as_bundle

    if cfg.training is None:
        raise TokenswapError("say how long to train: --steps or --minutes")
    if os.environ.get("RANK", "0") == "0":  # bad outputs fail before any model loads
        prepare_out(Path(cfg.out), cfg.resume)

    texts = corpus_texts(cfg.corpus, max_bytes=cfg.max_bytes)
    if not texts:
        raise TokenswapError("no text to train the hypernet on; pass --corpus")
    eval_texts = cfg.eval_texts
    if eval_texts is None and cfg.eval_corpus is not None:
        eval_texts = corpus_texts(cfg.eval_corpus)
    bundle = as_bundle(cfg.model, device=cfg.device)
    return train_hypernet(bundle, texts, cfg.out, eval_texts=eval_texts, device=cfg.device,
                          resume=cfg.resume, progress=cfg.progress, **vars(cfg.training))


def show(result, cfg: Config, console) -> None:
    loss = "n/a" if result.loss is None else f"{result.loss:.4f}"
    console.print(f"hypernet ({result.hypernet.num_parameters():,} parameters): "
                  f"{result.step} steps, last loss {loss}, {result.seconds:.0f} s -> {result.out}")
