"""deepfocus (FOCUS, Dobler & de Melo 2023, https://arxiv.org/abs/2305.14481) as a peer.

How it is called: :func:`command` runs ``_deepfocus_driver.py`` with the peer venv's python.
The driver loads the source model, calls ``deepfocus.FOCUS`` with the target tokenizer and a
plain-text file of target-language training text (FOCUS trains a token-level fastText model on
it, ``min_count`` 10 by default), resizes the embeddings, keeps them tied, and saves a plain
transformers directory with the target tokenizer. FOCUS's logger prints how many new tokens
it had to initialise at random; :func:`parse` reads those counts back.

Left out: FOCUS's ``fasttext-wordlevel`` mode (downloads fastText vectors; no network here)
and untied output matrices (SmolLM2 is tied; the driver refuses an untied model).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import venv_python

NAME = "deepfocus"
DRIVER = Path(__file__).with_name("_deepfocus_driver.py")


def applicable(*, donor: Path | None) -> str | None:
    """None if the peer can run on this target, else the reason it cannot."""
    return None


def write_corpus(texts: list[str], path: Path) -> Path:
    """FOCUS reads a ``.txt`` file with one training sample per line (datasets' "text" loader)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (line for text in texts for line in text.splitlines() if line.strip())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def command(*, source: Path, target_tokenizer: Path, corpus_txt: Path, out: Path,
            processes: int = 2) -> list[str]:
    # -P: do not put this directory on sys.path, or this module would shadow the real package
    return [str(venv_python()), "-P", str(DRIVER), "--source", str(source),
            "--target-tokenizer", str(target_tokenizer), "--corpus", str(corpus_txt),
            "--out", str(out), "--processes", str(processes)]


_COPIED = re.compile(r"Copied embeddings for (\d+) overlapping tokens")
_RANDOM = re.compile(r"Initialized (\d+) new tokens from N\(source_mean")
_FOCUS = re.compile(r"Initialized (\d+) new tokens with FOCUS")


def parse(out: Path, log: Path) -> dict:
    """Counts from FOCUS's log and the driver's summary; ``model_dir`` if the model was saved."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    info: dict = {}
    for key, pattern in (("copied", _COPIED), ("random", _RANDOM), ("focus", _FOCUS)):
        found = pattern.findall(text)
        if found:
            info[key] = int(found[-1])
    summary = out / "peer-summary.json"
    if summary.is_file():
        info.update(json.loads(summary.read_text()))
    if (out / "config.json").is_file():
        info["model_dir"] = str(out)
    return info


def note(info: dict) -> str:
    parts = []
    if "copied" in info:
        parts.append(f"{info['copied']:,} copied")
    if "focus" in info:
        parts.append(f"{info['focus']:,} FOCUS")
    if "random" in info:
        parts.append(f"{info['random']:,} random (no fastText vector)")
    if info.get("replacement_char_tokens"):
        parts.append(f"{info['replacement_char_tokens']:,} target tokens decode to U+FFFD")
    return "; ".join(parts)
