"""The ``tokenswap`` command line: parse, call :mod:`tokenswap.api`, print.

Expected errors (:class:`~tokenswap.errors.TokenswapError`) print one line and exit with 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from tokenswap.errors import TokenswapError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Give any pretrained language model a new tokenizer.")
tokenizer_app = typer.Typer(no_args_is_help=True, help="Train target tokenizers.")
app.add_typer(tokenizer_app, name="tokenizer")
hypernet_app = typer.Typer(no_args_is_help=True,
                           help="Zero-shot tokenizer transfer hypernets (arXiv 2405.07883).")
app.add_typer(hypernet_app, name="hypernet")
console = Console()
err_console = Console(stderr=True)

ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", help="Source model: HF dir, hub id, .gguf file, or 'default' (SmolLM2-135M).")]
DeviceOpt = Annotated[str | None, typer.Option(help="torch device, e.g. cpu, cuda, cuda:1.")]


def parse_options(items: list[str]) -> dict[str, object]:
    """``["k=8", "focus_mix=0.5"]`` -> ``{"k": 8, "focus_mix": 0.5}`` (int, float, bool or str)."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or key.startswith("_"):
            raise TokenswapError(f"--option {item!r}: expected KEY=VALUE, e.g. focus_temperature=0.1")
        value: object = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    pass
        out[key.strip()] = value
    return out


@app.command()
def transfer(
    tokenizer: Annotated[str, typer.Option("--tokenizer", "-t",
                         help="Target tokenizer: dir, tokenizer.json, .model or a model spec.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output model directory.")],
    model: ModelOpt = "default",
    method: Annotated[str, typer.Option(help="Init method; see `tokenswap methods`.")] = "mean",
    corpus: Annotated[list[str] | None, typer.Option(
        help="Target-language text for methods that need it (files, dirs, globs).")] = None,
    donor: Annotated[str | None, typer.Option(
        help="A model trained with the target tokenizer, for donor-based methods (omp).")] = None,
    source_corpus: Annotated[list[str] | None, typer.Option(
        help="Text in the source model's language (wechsel).")] = None,
    dictionary: Annotated[str | None, typer.Option(
        help="Bilingual dictionary (wechsel): freedict:deu-eng, a dictd .dict.dz or word pairs.")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-O", help="Method option KEY=VALUE, e.g. -O focus_temperature=0.1 "
                               "(repeatable; see `tokenswap methods`).")] = None,
    extend: Annotated[bool, typer.Option(
        help="Keep the source vocabulary and append the target's new tokens.")] = False,
    max_new_tokens: Annotated[int | None, typer.Option(
        help="With --extend: append at most this many tokens (most frequent first).")] = None,
    hypernet: Annotated[str | None, typer.Option(
        help="Trained hypernet directory for --method hypernet (`tokenswap hypernet train`).")] = None,
    allow_other_base: Annotated[bool, typer.Option(
        help="Apply --hypernet to a model that is neither its base nor a recognised "
             "fine-tuned variant of it.")] = False,
    report_undertrained: Annotated[int, typer.Option(
        help="List up to N new tokens whose embeddings look like the source model's unused "
             "tokens (also saved in tokenswap.json); 0 = off.")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    device: DeviceOpt = None,
) -> None:
    """Give a model the vocabulary of another tokenizer and save it as a plain HF model."""
    from tokenswap import api
    from tokenswap.vocab.pair import describe

    with console.status(f"transferring {model} with {method} ..."):
        result = api.transfer(model, tokenizer, method=method, out=out, overwrite=overwrite,
                              corpus=corpus, donor=donor, extend=extend,
                              max_new_tokens=max_new_tokens, seed=seed,
                              device=device, source_corpus=source_corpus, dictionary=dictionary,
                              options=parse_options(option or []), hypernet=hypernet,
                              allow_other_base=allow_other_base,
                              report_undertrained=report_undertrained)
    s = result.stats
    console.print(f"{s.method}: {s.source_vocab:,} -> {s.target_vocab:,} tokens in {s.seconds:.1f} s")
    console.print(f"  input:  {describe({**s.input, 'total': s.target_vocab})}")
    if s.output is not None:
        console.print(f"  output: {describe({**s.output, 'total': s.target_vocab})}")
    if s.hypernet_base is not None:
        console.print(f"  hypernet: model is {s.hypernet_base}", highlight=False)
    if result.undertrained is not None:
        console.print(f"  {len(result.undertrained)} new tokens look under-trained"
                      + (":" if result.undertrained else ""))
        for t in result.undertrained:
            console.print(f"    {t['id']:>7} {t['text']!r:<24} similarity {t['similarity']:.3f}",
                          highlight=False, markup=False)
    console.print(f"saved to {result.out}")


@app.command("eval")
def eval_(
    text: Annotated[list[str], typer.Option(help="Held-out text: files, dirs, globs, hf:name.")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Model(s) to score.")],
    baseline: Annotated[str | None, typer.Option(
        help="Model scored first; ratios are relative to it.")] = None,
    max_bytes: Annotated[int | None, typer.Option(help="Score at most this many bytes.")] = None,
    max_length: Annotated[int, typer.Option(help="Window length in tokens.")] = 1024,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 8,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON.")] = None,
    device: DeviceOpt = None,
) -> None:
    """Bits per byte and tokens per byte of models on the same held-out bytes."""
    from tokenswap import api

    texts = api.corpus_texts(text, max_bytes=max_bytes)
    specs = ([baseline] if baseline else []) + list(model)
    report = api.evaluate(specs, texts, max_length=max_length, batch_size=batch_size,
                          device=device)
    print_report(report)
    if json_out is not None:
        report.write_json(json_out)
        console.print(f"wrote {json_out}")


def print_report(report, title: str = "same held-out bytes for every row") -> None:
    data = report.to_dict()["rows"]
    table = Table(title=title)
    for col in ("model", "vocab", "tokens/byte", "bits/byte", "bpb ratio", "seconds"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in data:
        table.add_row(row["name"], f"{row['vocab_size']:,}", f"{row['tokens_per_byte']:.3f}",
                      f"{row['bits_per_byte']:.3f}", f"{row['bpb_ratio']:.3f}",
                      f"{row['seconds']:.1f}")
    console.print(table)


@app.command()
def methods(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the embedding-initialisation methods."""
    from tokenswap.init import list_methods
    from tokenswap.init.registry import REQUIREMENTS

    items = list_methods()
    if as_json:
        print(json.dumps([{"name": m.name, "aliases": list(m.aliases), "summary": m.summary,
                           "paper": m.paper, "url": m.url, "requires": list(m.requires),
                           "accepts": list(m.accepts), "needs_corpus": m.needs_corpus}
                          for m in items], indent=2))
        return
    table = Table(title="init methods")
    for col in ("method", "aliases", "what it does", "needs", "paper"):
        table.add_column(col)
    for m in items:
        flags = [REQUIREMENTS[r].split(" ")[0] for r in m.requires]
        flags += [f"[{REQUIREMENTS[r].split(' ')[0]}]" for r in m.accepts]  # optional
        needs = ", ".join(flags)
        table.add_row(m.name, ", ".join(m.aliases), m.summary, needs, f"{m.paper}\n{m.url}")
    console.print(table)


@tokenizer_app.command("train")
def tokenizer_train(
    corpus: Annotated[list[str], typer.Option(help="Training text: files, dirs, globs, hf:name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output tokenizer directory.")],
    vocab_size: Annotated[int, typer.Option(help="Total vocabulary size.")] = 32000,
    kind: Annotated[str, typer.Option(help="bpe (byte-level) or unigram (byte fallback).")] = "bpe",
    like: Annotated[str | None, typer.Option(
        help="Carry special tokens and chat template over from this model/tokenizer.")] = "default",
    max_bytes: Annotated[int | None, typer.Option(help="Train on at most this many bytes.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Train a byte-level BPE or Unigram tokenizer on your text."""
    from tokenswap import api
    from tokenswap.vocab.train import TokenizerKind

    if kind not in {k.value for k in TokenizerKind}:
        raise TokenswapError(f"--kind must be one of bpe, unigram (got {kind!r})")
    like_spec = None if like in (None, "", "none") else like
    tok = api.tokenizer_train(corpus, vocab_size, out=out, kind=kind, like=like_spec,
                              overwrite=overwrite, max_bytes=max_bytes, progress=True)
    console.print(f"trained {kind} tokenizer with {len(tok):,} tokens -> {out}")


@hypernet_app.command("train")
def hypernet_train(
    corpus: Annotated[list[str], typer.Option(help="Training text: files, dirs, globs, hf:name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output hypernet directory.")],
    model: ModelOpt = "default",
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (schedule length).")] = None,
    minutes: Annotated[float | None, typer.Option(help="Wall-clock budget for this run.")] = None,
    eval_corpus: Annotated[list[str] | None, typer.Option(
        help="Held-out text scored with a fixed sampled tokenizer (log.jsonl).")] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per step (over all ranks).")] = 8,
    seq_len: Annotated[int, typer.Option(help="Tokens per text.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-4,
    identity_steps: Annotated[int, typer.Option(
        help="First steps train on the source tokenizer itself.")] = 0,
    vocab_min: Annotated[int, typer.Option(help="Smallest sampled vocabulary.")] = 8192,
    vocab_max: Annotated[int, typer.Option(help="Largest sampled vocabulary.")] = 32768,
    sample_texts: Annotated[int, typer.Option(
        help="Texts each step's tokenizer is drawn from: the batch and random others.")] = 64,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 100,
    eval_every: Annotated[int, typer.Option(help="Steps between evaluations.")] = 100,
    max_bytes: Annotated[int | None, typer.Option(help="Read at most this much text.")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-O", help="More options KEY=VALUE: training (aux_weight, warmup_steps, ...), "
                               "hypernet shape (d_model, n_layers, max_pieces, ...) or sampler "
                               "(noise_std, max_chars, ...).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(
        help="Continue from --out's checkpoint when there is one.")] = True,
    device: DeviceOpt = None,
) -> None:
    """Train a hypernet that predicts embeddings for any tokenizer (torchrun for several ranks)."""
    from dataclasses import fields

    from tokenswap import api
    from tokenswap.hypernet.model import HypernetConfig
    from tokenswap.hypernet.sampler import SamplerConfig
    from tokenswap.hypernet.train import TrainConfig

    train_keys = {f.name for f in fields(TrainConfig)} - {"sampler", "hypernet"}
    net_keys = {f.name for f in fields(HypernetConfig)} - {
        "hidden_size", "tied", "has_bias", "base_model", "base_hash"}
    sampler_keys = {f.name for f in fields(SamplerConfig)}
    train_opts: dict = {}
    net: dict = {}
    sampler: dict = {"vocab_min": vocab_min, "vocab_max": vocab_max}
    for key, value in parse_options(option or []).items():
        if key in net_keys:
            net[key] = value
        elif key in sampler_keys:
            sampler[key] = value
        elif key in train_keys:
            train_opts[key] = value
        else:
            from tokenswap.errors import did_you_mean

            known = sorted(train_keys | net_keys | sampler_keys)
            raise TokenswapError(f"unknown hypernet option {key!r}{did_you_mean(key, known)}")
    result = api.hypernet_train(
        model, corpus, out, eval_corpus=eval_corpus, max_bytes=max_bytes, device=device,
        resume=resume, steps=steps, minutes=minutes, batch_size=batch_size, seq_len=seq_len,
        lr=lr, identity_steps=identity_steps, checkpoint_every=checkpoint_every,
        eval_every=eval_every, seed=seed, sampler=sampler, hypernet=net,
        **{"sample_texts": sample_texts, **train_opts})
    import os

    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        loss = "n/a" if result.loss is None else f"{result.loss:.4f}"
        console.print(f"hypernet ({result.hypernet.num_parameters():,} parameters): "
                      f"{result.step} steps, last loss {loss}, {result.seconds:.0f} s "
                      f"-> {result.out}")



# --- tokenswap tune: continued training after a transfer (src/tokenswap/tuning) -------------
@app.command()
def tune(
    corpus: Annotated[list[str], typer.Option(help="Training text: files, dirs, globs, hf:name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output model directory.")],
    model: Annotated[str, typer.Option(
        "--model", "-m", help="Model to tune (e.g. a transferred model dir); any model spec.")],
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (schedule length).")] = None,
    minutes: Annotated[float | None, typer.Option(
        help="Training-time budget (evaluation and checkpoints not counted).")] = None,
    clock: Annotated[str, typer.Option(
        help="What --minutes counts: wall (clock time) or cpu (this process's CPU time, all "
             "threads; other jobs on a shared machine do not count).")] = "wall",
    eval_corpus: Annotated[list[str] | None, typer.Option(
        help="Held-out text scored in bits/byte during training (log.jsonl, best/).")] = None,
    stage: Annotated[str, typer.Option(
        help="What trains after the embedding warm-up: full, lora or embeddings.")] = "full",
    embedding_fraction: Annotated[float, typer.Option(
        help="First share of the run that trains the embeddings only.")] = 0.1,
    precision: Annotated[str, typer.Option(
        help="fp32, or bf16 (pure bfloat16; fast with native bf16 - AMX, AVX512-BF16, GPUs - "
             "and warned about where it is slower than fp32).")] = "fp32",
    batch_size: Annotated[int, typer.Option(help="Packed sequences per step (all ranks).")] = 16,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per rank per step.")] = 1,
    seq_len: Annotated[int, typer.Option(help="Tokens per packed sequence.")] = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate (body or adapters).")] = 1e-4,
    embedding_lr: Annotated[float | None, typer.Option(
        help="Peak learning rate of the embeddings (default: --lr).")] = None,
    schedule: Annotated[str, typer.Option(help="cosine, linear or constant.")] = "cosine",
    eval_every: Annotated[int, typer.Option(help="Steps between evaluations.")] = 50,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 50,
    fsdp: Annotated[bool, typer.Option(
        help="Shard the model over ranks (FSDP2) instead of replicating it.")] = False,
    max_bytes: Annotated[int | None, typer.Option(help="Read at most this much text.")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-O", help="More options KEY=VALUE (lora_rank, lora_alpha, lora_targets, "
                               "save_adapter, weight_decay, warmup_steps, grad_clip, ...).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (data order).")] = 0,
    resume: Annotated[bool, typer.Option(
        help="Continue from --out's checkpoint when there is one.")] = True,
    device: DeviceOpt = None,
) -> None:
    """Continue training a (transferred) model on your text; torchrun for several ranks."""
    import os

    from tokenswap import api

    result = api.tune(
        model, corpus, out, eval_corpus=eval_corpus, max_bytes=max_bytes, device=device,
        resume=resume, steps=steps, minutes=minutes, clock=clock, stage=stage,
        embedding_fraction=embedding_fraction, precision=precision, batch_size=batch_size,
        grad_accum=grad_accum, seq_len=seq_len, lr=lr, embedding_lr=embedding_lr,
        schedule=schedule, eval_every=eval_every, checkpoint_every=checkpoint_every, fsdp=fsdp,
        seed=seed, **parse_options(option or []))
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        loss = "n/a" if result.loss is None else f"{result.loss:.4f}"
        held = "" if result.eval_bpb is None else (
            f", held-out {result.eval_bpb:.4f} bits/byte (best {result.best_bpb:.4f} at step "
            f"{result.best_step} -> {result.out / 'best'})")
        console.print(f"tuned {result.step} steps in {result.train_seconds:.0f} s, last loss "
                      f"{loss}{held} -> {result.out}")
# --- end of tokenswap tune -------------------------------------------------------------------

@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Working directory for the demo's outputs.")] = Path(
        "tokenswap-demo"),
    domain: Annotated[str, typer.Option(help="de (German man pages) or code (Python stdlib).")] = "de",
    vocab_size: Annotated[int, typer.Option(help="Target vocabulary size.")] = 32000,
    heldout_bytes: Annotated[int, typer.Option(help="Bytes of held-out text to score.")] = 16000,
    device: DeviceOpt = None,
) -> None:
    """The packaged SmolLM2 gets a tokenizer trained on local text; compare random and mean."""
    from tokenswap.demo import run_demo

    report = run_demo(out, domain=domain, vocab_size=vocab_size, heldout_bytes=heldout_bytes,
                      device=device, console=console)
    print_report(report, title=f"SmolLM2-135M on held-out {domain} text ({heldout_bytes:,} bytes)")


# --- tokenswap bytes: exact byte-level probabilities (src/tokenswap/bytes) -----------------
bytes_app = typer.Typer(no_args_is_help=True, help=(
    "Exact byte-level probabilities from tokenized models: score text, generate from a prompt"
    " that ends anywhere (mid-token), ensemble models with different tokenizers."))
app.add_typer(bytes_app, name="bytes")
PruneOpt = Annotated[float, typer.Option(
    help="Drop token paths that carry less than this share of the probability of the text so"
         " far; 0 = exact sum over all tokenizations (errors past --max-nodes). The dropped"
         " probability is reported: it bounds the error.")]
MaxNodesOpt = Annotated[int, typer.Option(
    help="Most token paths kept per byte position (best first).")]


def _bytes_json_or(result: dict, as_json: bool, lines: list[str]) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for line in lines:
        console.print(line, highlight=False, markup=False)


@bytes_app.command("score")
def bytes_score(
    text: Annotated[str, typer.Option(help="Text to score (UTF-8).")],
    model: ModelOpt = "default",
    end_of_text: Annotated[bool, typer.Option(help="Also score the end of the text.")] = False,
    per_byte: Annotated[bool, typer.Option(help="Show the bits of every byte.")] = False,
    prune: PruneOpt = 1e-6,
    max_nodes: MaxNodesOpt = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: DeviceOpt = None,
) -> None:
    """Bits and bits per byte of TEXT, summed exactly over all its tokenizations."""
    from tokenswap.bytes.api import score_text

    result = score_text(model, text, end_of_text=end_of_text, device=device,
                        prune=prune or None, max_nodes=max_nodes)
    if not per_byte:
        result.pop("per_byte")
    lines = [f"{result['model']}: {result['bits']:.4f} bits over {result['bytes']} bytes = "
             f"{result['bits_per_byte']:.4f} bits/byte ({result['forward_passes']} forward passes,"
             f" {result['seconds']:.2f} s)"]
    if result["dropped_mass"] > 0:
        lines.append(f"pruned paths hold at most {result['dropped_mass']:.3g} probability")
    if per_byte:
        data = text.encode("utf-8")
        for i, bits in enumerate(result["per_byte"]):
            label = repr(data[i:i + 1]) if i < len(data) else "<end>"
            lines.append(f"  {i:4d} {label:>8} {bits:8.4f}")
    _bytes_json_or(result, as_json, lines)


@bytes_app.command("generate")
def bytes_generate(
    prompt: Annotated[str, typer.Option(help="Prompt; may end mid-word or with a space.")],
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="Model(s); several form a byte-level ensemble.")] = None,
    weight: Annotated[list[float] | None, typer.Option(
        help="Ensemble weight per --model (default equal).")] = None,
    combine: Annotated[str, typer.Option(
        help="Ensemble rule: mixture (mean of probabilities) or product (of experts).")] = "mixture",
    max_bytes: Annotated[int, typer.Option(help="Generate at most this many bytes.")] = 64,
    stop: Annotated[str | None, typer.Option(help="Stop when the output contains this.")] = None,
    greedy: Annotated[bool, typer.Option("--greedy/--sample", help="Argmax or sampling.")] = True,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    prune: PruneOpt = 1e-3,  # generation: speed (about a pass per token); score: 1e-6
    max_nodes: MaxNodesOpt = 64,
    exact_prompt: Annotated[bool, typer.Option(
        help="Sum over every tokenization of the whole prompt (a forward pass per prompt byte)"
             " instead of reading all but its last two words as the tokenizer splits them.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: DeviceOpt = None,
) -> None:
    """Generate bytes after PROMPT with exact next-byte distributions."""
    from tokenswap.bytes.api import generate_text
    from tokenswap.bytes.ensemble import get_combiner

    get_combiner(combine)  # unknown names fail before any model loads
    result = generate_text(model or ["default"], prompt, weights=weight, combine=combine,
                           max_bytes=max_bytes, stop=stop, greedy=greedy,
                           temperature=temperature, seed=seed, device=device,
                           prune=prune or None, max_nodes=max_nodes, exact_prompt=exact_prompt)
    passes = sum(m["forward_passes"] for m in result["members"])
    _bytes_json_or(result, as_json, [
        result["prompt"] + result["output"],
        f"-- {result['bytes']} bytes, stopped by {result['stop_reason']}, {passes} forward passes,"
        f" {result['seconds']:.2f} s"])
# --- end of tokenswap bytes -------------------------------------------------------------------


# --- tokenswap glitch / mixture (src/tokenswap/audit/glitch.py, mixture.py) ------------------
@app.command()
def glitch(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for glitch.json and glitch.md.")],
    model: ModelOpt = "default",
    max_verify: Annotated[int, typer.Option(
        help="Verify the N strongest candidates with repeat prompts (one forward pass per "
             "template each); 0 = indicators only.")] = 200,
    threshold: Annotated[float, typer.Option(
        help="Confirmed under-trained when the best repeat probability is below this.")] = 0.01,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward pass.")] = 16,
    controls: Annotated[int, typer.Option(
        help="Also verify N random ordinary tokens, for comparison.")] = 0,
    show: Annotated[int, typer.Option(help="Candidates printed.")] = 20,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    device: DeviceOpt = None,
) -> None:
    """Under-trained tokens (Land & Bartolo 2024): tokenizer analysis, weights, repeat prompts."""
    from tokenswap import api

    result = api.glitch(model, out=out, overwrite=overwrite, max_verify=max_verify,
                        threshold=threshold, batch_size=batch_size, controls=controls,
                        device=device, progress=True)
    table = Table(title=f"under-trained token candidates of {result.model} "
                        f"(indicator: {result.indicator})")
    for col in ("rank", "id", "token", "similarity", "norm", "max P(repeat)", "confirmed"):
        table.add_column(col, justify="left" if col == "token" else "right")
    for rank, c in enumerate(result.candidates[:show], 1):
        table.add_row(str(rank), str(c.id), repr(c.text), f"{c.similarity:.3f}", f"{c.norm:.3f}",
                      "-" if c.probability is None else f"{c.probability:.3g}",
                      "-" if c.confirmed is None else ("yes" if c.confirmed else "no"))
    console.print(table)
    console.print(f"{result.special} special, {result.undecodable} undecodable, "
                  f"{len(result.unreachable)} unreachable tokens; {result.confirmed} of "
                  f"{result.verified} verified candidates confirmed -> {out}")


@app.command()
def mixture(
    sample: Annotated[list[str], typer.Option(
        help="NAME=PATH: text of one category (files, dirs, globs); repeat per category.")],
    tokenizer: Annotated[str, typer.Option(
        "--tokenizer", "-t", help="A BPE tokenizer: dir, tokenizer.json or a model spec.")] = "default",
    max_bytes: Annotated[int, typer.Option(help="Read at most this much per category.")] = 2_000_000,
    steps: Annotated[int, typer.Option(help="Use the first T merges.")] = 3000,
    competitors: Annotated[int, typer.Option(
        help="Competing pairs per category and merge step.")] = 100,
    slack: Annotated[str, typer.Option(
        help="'paper' (one slack per step and per pair, v_t + v_p) or 'constraint' (one per "
             "constraint; slower).")] = "paper",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result as JSON.")] = None,
) -> None:
    """Infer a BPE tokenizer's training-data mixture from its merge list (Hayase et al. 2024)."""
    from tokenswap import api

    samples: dict[str, list[str]] = {}
    for item in sample:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise TokenswapError(f"--sample {item!r}: expected NAME=PATH, e.g. de=/usr/share/man/de")
        samples.setdefault(name.strip(), []).append(path.strip())
    result = api.mixture(tokenizer, samples, max_bytes=max_bytes, steps=steps,
                         competitors=competitors, slack=slack, progress=True)
    table = Table(title=f"inferred training mixture of {tokenizer} (first {result.steps} merges)")
    for col in ("category", "proportion", "sample bytes"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for name, value in result.proportions.items():
        table.add_row(name, f"{value:.1%}", f"{result.sample_bytes[name]:,}")
    console.print(table)
    console.print(f"{result.used_steps} merges constrain, {result.unseen_merges} occur in no "
                  f"sample; {result.constraints:,} constraints, slack {result.objective:.3g}")
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        console.print(f"wrote {json_out}")
# --- end of tokenswap glitch / mixture --------------------------------------------------------


# --- tokenswap audit: tokenizer metrics, parity and an HTML report (src/tokenswap/audit) ------
def parse_named(items: list[str], what: str) -> list[tuple[str, str]]:
    """``["de=a/", "de=b.txt", "en=c"]`` -> ``[("de", "a/"), ("de", "b.txt"), ("en", "c")]``."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise TokenswapError(f"{what} {item!r}: expected NAME=PATH, e.g. de=texts/de/")
        out.append((name.strip(), value.strip()))
    return out


@app.command("audit")
def audit_cmd(
    tokenizers: Annotated[list[str], typer.Argument(
        help="Tokenizers: dir, tokenizer.json, .model, or a model spec (default, HF dir, .gguf:"
             " only its tokenizer is read); NAME=TOK names one.")],
    corpus: Annotated[list[str], typer.Option(
        help="NAME=PATH: a language or domain and its text (files, dirs, globs; HTML becomes "
             "text); repeat per language. 'debian-reference[:en,de,...]' = the installed "
             "Debian Reference translations (parallel text).")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Directory for audit.json, report.html and the plots.")] = None,
    reference: Annotated[str, typer.Option(help="Language parity is measured against.")] = "en",
    max_bytes: Annotated[int | None, typer.Option(help="Read at most this much per corpus.")] = None,
    examples: Annotated[bool, typer.Option(help="Segmentation examples in the report.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON instead of tables.")] = False,
) -> None:
    """Tokenizer metrics per corpus, parity across languages, and an HTML report."""
    from tokenswap import api
    from tokenswap.audit.parity import debian_reference

    specs: dict[str, list[str]] = {}
    for item in corpus:
        if item.split(":", 1)[0] == "debian-reference":
            langs = item.split(":", 1)[1].split(",") if ":" in item else None
            for lang, spec in debian_reference(langs).items():
                specs.setdefault(lang, []).append(spec)
            continue
        for name, path in parse_named([item], "--corpus"):
            specs.setdefault(name, []).append(path)
    names, toks = [], []
    for item in tokenizers:
        name, sep, spec = item.partition("=")
        if sep and name and spec and not Path(item).exists():
            names.append(name)
            toks.append(spec)
        else:
            names.append(None)
            toks.append(item)
    labels = None
    if any(n is not None for n in names):
        labels = [n if n is not None else api._tokenizer_label(t)
                  for n, t in zip(names, toks, strict=True)]
    with console.status("auditing ...") as status:
        report = api.audit(toks, specs, out=out, overwrite=overwrite, names=labels,
                           reference=reference, max_bytes=max_bytes, examples=examples,
                           progress=lambda line: status.update(line))
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return
    print_audit(report)
    if out is not None:
        console.print(f"wrote {out / 'report.html'} and {out / 'audit.json'}")


def print_audit(report) -> None:
    from tokenswap.audit.report import HEADLINE, _fmt

    metrics = {m["name"]: m for m in report.metrics}
    names = report.tokenizer_names
    table = Table(title="tokenizers side by side")
    for col in ("corpus", "metric", *names):
        table.add_column(col, justify="left" if col in ("corpus", "metric") else "right")
    shown = list(HEADLINE) + (["parity"] if report.parity.get("ratios") else [])
    for c in report.corpora:
        for k, metric in enumerate(shown):
            label = metric if metric != "fertility" else f"fertility/{c['unit'][:4]}"
            values = [report.value(n, c["name"], metric) for n in names]
            cells = [("-" if v is None else f"{v:.2f}") if metric == "parity"
                     else _fmt(v, metrics[metric]) for v in values]
            table.add_row(c["name"] if k == 0 else "", label, *cells,
                          end_section=k == len(shown) - 1)
    console.print(table)
    vocab = Table(title="vocabularies")
    for col in ("metric", *names):
        vocab.add_column(col, justify="left" if col == "metric" else "right")
    vocab.add_row("family", *[t["family"] for t in report.tokenizers])
    for m in report.metrics:
        if m["scope"] == "vocab":
            vocab.add_row(m["name"], *[_fmt(t["vocab"].get(m["name"]), m)
                                       for t in report.tokenizers])
    console.print(vocab)
    console.print(f"{report.timing['bytes']:,} bytes per tokenizer, "
                  f"{report.timing['mb_per_s']:.2f} MB/s")
# --- end of tokenswap audit -------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own rich progress bars cover the long steps
    try:
        app(args=argv, standalone_mode=False)
    except TokenswapError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return err.exit_code
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
