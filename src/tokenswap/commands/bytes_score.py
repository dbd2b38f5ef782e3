"""``tokenswap bytes score``: bits per byte of a text, summed exactly over all its tokenizations.

:mod:`tokenswap.bytes.exact`; models are loaded by :mod:`tokenswap.bytes.api`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenswap.config import option
from tokenswap.io.save import json_text

PRUNE_HELP = ("Drop token paths that carry less than this share of the probability of the text so"
              " far; 0 = exact sum over all tokenizations (errors past --max-nodes). The dropped"
              " probability is reported: it bounds the error.")
MAX_NODES_HELP = "Most token paths kept per byte position (best first)."


@dataclass
class Config:
    text: str = option(help="Text to score (UTF-8).")
    model: str = option("default", "Model: HF dir, hub id, .gguf file, or 'default' (SmolLM2-135M).",
                        short="-m")
    end_of_text: bool = option(False, "Also score the end of the text.")
    per_byte: bool = option(False, "Show the bits of every byte.")
    prune: float = option(1e-6, PRUNE_HELP)
    max_nodes: int = option(64, MAX_NODES_HELP)
    as_json: bool = option(False, "Print JSON.", flag="--json")
    device: str | None = option(None, "torch device, e.g. cpu, cuda, cuda:1.")
    progress: bool = option(True, "Show progress on stderr.", cli=False)


def run(cfg: Config) -> dict:
    from tokenswap.bytes.api import score_text
    from tokenswap.errors import TokenswapError

    if not cfg.text and not cfg.end_of_text:
        raise TokenswapError("--text is empty: there is nothing to score (pass --end-of-text to "
                             "score only the end of text)")
    if not 0 <= cfg.prune < 1:
        raise TokenswapError(f"--prune must be in [0, 1), got {cfg.prune}")
    if cfg.max_nodes < 1:
        raise TokenswapError(f"--max-nodes must be at least 1, got {cfg.max_nodes}")
    result = score_text(cfg.model, cfg.text, end_of_text=cfg.end_of_text, device=cfg.device,
                        prune=cfg.prune or None, max_nodes=cfg.max_nodes,
                        progress=cfg.progress)
    if not cfg.per_byte:
        result.pop("per_byte")
    return result


def show(result: dict, cfg: Config, console) -> None:
    if cfg.as_json:
        print(json_text(result), end="")
        return
    lines = [f"{result['model']}: {result['bits']:.4f} bits over {result['bytes']} bytes = "
             f"{result['bits_per_byte']:.4f} bits/byte ({result['forward_passes']} forward passes,"
             f" {result['seconds']:.2f} s)"]
    if result["dropped_mass"] > 0:
        lines.append(f"pruned paths hold at most {result['dropped_mass']:.3g} probability")
    if cfg.per_byte:
        data = cfg.text.encode("utf-8")
        for i, bits in enumerate(result["per_byte"]):
            label = repr(data[i:i + 1]) if i < len(data) else "<end>"
            lines.append(f"  {i:4d} {label:>8} {bits:8.4f}")
    for line in lines:
        console.print(line, highlight=False, markup=False)
