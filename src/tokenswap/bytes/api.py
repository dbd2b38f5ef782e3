"""Orchestration for the ``tokenswap bytes`` commands: load models, run, report as dicts.

The pure pieces (:mod:`~tokenswap.bytes.exact`, :mod:`~tokenswap.bytes.generate`,
:mod:`~tokenswap.bytes.ensemble`) take loaded models; this module loads them from specs
(:func:`tokenswap.io.models.load_model`) and collects the figures a user wants to see: bits,
forward passes, and the certified bound on probability mass lost to pruning.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence

import torch

from tokenswap.bytes.ensemble import ByteEnsemble, Combine
from tokenswap.bytes.exact import ByteLM
from tokenswap.bytes.generate import generate, score


def load_byte_lm(spec: str, *, device: str | None = None, prune: float | None = None,
                 max_nodes: int = 4096) -> ByteLM:
    """A :class:`ByteLM` for a model spec (HF dir, hub id, .gguf, ``default``)."""
    from tokenswap.io.models import load_model

    bundle = load_model(spec, device=device)
    return ByteLM(bundle.model, bundle.tokenizer, prune=prune, max_nodes=max_nodes,
                  name=bundle.name)


def _member_stats(lm: ByteLM, text: bytes) -> dict:
    dropped = lm.dropped_logmass()
    return {"model": lm.name, "vocab": len(lm.vocab), "forward_passes": lm.forward_passes,
            "prompt_tokens_read": len(lm.context) - len(lm.base_context),
            "tokens_scored": lm.tokens_scored,
            "dropped_mass": math.exp(dropped) if dropped > -math.inf else 0.0}


def score_text(spec: str, text: str | bytes, *, end_of_text: bool = False,
               device: str | None = None, prune: float | None = None,
               max_nodes: int = 4096, progress: bool = False) -> dict:
    """Bits and bits per byte of ``text`` under one model, exactly over all tokenizations.

    ``progress`` shows a bar over the byte positions on stderr.
    """
    lm = load_byte_lm(spec, device=device, prune=prune, max_nodes=max_nodes)
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    start = time.perf_counter()
    with torch.inference_mode(), _byte_bar(progress) as advance:
        result = score(lm, data, end_of_text=end_of_text, progress=advance)
    out = result.to_dict(per_byte=True)
    out.update(_member_stats(lm, data), seconds=time.perf_counter() - start)
    return out


def generate_text(specs: Sequence[str], prompt: str | bytes, *,
                  weights: Sequence[float] | None = None,
                  combine: str | Combine = Combine.MIXTURE, max_bytes: int = 64,
                  stop: str | None = None, greedy: bool = True, temperature: float = 1.0,
                  seed: int = 0, device: str | None = None, prune: float | None = None,
                  max_nodes: int = 4096, exact_prompt: bool = False) -> dict:
    """Generate after ``prompt`` with one model or a byte-level ensemble of several.

    Each model reads all but the last two words of the prompt as its own tokenizer splits
    them (:meth:`ByteLM.condition`, one forward pass); with ``exact_prompt`` the whole prompt
    is summed over all its tokenizations instead (a forward pass per byte).
    """
    members = [load_byte_lm(spec, device=device, prune=prune, max_nodes=max_nodes)
               for spec in specs]
    if not exact_prompt:
        for lm in members:
            lm.condition(prompt)
    model = members[0] if len(members) == 1 and not weights else ByteEnsemble(
        members, weights, combine)
    start = time.perf_counter()
    with torch.inference_mode():
        result = generate(model, prompt, max_bytes=max_bytes, stop=stop, greedy=greedy,
                          temperature=temperature, seed=seed)
    seconds = time.perf_counter() - start
    full = result.prompt + result.output
    return {
        "prompt": result.prompt.decode("utf-8", errors="replace"),
        "output": result.text,
        "output_hex": result.output.hex(),
        "stop_reason": result.stop_reason,
        "bytes": len(result.output),
        "logprob": result.logprob,
        "seconds": seconds,
        "combine": None if len(members) == 1 and not weights else str(
            getattr(combine, "value", combine)),
        "members": [_member_stats(lm, full) for lm in members],
    }


@contextlib.contextmanager
def _byte_bar(enabled: bool):
    """A rich progress bar over byte positions (stderr, removed when done), as a callback."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("scoring bytes"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("bytes", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


__all__ = ["generate_text", "load_byte_lm", "score_text"]
