"""Benchmark: every init method on the packaged SmolLM2-135M, per domain, in one run.

For each domain (German man pages, Python standard library code) a byte-level BPE is trained
on the training split; each registered method transfers SmolLM2 to it; every model (and the
original) is scored on the same held-out bytes. Columns: transfer wall time, peak extra
memory, tokens/byte, bits/byte and the ratio to the original.

    python benchmarks/transfer.py [--vocab-size 32000] [--heldout-bytes 24000]

Writes benchmarks/results/transfer.json and transfer.md.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch
from common import DOMAINS, PeakMemory, machine, markdown_table, write_results

from tokenswap import api
from tokenswap.demo import take_bytes
from tokenswap.init import list_methods
from tokenswap.io.corpus import read_corpus, split_corpus
from tokenswap.io.models import ModelBundle, load_model
from tokenswap.scoring.bpb import bits_per_byte


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--heldout-bytes", type=int, default=24000)
    parser.add_argument("--train-bytes", type=int, default=20_000_000)
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS))
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()
    methods = args.methods or [m.name for m in list_methods() if not m.needs_corpus]

    source = load_model("default")
    rows, payload = [], {"machine": machine(), "args": vars(args), "domains": {}}
    for domain in args.domains:
        docs = read_corpus(DOMAINS[domain], max_bytes=args.train_bytes)
        train, held = split_corpus(docs, heldout_fraction=0.1, seed=0)
        heldout = take_bytes([d.text for d in held], args.heldout_bytes)
        t0 = time.perf_counter()
        target = api.tokenizer_train(train, args.vocab_size, like=source.tokenizer)
        train_seconds = time.perf_counter() - t0
        print(f"[{domain}] tokenizer: {len(target):,} tokens in {train_seconds:.1f} s", flush=True)

        entries = []
        base = bits_per_byte(source.model, source.tokenizer, heldout, max_length=args.max_length,
                             batch_size=4, progress=f"{domain} original")
        entries.append({"method": "original", **base.to_dict(), "transfer_seconds": 0.0,
                        "peak_mb": 0.0})
        for method in methods:
            bundle = ModelBundle(model=copy.deepcopy(source.model), tokenizer=source.tokenizer,
                                 spec=source.spec)
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                result = api.transfer(bundle, target, method=method, seed=0)
                seconds = time.perf_counter() - t0
            score = bits_per_byte(bundle.model, bundle.tokenizer, heldout,
                                  max_length=args.max_length, batch_size=4,
                                  progress=f"{domain} {method}")
            entries.append({"method": method, **score.to_dict(), "transfer_seconds": seconds,
                            "peak_mb": mem.mb, "stats": result.stats.to_dict()})
            print(f"[{domain}] {method}: {score.bits_per_byte:.3f} bits/byte", flush=True)
            del bundle
        for e in entries:
            e["bpb_ratio"] = e["bits_per_byte"] / base.bits_per_byte
            rows.append([domain, e["method"], e["tokens_per_byte"], e["bits_per_byte"],
                         e["bpb_ratio"], e["transfer_seconds"], e["peak_mb"]])
        payload["domains"][domain] = {"heldout_bytes": base.bytes, "train_documents": len(train),
                                      "tokenizer_seconds": train_seconds, "rows": entries}

    table = markdown_table(["domain", "method", "tokens/byte", "bits/byte", "ratio to original",
                            "transfer s", "peak extra MB"], rows)
    write_results("transfer", payload, table)
    print(table)
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
