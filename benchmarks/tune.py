"""Tuning after transfer: held-out bits/byte against tuning time, per initialisation, on CPU.

One run on the packaged SmolLM2-135M, per target (German man pages, Python's standard library):

1. the original model with its own tokenizer is tuned on the target's training text: the
   control (what the same compute buys without a new tokenizer);
2. SmolLM2 gets the target's byte-level BPE of each of ``--vocab-sizes`` (default 32k, the
   cached tokenizer every benchmark uses) with each initialisation - ``random``, ``mean``
   (FVT), ``focus`` (the best heuristic of ``peers.py``; trained on ``--corpus-bytes`` of the
   training split) and ``hypernet`` (only with ``--hypernet DIR``) - and is tuned the same
   way on the same text, for the same budget:
   ``--steps`` (the same number of optimizer steps of the same number of tokens),
   ``--cpu-minutes`` (the same CPU time in training steps: a smaller vocabulary's cheaper
   output layer buys more steps) or ``--minutes`` (wall clock); evaluation time never counts;
3. every ``--eval-every`` steps each model scores the same held-out bytes (the 24 KB split of
   every other benchmark) with ``tokenswap.scoring.bpb.bits_per_byte``; at the end the
   published model is scored again in float32.

Writes results/<name>.{json,md,png} (``--name``, default ``tune``). The goal (issue 5): after
the budget, the best transferred model is within 2% of the tuned original in bits/byte while
reading the held-out text in at least 25% fewer tokens, and a better initialisation stays
ahead for the whole budget. Curves are cached under .cache/tune-run/<name>/ (a killed run
resumes; a finished curve is not run again), so curves can run as separate processes (one per
core, each with its own ``--inits``/``--vocab-sizes``) and ``--report`` writes the results
from all of them.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import shutil
import sys
import time

import numpy as np
import torch
from common import CACHE, RESULTS, cap, corpus_split, machine, markdown_table, target_tokenizer, write_results

from tokenswap import api
from tokenswap.io.checkpoint import CHECKPOINT
from tokenswap.io.models import ModelBundle, load_model, load_tokenizer
from tokenswap.scoring.bpb import bits_per_byte
from tokenswap.tuning import tune_model
from tokenswap.tuning.loop import LOG_FILE

INITS = ("original", "random", "mean", "focus", "hypernet")
OBJECTIVES = ("lm", "alm", "lm+alm")
AGREEMENT_PROMPTS, AGREEMENT_BYTES = 16, 32
COLORS = {"random": "C0", "mean": "C1", "focus": "C2", "hypernet": "C3",  # the same in every plot
          "alm": "C4", "lm+alm": "C5"}  # distilled curves: by objective
VOCAB_STYLES = ("-", "-.", ":")  # line style per target vocabulary, largest first


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="tune", help="results/<name>.* and .cache/tune-run/<name>")
    p.add_argument("--targets", nargs="+", default=["de", "code"], choices=["de", "code"])
    p.add_argument("--inits", nargs="+", default=list(INITS), choices=list(INITS))
    p.add_argument("--hypernet", default=None, help="trained hypernet dir for the hypernet row")
    p.add_argument("--objectives", nargs="+", default=["lm"], choices=list(OBJECTIVES),
                   help="training losses of the transferred curves (alm, lm+alm: distilled from "
                        "the original SmolLM2 with its own tokenizer; the teacher's forward "
                        "passes count in the budget); the control always trains with lm")
    p.add_argument("--minutes", type=float, default=8.0, help="training time per curve")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps per curve instead of --minutes: the same number of "
                        "training tokens for every curve however busy the machine is")
    p.add_argument("--cpu-minutes", type=float, default=None,
                   help="training CPU time per curve instead of --minutes (all threads; use "
                        "--threads): the same compute for every curve, counted by the process")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (1 keeps a shared machine's other jobs from stalling it)")
    p.add_argument("--vocab-sizes", type=int, nargs="+", default=[32000],
                   help="target BPE vocabularies (each transferred init runs on each): a smaller "
                        "one reads more tokens but has fewer rows to learn in a short run")
    p.add_argument("--heldout-bytes", type=int, default=24000)
    p.add_argument("--train-bytes", type=int, default=20_000_000,
                   help="text read per corpus before the train/held-out split")
    p.add_argument("--tune-bytes", type=int, default=4_000_000, help="tuning text per target")
    p.add_argument("--corpus-bytes", type=int, default=4_000_000, help="FOCUS's training text")
    p.add_argument("--stage", default="full", choices=["full", "lora", "embeddings"])
    p.add_argument("--embedding-fraction", type=float, default=0.1)
    p.add_argument("--precision", default="fp32", choices=["bf16", "fp32"],
                   help="bf16 is fast only with native bf16 (AMX, AVX512-BF16, GPUs); on an "
                        "AVX2-only CPU it is ~50x slower (tokenswap.tuning.precision)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--embedding-lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=20, help="steps between held-out scores")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--checkpoint-every", type=int, default=100,
                   help="steps between checkpoints: a killed curve resumes from the last one")
    p.add_argument("--partial", action="store_true",
                   help="with --report: also report curves still running (or killed), from "
                        "their log.jsonl: steps so far, last evaluation as 'after', agreement "
                        "of their best/ model")
    p.add_argument("--report", action="store_true",
                   help="run nothing: write the report from every finished curve of --name "
                        "(curves run as separate processes, e.g. one per core)")
    return p.parse_args(argv)


# What a curve depends on: curves reported together must agree on all of these.
CURVE_OPTIONS = ("steps", "cpu_minutes", "minutes", "stage", "embedding_fraction", "precision",
                 "batch_size", "seq_len", "lr", "embedding_lr", "warmup_steps", "eval_every",
                 "max_length", "heldout_bytes", "train_bytes", "tune_bytes", "threads")


def curve_args(row: dict) -> argparse.Namespace:
    """The options a finished curve was run with (from the command it recorded)."""
    return parse_args(shlex.split(row["command"])[2:])


def budget(args) -> dict:
    """The tune_model options of one curve's budget."""
    if args.steps:
        return {"steps": args.steps}
    if args.cpu_minutes:
        return {"minutes": args.cpu_minutes, "clock": "cpu"}
    return {"minutes": args.minutes}


def clock_key(args) -> str:
    """The curve field that measures the budget (the plot's x axis, the gap's alignment)."""
    return "step" if args.steps else "train_cpu_seconds" if args.cpu_minutes else "train_seconds"


def curve_of(out) -> list[dict]:
    lines = (out / LOG_FILE).read_text().splitlines() if (out / LOG_FILE).is_file() else []
    return [r for r in map(json.loads, lines) if "eval_bpb" in r]


def curve_key(target: str, init: str, vocab: int | None, objective: str = "lm") -> str:
    return f"{target}-{init}" + (f"-{vocab}" if vocab else "") + \
        ("" if objective == "lm" else f"-{objective}")


def run_curve(source: ModelBundle, target: dict, init: str, vocab: int | None, args,
              run_dir, objective: str = "lm") -> dict:
    """Transfer onto the ``vocab``-token BPE (unless the control), tune for the budget, score;
    cached per curve."""
    key = curve_key(target["name"], init, vocab, objective)
    out, done = run_dir / key, run_dir / f"{key}.json"
    if done.is_file():
        return json.loads(done.read_text())
    if out.exists() and not (out / CHECKPOINT).is_dir():
        shutil.rmtree(out)  # killed before its first checkpoint: nothing to resume
    bundle = ModelBundle(model=copy.deepcopy(source.model), tokenizer=source.tokenizer,
                         spec=source.spec)
    transfer_seconds = 0.0
    if init != "original":
        t0 = time.perf_counter()
        api.transfer(bundle, target["tokenizers"][vocab], method=init, seed=0,
                     corpus=target["corpus"] if init == "focus" else None,
                     hypernet=args.hypernet if init == "hypernet" else None)
        transfer_seconds = time.perf_counter() - t0
    cpu = time.process_time()
    result = tune_model(
        bundle, target["tune_texts"], out, eval_texts=target["heldout"],
        **budget(args),
        stage=args.stage, embedding_fraction=args.embedding_fraction,
        precision=args.precision, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
        embedding_lr=args.embedding_lr, warmup_steps=args.warmup_steps,
        eval_every=args.eval_every, eval_max_length=args.max_length, eval_batch_size=4,
        checkpoint_every=args.checkpoint_every, keep_checkpoint=False, progress=args.progress,
        provenance={"benchmark": "tune", "init": init}, objective=objective,
        teacher=None if objective == "lm" else source)  # frozen; students train on copies
    cpu = time.process_time() - cpu  # training and evaluation, all threads
    final = load_model(out)  # the published model, scored in float32
    fp32 = bits_per_byte(final.model, final.tokenizer, target["heldout"],
                         max_length=args.max_length, batch_size=4)
    row = {"target": target["name"], "init": init, "vocab_size": vocab, "objective": objective,
           "command": shlex.join(["python", "benchmarks/tune.py", *sys.argv[1:]]), "steps": result.step,
           "train_seconds": result.train_seconds, "transfer_seconds": transfer_seconds,
           "cpu_seconds": cpu,
           "train_cpu_seconds": result.train_cpu_seconds,
           "curve": [{k: r[k] for k in ("step", "train_seconds", "train_cpu_seconds", "eval_bpb",
                                        "eval_tokens", "eval_bytes") if k in r}
                     for r in curve_of(out)],
           "final_bpb": result.eval_bpb, "best_bpb": result.best_bpb,
           "final_bpb_fp32": fp32.bits_per_byte, "tokens_per_byte": fp32.tokens_per_byte}
    done.write_text(json.dumps(row, indent=2) + "\n")
    return row


def main() -> int:
    args = parse_args()
    torch.set_grad_enabled(False)  # tuning enables it for its own steps
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = CACHE / "tune-run" / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.report:
        rows = finished_curves(run_dir, args.targets)
        if args.partial:
            rows = sorted(rows + partial_curves(run_dir, args.targets, rows),
                          key=lambda r: order_key(r, args.targets))
        options = {json.dumps({k: getattr(curve_args(r), k)
                               for k in CURVE_OPTIONS}, sort_keys=True)
                   for r in rows if "command" in r}
        if len(options) > 1:
            raise SystemExit(f"the curves of {run_dir} were run with different options: "
                             + " vs ".join(sorted(options)))
        for key, value in (json.loads(options.pop()) if options else {}).items():
            setattr(args, key, value)  # the report describes the curves, not this command
        add_agreement(run_dir, rows, args)
        notes = ["unfinished curves (stopped before their budget): 'bits/byte after' is their "
                 "last held-out evaluation, 'steps' and 'minutes' what they trained, the "
                 "agreement that of their best/ model"] if any(r.get("partial") for r in rows) \
            else []
        notes += distill_notes(run_dir, rows)
        report(args, rows, notes)
        return 0
    source = load_model("default")
    rows, notes = [], []
    for name in args.targets:
        train, heldout = corpus_split(name, args.train_bytes, args.heldout_bytes)
        target = {"name": name, "heldout": heldout,
                  "tokenizers": {v: load_tokenizer(target_tokenizer(name, train, v,
                                                                    source.tokenizer))
                                 for v in args.vocab_sizes},
                  "corpus": cap(train, args.corpus_bytes),
                  "tune_texts": [d.text for d in cap(train, args.tune_bytes)]}
        for init in args.inits:
            if init == "hypernet" and not args.hypernet:
                notes.append(f"{name}: hypernet row not run (no --hypernet DIR given)")
                continue
            for vocab, objective in [(None, "lm")] if init == "original" else [
                    (v, o) for v in args.vocab_sizes for o in args.objectives]:
                row = run_curve(source, target, init, vocab, args, run_dir, objective)
                rows.append(row)
                print(f"[{name}] {label(row)}: {row['steps']} steps in "
                      f"{row['train_seconds']:.0f} s, bits/byte {row['curve'][0]['eval_bpb']:.3f}"
                      f" -> {row['final_bpb_fp32']:.3f}", flush=True)
    add_agreement(run_dir, rows, args)
    report(args, rows, notes)
    return 0


def prompts(heldout: list[str], n: int = AGREEMENT_PROMPTS, chars: int = 200) -> list[str]:
    """``n`` held-out prompts of about ``chars`` characters, each ending just before a space
    (the continuation starts a word), taken at evenly spaced places of the held-out text."""
    text = "\n".join(heldout)
    out = []
    for k in range(n):
        at = text.find(" ", chars + k * (len(text) - 2 * chars) // n)
        out.append(text[at - chars:at])
    return out


def greedy_bytes(bundle: ModelBundle, prompt: str, n_bytes: int) -> bytes:
    """The first ``n_bytes`` of the model's greedy continuation (documents start as in
    ``bits_per_byte``: the document-start token, then the text)."""
    from tokenswap.scoring.bpb import document_start_id
    from tokenswap.vocab.bytes import ByteVocab

    ids = [document_start_id(bundle.tokenizer),
           *bundle.tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    out = bundle.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                dtype=torch.long), max_new_tokens=n_bytes, do_sample=False,
                                pad_token_id=bundle.tokenizer.eos_token_id)
    new = out[0, len(ids):].tolist()
    return ByteVocab.from_tokenizer(bundle.tokenizer).decode_bytes(new)[:n_bytes]


def teacher_continuations(teacher: ModelBundle, heldout: list[str], run_dir) -> list[bytes]:
    """The original's greedy continuations of :func:`prompts`, computed once per run."""
    path = run_dir / "teacher-continuations.json"
    if path.is_file():
        return [bytes.fromhex(h) for h in json.loads(path.read_text())]
    out = [greedy_bytes(teacher, p, AGREEMENT_BYTES) for p in prompts(heldout)]
    path.write_text(json.dumps([b.hex() for b in out]) + "\n")
    return out


def agreement(student: ModelBundle, teacher: ModelBundle, heldout: list[str], run_dir) -> dict:
    """How often the student's greedy 32-byte continuation of a held-out prompt is the
    teacher's (the original SmolLM2, untuned), and their mean common prefix in bytes."""
    same, prefix = 0, 0
    theirs = teacher_continuations(teacher, heldout, run_dir)
    for p, b in zip(prompts(heldout), theirs, strict=True):
        a = greedy_bytes(student, p, AGREEMENT_BYTES)
        same += a == b
        prefix += next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                       min(len(a), len(b)))
    n = AGREEMENT_PROMPTS
    return {"prompts": n, "bytes": AGREEMENT_BYTES, "exact": same / n, "mean_prefix": prefix / n}


def add_agreement(run_dir, rows: list[dict], args) -> None:
    """Greedy agreement with the original of every finished curve, measured once (by the
    report: a curve's own run never fails on it) and kept in the curve's file."""
    missing = [r for r in rows if "agreement" not in r and r["final_bpb_fp32"] is not None]
    if not missing:
        return
    source = load_model("default")
    for r in missing:
        _, heldout = corpus_split(r["target"], args.train_bytes, args.heldout_bytes)
        key = curve_key(r["target"], r["init"], r["vocab_size"], r.get("objective", "lm"))
        if not r.get("partial"):
            r["agreement"] = agreement(load_model(run_dir / key), source, heldout, run_dir)
            (run_dir / f"{key}.json").write_text(json.dumps(r, indent=2) + "\n")
            continue
        best = run_dir / key / "best"  # an unfinished curve: its best model so far, cached
        step = json.loads((best / "tokenswap.json").read_text())["tune"]["step"]
        cache = run_dir / f"{key}.partial-agreement.json"
        known = json.loads(cache.read_text()) if cache.is_file() else {}
        if known.get("best_step") != step:
            known = {"best_step": step,
                     "agreement": agreement(load_model(best), source, heldout, run_dir)}
            cache.write_text(json.dumps(known) + "\n")
        r["agreement"] = {**known["agreement"], "best_step": step}


def distill_notes(run_dir, rows: list[dict]) -> list[str]:
    """Per transferred curve, its next-token loss by step (nats/token on each step's batch,
    before the step's update: text the model has not trained on; the same batches for every
    curve of one vocabulary) and, when distilled, teacher tokens, chunks and the ALM loss."""
    out = []
    for r in rows:
        if r["init"] == "original":
            continue
        key = curve_key(r["target"], r["init"], r["vocab_size"], r.get("objective", "lm"))
        log = run_dir / key / LOG_FILE
        steps = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
        steps = [x for x in steps if "loss" in x]
        if not steps:
            continue
        text = f"{label(r)}: next-token loss by step: " + ", ".join(
            f"{x.get('lm_loss', x['loss']):.3f}" for x in steps)
        if "alm_loss" in steps[0]:
            text += ("; ALM loss by step: " + ", ".join(f"{x['alm_loss']:.3f}" for x in steps)
                     + f"; per step {np.mean([x['teacher_tokens'] for x in steps]):.0f} teacher "
                     f"tokens, {np.mean([x['chunks'] for x in steps]):.0f} scored chunks")
        out.append(text)
    return out


def partial_curves(run_dir, targets: list[str], finished: list[dict]) -> list[dict]:
    """Rows of the curves of ``run_dir`` that have not finished, from their logs."""
    done = {curve_key(r["target"], r["init"], r["vocab_size"], r.get("objective", "lm"))
            for r in finished}
    rows = []
    for log in sorted(run_dir.glob(f"*/{LOG_FILE}")):
        key = log.parent.name
        parts = key.split("-")
        if key in done or parts[0] not in targets or not (log.parent / "best").is_dir():
            continue
        records = [json.loads(x) for x in log.read_text().splitlines()]
        steps = [r for r in records if "loss" in r]
        curve = [{k: r[k] for k in ("step", "train_seconds", "train_cpu_seconds", "eval_bpb",
                                    "eval_tokens", "eval_bytes") if k in r}
                 for r in records if "eval_bpb" in r]
        if not steps or not curve:
            continue
        vocab = int(parts[2]) if len(parts) > 2 else None
        rows.append({"target": parts[0], "init": parts[1], "vocab_size": vocab,
                     "objective": parts[3] if len(parts) > 3 else "lm", "partial": True,
                     "config": next(r["config"] for r in records if "config" in r),
                     "steps": steps[-1]["step"], "train_seconds": steps[-1]["train_seconds"],
                     "train_cpu_seconds": steps[-1]["train_cpu_seconds"], "curve": curve,
                     # no evaluation after the start yet: nothing to report as "after"
                     "final_bpb_fp32": curve[-1]["eval_bpb"] if len(curve) > 1 else None,
                     "tokens_per_byte": curve[-1]["eval_tokens"] / curve[-1]["eval_bytes"]})
    return rows


def order_key(r: dict, targets: list[str]) -> tuple:
    return (targets.index(r["target"]), INITS.index(r["init"]), -(r.get("vocab_size") or 0),
            OBJECTIVES.index(r.get("objective", "lm")))


def finished_curves(run_dir, targets: list[str]) -> list[dict]:
    """Every finished curve of a run, the control first, then by init, vocabulary, objective."""
    rows = [json.loads(p.read_text()) for p in run_dir.glob("*.json")
            if p.name != "teacher-continuations.json" and not p.name.endswith(".partial-agreement.json")]
    return sorted((r for r in rows if r["target"] in targets),
                  key=lambda r: order_key(r, targets))


def label(row: dict) -> str:
    vocab = row.get("vocab_size")
    objective = row.get("objective", "lm")
    return row["init"] + (f" {vocab // 1000}k" if vocab else "") + \
        ("" if objective == "lm" else f" {objective}")


def goals(rows: list[dict], key: str) -> dict:
    """Per target: the best transferred curve against the tuned original; curve ordering
    (per vocabulary: does a better initialisation stay ahead at every evaluation?)."""
    out = {}
    for name in sorted({r["target"] for r in rows}):
        mine = [r for r in rows if r["target"] == name]
        control = next((r for r in mine if r["init"] == "original"), None)
        moved = [r for r in mine if r["init"] != "original" and r["final_bpb_fp32"] is not None]
        if control is None or not moved or control["final_bpb_fp32"] is None:
            continue
        best = min(moved, key=lambda r: r["final_bpb_fp32"])
        ahead = {}
        for vocab in sorted({r["vocab_size"] for r in moved}):
            by_init = {r["init"]: r for r in moved
                       if r["vocab_size"] == vocab and r.get("objective", "lm") == "lm"}
            order = [k for k in ("random", "mean", "focus", "hypernet") if k in by_init]
            for i, worse in enumerate(order):  # every pair, not only neighbours
                for better in order[i + 1:]:
                    a, b = by_init[worse]["curve"], by_init[better]["curve"]
                    n = min(len(a), len(b))
                    ahead[f"{label(by_init[better])} < {label(by_init[worse])}"] = all(
                        b[j]["eval_bpb"] < a[j]["eval_bpb"] for j in range(n))
        out[name] = {"best": label(best),
                     "bpb_ratio": best["final_bpb_fp32"] / control["final_bpb_fp32"],
                     "tokens_ratio": best["tokens_per_byte"] / control["tokens_per_byte"],
                     "within_2pct": best["final_bpb_fp32"] <= 1.02 * control["final_bpb_fp32"],
                     "tokens_25pct_fewer": best["tokens_per_byte"]
                     <= 0.75 * control["tokens_per_byte"],
                     "better_init_stays_ahead_at_every_eval": ahead,
                     "gap_axis": AXES[key], "gap": gap_curve(best, control, key)}
    return out


AXES = {"step": "step", "train_cpu_seconds": "training CPU minutes",
        "train_seconds": "training minutes"}


def gap_curve(row: dict, control: dict, key: str = "step") -> dict[float, float]:
    """bits/byte of ``row`` over the control's at each of its evaluations: does tuning close
    the gap, or do both curves fall in parallel? By step, the control's evaluation at the same
    step; on a clock, the control's curve interpolated at the same time (held at its last
    point, the end of the same budget)."""
    if key == "step":
        theirs = {p["step"]: p["eval_bpb"] for p in control["curve"]}
        return {p["step"]: p["eval_bpb"] / theirs[p["step"]] for p in row["curve"]
                if p["step"] in theirs}
    xs = [p.get(key, 0.0) for p in control["curve"]]
    ys = [p["eval_bpb"] for p in control["curve"]]
    return {round(p.get(key, 0.0) / 60, 2): p["eval_bpb"] / float(np.interp(p.get(key, 0.0), xs, ys))
            for p in row["curve"]}


def cpu_per_step(row: dict) -> float | None:
    """Training CPU seconds per step (evaluations excluded), when the curve recorded them."""
    cpu = row.get("train_cpu_seconds")
    return cpu / row["steps"] if cpu and row["steps"] else None


def report(args, rows: list[dict], notes: list[str]) -> None:
    table_rows = []
    for r in rows:
        control = next((c for c in rows if c["target"] == r["target"] and c["init"] == "original"),
                       None)
        after = r["final_bpb_fp32"]
        ratio = after / control["final_bpb_fp32"] if control and after is not None and \
            control["final_bpb_fp32"] is not None else float("nan")
        table_rows.append([r["target"], label(r) + (" (unfinished)" if r.get("partial") else ""),
                           r["curve"][0]["eval_bpb"], "-" if after is None else after, ratio,
                           r["tokens_per_byte"], r["steps"],
                           f"{r['train_seconds'] / 60:.1f}",
                           f"{r['cpu_seconds'] / 60:.1f}" if "cpu_seconds" in r else "-",
                           f"{cpu_per_step(r):.1f}" if cpu_per_step(r) else "-",
                           f"{r['agreement']['exact']:.0%} / {r['agreement']['mean_prefix']:.1f}"
                           if "agreement" in r else "-"])
    table = markdown_table(["target", "init", "bits/byte before", "bits/byte after",
                            "ratio to tuned original", "tokens/byte", "steps", "minutes",
                            "CPU minutes (with evals)", "training CPU s/step",
                            "greedy 32 bytes = original's (share / mean common prefix)"],
                           table_rows)
    key = clock_key(args)
    g = goals(rows, key)
    payload = {"machine": machine(), "args": vars(args), "rows": rows, "goals": g,
               "notes": notes}
    per_curve = (f"{args.steps} steps" if args.steps else
                 f"{args.cpu_minutes:g} training CPU min" if args.cpu_minutes else
                 f"{args.minutes:g} min")
    commands = sorted({r["command"] for r in rows if "command" in r})
    text = (f"# Tuning after transfer (SmolLM2-135M, CPU, {per_curve} per curve)\n\n"
            f"`python benchmarks/tune.py {' '.join(sys.argv[1:])}` "
            f"({args.stage}, {args.precision}, batch {args.batch_size} x {args.seq_len} tokens, "
            f"embeddings only for the first {args.embedding_fraction:.0%}); bits/byte on the "
            "same held-out bytes, after = the published model in float32.\n\n" + table)
    if args.report and commands:
        text += "\n\nCurves run by:\n" + "\n".join(f"- `{c}`" for c in commands)
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    for name, goal in g.items():
        gaps = ", ".join(f"{x}: {r:.3f}" for x, r in goal["gap"].items())
        text += (f"\n\n{name}: {goal['best']} over the tuned original, by {goal['gap_axis']}: "
                 f"{gaps}")
    text += "\n\nGoals: " + json.dumps(g)
    write_results(args.name, payload, text)
    plot(args, rows, key)
    print(text)


def plot(args, rows: list[dict], key: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    targets = sorted({r["target"] for r in rows})
    vocabs = sorted({r["vocab_size"] for r in rows if r["vocab_size"]}, reverse=True)
    fig, axes = plt.subplots(2, len(targets), figsize=(5.5 * len(targets), 7.6), squeeze=False,
                             sharex="col", height_ratios=(3, 2))
    for ax, gap_ax, name in zip(axes[0], axes[1], targets, strict=True):
        control = next((r for r in rows if r["target"] == name and r["init"] == "original"), None)
        for r in (r for r in rows if r["target"] == name):
            xs = [p.get(key, 0.0) / (1 if key == "step" else 60) for p in r["curve"]]
            ys = [p["eval_bpb"] for p in r["curve"]]
            is_control = r["init"] == "original"
            style = "--" if is_control else VOCAB_STYLES[vocabs.index(r["vocab_size"])
                                                         % len(VOCAB_STYLES)]
            line, = ax.plot(xs, ys, ls=style, marker="o", ms=3,
                            color="k" if is_control else COLORS.get(
                                r["init"] if r.get("objective", "lm") == "lm" else r["objective"]),
                            label=label(r) + (" (own tokenizer)" if is_control else ""))
            if control is not None and not is_control:
                gap = gap_curve(r, control, key)
                gap_ax.plot(list(gap), list(gap.values()), ls=style, marker="o", ms=3,
                            color=line.get_color(), label=label(r))
        gap_ax.set_xlabel(f"tuning steps ({args.batch_size} x {args.seq_len} tokens each)"
                          if key == "step" else f"{AXES[key]} (evaluation not counted)")
        ax.set_ylabel("held-out bits/byte")
        ax.set_title(f"{name}: SmolLM2-135M tuned after transfer")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.1f"))
        ax.legend(fontsize=8)
        gap_ax.axhline(1.02, color="k", ls=":", lw=1, label="goal: within 2%")
        gap_ax.set_ylabel("over the tuned original")
        gap_ax.set_ylim(0.98, min(1.3, gap_ax.get_ylim()[1]))
        gap_ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"{args.name}.png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
