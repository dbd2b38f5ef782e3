"""Choose method options (FOCUS temperature, OMP sparsity, ...) on a validation split.

Defaults of the init methods are chosen here, never on the held-out bytes that the other
benchmarks report: for each target (German, Russian, Python code; the 32k byte-level BPEs of
``benchmarks/peers.py``), 5% of the *training* documents are set aside as validation text
(:func:`common.corpus_split`), the corpus methods learn from the rest (capped at
``--corpus-bytes``), and every point of a small grid of options is scored on the validation
text with tokenswap's ``bits_per_byte``. ``mean`` (FVT) is scored too: the ratio column is
bits/byte relative to it, and the summary picks, per method, the point with the lowest mean
ratio over the targets.

    python benchmarks/choose_options.py [--targets de ru code] [--methods focus omp]

Writes benchmarks/results/choose_options.{json,md}. The fastText model of a target is trained
once and shared by all its grid points. Results written before the options were declared call
``omp_k`` just ``k``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import time

import torch
from common import CORPORA, cap, corpus_split, machine, markdown_table, write_results
from peers import CACHE

from tokenswap import api
from tokenswap.init import auxiliary
from tokenswap.io.models import ModelBundle, load_model, load_tokenizer
from tokenswap.scoring.bpb import bits_per_byte

GRIDS: dict[str, dict[str, list]] = {
    "focus": {"focus_temperature": [0.03, 0.1, 0.3, 1.0], "focus_mix": [0.0, 0.25, 0.5]},
    "omp": {"omp_k": [4, 8, 16, 64], "omp_mix": [0.0, 0.5]},
}


def share_fasttext_models() -> dict:
    """Keep every fastText model trained by a transfer for the next transfers, which start with
    an empty cache each; returns the store (clear it when the corpus or tokenizer changes)."""
    trained: dict = {}
    train = auxiliary._train

    def remembered(texts, tokenizer, **kw):
        key = (auxiliary.corpus_fingerprint(texts), id(tokenizer), *sorted(kw.items()))
        if key not in trained:
            trained[key] = train(texts, tokenizer, **kw)
        return trained[key]

    auxiliary._train = remembered
    return trained


def points(method: str) -> list[dict]:
    grid = GRIDS.get(method, {})
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())] or [{}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["de", "ru", "code"],
                        choices=[c for c in CORPORA if c != "en"])
    parser.add_argument("--methods", nargs="+", default=list(GRIDS))
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--validation-bytes", type=int, default=16000)
    parser.add_argument("--train-bytes", type=int, default=20_000_000)
    parser.add_argument("--corpus-bytes", type=int, default=4_000_000)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()

    source = load_model("default")
    fasttext_models = share_fasttext_models()  # shared by all grid points of a target
    rows, payload = [], {"machine": machine(), "args": vars(args), "grids": GRIDS, "runs": []}
    for name in args.targets:
        tok_dir = CACHE / f"tokenizer-{name}-{args.vocab_size}"
        train, _, valid = corpus_split(name, args.train_bytes, 1, validation_bytes=args.validation_bytes)
        if not (tok_dir / "tokenizer.json").is_file():
            api.tokenizer_train(None, args.vocab_size, texts=[d.text for d in train],
                                like=source.tokenizer, out=tok_dir, overwrite=True)
        target = load_tokenizer(tok_dir)
        corpus = cap(train, args.corpus_bytes)  # Documents: api.transfer reads str as paths
        runs = [("mean", {})] + [(m, p) for m in args.methods for p in points(m)]
        baseline = None
        for method, opts in runs:
            bundle = ModelBundle(model=copy.deepcopy(source.model), tokenizer=source.tokenizer,
                                 spec=source.spec)
            t0 = time.perf_counter()
            api.transfer(bundle, target, method=method, corpus=corpus, seed=0,
                         options=opts)
            seconds = time.perf_counter() - t0
            res = bits_per_byte(bundle.model, bundle.tokenizer, valid, max_length=args.max_length,
                                batch_size=4)
            baseline = baseline or res.bits_per_byte
            run = {"target": name, "method": method, "options": opts,
                   "bits_per_byte": res.bits_per_byte, "ratio_to_mean": res.bits_per_byte / baseline,
                   "transfer_seconds": seconds}
            payload["runs"].append(run)
            print(f"[{name}] {method} {opts}: {res.bits_per_byte:.4f} "
                  f"({run['ratio_to_mean']:.4f} of mean) {seconds:.0f} s", flush=True)
            del bundle
        fasttext_models.clear()  # the next target has another corpus and tokenizer

    best = {}
    for method in args.methods:
        by_point: dict[str, list[float]] = {}
        for r in payload["runs"]:
            if r["method"] == method:
                key = json.dumps(r["options"], sort_keys=True)
                by_point.setdefault(key, []).append(r["ratio_to_mean"])
        key = min(by_point, key=lambda k: sum(by_point[k]) / len(by_point[k]))
        best[method] = {"options": json.loads(key), "mean_ratio_to_mean":
                        sum(by_point[key]) / len(by_point[key])}
    payload["best"] = best
    for r in payload["runs"]:
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "-"
        rows.append([r["target"], r["method"], opts, r["bits_per_byte"], r["ratio_to_mean"]])
    table = markdown_table(["target", "method", "options", "validation bits/byte",
                            "ratio to mean"], rows)
    table += "\n\nBest per method (lowest mean ratio over targets):\n\n" + "\n".join(
        f"- {m}: {b['options']} ({b['mean_ratio_to_mean']:.4f})" for m, b in best.items())
    write_results("choose_options", payload, table)
    print(table)
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
