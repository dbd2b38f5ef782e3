"""mergekit's ``mergekit-tokensurgeon`` (arcee-ai/mergekit 0.1.5) as a peer.

Tokensurgeon transplants the *donor* model's tokenizer onto the base model: tokens shared by
both vocabularies are copied, the others are approximated from the base embeddings; the default
method is orthogonal matching pursuit over the k=64 nearest shared tokens in the donor's
embedding space (Goddard & Neto, "Training-Free Tokenizer Transplantation via Orthogonal
Matching Pursuit", https://arxiv.org/abs/2506.06607). So it needs a donor model trained with
the target tokenizer: here only the Gemma 3 target has one.

How it is called: ``mergekit-tokensurgeon MODEL DONOR OUT_PATH -k 64`` from the peer venv. The
output directory is a plain transformers model with the donor's tokenizer copied in. Progress
is printed as tqdm bars; :func:`peers.projected_seconds` turns the last one into a projection
when the run is killed at the budget.
"""

from __future__ import annotations

from pathlib import Path

from . import venv_bin

NAME = "mergekit-tokensurgeon"


def applicable(*, donor: Path | None) -> str | None:
    return None if donor is not None else "not applicable: needs a donor model"


def command(*, source: Path, donor: Path, out: Path, k: int = 64, method: str = "omp",
            threads: int = 2) -> list[str]:
    return [str(venv_bin("mergekit-tokensurgeon")), str(source), str(donor), str(out),
            "-k", str(k), "--approximation-method", method, "--num-threads", str(threads)]


def parse(out: Path, log: Path) -> dict:
    info: dict = {}
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        info["model_dir"] = str(out)
    return info


def note(info: dict) -> str:
    return "OMP k=64 (default)"
