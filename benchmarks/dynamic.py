"""Benchmark (issue 21): dynamic tokenization of the prefill, hypernet vs mean embeddings.

Model: the packaged SmolLM2-135M-Instruct, fp32, ``--threads`` intra-op threads. Domains: the
held-out split of ``benchmarks/common.py::corpus_split`` (German and English man pages as a
reader sees them, Python standard-library code).

Each held-out document long enough gives one example: a context of about ``--context-tokens``
base tokens (cut at a pre-tokenizer word start) and the next ``--continuation-bytes`` bytes
(extended to the next word start). Contexts are merged in batches of ``--batch`` texts
(:func:`tokenswap.dynamic.merge_levels`, one run per batch, snapshots at each reduction; the
reduction is measured on the batch's contexts). Merged tokens are embedded by the shipped
hypernet (``align``: its common offset removed) or by ``mean`` (FVT). The continuation is scored
over the base vocabulary after the merged context (``score_continuations``); the base row is
the same code path with no merges.

Columns:

* ``reduction``: achieved share of fewer context tokens; ``(limit)``: short of the request by
  more than half a point, because a batch ran out of allowed merges (its word-level limit: every
  pre-tokenizer word is one token); a level that repeats a lower one is scored once;
* ``bits/byte``, ``x base``: continuation bits per byte and its ratio to the base context's;
* ``prefill CPU s``: process CPU time of one forward pass over the contexts only
  (``inputs_embeds``, KV cache on), summed over batches, and its ratio to the base;
  ``embed CPU s``: computing the batch's new rows (hypernet or mean), cold cache; ``merge CPU s``:
  the merges. CPU time, not wall time: the machine is shared (see ``machine`` in the JSON);
* ``KV cache MB``: size of the keys and values the prefill leaves (summed over batches; padding
  included), the memory that scales with the sequence (resident-set peaks were not informative:
  the allocator keeps freed blocks);
* ``cache hit rate``: one LRU cache per method and reduction lives through all batches of all
  domains in order; hits / lookups of the distinct new tokens of each batch, counted at the
  batch's first lookup (scoring and prefill look the same tokens up again; not counted).

Run (the committed results: one process per domain, then joined; ``parts`` in the JSON)::

    for d in de en code; do
      python benchmarks/dynamic.py --threads 1 --examples 6 --batch 3 --domains $d \
        --name dynamic-$d --part &
    done; wait
    python benchmarks/dynamic.py --threads 1 --examples 6 --batch 3 --domains de \
        --name dynamic-de-static --part --static
    python benchmarks/dynamic.py --combine dynamic-de dynamic-de-static dynamic-en dynamic-code

``--static`` rows (``static mean``, ``static hypernet``): SmolLM2 transferred to the domain's
32k BPE (``benchmarks/common.py::target_tokenizer``, the one every benchmark uses), the same
contexts and continuations tokenized by it (the continuation too: that is what a static swap
does), scored on the same bytes; ``new tokens`` is then the vocabulary's size and ``x base``
of the prefill compares with the base row of another process.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import CACHE, RESULTS, corpus_split, machine, markdown_table, write_results

from tokenswap.dynamic import merge_levels
from tokenswap.dynamic.embed import MergedEmbeddings
from tokenswap.dynamic.merge import _Rules, _word_starts
from tokenswap.dynamic.prefill import context_embeddings, score_continuations
from tokenswap.hypernet.model import SourceEmbeddings
from tokenswap.hypernet.shipped import for_model
from tokenswap.io.models import load_model
from tokenswap.scoring.bpb import document_start_id

METHODS = ("hypernet", "mean")
PARTS = CACHE / "dynamic-parts"


def examples(tokenizer, texts, n, context_tokens, continuation_bytes):
    """Up to ``n`` (context, continuation) pairs from held-out texts long enough."""
    rules = _Rules(tokenizer)
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) < context_tokens * 1.3:
            continue
        cut_guess = len(tokenizer.decode(ids[:context_tokens]).encode())
        starts = sorted(_word_starts(rules, text))
        cut = next((s for s in starts if s >= cut_guess), None)
        end = next((s for s in starts if cut is not None and s >= cut + continuation_bytes), None)
        if cut is None or end is None:
            continue
        data = text.encode()
        context, continuation = data[:cut].decode(), data[cut:end].decode()
        if not continuation.strip():
            continue
        out.append((context, continuation))
        if len(out) == n:
            break
    return out


def cpu_seconds(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


@torch.no_grad()
def prefill(model, tokenizer, merged, embeddings):
    """CPU seconds and KV-cache MB of one forward pass over the contexts (right-padded)."""
    rows = context_embeddings(model, merged, document_start_id(tokenizer), embeddings)
    width = max(len(r) for r in rows)
    embeds = torch.zeros((len(rows), width, rows[0].shape[1]))
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        embeds[i, : len(r)] = r
        mask[i, : len(r)] = 1
    out, seconds = cpu_seconds(lambda: model(inputs_embeds=embeds, attention_mask=mask,
                                             use_cache=True))
    return seconds, kv_megabytes(getattr(out, "cache", None)), int(mask.sum())


def kv_megabytes(cache) -> float:
    """MB held by the key and value tensors of a transformers KV cache."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if t is not None:
                total += t.numel() * t.element_size()
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--domains", nargs="+", default=["de", "en", "code"])
    parser.add_argument("--examples", type=int, default=6, help="examples per domain")
    parser.add_argument("--batch", type=int, default=3, help="texts merged together")
    parser.add_argument("--context-tokens", type=int, default=512)
    parser.add_argument("--continuation-bytes", type=int, default=256)
    parser.add_argument("--reductions", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4])
    parser.add_argument("--train-bytes", type=int, default=3_000_000)
    parser.add_argument("--heldout-bytes", type=int, default=400_000)
    parser.add_argument("--static", action="store_true",
                        help="instead: static transfers to the domain's 32k BPE (mean, hypernet) "
                             "scored on the same examples")
    parser.add_argument("--name", default="dynamic")
    parser.add_argument("--part", action="store_true",
                        help="write benchmarks/.cache/dynamic-parts/NAME.json only (one process "
                             "per domain; --combine joins them)")
    parser.add_argument("--combine", nargs="+", metavar="PART",
                        help="join parts written with --part into results/NAME.{json,md,png}")
    args = parser.parse_args()
    if args.combine:
        combine(args.name, args.combine)
        return
    torch.set_num_threads(args.threads)
    wall0, cpu0 = time.perf_counter(), time.process_time()

    bundle = load_model("default")
    model, tok = bundle.model, bundle.tokenizer
    hypernet = for_model(bundle)
    source = SourceEmbeddings.from_bundle(bundle)
    if args.static:
        return static(args, bundle, hypernet, wall0, cpu0)
    levels_wanted = [0.0, *args.reductions]
    first = MergedEmbeddings(source, tok, method="hypernet", hypernet=hypernet)
    offset, offset_cpu = cpu_seconds(first.offset)  # measured once, shared by every cache
    caches = {(m, r): MergedEmbeddings(source, tok, method=m, hypernet=hypernet, offset=offset)
              for m in METHODS for r in args.reductions}
    hits = {k: [0, 0] for k in caches}  # first lookup of each batch's new tokens only
    rows, domains = [], {}
    for domain in args.domains:
        _, held = corpus_split(domain, args.train_bytes, args.heldout_bytes)
        pairs = examples(tok, held, args.examples, args.context_tokens, args.continuation_bytes)
        if len(pairs) < args.examples:
            raise SystemExit(f"{domain}: only {len(pairs)} held-out examples long enough")
        acc: dict = {}
        for lo in range(0, len(pairs), args.batch):
            batch = pairs[lo: lo + args.batch]
            contexts, conts = [p[0] for p in batch], [p[1] for p in batch]
            levels, merge_cpu = cpu_seconds(lambda c=contexts: merge_levels(tok, c, levels_wanted))
            seen, pre_by_level = {}, {}
            for want, merged in zip(levels_wanted, levels, strict=True):
                for method in METHODS if want else ("base",):
                    cache = caches.get((method, want))
                    key = (method, merged.merges)
                    limit = key in seen  # the batch's word-level limit was reached below `want`
                    embed_cpu = 0.0
                    if cache is not None:
                        h0, m0 = cache.stats.hits, cache.stats.misses
                        _, embed_cpu = cpu_seconds(lambda m=merged, c=cache: c.rows(
                            [m.new_tokens[k] for k in m.used_new_tokens()]))
                        hits[(method, want)][0] += cache.stats.hits - h0
                        hits[(method, want)][1] += cache.stats.misses - m0
                    if limit:
                        score, pre = seen[key]
                    else:
                        score = score_continuations(model, tok, merged, conts, cache, batch_size=4)
                        # the prefill's cost depends on the sequence, not on the rows: timed
                        # once per level (with the first method's rows)
                        pre = pre_by_level.get(merged.merges) or prefill(model, tok, merged, cache)
                        pre_by_level[merged.merges] = pre
                        seen[key] = (score, pre)
                    a = acc.setdefault((method, want), {
                        "bits": 0.0, "bytes": 0, "cont_tokens": 0, "tokens": 0, "base_tokens": 0,
                        "prefill_cpu": 0.0, "kv_mb": 0.0, "embed_cpu": 0.0, "merge_cpu": 0.0,
                        "new_tokens": 0, "at_limit": False})
                    a["bits"] += sum(score.bits)
                    a["bytes"] += sum(score.bytes)
                    a["cont_tokens"] += sum(score.tokens)
                    a["tokens"] += merged.tokens
                    a["base_tokens"] += merged.base_tokens
                    a["prefill_cpu"] += pre[0]
                    a["kv_mb"] += pre[1]
                    a["embed_cpu"] += embed_cpu
                    a["merge_cpu"] += merge_cpu
                    a["new_tokens"] += len(merged.used_new_tokens())
                    a["at_limit"] |= limit
            print(f"{domain} batch {lo // args.batch + 1}: "
                  + ", ".join(f"{m.reduction:.3f}" for m in levels)
                  + f" (CPU {time.process_time() - cpu0:.0f} s)", flush=True)
        base = acc[("base", 0.0)]
        base_bpb = base["bits"] / base["bytes"]
        for (method, want), a in acc.items():
            bpb = a["bits"] / a["bytes"]
            rows.append({
                "domain": domain, "method": method, "requested": want,
                "reduction": 1 - a["tokens"] / a["base_tokens"], "at_limit": a["at_limit"],
                "bits_per_byte": bpb, "bpb_ratio": bpb / base_bpb,
                "continuation_bytes": a["bytes"], "continuation_tokens": a["cont_tokens"],
                "context_tokens": a["tokens"], "base_context_tokens": a["base_tokens"],
                "new_tokens": a["new_tokens"], "prefill_cpu_s": a["prefill_cpu"],
                "prefill_ratio": a["prefill_cpu"] / base["prefill_cpu"],
                "kv_cache_mb": a["kv_mb"], "embed_cpu_s": a["embed_cpu"],
                "merge_cpu_s": a["merge_cpu"]})
        domains[domain] = {"examples": len(pairs), "base_bits_per_byte": base_bpb}
    cache_stats = {f"{m}@{r}": {"hits": h, "misses": n, "hit_rate": h / max(1, h + n)}
                   for (m, r), (h, n) in hits.items()}
    payload = {"args": vars(args), "machine": machine(), "rows": rows, "domains": domains,
               "cache": cache_stats, "offset_cpu_s": offset_cpu, "cpu_seconds": time.process_time() - cpu0,
               "wall_seconds": time.perf_counter() - wall0,
               "hypernet": str(getattr(hypernet, "path", "")), "hypernet_base": hypernet.base_match}
    if args.part:
        PARTS.mkdir(parents=True, exist_ok=True)
        (PARTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    else:
        write_results(args.name, payload, report(payload))
        plot(payload, RESULTS / f"{args.name}.png")
    print(report(payload))


def static(args, bundle, hypernet, wall0, cpu0) -> None:
    """Rows of a static transfer to the domain's 32k BPE (benchmarks/common.py's cached one):
    the model gets the BPE's vocabulary (``mean`` or ``hypernet`` rows), the same contexts and
    continuations are tokenized by it, the continuation scored (same bytes as the dynamic rows)."""
    from common import target_tokenizer

    from tokenswap import api
    from tokenswap.io.models import load_tokenizer

    rows = []
    for domain in args.domains:
        train, held = corpus_split(domain, args.train_bytes, args.heldout_bytes)
        pairs = examples(bundle.tokenizer, held, args.examples, args.context_tokens,
                         args.continuation_bytes)
        contexts, conts = [p[0] for p in pairs], [p[1] for p in pairs]
        tok_dir = target_tokenizer(domain, train, 32000, "default")
        new_tok = load_tokenizer(tok_dir)
        base = merge_levels(bundle.tokenizer, contexts, [0.0])[0]
        base_score = score_continuations(bundle.model, bundle.tokenizer, base, conts)
        for method in ("mean", "hypernet"):
            moved = api.transfer(load_model("default"), new_tok, method=method,
                                 **({"hypernet": hypernet} if method == "hypernet" else {}))
            model_s, tok_s = moved.bundle.model, moved.bundle.tokenizer
            seq = merge_levels(tok_s, contexts, [0.0])[0]
            score = score_continuations(model_s, tok_s, seq, conts)
            pre = prefill(model_s, tok_s, seq, None)
            bpb = score.bits_per_byte
            rows.append({
                "domain": domain, "method": f"static {method}", "requested": None,
                "reduction": 1 - seq.tokens / base.tokens, "at_limit": False,
                "bits_per_byte": bpb, "bpb_ratio": bpb / base_score.bits_per_byte,
                "continuation_bytes": sum(score.bytes), "continuation_tokens": sum(score.tokens),
                "context_tokens": seq.tokens, "base_context_tokens": base.tokens,
                "new_tokens": len(tok_s), "prefill_cpu_s": pre[0], "prefill_ratio": None,
                "kv_cache_mb": pre[1], "embed_cpu_s": 0.0, "merge_cpu_s": 0.0,
                "base_bits_per_byte": base_score.bits_per_byte})
            print(rows[-1], flush=True)
            del moved, model_s
    PARTS.mkdir(parents=True, exist_ok=True)
    payload = {"args": vars(args), "machine": machine(), "rows": rows, "domains": {},
               "cache": {}, "offset_cpu_s": 0.0, "cpu_seconds": time.process_time() - cpu0,
               "wall_seconds": time.perf_counter() - wall0, "static": True}
    (PARTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")


def combine(name: str, parts: list[str]) -> None:
    """One results file from per-domain parts (each its own process, its own caches)."""
    loaded = [json.loads((PARTS / f"{p}.json").read_text()) for p in parts]
    payload = {"parts": [{"name": p, "args": d["args"], "cpu_seconds": d["cpu_seconds"],
                          "wall_seconds": d["wall_seconds"]} for p, d in zip(parts, loaded,
                                                                            strict=True)],
               "args": loaded[0]["args"], "machine": loaded[0]["machine"],
               "rows": [r for d in loaded for r in d["rows"]],
               "domains": {k: v for d in loaded for k, v in d["domains"].items()},
               "cache": {f"{'+'.join(d['domains'])} {k}": v for d in loaded
                         for k, v in d["cache"].items()},
               "offset_cpu_s": max(d["offset_cpu_s"] for d in loaded),
               "cpu_seconds": sum(d["cpu_seconds"] for d in loaded),
               "wall_seconds": max(d["wall_seconds"] for d in loaded),
               "hypernet": loaded[0]["hypernet"], "hypernet_base": loaded[0]["hypernet_base"]}
    payload["rows"].sort(key=lambda r: list(payload["domains"]).index(r["domain"]))
    for r in payload["rows"]:  # static rows: prefill against the base row of their domain
        if r["prefill_ratio"] is None:
            base = next(b for b in payload["rows"]
                        if b["domain"] == r["domain"] and b["method"] == "base")
            r["prefill_ratio"] = r["prefill_cpu_s"] / base["prefill_cpu_s"]
    payload["args"] = {**payload["args"], "domains": list(payload["domains"])}
    for r in payload["rows"]:  # a batch stopped at its word-level limit short of the request
        r["at_limit"] = r["requested"] is not None and r["reduction"] < r["requested"] - 0.005
    write_results(name, payload, report(payload))
    plot(payload, RESULTS / f"{name}.png")
    print(report(payload))


def report(payload) -> str:
    a = payload["args"]
    head = (f"Dynamic tokenization of the prefill (SmolLM2-135M, {a['examples']} examples per "
            f"domain, contexts of ~{a['context_tokens']} base tokens merged in batches of "
            f"{a['batch']}, the next ~{a['continuation_bytes']} bytes scored with base tokens). "
            f"{payload['cpu_seconds'] / 60:.1f} CPU minutes, {a['threads']} thread(s).\n")
    table = markdown_table(
        ["domain", "embeddings", "requested", "reduction", "bits/byte", "x base",
         "prefill CPU s", "x base", "KV cache MB", "new tokens", "embed CPU s", "merge CPU s"],
        [[r["domain"], r["method"],
          "-" if r["requested"] is None else f"{r['requested']:.0%}",
          f"{r['reduction']:.3f}" + (" (limit)" if r["at_limit"] else ""), r["bits_per_byte"],
          f"{r['bpb_ratio']:.4f}", r["prefill_cpu_s"],
          "-" if r["prefill_ratio"] is None else f"{r['prefill_ratio']:.3f}", r["kv_cache_mb"],
          r["new_tokens"], r["embed_cpu_s"], r["merge_cpu_s"]] for r in payload["rows"]])
    cache = markdown_table(["cache (method@reduction)", "hits", "misses", "hit rate"],
                           [[k, v["hits"], v["misses"], v["hit_rate"]]
                            for k, v in payload["cache"].items()])
    return head + "\n" + table + "\n\n" + cache + "\n"


def plot(payload, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    colors = dict(zip(payload["domains"], ["C0", "C1", "C2", "C3"], strict=False))
    for domain, color in colors.items():
        for method, style in (("hypernet", "-o"), ("mean", "--x")):
            rs = [r for r in payload["rows"] if r["domain"] == domain
                  and r["method"] in (method, "base")]
            rs.sort(key=lambda r: r["reduction"])
            ax1.plot([r["reduction"] for r in rs], [r["bpb_ratio"] for r in rs], style,
                     color=color, label=f"{domain} {method}")
            if method == "hypernet":
                ax2.plot([r["reduction"] for r in rs], [r["prefill_ratio"] for r in rs], "-o",
                         color=color, label=domain)
    ax1.axhline(1.02, color="grey", lw=0.8, ls=":")
    ax1.set_xlabel("context tokens removed")
    ax1.set_ylabel("continuation bits/byte / base")
    ax1.legend(fontsize=7)
    xs = [0, max(r["reduction"] for r in payload["rows"])]
    ax2.plot(xs, [1 - x for x in xs], color="grey", ls=":", label="proportional")
    ax2.set_xlabel("context tokens removed")
    ax2.set_ylabel("prefill CPU time / base")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
