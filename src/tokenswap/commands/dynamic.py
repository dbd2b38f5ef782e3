"""``tokenswap dynamic``: merge a batch's frequent token pairs, prefill with the merged tokens.

:mod:`tokenswap.dynamic` (Feher et al., arXiv 2411.18553). The texts are one batch: merged to
``--reduction`` (or ``--merges`` rounds), the merged tokens embedded by the hypernet (the one
shipped for the model, or ``--hypernet DIR``) or by an init method (``--method mean``). With
``--continuation-bytes N`` the last N bytes of every text are scored over the base vocabulary
after its merged context and after its base-tokenized context (same bytes, same model); with
``--generate N``, N greedy base tokens follow the first text's merged context.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.io.save import json_text


@dataclass
class Config:
    text: list[str] = option(help="A text of the batch (repeatable).", default_factory=list)
    corpus: list[str] = option(default_factory=list, help="Texts of the batch from files, "
                               "dirs, globs, man:, hf:NAME (one text per document).")
    model: str = option("default", "Model: HF dir, hub id, .gguf file, or 'default' "
                                   "(SmolLM2-135M).", short="-m")
    reduction: float | None = option(0.3, "Merge until the batch has this share fewer tokens "
                                          "than its base tokenization, in [0, 1).")
    merges: int | None = option(None, "Stop after this many merges (with --reduction: "
                                      "whichever comes first).")
    method: str = option("hypernet", "Embeddings of merged tokens: hypernet, or an init method "
                                     "that needs only the model (mean, random, ...).")
    hypernet: str | None = option(None, "Hypernet directory (`tokenswap hypernet train`); "
                                        "default: the one shipped for the model.")
    allow_other_base: bool = option(False, "Apply --hypernet to a model that is neither its "
                                           "base nor a fine-tuned variant of it.")
    continuation_bytes: int = option(0, "Score about the last N bytes of each text after its "
                                        "merged and its base-tokenized context (0: no scoring).")
    generate: int = option(0, "Greedy base tokens after the first text's merged context.")
    max_bytes: int | None = option(None, "Read at most this many bytes of --corpus.")
    batch_size: int = option(4, "Texts per forward pass when scoring.")
    cache_size: int = option(65536, "Merged-token embeddings kept (LRU, keyed by bytes).")
    json_out: Path | None = option(None, "Write the result as JSON to this file.", flag="--json")
    overwrite: bool = option(False, "Replace an existing --json file.")
    device: str | None = option(None, "torch device, e.g. cpu, cuda, cuda:1.")


def _texts(cfg: Config) -> list[str]:
    from tokenswap.io.corpus import corpus_texts

    texts = list(cfg.text)
    if cfg.corpus:
        texts += corpus_texts(cfg.corpus, max_bytes=cfg.max_bytes) or []
    if not texts:
        raise TokenswapError("no text: pass --text or --corpus")
    return texts


def run(cfg: Config) -> dict:
    from tokenswap.io.save import check_output_file

    if cfg.reduction is None and cfg.merges is None:
        raise TokenswapError("give --reduction or --merges")
    if cfg.reduction is not None and not 0 <= cfg.reduction < 1:
        raise TokenswapError(f"--reduction must be in [0, 1), got {cfg.reduction}")
    for name in ("merges", "continuation_bytes", "generate", "batch_size", "cache_size"):
        value = getattr(cfg, name)
        least = 1 if name in ("batch_size", "cache_size") else 0
        if value is not None and value < least:
            raise TokenswapError(f"--{name.replace('_', '-')} must be at least {least}, "
                                 f"got {value}")
    if cfg.method != "hypernet":
        from tokenswap.init.registry import get_method

        get_method(cfg.method)  # unknown names fail before the model loads
    if cfg.json_out is not None:
        check_output_file(cfg.json_out, overwrite=cfg.overwrite)
    texts = _texts(cfg)
    result = dynamic(cfg, texts)
    if cfg.json_out is not None:
        from tokenswap.io.save import write_file

        write_file(cfg.json_out, json_text(result), overwrite=cfg.overwrite)
    return result


def dynamic(cfg: Config, texts: list[str]) -> dict:
    from tokenswap.commands.transfer import bind_hypernet
    from tokenswap.dynamic import merge_levels
    from tokenswap.dynamic.embed import MergedEmbeddings
    from tokenswap.dynamic.prefill import (
        check_model,
        generate,
        score_continuations,
        split_continuation,
    )
    from tokenswap.hypernet.model import SourceEmbeddings
    from tokenswap.hypernet.shipped import DEFAULT
    from tokenswap.io.models import load_model

    bundle = load_model(cfg.model, device=cfg.device)
    check_model(bundle.model)
    tok = bundle.tokenizer
    if cfg.continuation_bytes:
        pairs = [split_continuation(tok, t, cfg.continuation_bytes) for t in texts]
        contexts, continuations = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        contexts, continuations = texts, []
    hypernet = None
    if cfg.method == "hypernet":
        hypernet = bind_hypernet(cfg.hypernet or DEFAULT, bundle,
                                 allow_other_base=cfg.allow_other_base, device=cfg.device)
    start = time.perf_counter()
    reductions = () if cfg.reduction is None else (0.0, cfg.reduction)
    levels = merge_levels(tok, contexts, reductions, max_merges=cfg.merges)
    base, merged = (levels if len(levels) == 2 else (None, levels[0]))
    merge_seconds = time.perf_counter() - start
    embeddings = MergedEmbeddings(SourceEmbeddings.from_bundle(bundle), tok, method=cfg.method,
                                  hypernet=hypernet, capacity=cfg.cache_size)
    start = time.perf_counter()
    embeddings.rows([merged.new_tokens[k] for k in merged.used_new_tokens()])
    counts = Counter(t for s in merged.sequences for t in s if t >= merged.base_size)
    result = {
        "model": bundle.name, "method": cfg.method,
        **({"hypernet": str(getattr(hypernet, "path", "in memory")),
            "hypernet_base": hypernet.base_match} if hypernet is not None else {}),
        "batch": merged.to_dict(), "merge_seconds": merge_seconds,
        "embed_seconds": time.perf_counter() - start,
        "top_new_tokens": [{"bytes": merged.token_bytes(t).decode("utf-8", "backslashreplace"),
                            "count": n} for t, n in counts.most_common(10)],
    }
    if continuations:
        if base is None:
            base = merge_levels(tok, contexts, (0.0,))[0]
        scores = {}
        for name, batch in (("base", base), ("dynamic", merged)):
            start = time.perf_counter()
            s = score_continuations(bundle.model, tok, batch, continuations, embeddings,
                                    batch_size=cfg.batch_size)
            scores[name] = {**s.to_dict(), "seconds": time.perf_counter() - start}
        scores["bpb_ratio"] = (scores["dynamic"]["bits_per_byte"]
                               / scores["base"]["bits_per_byte"])
        result["continuation"] = scores
    if cfg.generate:
        ids = generate(bundle.model, tok, merged, embeddings, max_new_tokens=cfg.generate)
        result["generated"] = tok.decode(ids, skip_special_tokens=True)
    result["cache"] = embeddings.stats.to_dict()
    return result


def show(result: dict, cfg: Config, console) -> None:
    b = result["batch"]
    lines = [f"{result['model']}: {b['texts']} texts, {b['base_tokens']:,} -> {b['tokens']:,} "
             f"tokens ({100 * b['reduction']:.1f}% fewer) after {b['merges']} merges; "
             f"{b['new_tokens']} new tokens embedded by {result['method']}",
             "most frequent new tokens: " + ", ".join(repr(t["bytes"]) + f" x{t['count']}"
                                                      for t in result["top_new_tokens"])]
    if "continuation" in result:
        c = result["continuation"]
        lines.append(f"continuation ({c['base']['bytes']:,} bytes): base context "
                     f"{c['base']['bits_per_byte']:.4f} bits/byte, dynamic context "
                     f"{c['dynamic']['bits_per_byte']:.4f} (x{c['bpb_ratio']:.4f})")
    if "generated" in result:
        lines.append(f"generated: {result['generated']!r}")
    cache = result["cache"]
    lines.append(f"embedding cache: {cache['hits']} hits, {cache['misses']} misses")
    for line in lines:
        console.print(line, highlight=False, markup=False)
    if cfg.json_out is not None:
        console.print(f"wrote {cfg.json_out}", highlight=False)
