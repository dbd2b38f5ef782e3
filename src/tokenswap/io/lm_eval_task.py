"""Held-out documents as an lm-evaluation-harness task over local files (no hub).

:func:`write_task` writes two files into a new directory ``out``:

* ``NAME.jsonl``: one ``{"text": document}`` per line, the documents exactly as given;
* ``NAME.yaml``: the task (template ``lm_eval_task.yaml`` beside this module): the ``json``
  dataset builder over that file (absolute path), ``output_type: loglikelihood_rolling``,
  metrics ``word_perplexity``, ``byte_perplexity`` and ``bits_per_byte``.

Then ``lm_eval --model hf --model_args pretrained=DIR,... --tasks NAME --include_path out``
and ``tokenswap eval --text out/NAME.jsonl --model DIR`` score the same documents and the
same bytes. lm-eval needs neither tokenswap nor the network for it.

How the two compare (lm-eval 0.4.13, ``lm_eval/models/huggingface.py::loglikelihood_rolling``
and ``lm_eval/utils.py::get_rolling_token_windows``):

* bytes: both count ``len(doc.encode("utf-8"))`` per document and divide the summed
  ``-log2 p`` by the summed bytes (lm-eval's ``bits_per_byte`` aggregation is
  ``-sum(loglikelihood) / sum(bytes) / ln 2``);
* document start: both put one token before the document, ``bos_token_id`` else
  ``eos_token_id``, and never score it. lm-eval's ``hf`` backend also encodes the document with
  the tokenizer's default ``add_special_tokens=True``, so a tokenizer whose post-processor adds
  a BOS (Llama, Gemma) would score that BOS as a content token: pass ``add_bos_token=False``;
* special-token text: tokenswap encodes with ``split_special_tokens=True`` (a literal
  ``<|im_end|>`` in a document is text), lm-eval without it (it becomes the control token);
* long documents: a document of fewer than ``max_length`` tokens is one window in both tools,
  so the scores are the same up to float noise. Longer ones are cut differently: lm-eval
  scores disjoint blocks of ``max_length`` predicted tokens (each new block sees only the last
  token of the previous one; the last block is moved back to a full window), tokenswap
  overlapping windows every ``max_length // 2`` tokens (every token after the first window has
  at least half a window of context), so tokenswap mostly reads lower on them.

Left out: running lm-eval (it is the user's tool, an optional extra: ``pip install
tokenswap[lm-eval]``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tokenswap.errors import TokenswapError

DEFAULT_NAME = "tokenswap_heldout"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")


@dataclass
class LmEvalTask:
    """Where :func:`write_task` put the task and what it holds."""

    name: str
    directory: Path
    documents: int
    bytes: int

    @property
    def yaml_path(self) -> Path:
        return self.directory / f"{self.name}.yaml"

    @property
    def data_path(self) -> Path:
        return self.directory / f"{self.name}.jsonl"

    def lm_eval_command(self, model: str = "MODEL_DIR", max_length: int = 1024) -> str:
        """The ``lm_eval`` command line that scores ``model`` on this task."""
        return (f"HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 lm_eval --model hf --model_args "
                f"{shlex.quote(model_args(model, max_length))} --tasks {self.name} "
                f"--include_path {shlex.quote(str(self.directory))} --batch_size 8")

    def tokenswap_command(self, model: str = "MODEL_DIR", max_length: int = 1024) -> str:
        return (f"tokenswap eval --text {shlex.quote(str(self.data_path))} --model "
                f"{shlex.quote(model)} --max-length {max_length}")


def model_args(model: str, max_length: int = 1024) -> str:
    """lm-eval ``hf`` model arguments that score like ``tokenswap eval --max-length N``.

    float32 as tokenswap loads models; ``add_bos_token=False`` so that a tokenizer whose
    post-processor adds a BOS does not put a second, scored BOS after lm-eval's own prefix
    token; ``max_length`` the same window (lm-eval's default is the model's context length).

    >>> model_args("out/model-de", 512)
    'pretrained=out/model-de,dtype=float32,add_bos_token=False,max_length=512'
    """
    return f"pretrained={model},dtype=float32,add_bos_token=False,max_length={max_length}"


def task_yaml(name: str, data_file: str | os.PathLike) -> str:
    """The task definition for documents in ``data_file`` (absolute), named ``name``.

    >>> text = task_yaml("heldout", "/data/heldout.jsonl")
    >>> "task: heldout" in text, 'test: "/data/heldout.jsonl"' in text
    (True, True)
    """
    check_name(name)
    template = resources.files("tokenswap.io").joinpath("lm_eval_task.yaml").read_text("utf-8")
    # JSON strings are YAML double-quoted scalars: any path survives (spaces, colons, quotes)
    return string.Template(template).substitute(task=name, data_file=json.dumps(str(data_file)))


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise TokenswapError(f"task name {name!r}: use letters, digits, '_' and '-', starting "
                             "with a letter (lm-eval looks tasks up by this name)")
    return name


def write_task(texts: Sequence[str], out: str | os.PathLike, *, name: str = DEFAULT_NAME,
               overwrite: bool = False) -> LmEvalTask:
    """Write ``texts`` and the task reading them into the new directory ``out`` (atomic).

    Whitespace-only documents are left out, as :func:`tokenswap.io.corpus.read_corpus` leaves
    them out when ``tokenswap eval`` reads the JSON Lines file back.
    """
    from tokenswap.io.save import atomic_dir

    check_name(name)
    if isinstance(texts, str):
        raise TokenswapError("texts must be a sequence of documents, not one string")
    docs = [t for t in texts if t.strip()]
    if not docs:
        raise TokenswapError("no text for the task: the input is empty or every document is "
                             "whitespace")
    out = Path(out)
    final = out.resolve()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        lines = "".join(json.dumps({"text": t}) + "\n" for t in docs)
        (tmp / f"{name}.jsonl").write_text(lines, encoding="utf-8")
        (tmp / f"{name}.yaml").write_text(task_yaml(name, final / f"{name}.jsonl"),
                                          encoding="utf-8")
    return LmEvalTask(name=name, directory=final, documents=len(docs),
                      bytes=sum(len(t.encode("utf-8")) for t in docs))
