"""``tokenswap demo``: a real transfer on this machine, the README's first command.

The packaged SmolLM2-135M-Instruct gets a tokenizer trained on local text; ``random`` and
``mean`` are compared with the original on the same held-out bytes (:mod:`tokenswap.demo`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenswap.config import option
from tokenswap.demo import Domain


@dataclass
class Config:
    out: Path = option(Path("tokenswap-demo"), "Working directory for the demo's outputs "
                                               "(steps already done there are reused).")
    domain: Domain = option(Domain.DE, "de (German man pages) or code (Python stdlib).")
    vocab_size: int = option(32000, "Target vocabulary size.")
    heldout_bytes: int = option(16000, "Bytes of held-out text to score.")
    device: str | None = option(None, "torch device, e.g. cpu, cuda, cuda:1.")


def run(cfg: Config):
    from rich.console import Console

    from tokenswap.demo import run_demo

    return run_demo(Path(cfg.out), domain=Domain(cfg.domain).value, vocab_size=cfg.vocab_size,
                    heldout_bytes=cfg.heldout_bytes, device=cfg.device, console=Console())


def show(report, cfg: Config, console) -> None:
    from tokenswap.commands.eval import print_report

    print_report(report, console, title=f"SmolLM2-135M on held-out {Domain(cfg.domain).value} "
                                        f"text ({cfg.heldout_bytes:,} bytes)")
