"""The README's first command: a real transfer on this machine, without internet.

The packaged SmolLM2-135M-Instruct gets a byte-level BPE trained on real local text (German man
pages from Debian's ``manpages-de``, or Python's own standard library source), initialised
with ``random``, ``mean`` and, where one ships for the model, the ``hypernet``; every model
is scored on the same held-out bytes, and the transferred ones continue a prompt greedily.
Steps whose output already exists in ``out`` are reused, so an interrupted demo resumes.
"""

from __future__ import annotations

import copy
import enum
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING

from tokenswap.errors import TokenswapError

if TYPE_CHECKING:
    from rich.console import Console

    from tokenswap.commands.eval import EvalReport

class Domain(str, enum.Enum):
    DE = "de"  # German man pages (Debian's manpages-de)
    CODE = "code"  # Python's own standard library source


GERMAN_MAN = Path("/usr/share/man/de")
PROMPTS = {"de": "Dieses Programm zeigt", "code": "def read_config(path):\n"}


def demo_corpus(domain: str) -> list[str]:
    """Corpus specs for a demo domain, or an error saying what to install."""
    if domain == "de":
        if not GERMAN_MAN.is_dir():
            raise TokenswapError("German man pages are missing: run `apt-get install manpages-de` "
                                 "or use --domain code")
        return [f"man:{GERMAN_MAN}"]  # rendered by groff: prose, not roff markup
    if domain == "code":
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        return [str(stdlib / "*.py")]
    raise TokenswapError(f"--domain must be de or code (got {domain!r})")


def take_bytes(texts: list[str], budget: int) -> list[str]:
    """The first documents up to ``budget`` UTF-8 bytes (the last one cut at a char boundary)."""
    out, used = [], 0
    for text in texts:
        data = text.encode()
        if used + len(data) > budget:
            cut = data[: budget - used].decode("utf-8", errors="ignore")
            if cut.strip():
                out.append(cut)
            break
        out.append(text)
        used += len(data)
    return out


def run_demo(out: Path, *, domain: str = "de", vocab_size: int = 32000,
             heldout_bytes: int = 16000, device: str | None = None,
             console: Console | None = None) -> EvalReport:
    from rich.console import Console

    from tokenswap.commands.eval import evaluate_models
    from tokenswap.commands.tokenizer_train import Config as TokenizerTrainConfig
    from tokenswap.commands.tokenizer_train import run as tokenizer_train
    from tokenswap.commands.transfer import Config as TransferConfig
    from tokenswap.commands.transfer import run as transfer
    from tokenswap.io.corpus import read_corpus, split_corpus
    from tokenswap.io.models import ModelBundle, load_model, load_tokenizer

    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    docs = read_corpus(demo_corpus(domain), progress=True)
    train, held = split_corpus(docs, heldout_fraction=0.1, seed=0)
    heldout = take_bytes([d.text for d in held], heldout_bytes)
    console.print(f"corpus: {len(train):,} training and {len(held):,} held-out documents "
                  f"({sum(len(d.text.encode()) for d in train) / 1e6:.1f} MB training text)")

    bundle = load_model("default", device=device)
    tok_dir = out / f"tokenizer-{domain}-{vocab_size}"
    if not (tok_dir / "tokenizer.json").is_file():
        with console.status(f"training a {vocab_size:,}-token byte-level BPE ..."):
            tokenizer_train(TokenizerTrainConfig(corpus=train, vocab_size=vocab_size, out=tok_dir,
                                                 like=bundle.tokenizer, progress=False))
    target = load_tokenizer(tok_dir)
    console.print(f"tokenizer: {tok_dir} ({len(target):,} tokens)")

    models: list = [bundle]
    names = [f"original ({len(bundle.tokenizer):,} tokens)"]
    from tokenswap.hypernet.shipped import available

    methods = ["random", "mean"] + (["hypernet"] if available() else [])  # the shipped one
    for method in methods:
        model_dir = out / f"model-{domain}-{method}"
        if not (model_dir / "config.json").is_file():
            copy_ = ModelBundle(model=copy.deepcopy(bundle.model), tokenizer=bundle.tokenizer,
                                    spec=bundle.spec, path=bundle.path)
            with console.status(f"transfer with {method} ..."):
                result = transfer(TransferConfig(tokenizer=target, model=copy_, method=method,
                                                 out=model_dir, overwrite=True))
            console.print(f"{method}: {result.stats.input} in {result.stats.seconds:.1f} s")
            del copy_
        models.append(str(model_dir))  # reloaded from disk by plain transformers
        names.append(f"{method} ({len(target):,} tokens)")

    report = evaluate_models(models, heldout, names=names, max_length=1024, batch_size=4,
                             device=device)
    report.write_json(out / f"report-{domain}.json")
    for method in methods[1:]:
        _greedy_sample(load_model(str(out / f"model-{domain}-{method}"), device=device),
                       PROMPTS[domain], method, console)
    return report


def _greedy_sample(sample, prompt: str, method: str, console) -> None:
    """Greedy continuation of ``prompt``: does the model stay in the target language?"""
    import torch

    ids = sample.tokenizer(prompt, return_tensors="pt").to(sample.model.device)
    with torch.inference_mode():
        gen = sample.model.generate(**ids, max_new_tokens=20, do_sample=False)
    console.print(f"greedy sample from the {method} model: {sample.tokenizer.decode(gen[0])!r}")
