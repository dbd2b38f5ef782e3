"""``tokenswap glitch``: find under-trained tokens of a model (Land & Bartolo 2024).

Tokenizer analysis, embedding indicators and repeat prompts (:mod:`tokenswap.audit.glitch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenswap.config import option
from tokenswap.io.save import json_text


@dataclass
class Config:
    out: Path | None = option(None, "Directory for glitch.json and glitch.md.", short="-o",
                              required=True)
    model: str = option("default", "Model: HF dir, hub id, .gguf file, or 'default' "
                                   "(SmolLM2-135M); in Python also a loaded ModelBundle.",
                        short="-m")
    max_verify: int = option(200, "Verify the N strongest candidates with repeat prompts (one "
                                  "forward pass per template each); 0 = indicators only.")
    threshold: float = option(0.01, "Confirmed under-trained when the best repeat probability is "
                                    "below this.")
    batch_size: int = option(16, "Prompts per forward pass.")
    controls: int = option(0, "Also verify N random ordinary tokens, for comparison.")
    show: int = option(20, "Candidates printed.")
    overwrite: bool = option(False, "Replace an existing --out.")
    device: str | None = option(None, "torch device, e.g. cpu, cuda, cuda:1.")
    progress: bool = option(True, "Show progress.", cli=False)


def run(cfg: Config):
    """A :class:`~tokenswap.audit.glitch.GlitchResult`; with ``out``, ``glitch.json`` and
    ``glitch.md`` are written there atomically."""
    from tokenswap.audit.glitch import find_glitch_tokens
    from tokenswap.io.models import as_bundle
    from tokenswap.io.save import atomic_dir, check_output_dir

    if cfg.out is not None:
        check_output_dir(cfg.out, overwrite=cfg.overwrite)
    bundle = as_bundle(cfg.model, device=cfg.device)
    result = find_glitch_tokens(bundle, max_verify=cfg.max_verify, threshold=cfg.threshold,
                                batch_size=cfg.batch_size, controls=cfg.controls,
                                progress=cfg.progress)
    if cfg.out is not None:
        with atomic_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
            (tmp / "glitch.json").write_text(json_text(result.to_dict(), ensure_ascii=False))
            (tmp / "glitch.md").write_text(result.to_markdown())
    return result


def show(result, cfg: Config, console) -> None:
    from rich.table import Table

    table = Table(title=f"under-trained token candidates of {result.model} "
                        f"(indicator: {result.indicator})")
    for col in ("rank", "id", "token", "similarity", "norm", "max P(repeat)", "confirmed"):
        table.add_column(col, justify="left" if col == "token" else "right")
    for rank, c in enumerate(result.candidates[:cfg.show], 1):
        table.add_row(str(rank), str(c.id), repr(c.text), f"{c.similarity:.3f}", f"{c.norm:.3f}",
                      "-" if c.probability is None else f"{c.probability:.3g}",
                      "-" if c.confirmed is None else ("yes" if c.confirmed else "no"))
    console.print(table)
    console.print(f"{result.special} special, {result.undecodable} undecodable, "
                  f"{len(result.unreachable)} unreachable tokens; {result.confirmed} of "
                  f"{result.verified} verified candidates confirmed -> {cfg.out}")
