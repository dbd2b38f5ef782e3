"""Where the gap after tuning sits: held-out bits per character, tuned original against a
tuned transferred model, by how often the transferred model's token was trained on.

Reads two curves of a ``benchmarks/tune.py`` run (their final models under
``.cache/tune-run/<name>/``). Each held-out document is cut into chunks at line ends (at most
``--chunk-chars`` characters, so one window scores it with no sliding); both models score the
same chunks, each token's bits are spread evenly over the characters it covers, and every
character is put in a bucket by the number of times the transferred model's token covering it
was a training target in the steps the run took (the packed batches are rebuilt from the seed),
and again by its position in the chunk (does the gap grow with the context?).
Bits per character here are not the benchmark's bits per byte (chunks restart the context);
the point is the share of the gap per bucket. Writes results/<name>-gap.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import torch
from common import CACHE, cap, corpus_split, markdown_table, write_results
from tune import curve_args

from tokenswap.io.models import load_model
from tokenswap.scoring.bpb import document_start_id
from tokenswap.tuning.data import batch_indices, pack

BUCKETS = ((0, 0), (1, 9), (10, 99), (100, 999), (1000, 10**12))
POSITIONS = ((0, 499), (500, 999), (1000, 1999), (2000, 3999), (4000, 10**12))  # characters


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="tune-cpu", help="the tune.py run (.cache/tune-run/<name>)")
    p.add_argument("--target", default="de")
    p.add_argument("--curve", default="hypernet-32000", help="the transferred curve's key")
    p.add_argument("--chunk-chars", type=int, default=4000)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def chunks(text: str, size: int) -> list[str]:
    out, cur = [], ""
    for line in text.splitlines(keepends=True):
        if cur and len(cur) + len(line) > size:
            out.append(cur)
            cur = ""
        cur += line[:size]
    return out + ([cur] if cur else [])


@torch.inference_mode()
def char_bits(model, tokenizer, text: str) -> tuple[list[float], list[int]]:
    """Bits per character of ``text`` (each token's bits spread over its characters) and, per
    character, the id of the token covering it."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = [document_start_id(tokenizer), *enc["input_ids"]]
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()  # (T, V)
    bits = -torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    bits = (bits / torch.log(torch.tensor(2.0))).tolist()
    per_char, owner = [0.0] * len(text), [-1] * len(text)
    for b, tid, (s, e) in zip(bits, enc["input_ids"], enc["offset_mapping"], strict=True):
        e = max(e, s + 1) if s < len(text) else e
        for i in range(s, min(e, len(text))):
            per_char[i] += b / max(1, min(e, len(text)) - s)
            owner[i] = tid
    return per_char, owner


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    run = CACHE / "tune-run" / args.name
    row = json.loads((run / f"{args.target}-{args.curve}.json").read_text())
    config = next(json.loads(x)["config"] for x in (run / f"{args.target}-{args.curve}" /
                                                       "log.jsonl").open() if '"config"' in x)
    moved = load_model(run / f"{args.target}-{args.curve}")
    control = load_model(run / f"{args.target}-original")
    opts = curve_args(row)  # the text the curve was tuned and scored on
    train, heldout = corpus_split(args.target, opts.train_bytes, opts.heldout_bytes)
    texts = [d.text for d in cap(train, opts.tune_bytes)]
    blocks = pack(moved.tokenizer, texts, config["seq_len"])
    seen = Counter()
    for step in range(row["steps"]):
        for r in batch_indices(len(blocks), step, config["batch_size"], config["seed"]):
            seen.update(blocks[r, 1:].tolist())  # the tokens that were training targets
    stats = {b: [0, 0.0, 0.0] for b in BUCKETS}  # characters, control bits, transferred bits
    where = {b: [0, 0.0, 0.0] for b in POSITIONS}
    for doc in heldout:
        for piece in chunks(doc, args.chunk_chars):
            a, _ = char_bits(control.model, control.tokenizer, piece)
            b, owner = char_bits(moved.model, moved.tokenizer, piece)
            for i, (ca, cb, tid) in enumerate(zip(a, b, owner, strict=True)):
                n = seen[tid]
                for table, key in ((stats, next(k for k in BUCKETS if k[0] <= n <= k[1])),
                                   (where, next(k for k in POSITIONS if k[0] <= i <= k[1]))):
                    table[key][0] += 1
                    table[key][1] += ca
                    table[key][2] += cb
    chars = sum(s[0] for s in stats.values())
    gap = sum(s[2] - s[1] for s in stats.values())

    def rows_of(table: dict) -> list[list]:
        return [[f"{lo}" if lo == hi else f"{lo}-{hi}" if hi < 10**12 else f">={lo}",
                 f"{n / chars:.1%}", ca / n, cb / n, cb / ca if ca else float("nan"),
                 f"{(cb - ca) / gap:.1%}"] for (lo, hi), (n, ca, cb) in table.items() if n]

    rows, positions = rows_of(stats), rows_of(where)
    total = [sum(s[1] for s in stats.values()), sum(s[2] for s in stats.values())]
    columns = ["characters", "control bits/char", "transferred bits/char", "ratio",
               "share of the gap"]
    table = (markdown_table(["times trained on", *columns], rows) + "\n\n"
             + markdown_table(["position in the chunk (characters)", *columns], positions))
    text = (f"# Where the gap sits: {args.target}-{args.curve} against the tuned original\n\n"
            f"`python benchmarks/tune_gap.py --name {args.name} --target {args.target} --curve "
            f"{args.curve}` ({row['steps']} steps; chunks of <= {args.chunk_chars} characters; "
            f"overall {total[0] / chars:.3f} vs {total[1] / chars:.3f} bits/char, ratio "
            f"{total[1] / total[0]:.3f})\n\n" + table)
    write_results(f"{args.name}-gap", {"args": vars(args), "rows": rows, "positions": positions,
                                       "bits": total, "chars": chars}, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
