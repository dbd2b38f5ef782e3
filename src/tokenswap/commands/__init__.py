"""Every ``tokenswap`` command: one module each, named after the command's words.

A command module defines three things and nothing else about the command line:

- ``Config``: a dataclass whose fields (built with :func:`tokenswap.config.option`) are the
  command's options, each with its help text; enums for choices; nested dataclasses (a
  trainer's config) are flattened into options;
- ``run(config: Config) -> Result``: does the work; the Python API (:mod:`tokenswap.api`) calls
  it too;
- ``show(result, config, console)``: prints the result for a person at a terminal.

:data:`COMMANDS` maps each command to its module; :mod:`tokenswap.cli` generates the command
line from it (help, choices, ``--config FILE.yaml``, errors). Adding a command is its module
plus one line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# command words -> module under tokenswap.commands
COMMANDS: dict[tuple[str, ...], str] = {
    ("transfer",): "transfer",
    ("eval",): "eval",
    ("methods",): "methods",
    ("tokenizer", "train"): "tokenizer_train",
    ("tune",): "tune",
    ("hypernet", "train"): "hypernet_train",
    ("audit",): "audit",
    ("glitch",): "glitch",
    ("mixture",): "mixture",
    ("bytes", "score"): "bytes_score",
    ("bytes", "generate"): "bytes_generate",
    ("demo",): "demo",
    ("dynamic",): "dynamic",
    ("export",): "export",
    ("lm-eval", "task"): "lm_eval_task",
}

# help of the command groups (first word of multi-word commands)
GROUPS = {
    "tokenizer": "Train target tokenizers.",
    "hypernet": "Zero-shot tokenizer transfer hypernets (arXiv 2405.07883).",
    "bytes": "Exact byte-level probabilities from tokenized models: score text, generate from a "
             "prompt that ends anywhere (mid-token), ensemble models with different tokenizers.",
    "lm-eval": "lm-evaluation-harness interop: held-out text as a local lm_eval task.",
}


def load(words: tuple[str, ...]) -> ModuleType:
    """The module of the command ``words`` (e.g. ``("tokenizer", "train")``)."""
    return importlib.import_module(f"tokenswap.commands.{COMMANDS[words]}")


__all__ = ["COMMANDS", "GROUPS", "load"]
