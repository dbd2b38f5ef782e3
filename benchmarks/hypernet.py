"""Hypernet on CPU: bits/byte of hypernet-transferred SmolLM2 against FVT and FOCUS, over time.

One run on the packaged SmolLM2-135M:

1. train a hypernet (``tokenswap.hypernet.train_hypernet``) on the training splits of German,
   Russian and English man pages and Python's standard library, one freshly sampled UnigramLM
   tokenizer per batch, in segments ending at the optimizer steps ``--marks``; the wall-clock
   and CPU time of each segment are recorded (CPU time is the fair clock on a shared machine);
2. after every segment, give SmolLM2 each target tokenizer with the hypernet and score the
   held-out bytes: the byte-level BPE tokenizers trained on German, Russian and code (the same
   ones and the same 24 KB held-out text as ``peers.py``; never sampled in training: the sampler
   draws Unigram vocabularies from single batches) and the Gemma 3 tokenizer on German;
3. in the same run, the same targets with ``mean`` (FVT) and ``focus`` (the best heuristic of
   ``peers.py``) and the original model on its own tokenizer.

Writes results/hypernet.{json,md,png}. The run directory (``.cache/hypernet-run``) holds the
hypernet's checkpoint and the scores so far: a killed benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time

import torch
from common import (
    CACHE,
    RESULTS,
    cap,
    corpus_split,
    gemma_dir,
    machine,
    markdown_table,
    original_score,
    target_tokenizer,
    write_results,
)

from tokenswap import api
from tokenswap.hypernet.model import Hypernet, PieceInputs
from tokenswap.hypernet.train import LOG_FILE, train_hypernet
from tokenswap.init.hypernet import ExactMode
from tokenswap.io.models import ModelBundle, load_model, load_tokenizer
from tokenswap.scoring.bpb import bits_per_byte
from tokenswap.vocab.pair import build_pair

TRAIN_LANGUAGES = ("de", "ru", "code", "en")
UNSEEN_LANGUAGES = ("fr", "ja", "pl")  # Debian's manpages-fr, -ja, -pl
SHIP_NAME = "smollm2-135m-instruct"  # tokenswap.hypernet.shipped.SHIPPED


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="hypernet",
                   help="results/<name>.* and the run directory .cache/<name>-run")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (1 keeps a shared machine's other jobs from stalling it)")
    p.add_argument("--marks", type=int, nargs="+", default=[50, 120, 200],
                   help="optimizer steps after which the targets are scored")
    p.add_argument("--targets", nargs="+", default=["de", "ru", "code", "gemma"],
                   choices=["de", "ru", "code", "gemma"])
    p.add_argument("--unseen", nargs="*", default=[], choices=sorted(UNSEEN_LANGUAGES),
                   help="languages never in the hypernet's training text, scored only after the "
                        "last --marks step (held out for the figures, never used to choose "
                        "options)")
    p.add_argument("--baselines", nargs="+", default=["mean", "focus"])
    p.add_argument("--vocab-size", type=int, default=32000, help="target BPE vocabularies")
    p.add_argument("--heldout-bytes", type=int, default=24000)
    p.add_argument("--train-bytes", type=int, default=20_000_000,
                   help="text read per corpus before the train/held-out split")
    p.add_argument("--corpus-bytes", type=int, default=4_000_000, help="FOCUS's training text")
    p.add_argument("--hypernet-bytes", type=int, default=2_000_000,
                   help="hypernet training text per language")
    p.add_argument("--validation-bytes", type=int, default=20_000,
                   help="per language, for the loss logged during training")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--vocab-min", type=int, default=4096,
                   help="sampled tokenizers (the hypernet's cost grows with their size)")
    p.add_argument("--vocab-max", type=int, default=8192)
    p.add_argument("--sample-texts", type=int, default=64,
                   help="texts each sampled tokenizer is drawn from (the batch and random others)")
    p.add_argument("--decay-steps", type=int, default=None,
                   help="cosine decay to zero over this many steps (default: constant after "
                        "warm-up, so that later --marks continue the same run)")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--exact", default="align", choices=[m.value for m in ExactMode],
                   help="hypernet_exact: how tokens the source also has are set (see "
                        "tokenswap.init.hypernet)")
    p.add_argument("--ship", action="store_true",
                   help="after the last mark, write the hypernet in bfloat16 to the package "
                        f"(src/tokenswap/hypernet/weights/{SHIP_NAME}) and score every target "
                        "with that file")
    p.add_argument("--init", default=None,
                   help="start from this hypernet (a directory, or 'default': the shipped one) "
                        "instead of a fresh one; --marks then count this run's steps")
    p.add_argument("--init-cpu-minutes", type=float, default=0.0,
                   help="training CPU minutes already in --init's hypernet, added to this run's "
                        "in the table and the curve")
    p.add_argument("--baselines-from", default=None, metavar="NAME",
                   help="take the original, mean and focus rows from the run NAME (the same "
                        "targets and held-out bytes; those rows do not depend on the hypernet)")
    p.add_argument("--seed", type=int, default=0, help="hypernet training seed")
    p.add_argument("--objective", default="lm", choices=["lm", "alm", "lm+alm"],
                   help="hypernet training loss (lm+alm: the model with its own tokenizer as "
                        "teacher, see hypernet_levers.py)")
    p.add_argument("--fresh", action="store_true", help="discard an earlier run's hypernet")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args()
    args.run = CACHE / f"{args.name}-run"
    return args


def training_text(args) -> tuple[list[str], list[str]]:
    """Hypernet training texts and validation texts: training splits only, never held-out."""
    train, valid = [], []
    for lang in TRAIN_LANGUAGES:
        docs, _, val = corpus_split(lang, args.train_bytes, args.heldout_bytes,
                                    validation_bytes=args.validation_bytes)
        train += [d.text for d in cap(docs, args.hypernet_bytes)]
        valid += val
    return train, valid


def targets(args, source: ModelBundle, names) -> dict[str, dict]:
    out = {}
    for name in names:
        corpus = "de" if name == "gemma" else name
        train, heldout = corpus_split(corpus, args.train_bytes, args.heldout_bytes)
        tok_dir = gemma_dir() if name == "gemma" else \
            target_tokenizer(name, train, args.vocab_size, source.tokenizer)
        out[name] = {"tokenizer": load_tokenizer(tok_dir), "heldout": heldout,
                     "corpus": cap(train, args.corpus_bytes), "text": corpus,
                     "label": "Gemma 3 (262k)" if name == "gemma" else f"BPE {args.vocab_size}"}
    return out


def hypernet_key(target: str, mark: int, exact: str) -> str:
    """Where a hypernet row is kept in the run's points.json (one per hypernet_exact mode)."""
    return f"{target}/hypernet@{mark}" if exact == "align" else f"{target}/hypernet-{exact}@{mark}"


def score(model, tokenizer, texts, args, label: str) -> float:
    return bits_per_byte(model, tokenizer, texts, max_length=args.max_length, batch_size=4,
                         progress=label if args.progress else False).bits_per_byte


def transferred(source: ModelBundle, target: dict, args, label: str, **kw) -> dict:
    bundle = ModelBundle(model=copy.deepcopy(source.model), tokenizer=source.tokenizer,
                         spec=source.spec)
    t0 = time.perf_counter()
    api.transfer(bundle, target["tokenizer"], seed=0, **kw)
    seconds = time.perf_counter() - t0
    bpb = score(bundle.model, bundle.tokenizer, target["heldout"], args, label)
    return {"bits_per_byte": bpb, "transfer_seconds": seconds}


def train_segment(source: ModelBundle, texts, valid, until_step: int, args) -> dict:
    """Continue training the run's hypernet until step ``until_step``; the training time so far.

    The time is the trainer's own clock (training steps only, kept in its checkpoints), so a
    benchmark killed between marks still reports every step's time. (Runs before 2026-12-03
    13:40 timed each segment around the call, evaluations and checkpoints included: 2.6% more
    at step 100 of hypernet-ship.)
    """
    state_file = args.run / "clock.json"
    clock = json.loads(state_file.read_text()) if state_file.is_file() else {
        "seconds": 0.0, "cpu_seconds": 0.0, "step": 0}
    if clock["step"] < until_step:
        result = train_hypernet(
            source, texts, args.run / "hypernet", eval_texts=valid, resume=True,
            **({"steps": args.decay_steps} if args.decay_steps else {"minutes": 10**6}),
            stop_after=until_step, batch_size=args.batch_size, seq_len=args.seq_len,
            lr=args.lr, warmup_steps=args.warmup_steps, eval_every=100, checkpoint_every=50,
            sampler={"vocab_min": args.vocab_min, "vocab_max": args.vocab_max},
            sample_texts=args.sample_texts, init=args.init, seed=args.seed,
            objective=args.objective,
            progress=args.progress)
        clock = {"seconds": result.train_seconds,  # this run's wall time only
                 "cpu_seconds": result.train_cpu_seconds + 60 * args.init_cpu_minutes,
                 "step": result.step}
        state_file.write_text(json.dumps(clock) + "\n")
    return clock


def log_curve(args) -> list[dict]:
    path = args.run / "hypernet" / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def main() -> int:
    args = parse_args()
    if args.fresh and args.run.exists():
        shutil.rmtree(args.run)
    args.run.mkdir(parents=True, exist_ok=True)
    points_file = args.run / "points.json"
    points = json.loads(points_file.read_text()) if points_file.is_file() else {}
    if args.baselines_from:
        earlier = json.loads((CACHE / f"{args.baselines_from}-run" / "points.json").read_text())
        for key, value in earlier.items():
            if key.rsplit("/", 1)[-1] in ("original", *args.baselines) and key not in points:
                points[key] = value

    def remember(key: str, value) -> None:
        points[key] = value
        points_file.write_text(json.dumps(points, indent=2) + "\n")

    torch.set_grad_enabled(False)  # training enables it for its own steps
    if args.threads:
        torch.set_num_threads(args.threads)
    source = load_model("default")
    texts, valid = training_text(args)
    tgts = targets(args, source, args.targets)
    unseen = targets(args, source, args.unseen)
    for name, t in {**tgts, **unseen}.items():
        if f"{name}/original" not in points:
            res = original_score(source.model, source.tokenizer, t["heldout"], args.max_length,
                                 lambda m, tok, x, n=name: bits_per_byte(
                                     m, tok, x, max_length=args.max_length, batch_size=4,
                                     progress=f"{n} original" if args.progress else False))
            remember(f"{name}/original", {"bits_per_byte": res.bits_per_byte})
        for method in args.baselines:
            if f"{name}/{method}" not in points:
                corpus = t["corpus"] if method == "focus" else None
                remember(f"{name}/{method}", transferred(source, t, args, f"{name} {method}",
                                                         method=method, corpus=corpus))
            print(f"[{name}] {method}: {points[f'{name}/{method}']['bits_per_byte']:.3f}",
                  flush=True)

    for mark in args.marks:
        clock = train_segment(source, texts, valid, mark, args)
        hn = Hypernet.load(args.run / "hypernet")
        for name, t in {**tgts, **(unseen if mark == args.marks[-1] else {})}.items():
            key = hypernet_key(name, mark, args.exact)
            if key not in points:
                if clock["step"] != mark:  # the saved hypernet is a later step's
                    raise SystemExit(f"{key} was not scored when the run passed step {mark} "
                                     f"(it is at step {clock['step']}); use later --marks")
                row = transferred(source, t, args, f"{name} hypernet step {mark}",
                                  method="hypernet", hypernet=str(args.run / "hypernet"),
                                  options={"hypernet_exact": args.exact})
                pair = build_pair(source.tokenizer, t["tokenizer"])
                row["truncated_tokens"] = PieceInputs.from_pair(pair, hn.config.max_pieces
                                                                ).stats.truncated
                remember(key, {**row, "step": clock["step"], "train_seconds": clock["seconds"],
                               "train_cpu_seconds": clock["cpu_seconds"]})
            print(f"[{name}] hypernet after step {mark} ({points[key]['train_seconds'] / 60:.1f} "
                  f"min, {points[key]['train_cpu_seconds'] / 60:.1f} CPU min): "
                  f"{points[key]['bits_per_byte']:.3f}", flush=True)

    if args.ship:
        ship(source, hn, {**tgts, **unseen}, args, remember, points)
    report(args, tgts, unseen, points, hn.config)
    return 0


def ship(source: ModelBundle, hn: Hypernet, tgts: dict, args, remember, points: dict) -> None:
    """The last mark's hypernet in bfloat16 into the package, and every target scored with it
    as users get it (``--hypernet default``)."""
    from tokenswap.hypernet.shipped import WEIGHTS
    from tokenswap.io.save import atomic_dir

    mark = args.marks[-1]
    with atomic_dir(WEIGHTS / SHIP_NAME, overwrite=True) as tmp:
        hn.save(tmp, dtype=torch.bfloat16)
    for name, t in tgts.items():
        key = f"{name}/shipped@{mark}"
        if key not in points:
            row = transferred(source, t, args, f"{name} shipped", method="hypernet",
                              hypernet="default", options={"hypernet_exact": args.exact})
            remember(key, {**row, "step": mark})
        print(f"[{name}] shipped (bf16) hypernet: {points[key]['bits_per_byte']:.3f}",
              flush=True)


def report(args, tgts: dict, unseen: dict, points: dict, hn_config) -> None:
    rows, entries = [], []
    for name, t in {**tgts, **unseen}.items():
        base = points[f"{name}/original"]["bits_per_byte"]
        found = [("original", points[f"{name}/original"])]
        found += [(m, points[f"{name}/{m}"]) for m in args.baselines]
        found += [(f"hypernet step {mark}", points[hypernet_key(name, mark, args.exact)])
                  for mark in (args.marks if name in tgts else args.marks[-1:])]
        if f"{name}/shipped@{args.marks[-1]}" in points:
            found.append(("shipped (bf16)", points[f"{name}/shipped@{args.marks[-1]}"]))
        for row, p in found:
            entry = {"target": name, "tokenizer": t["label"], "text": t["text"], "row": row,
                     "in_training_text": name not in unseen,
                     **p, "bpb_ratio": p["bits_per_byte"] / base}
            entries.append(entry)
            minutes = (f"{p['train_seconds'] / 60:.1f} / {p['train_cpu_seconds'] / 60:.1f}"
                       if "train_seconds" in p else "")
            rows.append([name + " (unseen)" * (name in unseen), row, p["bits_per_byte"],
                         entry["bpb_ratio"], minutes,
                         f"{p['transfer_seconds']:.0f}" if "transfer_seconds" in p else ""])
    curve = log_curve(args)
    payload = {"machine": machine(), "args": {**vars(args), "run": str(args.run)},
               "hypernet": vars(hn_config),
               "training_text_languages": TRAIN_LANGUAGES, "rows": entries,
               "training_log": curve}
    table = markdown_table(["target", "row", "bits/byte", "ratio to original",
                            "training min (wall / CPU)", "transfer s"], rows)
    payload["goals"] = goals(args, entries, unseen)
    write_results(args.name, payload, "# Hypernet vs FVT and FOCUS (SmolLM2-135M, CPU)\n\n"
                  f"`python benchmarks/hypernet.py {' '.join(sys.argv[1:])}`; ratio = bits/byte "
                  "over the original model's bits/byte on the same held-out bytes; hypernet rows "
                  f"with `hypernet_exact={args.exact}`.\n\n" + table + "\n\n## Goals (issue 20)"
                  "\n\n" + markdown_table(["target", "goal", "hypernet", "met", "by"],
                                          [[g["target"], g["goal"], g["hypernet"],
                                            "yes" if g["met"] else "no", g["by"]]
                                           for g in payload["goals"]]))
    plot(args, tgts, points, curve)
    print(table)


RATIO_GOALS = {"de": 1.10, "gemma": 1.35}  # the bits/byte ratios over the original


def goals(args, entries: list[dict], unseen: dict) -> list[dict]:
    """Each goal of issue 20 against the last mark's hypernet: the ratio goals, and lower
    bits/byte than every baseline on every target (trained-on and unseen)."""
    last = f"hypernet step {args.marks[-1]}"
    by = {(e["target"], e["row"]): e for e in entries}
    out = []
    for target in dict.fromkeys(e["target"] for e in entries):
        hn = by[(target, last)]
        if target in RATIO_GOALS:
            goal = RATIO_GOALS[target]
            out.append({"target": target, "goal": f"ratio <= {goal:.2f}",
                        "hypernet": f"{hn['bpb_ratio']:.3f}", "met": hn["bpb_ratio"] <= goal,
                        "by": f"{hn['bpb_ratio'] - goal:+.3f}"})
        for method in args.baselines:
            base = by[(target, method)]
            out.append({"target": target + " (unseen)" * (target in unseen),
                        "goal": f"below {method}", "hypernet": f"{hn['bits_per_byte']:.3f}",
                        "met": hn["bits_per_byte"] < base["bits_per_byte"],
                        "by": f"{hn['bits_per_byte'] - base['bits_per_byte']:+.3f} bits/byte"})
    return out


def plot(args, tgts: dict, points: dict, curve: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, name in enumerate(tgts):
        color = f"C{i}"
        base = points[f"{name}/original"]["bits_per_byte"]
        # step 0 of the hypernet is FVT (`mean`)
        keys = [hypernet_key(name, m, args.exact) for m in args.marks]
        xs = [0.0] + [points[k]["train_cpu_seconds"] / 60 for k in keys]
        ys = [points[f"{name}/mean"]["bits_per_byte"] / base]
        ys += [points[k]["bits_per_byte"] / base for k in keys]
        ax.plot(xs, ys, "o-", color=color, label=f"{name}: hypernet")
        if "focus" in args.baselines:
            ax.axhline(points[f"{name}/focus"]["bits_per_byte"] / base, color=color, ls="--",
                       lw=1, label=f"{name}: focus")
    threads = args.threads or torch.get_num_threads()
    ax.set_xlabel(f"hypernet training, CPU minutes ({threads} torch thread{'s' * (threads > 1)})")
    ax.set_ylabel("bits/byte ÷ original")
    ax.set_title("held-out targets (dashed: FOCUS)")
    ax.legend(fontsize=7, ncol=2)
    evals = [r for r in curve if "eval_bpb" in r]
    losses = [r for r in curve if "loss" in r]
    ax2.plot([r["step"] for r in losses], [r["loss"] for r in losses], lw=0.8,
             label="training loss (nats/token, sampled tokenizers)")
    ax2b = ax2.twinx()
    ax2b.plot([r["step"] for r in evals], [r["eval_bpb"] for r in evals], "o-", color="C3",
              label="validation bits/byte (fixed sampled tokenizer)")
    ax2.set_xlabel("step")
    ax2.set_title("training log")
    ax2.legend(fontsize=7, loc="upper center")
    ax2b.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"{args.name}.png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
