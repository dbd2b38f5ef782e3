"""``tokenswap eval``: score models in bits per byte and tokens per byte on the same bytes.

The metric is :func:`tokenswap.scoring.bpb.bits_per_byte`; here models are loaded one at a
time (and released), timed, and reported side by side with ratios to the first row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.io.save import json_text


@dataclass
class Config:
    text: list[str] = option(help="Held-out text: files, dirs, globs, hf:name.")
    model: list[str] = option(help="Model(s) to score.", short="-m")
    baseline: str | None = option(None, "Model scored first; ratios are relative to it.")
    max_bytes: int | None = option(None, "Score at most this many bytes.")
    max_length: int = option(1024, "Window length in tokens.")
    batch_size: int = option(8, "Windows per forward pass.")
    json_out: Path | None = option(None, "Write the report as JSON to this file.", flag="--json")
    overwrite: bool = option(False, "Replace an existing --json file.")
    device: str | None = option(None, "torch device, e.g. cpu, cuda, cuda:1.")


@dataclass
class EvalRow:
    name: str
    vocab_size: int
    result: Any  # tokenswap.scoring.bpb.BpbResult
    seconds: float

    def to_dict(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size, "seconds": self.seconds,
                **self.result.to_dict()}


@dataclass
class EvalReport:
    """Rows scored on exactly the same bytes; the first row is the baseline for ratios."""

    rows: list[EvalRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        base = self.rows[0].result if self.rows else None
        rows = []
        for row in self.rows:
            d = row.to_dict()
            if base is not None:
                d["bpb_ratio"] = row.result.bits_per_byte / base.bits_per_byte
                d["tokens_ratio"] = row.result.tokens_per_byte / base.tokens_per_byte
            rows.append(d)
        return {"rows": rows}

    def to_json(self) -> str:
        return json_text(self.to_dict())

    def write_json(self, path, *, overwrite: bool = True) -> None:
        from tokenswap.io.save import write_file

        write_file(path, self.to_json(), overwrite=overwrite)


def evaluate_models(models: Sequence, texts: Sequence[str], *, names: Sequence[str] | None = None,
                    max_length: int = 1024, batch_size: int = 8, device=None, dtype=None,
                    progress: bool = True) -> EvalReport:
    """Bits per byte and tokens per byte of every model (spec or bundle) on the same ``texts``."""
    from tokenswap.io.models import ModelBundle, as_bundle
    from tokenswap.scoring.bpb import bits_per_byte

    if not texts:
        raise TokenswapError("no text to evaluate on; pass --text with held-out files")
    report = EvalReport()
    for i, spec in enumerate(models):
        bundle = as_bundle(spec, device=device)
        if dtype is not None:
            bundle.model.to(dtype)
        name = names[i] if names else bundle.name
        start = time.perf_counter()
        result = bits_per_byte(bundle.model, bundle.tokenizer, texts, max_length=max_length,
                               batch_size=batch_size, device=device,
                               progress=name if progress else False)
        report.rows.append(EvalRow(name=name, vocab_size=len(bundle.tokenizer), result=result,
                                   seconds=time.perf_counter() - start))
        if not isinstance(spec, ModelBundle):
            del bundle
    return report


def run(cfg: Config) -> EvalReport:
    from tokenswap.io.corpus import corpus_texts
    from tokenswap.io.save import check_output_file

    if cfg.json_out is not None:
        check_output_file(cfg.json_out, overwrite=cfg.overwrite)
    texts = corpus_texts(cfg.text, max_bytes=cfg.max_bytes)
    specs = ([cfg.baseline] if cfg.baseline else []) + list(cfg.model)
    report = evaluate_models(specs, texts or [], max_length=cfg.max_length,
                             batch_size=cfg.batch_size, device=cfg.device)
    if cfg.json_out is not None:
        report.write_json(cfg.json_out, overwrite=cfg.overwrite)
    return report


def print_report(report: EvalReport, console, title: str = "same held-out bytes for every row"
                 ) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("model", "vocab", "tokens/byte", "bits/byte", "bpb ratio", "seconds"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in report.to_dict()["rows"]:
        table.add_row(row["name"], f"{row['vocab_size']:,}", f"{row['tokens_per_byte']:.3f}",
                      f"{row['bits_per_byte']:.3f}", f"{row['bpb_ratio']:.3f}",
                      f"{row['seconds']:.1f}")
    console.print(table)


def show(report: EvalReport, cfg: Config, console) -> None:
    print_report(report, console)
    if cfg.json_out is not None:
        console.print(f"wrote {cfg.json_out}")
