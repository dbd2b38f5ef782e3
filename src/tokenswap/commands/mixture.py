"""``tokenswap mixture``: infer a BPE tokenizer's training-data mixture from its merge list.

Hayase et al. 2024, "Data Mixture Inference" (:mod:`tokenswap.audit.mixture`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from tokenswap.config import option
from tokenswap.io.save import json_text


class Slack(str, enum.Enum):
    PAPER = "paper"  # one slack per merge step and per competing pair (v_t + v_p)
    CONSTRAINT = "constraint"  # one slack per constraint (slower)


@dataclass
class Config:
    sample: dict[str, list[str]] = option(help=(
        "NAME=PATH: text of one category (files, dirs, globs); repeat per category (in "
        "Python: {name: specs or read documents})."), metavar="NAME=PATH")
    tokenizer: str = option("default", "A BPE tokenizer: dir, tokenizer.json or a model spec "
                                       "(in Python also a loaded tokenizer).", short="-t")
    max_bytes: int | None = option(2_000_000, "Read at most this much per category.")
    steps: int = option(3000, "Use the first T merges.")
    competitors: int = option(100, "Competing pairs per category and merge step.")
    slack: Slack = option(Slack.PAPER, "'paper' (one slack per step and per pair, v_t + v_p) or "
                                       "'constraint' (one per constraint; slower).")
    json_out: Path | None = option(None, "Write the result as JSON to this file.", flag="--json")
    overwrite: bool = option(False, "Replace an existing --json file.")
    progress: bool = option(True, "Show progress.", cli=False)


def run(cfg: Config):
    """A :class:`~tokenswap.audit.mixture.MixtureResult` (proportions per category)."""
    from tokenswap.audit.mixture import infer_mixture
    from tokenswap.errors import TokenswapError
    from tokenswap.io.corpus import corpus_texts
    from tokenswap.io.models import as_tokenizer
    from tokenswap.io.save import check_output_file, write_file

    if not cfg.sample:
        raise TokenswapError("no category to infer; pass --sample NAME=PATH for each")
    if cfg.json_out is not None:
        check_output_file(cfg.json_out, overwrite=cfg.overwrite)
    texts = {name: corpus_texts(spec, max_bytes=cfg.max_bytes) or []
             for name, spec in cfg.sample.items()}
    result = infer_mixture(as_tokenizer(cfg.tokenizer), texts, steps=cfg.steps,
                           competitors=cfg.competitors, slack=Slack(cfg.slack).value,
                           progress=cfg.progress)
    if cfg.json_out is not None:
        write_file(cfg.json_out, json_text(result.to_dict()),
                   overwrite=cfg.overwrite)
    return result


def show(result, cfg: Config, console) -> None:
    from rich.table import Table

    table = Table(title=f"inferred training mixture of {cfg.tokenizer} (first {result.steps} merges)")
    for col in ("category", "proportion", "sample bytes"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for name, value in result.proportions.items():
        table.add_row(name, f"{value:.1%}", f"{result.sample_bytes[name]:,}")
    console.print(table)
    console.print(f"{result.used_steps} merges constrain, {result.unseen_merges} occur in no "
                  f"sample; {result.constraints:,} constraints, slack {result.objective:.3g}")
    if cfg.json_out is not None:
        console.print(f"wrote {cfg.json_out}")
