"""``tokenswap lm-eval task``: held-out text as an lm-evaluation-harness task (local files).

The writer is :func:`tokenswap.io.lm_eval_task.write_task`; here the text is read with the
corpus specs every command takes, the output checked first, and the two commands that score
the same documents (``lm_eval`` and ``tokenswap eval``) printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenswap.config import option
from tokenswap.io.lm_eval_task import DEFAULT_NAME, LmEvalTask


@dataclass
class Config:
    text: list[str] = option(help="Held-out text: files, dirs, globs, hf:name.")
    out: Path | None = option(None, "New directory for NAME.yaml and NAME.jsonl.", short="-o",
                              required=True)
    name: str = option(DEFAULT_NAME, "Task name (what lm_eval --tasks takes).")
    max_bytes: int | None = option(None, "Take at most this many bytes of text.")
    overwrite: bool = option(False, "Replace an existing --out directory.")


def run(cfg: Config) -> LmEvalTask:
    from tokenswap.errors import TokenswapError
    from tokenswap.io.corpus import corpus_texts
    from tokenswap.io.lm_eval_task import check_name, write_task
    from tokenswap.io.save import check_output_dir

    if cfg.out is None:
        raise TokenswapError("--out is required")
    check_name(cfg.name)
    check_output_dir(cfg.out, overwrite=cfg.overwrite)
    if not cfg.text:
        raise TokenswapError("no held-out text; pass --text with files, dirs or globs")
    texts = corpus_texts(cfg.text, max_bytes=cfg.max_bytes) or []
    return write_task(texts, cfg.out, name=cfg.name, overwrite=cfg.overwrite)


def show(task: LmEvalTask, cfg: Config, console) -> None:
    console.print(f"wrote {task.yaml_path} and {task.data_path} ({task.documents:,} documents, "
                  f"{task.bytes:,} bytes)")
    console.print("score a model on it with lm-eval (pip install 'tokenswap[lm-eval]'):",
                  markup=False)
    console.print(f"  {task.lm_eval_command()}", markup=False, highlight=False, soft_wrap=True)
    console.print("and on the same bytes with tokenswap:")
    console.print(f"  {task.tokenswap_command()}", markup=False, highlight=False, soft_wrap=True)
