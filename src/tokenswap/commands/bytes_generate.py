"""``tokenswap bytes generate``: generate bytes after a prompt that may end anywhere (mid-token).

Exact next-byte distributions; several models form a byte-level ensemble
(:mod:`tokenswap.bytes.generate`, :mod:`tokenswap.bytes.ensemble`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenswap.bytes.combine import Combine
from tokenswap.commands.bytes_score import MAX_NODES_HELP, PRUNE_HELP
from tokenswap.config import option
from tokenswap.io.save import json_text


@dataclass
class Config:
    prompt: str = option(help="Prompt; may end mid-word or with a space.")
    model: list[str] = option(default_factory=lambda: ["default"], short="-m",
                              help="Model(s); several form a byte-level ensemble.")
    weight: list[float] | None = option(None, "Ensemble weight per --model (default equal).")
    combine: Combine = option(Combine.MIXTURE, "Ensemble rule: mixture (mean of probabilities) "
                                               "or product (of experts).")
    max_bytes: int = option(64, "Generate at most this many bytes.")
    stop: str | None = option(None, "Stop when the output contains this.")
    greedy: bool = option(True, "Argmax (--greedy) or sampling (--sample).",
                          flag="--greedy/--sample")
    temperature: float = option(1.0, "Sampling temperature.")
    seed: int = option(0, "Sampling seed.")
    prune: float = option(1e-3, PRUNE_HELP, why="generation trades exactness for speed: about "
                                               "one forward pass per token; score uses 1e-6")
    max_nodes: int = option(64, MAX_NODES_HELP)
    exact_prompt: bool = option(False, "Sum over every tokenization of the whole prompt (a "
                                       "forward pass per prompt byte) instead of reading all but "
                                       "its last two words as the tokenizer splits them.")
    as_json: bool = option(False, "Print JSON.", flag="--json")
    quiet: bool = option(False, "No progress bar (it is shown on stderr when that is a terminal).")
    device: str | None = option(None, "torch device, e.g. cpu, cuda, cuda:1.")


def run(cfg: Config) -> dict:
    from tokenswap.bytes.api import generate_text
    from tokenswap.errors import TokenswapError

    if not cfg.prompt:
        raise TokenswapError("--prompt is empty; give the text to continue")
    if cfg.max_bytes < 1:
        raise TokenswapError(f"--max-bytes must be at least 1, got {cfg.max_bytes}")
    if cfg.temperature <= 0:
        raise TokenswapError(f"--temperature must be positive, got {cfg.temperature}")
    if cfg.weight and len(cfg.weight) != len(cfg.model):
        raise TokenswapError(f"{len(cfg.weight)} weights for {len(cfg.model)} models: give one "
                             "--weight per --model")
    return generate_text(cfg.model or ["default"], cfg.prompt, weights=cfg.weight,
                         combine=cfg.combine, max_bytes=cfg.max_bytes, stop=cfg.stop,
                         greedy=cfg.greedy, temperature=cfg.temperature, seed=cfg.seed,
                         device=cfg.device, prune=cfg.prune or None, max_nodes=cfg.max_nodes,
                         exact_prompt=cfg.exact_prompt, progress=not cfg.quiet)


def show(result: dict, cfg: Config, console) -> None:
    if cfg.as_json:
        print(json_text(result), end="")
        return
    passes = sum(m["forward_passes"] for m in result["members"])
    for line in (result["prompt"] + result["output"],
                 f"-- {result['bytes']} bytes, stopped by {result['stop_reason']}, {passes} "
                 f"forward passes, {result['seconds']:.2f} s"):
        console.print(line, highlight=False, markup=False)
