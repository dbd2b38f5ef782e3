"""The progress bar of a training run (rich): steps, loss, held-out bits/byte, tokens/s."""

from __future__ import annotations


class ProgressBar:
    """A rich progress bar named ``name``; ``total`` None for a time budget (no end known)."""

    def __init__(self, name: str, total: int | None, done: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn(name), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.3f}"),
                                 TextColumn("held-out {task.fields[bpb]:.4f} bits/byte"),
                                 TextColumn("{task.fields[tps]:,.0f} tok/s"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
        self.task = self.progress.add_task(name, total=total, completed=done, loss=float("nan"),
                                           bpb=float("nan"), tps=0.0)
        self.progress.start()

    def update(self, step: int, **fields: float) -> None:
        """Show ``step`` and any of ``loss``, ``bpb``, ``tps``."""
        self.progress.update(self.task, completed=step, **fields)

    def close(self) -> None:
        self.progress.stop()


__all__ = ["ProgressBar"]
