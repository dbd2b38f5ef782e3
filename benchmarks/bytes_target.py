"""Benchmark: SmolLM2-135M transferred to bytes (`--tokenizer bytes`): what the longer sequences cost.

For German man pages and Python code (the held-out bytes every benchmark shares,
``common.corpus_split``): tokens per byte of SmolLM2's tokenizer and of the byte tokenizer;
on the first ``--scored-bytes`` of them, zero-shot bits/byte of the original and of the bytes
model initialised by ``mean`` and by the shipped hypernet (``hypernet_exact`` align, the
default, and predict) and the scoring CPU time per KB; and one forward pass over 1 KB of German
text: CPU seconds (median of 3 after a warm-up) and peak extra resident memory. Parameters are
counted too: 256 byte rows replace 49,152 token rows. One torch thread; no tuning
(``benchmarks/tune.py`` does that).

    python benchmarks/bytes_target.py [--scored-bytes 4000] [--max-length 1024]

Writes benchmarks/results/bytes-target.json and bytes-target.md.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import statistics
import sys
import time

import torch
from common import PeakMemory, corpus_split, machine, markdown_table, write_results

from tokenswap import api
from tokenswap.demo import take_bytes
from tokenswap.io.models import ModelBundle, load_model
from tokenswap.scoring.bpb import bits_per_byte, tokens_per_byte

ROWS = {  # row name -> transfer options (None: the original model)
    "original": None,
    "bytes, mean": {"method": "mean"},
    "bytes, hypernet (align)": {"method": "hypernet", "hypernet": "default"},
    "bytes, hypernet (predict)": {"method": "hypernet", "hypernet": "default",
                                  "options": {"hypernet_exact": "predict"}},
}


FORWARD = ("original", "bytes, mean")  # the bytes models differ in values, not in size


def release_memory() -> None:
    """Give freed heap pages back to the system, so the next peak is measured from a low
    resident size (glibc keeps freed memory otherwise, and a second peak would read ~0)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: peaks after the first may read low
        pass


def forward_cost(bundle: ModelBundle, text: str, repeats: int = 3) -> dict:
    """CPU seconds (median of ``repeats`` after a warm-up; one thread, so other jobs on the
    machine change it less than wall time) and peak extra resident memory (MB) of one forward
    pass over ``text`` with a document-start token, as the scorer runs it."""
    tok = bundle.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ids = torch.tensor([[start, *tok(text, add_special_tokens=False,
                                     split_special_tokens=True)["input_ids"]]])
    times = []
    with torch.inference_mode():
        bundle.model(input_ids=ids)  # warm-up
        release_memory()
        with PeakMemory() as peak:
            for _ in range(repeats):
                t0 = time.process_time()
                bundle.model(input_ids=ids)
                times.append(time.process_time() - t0)
    return {"tokens": ids.shape[1] - 1, "cpu_seconds": statistics.median(times),
            "peak_mb": peak.mb}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout-bytes", type=int, default=24000,
                        help="held-out bytes per domain for tokens/byte")
    parser.add_argument("--scored-bytes", type=int, default=4000,
                        help="the first of them scored for bits/byte (1 thread is slow)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--domains", nargs="+", default=["de", "code"])
    parser.add_argument("--forward-bytes", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(1)

    texts = {d: corpus_split(d, 2_000_000, args.heldout_bytes)[1] for d in args.domains}
    scored = {d: take_bytes(t, args.scored_bytes) for d, t in texts.items()}
    probe = "\n\n".join(take_bytes(texts[args.domains[0]], args.forward_bytes))
    source = load_model("default")
    payload = {"machine": machine(), "args": vars(args), "rows": []}
    t_start = time.process_time()
    for row, transfer in ROWS.items():
        if transfer is None:
            bundle, seconds = source, 0.0
        else:
            bundle = ModelBundle(copy.deepcopy(source.model), source.tokenizer, source.spec)
            t0 = time.perf_counter()
            result = api.transfer(bundle, "bytes", **transfer)
            seconds = time.perf_counter() - t0
            print(f"{row}: {result.stats.input}", flush=True)
        entry = {"row": row, "vocab": len(bundle.tokenizer), "transfer_seconds": seconds,
                 "parameters": sum(p.numel() for p in bundle.model.parameters()),
                 "forward": forward_cost(bundle, probe) if row in FORWARD else None,
                 "domains": {}}
        for domain, held in scored.items():
            t0 = time.process_time()
            res = bits_per_byte(bundle.model, bundle.tokenizer, held, max_length=args.max_length,
                                batch_size=4)
            cpu = time.process_time() - t0
            entry["domains"][domain] = {
                **res.to_dict(), "cpu_seconds": cpu, "cpu_seconds_per_kb": cpu / (res.bytes / 1024),
                "heldout_tokens_per_byte": tokens_per_byte(bundle.tokenizer, texts[domain])}
            print(f"{row} [{domain}]: {res.bits_per_byte:.3f} bits/byte, "
                  f"{res.tokens_per_byte:.3f} tokens/byte, {cpu:.0f} CPU s", flush=True)
        payload["rows"].append(entry)
        del bundle
        gc.collect()
    payload["cpu_seconds"] = time.process_time() - t_start

    base = {d: payload["rows"][0]["domains"][d] for d in args.domains}
    rows = []
    for e in payload["rows"]:
        for d in args.domains:
            r = e["domains"][d]
            rows.append([d, e["row"], r["heldout_tokens_per_byte"],
                         r["heldout_tokens_per_byte"] / base[d]["heldout_tokens_per_byte"],
                         r["bits_per_byte"], r["bits_per_byte"] / base[d]["bits_per_byte"],
                         r["cpu_seconds_per_kb"]])
    fwd = [[e["row"], f"{e['parameters'] / 1e6:.1f} M", e["forward"]["tokens"],
            e["forward"]["cpu_seconds"], e["forward"]["peak_mb"]]
           for e in payload["rows"] if e["forward"] is not None]
    command = "python benchmarks/bytes_target.py " + " ".join(sys.argv[1:])
    table = "\n".join([
        "# SmolLM2-135M transferred to bytes: what the longer sequences cost (CPU, 1 thread)",
        "",
        f"`{command.strip()}`. Tokens/byte on the {args.heldout_bytes:,} held-out bytes of "
        "each domain (benchmarks/common.py); bits/byte (zero-shot, no tuning) and scoring CPU "
        f"seconds per KB on the first {args.scored_bytes:,} of them, windows of "
        f"{args.max_length} tokens with stride {args.max_length // 2} (so the bytes model "
        f"sees {args.max_length} bytes of context, the original 3-4x more). "
        f"{payload['cpu_seconds'] / 60:.1f} CPU minutes in all.",
        "",
        markdown_table(["domain", "model", "tokens/byte", "x original", "bits/byte",
                        "x original", "scoring CPU s/KB"], rows),
        "",
        f"One forward pass over {args.forward_bytes:,} bytes of German: CPU seconds (median "
        "of 3 after a warm-up) and peak resident memory over the loaded model:",
        "",
        markdown_table(["model", "parameters", "tokens", "CPU seconds", "peak MB"], fwd),
    ])
    write_results("bytes-target", payload, table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
