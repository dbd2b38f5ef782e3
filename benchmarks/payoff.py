"""The payoff of a tokenizer swap in speed a user sees: bytes per second, bytes per context.

Original SmolLM2-135M vs the same model transferred to a 32k BPE trained on the domain
(German man pages; Python code), in transformers (fp32, 1 thread) and in llama.cpp (f16 and
q8_0 GGUF from `tokenswap export`, 1 thread). Every figure is per byte of held-out text, so the
two tokenizers compare:

- tokens/byte of the held-out text, and the bytes a 2048-token context holds;
- scoring throughput: transformers scores the held-out text (windows of 1024 tokens, batch 1;
  also its bits/byte); llama.cpp: llama-bench's prompt processing of 1024 tokens; bytes/s =
  tokens/s / tokens per byte;
- generation throughput: greedy, `--new-tokens` (256) after a prompt of `--prompt-tokens` (64),
  batch 1 and 8: transformers `generate` on a held-out prompt repeated per sequence,
  llama.cpp's llama-batched-bench (all sequences decoded together, one token each per step);
  bytes/s = tokens/s / tokens per byte of the held-out text (what the model would emit on text
  like it);
- peak resident memory: above the starting point for transformers (the model loaded inside the
  measured region), the whole llama.cpp process (llama-bench) for llama.cpp.

The transferred model is the transferred-and-tuned one of the tune benchmark (`--tuned-from`:
its run `benchmarks/.cache/tune-run/NAME/{domain}-hypernet-32000`, the shipped hypernet's
transfer to the same 32k BPE tuned by `benchmarks/tune.py`, so its bits/byte here is the
tune benchmark's model on this benchmark's held-out bytes); without such a run, the zero-shot
transfer (said in the row). Speed does not depend on the weights, but the quality bought with
it does: bits/byte is beside every transformers row, the zero-shot transfer's too. bf16 runs
only where torch reports native bf16 (never on AVX2-only CPUs).

    python benchmarks/tune.py --name distill --targets de code --inits hypernet --hypernet default ...
    python benchmarks/payoff.py --domains de code
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
from common import CACHE, RESULTS, PeakMemory, corpus_split, machine, markdown_table, write_results

from tokenswap import api
from tokenswap.io import llama_cpp
from tokenswap.io.gguf_export import export_gguf
from tokenswap.io.models import load_model, load_tokenizer
from tokenswap.scoring.bpb import bits_per_byte

WORK = CACHE / "payoff"
PROMPTS = {"de": "Dieses Programm zeigt", "code": "def read_config(path):\n"}


def prepare(domain: str, args) -> dict[str, Path]:
    """HF dirs of the original and the transferred model (cached)."""
    from common import target_tokenizer

    from tokenswap.io.models import default_gguf_path, materialize_gguf

    original = materialize_gguf(default_gguf_path())
    tok_dir = CACHE / f"tokenizer-{domain}-32000"
    if not (tok_dir / "tokenizer.json").is_file():
        train, _ = corpus_split(domain, args.train_bytes, args.heldout_bytes)
        tok_dir = target_tokenizer(domain, train, 32000, load_tokenizer("default"))
    swapped = WORK / f"{domain}-hypernet"
    if not (swapped / "config.json").is_file():
        api.transfer("default", str(tok_dir), method="hypernet", out=swapped, overwrite=True)
    tuned = CACHE / "tune-run" / args.tuned_from / f"{domain}-hypernet-32000"
    if args.tuned_from and (tuned / "config.json").is_file():
        return {"original": original, "transferred": tuned, "zero-shot": swapped}
    print(f"no tuned model at {tuned}: measuring the zero-shot transfer", flush=True)
    return {"original": original, "transferred": swapped}


def gguf_of(name: str, domain: str, model_dir: Path, kind: str) -> Path:
    """The model's GGUF, cached per model directory and weights file (a retuned model in the
    same directory is exported again)."""
    import hashlib

    weights = model_dir / "model.safetensors"
    stamp = f"{model_dir.resolve()}:{weights.stat().st_mtime_ns if weights.is_file() else 0}"
    out = WORK / f"{domain}-{name}-{hashlib.sha1(stamp.encode()).hexdigest()[:8]}-{kind}.gguf"
    if not out.is_file():
        export_gguf(load_model(str(model_dir)), out, type=kind, overwrite=True)
    return out


def transformers_row(model_dir: Path, heldout: list[str], prompt_text: str, args) -> dict:
    with PeakMemory() as mem:
        bundle = load_model(str(model_dir))
        t0, c0 = time.perf_counter(), time.process_time()
        result = bits_per_byte(bundle.model, bundle.tokenizer, heldout, max_length=1024,
                               batch_size=1, progress=False)
        score_s, score_cpu = time.perf_counter() - t0, time.process_time() - c0
    row = {"runtime": "transformers fp32", "bits_per_byte": result.bits_per_byte,
           "tokens_per_byte": result.tokens_per_byte, "bytes": result.bytes,
           "score_bytes_per_s": result.bytes / score_s, "score_seconds": score_s,
           "score_bytes_per_cpu_s": result.bytes / score_cpu, "peak_mb": mem.mb}
    ids = bundle.tokenizer(prompt_text, add_special_tokens=False,
                           return_tensors="pt")["input_ids"][:, -args.prompt_tokens:]
    for batch in args.batches:
        x = ids.repeat(batch, 1)
        with torch.no_grad():
            t0, c0 = time.perf_counter(), time.process_time()
            out = bundle.model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                        max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                        pad_token_id=2)
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        new = (out.shape[1] - x.shape[1]) * batch
        row[f"gen_b{batch}_tokens_per_s"] = new / secs
        row[f"gen_b{batch}_bytes_per_s"] = new / secs / result.tokens_per_byte
        row[f"gen_b{batch}_bytes_per_cpu_s"] = new / cpu / result.tokens_per_byte
    del bundle
    return row


def llama_row(gguf: Path, kind: str, tokens_per_byte: float, args) -> dict:
    b = llama_cpp.bench(gguf, prompt=1024, generate=0, threads=args.threads,
                        repetitions=args.repetitions)
    row = {"runtime": f"llama.cpp {kind}", "tokens_per_byte": tokens_per_byte,
           "score_bytes_per_s": b["pp"] / tokens_per_byte, "pp_tokens_per_s": b["pp"],
           "peak_mb": b["peak_rss_mb"], "gguf_mb": gguf.stat().st_size / 2**20}
    t0, c0 = time.perf_counter(), _children_cpu()
    gen = llama_cpp.batched_generation(gguf, prompt=args.prompt_tokens, generate=args.new_tokens,
                                       sequences=args.batches, threads=args.threads)
    row["batched_bench_seconds"] = time.perf_counter() - t0
    row["batched_bench_cpu_seconds"] = _children_cpu() - c0
    for batch, g in gen.items():
        row[f"gen_b{batch}_tokens_per_s"] = g["tg"]
        row[f"gen_b{batch}_bytes_per_s"] = g["tg"] / tokens_per_byte
        row[f"gen_b{batch}_peak_mb"] = g["peak_rss_mb"]
    return row


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def run_domain(domain: str, args) -> list[dict]:
    from tokenswap.demo import take_bytes

    _, heldout = corpus_split(domain, args.train_bytes, args.heldout_bytes)
    heldout = take_bytes(heldout, args.score_bytes)
    prompt_text = heldout[0][:2000]
    dirs = prepare(domain, args)
    rows = []
    zero_shot = dirs.pop("zero-shot", None)
    for name, model_dir in dirs.items():
        tr = transformers_row(model_dir, heldout, prompt_text, args)
        tr["tuned"] = name == "transferred" and zero_shot is not None
        if tr["tuned"]:
            zs = load_model(str(zero_shot))
            tr["zero_shot_bits_per_byte"] = bits_per_byte(
                zs.model, zs.tokenizer, heldout, max_length=1024, batch_size=1,
                progress=False).bits_per_byte
            tr["tuned_model"] = str(model_dir)
            del zs
        rows.append({"domain": domain, "model": name, **tr})
        print(rows[-1], flush=True)
        for kind in args.gguf_types:
            g = gguf_of(name, domain, model_dir, kind)
            rows.append({"domain": domain, "model": name, "bits_per_byte": None,
                         "tuned": tr["tuned"], **llama_row(g, kind, tr["tokens_per_byte"], args)})
            print(rows[-1], flush=True)
    for row in rows:
        row["bytes_in_2048_tokens"] = 2048 / row["tokens_per_byte"]
    return rows


def speedups(rows: list[dict]) -> list[dict]:
    """Transferred over original, per domain and runtime."""
    out = []
    for row in rows:
        if row["model"] != "transferred":
            continue
        base = next(r for r in rows if r["model"] == "original" and r["domain"] == row["domain"]
                    and r["runtime"] == row["runtime"])
        s = {"domain": row["domain"], "runtime": row["runtime"],
             "token_ratio": base["tokens_per_byte"] / row["tokens_per_byte"]}
        for key in ("score_bytes_per_s", "gen_b1_bytes_per_s", "gen_b8_bytes_per_s",
                    "score_bytes_per_cpu_s", "gen_b1_bytes_per_cpu_s", "gen_b8_bytes_per_cpu_s"):
            if key in row and key in base:
                s[key] = row[key] / base[key]
        out.append(s)
    return out


def table(rows: list[dict], ups: list[dict]) -> str:
    def f(v, fmt="{:.0f}"):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    def label(r):
        if r["model"] != "transferred":
            return r["model"]
        return "transferred + tuned" if r.get("tuned") else "transferred (zero-shot)"

    main = markdown_table(
        ["domain", "model", "runtime", "tokens/byte", "bits/byte", "bits/byte zero-shot",
         "bytes in 2048 tokens", "scoring bytes/s", "generation bytes/s (batch 1)",
         "generation bytes/s (batch 8)", "peak MB"],
        [[r["domain"], label(r), r["runtime"], f(r["tokens_per_byte"], "{:.3f}"),
          f(r.get("bits_per_byte"), "{:.3f}"), f(r.get("zero_shot_bits_per_byte"), "{:.3f}"),
          f(r["bytes_in_2048_tokens"]),
          f(r["score_bytes_per_s"]), f(r.get("gen_b1_bytes_per_s")),
          f(r.get("gen_b8_bytes_per_s")), f(r["peak_mb"])] for r in rows])
    ratio = markdown_table(
        ["domain", "runtime", "token ratio", "scoring bytes/s ratio", "generation bytes/s ratio (b1)",
         "(b8)", "scoring bytes/CPU-s ratio", "generation bytes/CPU-s ratio (b1)", "(b8)"],
        [[s["domain"], s["runtime"], f(s["token_ratio"], "{:.2f}x"),
          f(s.get("score_bytes_per_s"), "{:.2f}x"), f(s.get("gen_b1_bytes_per_s"), "{:.2f}x"),
          f(s.get("gen_b8_bytes_per_s"), "{:.2f}x"), f(s.get("score_bytes_per_cpu_s"), "{:.2f}x"),
          f(s.get("gen_b1_bytes_per_cpu_s"), "{:.2f}x"), f(s.get("gen_b8_bytes_per_cpu_s"), "{:.2f}x")]
         for s in ups])
    return main + "\n\nTransferred over original (same runtime, same held-out bytes):\n\n" + ratio


def plot(ups: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{s['domain']}\n{s['runtime']}" for s in ups]
    keys = [("token_ratio", "tokens (inverse ratio)"), ("score_bytes_per_s", "scoring bytes/s"),
            ("gen_b1_bytes_per_s", "generation bytes/s, batch 1"),
            ("gen_b8_bytes_per_s", "generation bytes/s, batch 8")]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(ups)), 4))
    width = 0.8 / len(keys)
    for k, (key, name) in enumerate(keys):
        ax.bar([i + k * width for i in range(len(ups))], [s.get(key, float("nan")) for s in ups],
               width, label=name)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axhline(1.7, color="grey", lw=0.8, ls="--", label="goal 1.7x")
    ax.set_xticks([i + width for i in range(len(ups))], labels, fontsize=8)
    ax.set_ylabel("transferred / original")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domains", nargs="+", default=["de", "code"])
    p.add_argument("--name", default="payoff")
    p.add_argument("--train-bytes", type=int, default=20_000_000)
    p.add_argument("--heldout-bytes", type=int, default=24000)
    p.add_argument("--score-bytes", type=int, default=12000)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--gguf-types", nargs="+", default=["f16", "q8_0"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repetitions", type=int, default=3)
    p.add_argument("--tuned-from", default="distill",
                   help="the tune benchmark run whose {domain}-hypernet-32000 model is the "
                        "transferred model ('' for the zero-shot transfer)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    native_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    bf16 = ("native (not measured here)" if native_bf16 else
            "not measured: the CPU has no native bf16 (no avx512_bf16/amx_bf16)")
    rows = [r for d in args.domains for r in run_domain(d, args)]
    ups = speedups(rows)
    payload = {"machine": {**machine(), "bf16": bf16,
                           "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                           "load_average": list(os.getloadavg())},
               "args": vars(args), "rows": rows, "speedups": ups}
    command = "python benchmarks/payoff.py " + " ".join(sys.argv[1:])
    note = (f"`{command}`\n\nSmolLM2-135M, original vs transferred to a 32k BPE of the domain "
            "with the shipped hypernet and tuned by the tune benchmark (run "
            f"`{args.tuned_from}`; rows say where the zero-shot transfer stood in); held-out text; "
            f"{args.threads} thread(s), load average at the end "
            f"{payload['machine']['load_average'][0]:.1f} (a shared machine); bf16: "
            f"{payload['machine']['bf16']}.\n\n")
    write_results(args.name, payload, note + table(rows, ups))
    plot(ups, RESULTS / f"{args.name}.png")
    print(table(rows, ups))


if __name__ == "__main__":
    main()
