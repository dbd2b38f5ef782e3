"""Hypernet levers: bits/byte gained per training CPU hour, one option changed at a time.

Every arm starts from the same hypernet, the one shipped for SmolLM2-135M (``--init default``;
``benchmarks/hypernet.py --ship`` made it), trains for the same CPU budget (``--minutes`` on the
CPU clock, warm-up and cosine decay inside the budget) with one option changed from the
control, and is scored on the validation targets of ``benchmarks/hypernet.py``: SmolLM2 given
the 32k byte-level BPEs of German, Russian and code, bits/byte of the same held-out bytes. The
languages the shipped hypernet never saw (French, Japanese, Polish) are not scored here: they
are kept for the figures, never for choosing options.

The arms (``ARMS``): the control repeats the shipped run's options at a lower learning rate
(it continues a trained hypernet); the others change the sampled vocabularies' size, the
training text's languages and scripts, the sequence shape at equal tokens per step, the
auxiliary loss weight, the learning rate. Equal CPU time, not equal steps: an arm whose steps
cost more takes fewer of them, which is the trade a user makes.

Each arm's run directory (``.cache/hypernet-levers-run/<arm>/``) keeps its checkpoint and
scores, so a killed run continues and several processes can take different ``--arms`` at once
(one torch thread each); the last one to finish, or ``--arms`` with nothing left to do,
writes results/hypernet-levers.{json,md,png}.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch
from common import (
    CACHE,
    RESULTS,
    cap,
    corpus_split,
    machine,
    markdown_table,
    original_score,
    target_tokenizer,
    write_results,
)

from tokenswap import api
from tokenswap.hypernet.train import train_hypernet
from tokenswap.io.models import ModelBundle, load_model, load_tokenizer
from tokenswap.scoring.bpb import bits_per_byte

TARGETS = ("de", "ru", "code")
LANGUAGES = ("de", "ru", "code", "en")  # the shipped hypernet's training text
MORE_SCRIPTS = LANGUAGES + ("es", "it", "uk", "zh")  # Latin, Cyrillic and Han; fr/ja/pl unseen

CONTROL = {"batch_size": 8, "seq_len": 128, "lr": 1e-4, "warmup_steps": 5, "aux_weight": 0.5,
           "sampler": {"vocab_min": 4096, "vocab_max": 8192}, "languages": LANGUAGES}
ARMS: dict[str, dict] = {
    "start": {},  # the shipped hypernet, no training
    "control": {},
    "vocab-16k-48k": {"sampler": {"vocab_min": 16384, "vocab_max": 49152}},
    "more-scripts": {"languages": MORE_SCRIPTS},
    "seq256-batch4": {"seq_len": 256, "batch_size": 4},
    "aux-0.1": {"aux_weight": 0.1},
    "lr-3e-4": {"lr": 3e-4},
    "lm+alm": {"objective": "lm+alm"},  # the model with its own tokenizer as teacher (ALM)
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--minutes", type=float, default=8.0, help="training CPU minutes per arm")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--vocab-size", type=int, default=32000, help="target BPE vocabularies")
    p.add_argument("--heldout-bytes", type=int, default=24000)
    p.add_argument("--train-bytes", type=int, default=20_000_000)
    p.add_argument("--hypernet-bytes", type=int, default=2_000_000,
                   help="hypernet training text per language")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--report", action="store_true",
                   help="write the results from the arms done so far (the others listed as not "
                        "run) and train nothing")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args()
    args.run = CACHE / "hypernet-levers-run"
    return args


def options(arm: str) -> dict:
    out = copy.deepcopy(CONTROL)
    for key, value in ARMS[arm].items():
        out[key] = {**out[key], **value} if isinstance(value, dict) else value
    return out


def training_text(languages, args) -> list[str]:
    """Training splits only (``corpus_split`` keeps the held-out 10% of every corpus out)."""
    texts = []
    for lang in languages:
        train, _ = corpus_split(lang, args.train_bytes, args.heldout_bytes)
        texts += [d.text for d in cap(train, args.hypernet_bytes)]
    return texts


def train_arm(source: ModelBundle, arm: str, args) -> dict:
    """Train ``arm`` to the CPU budget (resuming); its clock as the trainer counted it."""
    opts = options(arm)
    if arm == "start":
        return {"step": 0, "train_seconds": 0.0, "train_cpu_seconds": 0.0, "options": opts}
    clock_file = args.run / arm / "clock.json"
    if clock_file.is_file():
        return json.loads(clock_file.read_text())
    texts = training_text(opts.pop("languages"), args)
    result = train_hypernet(source, texts, args.run / arm / "hypernet", resume=True,
                            init="default", minutes=args.minutes, clock="cpu",
                            eval_every=10**6, checkpoint_every=10, progress=args.progress,
                            **opts)
    clock = {"step": result.step, "train_seconds": result.train_seconds,
             "train_cpu_seconds": result.train_cpu_seconds, "options": options(arm)}
    clock_file.write_text(json.dumps(clock, indent=2) + "\n")
    return clock


def score_arm(source: ModelBundle, arm: str, tgts: dict, args) -> dict:
    scores_file = args.run / arm / "scores.json"
    scores = json.loads(scores_file.read_text()) if scores_file.is_file() else {}
    hypernet = "default" if arm == "start" else str(args.run / arm / "hypernet")
    for name, t in tgts.items():
        if name in scores:
            continue
        bundle = ModelBundle(model=copy.deepcopy(source.model), tokenizer=source.tokenizer,
                             spec=source.spec)
        t0 = time.perf_counter()
        api.transfer(bundle, t["tokenizer"], method="hypernet", hypernet=hypernet, seed=0)
        seconds = time.perf_counter() - t0
        bpb = bits_per_byte(bundle.model, bundle.tokenizer, t["heldout"],
                            max_length=args.max_length, batch_size=4,
                            progress=f"{name} {arm}" if args.progress else False).bits_per_byte
        scores[name] = {"bits_per_byte": bpb, "transfer_seconds": seconds}
        scores_file.write_text(json.dumps(scores, indent=2) + "\n")
        print(f"[{arm}] {name}: {bpb:.4f}", flush=True)
    return scores


def main() -> int:
    args = parse_args()
    torch.set_grad_enabled(False)  # training enables it for its own steps
    torch.set_num_threads(args.threads)
    source = load_model("default")
    tgts = {}
    for name in TARGETS:
        train, heldout = corpus_split(name, args.train_bytes, args.heldout_bytes)
        tok_dir = target_tokenizer(name, train, args.vocab_size, source.tokenizer)
        tgts[name] = {"tokenizer": load_tokenizer(tok_dir), "heldout": heldout}
    for arm in [] if args.report else args.arms:
        (args.run / arm).mkdir(parents=True, exist_ok=True)
        clock = train_arm(source, arm, args)
        scores = score_arm(source, arm, tgts, args)
        (args.run / arm / "done.json").write_text(json.dumps(
            {"clock": clock, "scores": scores}, indent=2) + "\n")
    done = {arm: json.loads((args.run / arm / "done.json").read_text()) for arm in ARMS
            if (args.run / arm / "done.json").is_file()}
    if set(done) == set(ARMS) or (args.report and "start" in done):
        originals = {name: original_score(
            source.model, source.tokenizer, t["heldout"], args.max_length,
            lambda m, tok, x: bits_per_byte(m, tok, x, max_length=args.max_length,
                                            batch_size=4, progress=False)).bits_per_byte
            for name, t in tgts.items()}
        report(args, done, originals)
    else:
        print(f"arms still to run: {sorted(set(ARMS) - set(done))}")
    return 0


def report(args, done: dict, originals: dict) -> None:
    start = done["start"]["scores"]
    missing = [arm for arm in ARMS if arm not in done]
    rows, entries = [], []
    for arm, d in done.items():
        cpu_h = d["clock"]["train_cpu_seconds"] / 3600
        ratios = {t: d["scores"][t]["bits_per_byte"] / originals[t] for t in TARGETS}
        gains = {t: start[t]["bits_per_byte"] - d["scores"][t]["bits_per_byte"] for t in TARGETS}
        mean_gain = sum(gains.values()) / len(gains)
        per_hour = mean_gain / cpu_h if cpu_h else None
        entries.append({"arm": arm, "changed": ARMS[arm], "options": d["clock"]["options"],
                        "steps": d["clock"]["step"], "train_cpu_seconds":
                        d["clock"]["train_cpu_seconds"], "train_seconds":
                        d["clock"]["train_seconds"], "bits_per_byte":
                        {t: d["scores"][t]["bits_per_byte"] for t in TARGETS},
                        "ratio_to_original": ratios, "gain_bits_per_byte": gains,
                        "mean_gain_per_cpu_hour": per_hour})
        changed = ", ".join(f"{k}={v}" for k, v in ARMS[arm].items()) or "-"
        if arm == "more-scripts":
            changed = "+ es, it, uk, zh text"
        rows.append([arm, changed, d["clock"]["step"],
                     f"{d['clock']['train_cpu_seconds'] / 60:.1f}",
                     *[ratios[t] for t in TARGETS], f"{mean_gain:+.4f}",
                     "" if per_hour is None else f"{per_hour:+.3f}"])
    payload = {"machine": machine(), "args": {**vars(args), "run": str(args.run)},
               "control": CONTROL, "originals": originals, "arms": entries,
               "not_run": missing}
    table = markdown_table(
        ["arm", "changed from control", "steps", "train CPU min", *[f"{t} ratio" for t in TARGETS],
         "mean gain (bits/byte)", "gain per CPU hour"], rows)
    write_results("hypernet-levers", payload,
                  "# Hypernet levers: bits/byte gained per training CPU hour (SmolLM2-135M)\n\n"
                  f"`python benchmarks/hypernet_levers.py {' '.join(sys.argv[1:])}`; every arm "
                  f"starts from the shipped hypernet and trains {args.minutes:g} CPU minutes "
                  "(one torch thread); ratio = bits/byte over the original model's on the same "
                  "held-out bytes (32k BPE targets); gain = the shipped hypernet's bits/byte "
                  "minus the arm's, mean over the three targets.\n\n" + table
                  + (f"\n\nNot run: {', '.join(missing)}." if missing else ""))
    plot(entries)
    print(table)


def plot(entries: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = [e["arm"] for e in entries]
    for i, t in enumerate(TARGETS):
        ax.bar([j + 0.25 * (i - 1) for j in range(len(names))],
               [e["gain_bits_per_byte"][t] for e in entries], width=0.25, label=t)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel("bits/byte gained over the shipped hypernet")
    ax.set_title("equal training CPU per arm")
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "hypernet-levers.png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
