"""The run's log: one JSON object per line in ``out/log.jsonl``, appended over resumed runs.

Lines are flushed as they are written, so a killed run leaves a readable log. Three kinds of
line: the start (``{"start": ..., "config": ...}``) or a resume (``{"resumed_from": step}``),
training steps (``"loss"``) and evaluations (``"eval_*"``); every step and evaluation line
carries ``step``, ``train_seconds`` and ``train_cpu_seconds``. Only rank 0 writes.
"""

from __future__ import annotations

import json
from pathlib import Path

LOG_FILE = "log.jsonl"


class JsonLog:
    """Appends records to ``path``; a no-op when not ``enabled`` (ranks > 0)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.file = path.open("a", encoding="utf-8") if enabled else None

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def read_log(path: Path) -> list[dict]:
    """Every record of a ``log.jsonl``."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


__all__ = ["LOG_FILE", "JsonLog", "read_log"]
