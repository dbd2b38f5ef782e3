"""lm-evaluation-harness against ``tokenswap eval`` on the same held-out documents.

The shared German held-out text (24,000 bytes of Debian's man pages, ``common.corpus_split``)
goes into a local lm-eval task (:func:`tokenswap.io.lm_eval_task.write_task`, what ``tokenswap
lm-eval task`` writes). The packaged SmolLM2-135M-Instruct and the same model transferred
(``mean``) to the shared 32k German BPE are scored on it by the real ``lm_eval`` command
(``--model hf``, the model arguments of :func:`tokenswap.io.lm_eval_task.model_args`, per-document
log-likelihoods from ``--log_samples``) and by :func:`tokenswap.scoring.bpb.bits_per_byte`
(what ``tokenswap eval`` runs), document by document, at each ``--max-length``.

    python benchmarks/lm_eval_interop.py [--model transferred] [--max-length 1024 --max-length 4096]

Needs ``bash scripts/install.sh --lm-eval``. Writes results/lm_eval.json and results/lm_eval.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import CACHE, corpus_split, machine, markdown_table, target_tokenizer, write_results

from tokenswap import api
from tokenswap.io.lm_eval_task import write_task
from tokenswap.io.models import default_gguf_path, load_model, load_tokenizer, materialize_gguf
from tokenswap.scoring.bpb import bits_per_byte


def lm_eval_bits(task, model_dir: Path, max_length: int) -> tuple[list[float], float]:
    """-log2 p of every document (task order) from the ``lm_eval`` command, and its seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    with tempfile.TemporaryDirectory() as out:
        command = (f"{task.lm_eval_command(str(model_dir), max_length)} --device cpu "
                   f"--output_path {out} --log_samples")
        start = time.perf_counter()
        done = subprocess.run(command, shell=True, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"lm_eval failed:\n{done.stderr[-3000:]}")
        samples = [json.loads(line) for path in Path(out).rglob(f"samples_{task.name}_*.jsonl")
                   for line in path.open()]
    samples.sort(key=lambda s: s["doc_id"])
    return [-s["bits_per_byte"][0] / math.log(2) for s in samples], seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-length", type=int, action="append",
                   help="window in tokens for both tools (repeatable; default 1024)")
    p.add_argument("--train-bytes", type=int, default=20_000_000)
    p.add_argument("--heldout-bytes", type=int, default=24_000)
    p.add_argument("--model", choices=["original", "transferred"], action="append",
                   help="which models (repeatable; default both)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="lm_eval")
    args = p.parse_args()
    lengths = args.max_length or [1024]
    torch.set_num_threads(args.threads)

    train, heldout = corpus_split("de", args.train_bytes, args.heldout_bytes)
    tok_dir = target_tokenizer("de", train, 32000, load_tokenizer("default"))
    (CACHE / "lm-eval").mkdir(parents=True, exist_ok=True)
    transferred = CACHE / "lm-eval" / "smollm2-de32k-mean"
    if not (transferred / "config.json").is_file():
        api.transfer("default", str(tok_dir), method="mean", out=transferred, overwrite=True)
    task = write_task(heldout, CACHE / "lm-eval" / "task", overwrite=True)
    models = {"SmolLM2-135M-Instruct": "original", "SmolLM2 -> de 32k (mean)": "transferred"}
    models = {name: materialize_gguf(default_gguf_path()) if key == "original" else transferred
              for name, key in models.items() if key in (args.model or ["original", "transferred"])}
    doc_bytes = [len(t.encode()) for t in heldout]

    rows, table = [], []
    for name, model_dir in models.items():
        bundle = load_model(str(model_dir))
        n_tokens = [len(ids) for ids in bundle.tokenizer(heldout, add_special_tokens=False,
                                                         split_special_tokens=True)["input_ids"]]
        for max_length in lengths:
            theirs, lm_seconds = lm_eval_bits(task, model_dir, max_length)
            start = time.perf_counter()
            ours = [bits_per_byte(bundle.model, bundle.tokenizer, [t], max_length=max_length).bits
                    for t in heldout]
            ts_seconds = time.perf_counter() - start
            one = [i for i, n in enumerate(n_tokens) if n < max_length]
            more = [i for i, n in enumerate(n_tokens) if n >= max_length]

            def bpb(bits, idx):
                return math.fsum(bits[i] for i in idx) / sum(doc_bytes[i] for i in idx) if idx \
                    else None

            all_docs = list(range(len(heldout)))
            row = {"model": name, "max_length": max_length, "documents": len(heldout),
                   "bytes": sum(doc_bytes), "tokens": n_tokens,
                   "one_window_documents": len(one),
                   "lm_eval_bpb": bpb(theirs, all_docs), "tokenswap_bpb": bpb(ours, all_docs),
                   "lm_eval_bpb_one_window": bpb(theirs, one),
                   "tokenswap_bpb_one_window": bpb(ours, one),
                   "lm_eval_bpb_longer": bpb(theirs, more), "tokenswap_bpb_longer": bpb(ours, more),
                   "max_rel_diff_one_window": max((abs(theirs[i] / ours[i] - 1) for i in one),
                                                  default=None),
                   "lm_eval_bits": theirs, "tokenswap_bits": ours,
                   "lm_eval_seconds": lm_seconds, "tokenswap_seconds": ts_seconds}
            row["rel_diff"] = row["tokenswap_bpb"] / row["lm_eval_bpb"] - 1
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not isinstance(v, list)}), flush=True)
            table.append([name, max_length, f"{len(one)}/{len(heldout)}", row["lm_eval_bpb"],
                          row["tokenswap_bpb"], f"{row['rel_diff']:+.2%}",
                          f"{row['max_rel_diff_one_window']:.1e}" if one else "-",
                          "-" if not more else f"{row['lm_eval_bpb_longer']:.3f} / "
                                               f"{row['tokenswap_bpb_longer']:.3f}"])
        del bundle

    command = "python benchmarks/lm_eval_interop.py " + " ".join(
        [f"--model {m}" for m in args.model or []] + [f"--max-length {n}" for n in lengths])
    md = (f"`{command}`\n\nGerman held-out text ({sum(doc_bytes):,} bytes, {len(heldout)} "
          "documents), scored by the real `lm_eval` (lm-eval "
          f"{_version('lm-eval')}, `--model hf`, model args "
          "`dtype=float32,add_bos_token=False,max_length=N`) and by tokenswap "
          "(`tokenswap eval --max-length N`) on the same task file. A document of fewer than N "
          "tokens is one window in both tools; longer ones are cut differently (lm-eval: "
          "disjoint blocks of N tokens; tokenswap: windows every N/2 tokens).\n\n"
          + markdown_table(["model", "N", "docs in one window", "lm-eval bits/byte",
                            "tokenswap bits/byte", "tokenswap vs lm-eval",
                            "max per-doc diff (one window)",
                            "longer docs: lm-eval / tokenswap"], table))
    write_results(args.name, {"machine": machine(), "args": vars(args), "rows": rows}, md)
    print(md)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
