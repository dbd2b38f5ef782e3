"""Hypernets that ship with tokenswap, so a user can transfer without training one first.

``--hypernet default`` (and ``--method hypernet`` without ``--hypernet``) picks the shipped
hypernet whose base is the model being transferred: the model itself or a fine-tuned variant
of it, recognised as :meth:`~tokenswap.hypernet.model.Hypernet.check_base` recognises any
hypernet's base. Each shipped hypernet is a directory under ``tokenswap/hypernet/weights/``
(``hypernet.safetensors``, ``hypernet.json``, ``hypernet.sha256``) produced by the command in
:data:`SHIPPED`, whose log and figures are committed in ``benchmarks/results/``. Loading checks
the files against their recorded sha256.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenswap.errors import TokenswapError

WEIGHTS = Path(__file__).parent / "weights"
DEFAULT = "default"


@dataclass(frozen=True)
class ShippedHypernet:
    name: str  # directory under tokenswap/hypernet/weights/
    base: str  # the base model, as a user names it
    results: str  # the results file that measures it, relative to the repository
    command: str  # the command that trained it

    @property
    def path(self) -> Path:
        return WEIGHTS / self.name


SHIPPED: tuple[ShippedHypernet, ...] = (
    ShippedHypernet(
        name="smollm2-135m-instruct",
        base="SmolLM2-135M-Instruct (--model default)",
        results="benchmarks/results/hypernet-ship.md",
        # step 150 of a 300-step cosine schedule (39.5 training CPU minutes), stored in bfloat16
        # (6 MB; bits/byte within 0.001 of float32 on every target of the results file)
        command="python benchmarks/hypernet.py --threads 1 --name hypernet-ship --marks 100 150 "
                "--decay-steps 300 --unseen fr ja pl --ship",
    ),
)


def available() -> list[ShippedHypernet]:
    """The shipped hypernets whose files are present in this installation."""
    return [h for h in SHIPPED if (h.path / "hypernet.safetensors").is_file()]


def for_model(bundle, *, device=None):
    """The shipped hypernet for ``bundle`` (its base model or a fine-tuned variant), loaded and
    checked, or one line saying there is none."""
    from tokenswap.hypernet.model import Hypernet, SourceEmbeddings

    source = SourceEmbeddings.from_bundle(bundle)
    for shipped in available():
        hypernet = Hypernet.load(shipped.path, device=device)
        try:
            hypernet.check_base(source, bundle.name, tokenizer=bundle.tokenizer)
        except TokenswapError:
            continue
        return hypernet
    bases = ", ".join(h.base for h in available()) or "none in this installation"
    raise TokenswapError(f"no shipped hypernet for {bundle.name} (shipped: {bases}); train one "
                         "with `tokenswap hypernet train` and pass --hypernet DIR")


__all__ = ["DEFAULT", "SHIPPED", "ShippedHypernet", "available", "for_model"]
