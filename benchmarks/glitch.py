"""Under-trained tokens and data mixture inference on real models and tokenizers.

1. ``tokenswap glitch`` on the packaged SmolLM2-135M-Instruct: candidates, verified with repeat
   prompts, against random ordinary tokens (controls) verified the same way.
2. The same on SmolLM2 transferred (``mean``) to the shared 32k German BPE, candidates limited
   to the new tokens; and what ``transfer --report-undertrained`` lists.
3. Mixture inference on byte-level BPEs trained here on known mixtures of German man pages,
   English man pages and Python's standard library (samples disjoint from the training text),
   then on the SmolLM2 and Gemma 3 tokenizers with en/de/ru/code samples.

    python benchmarks/glitch.py [--small]

Writes results/glitch.json and results/glitch.md.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from common import (
    CORPORA,
    corpus_split,
    gemma_dir,
    machine,
    markdown_table,
    target_tokenizer,
    write_results,
)

from tokenswap.demo import take_bytes


def glitch_rows(result, n: int = 15) -> list[list]:
    return [[c.id, repr(c.text)[:40], round(c.similarity, 3), round(c.norm, 3),
             "-" if c.probability is None else f"{c.probability:.2g}",
             "-" if c.confirmed is None else ("yes" if c.confirmed else "no")]
            for c in result.candidates[:n]]


def summary(result) -> dict:
    verified = [c.probability for c in result.candidates[:result.verified]]
    controls = [c.probability for c in result.controls]
    return {
        "vocab": result.vocab_size, "indicator": result.indicator,
        "reference": f"{result.reference_size} {result.reference_kind}",
        "special": result.special, "undecodable": result.undecodable,
        "unreachable": len(result.unreachable), "verified": result.verified,
        "confirmed": result.confirmed,
        "candidates_median_p": float(np.median(verified)) if verified else None,
        "controls": len(controls),
        "controls_below_threshold": int(sum(p < result.threshold for p in controls)),
        "controls_median_p": float(np.median(controls)) if controls else None,
        "seconds": result.seconds,
    }


def mixture_texts(names: list[str], budget: int) -> dict[str, list[str]]:
    """Paragraphs of each corpus in random order (training text and samples drawn alike)."""
    from tokenswap.io.corpus import read_corpus

    out = {}
    for name in names:
        docs = read_corpus(CORPORA[name], max_bytes=budget)
        paragraphs = [p + "\n\n" for d in docs for p in d.text.split("\n\n") if p.strip()]
        random.Random(0).shuffle(paragraphs)
        out[name] = paragraphs
    return out


def known_mixtures(texts, total: int, vocab: int, steps: int) -> list[dict]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from tokenswap.audit.mixture import infer_mixture

    rows = []
    for mix in ({"de": 0.6, "en": 0.3, "code": 0.1}, {"de": 0.2, "en": 0.2, "code": 0.6},
                {"de": 0.1, "en": 0.8, "code": 0.1}):
        train, samples = [], {}
        for name, share in mix.items():
            train += take_bytes(texts[name][::2], int(share * total))
            samples[name] = take_bytes(texts[name][1::2], total // 2)
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.train_from_iterator(train, trainers.BpeTrainer(
            vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False))
        result = infer_mixture(tok, samples, steps=steps)
        error = max(abs(result.proportions[k] - v) for k, v in mix.items())
        rows.append({"true": mix, "inferred": result.proportions, "max_abs_error": error,
                     **{k: getattr(result, k) for k in ("steps", "used_steps", "constraints")},
                     "seconds": result.seconds})
        print("mixture", mix, {k: round(v, 3) for k, v in result.proportions.items()}, flush=True)
    return rows


def by_rank(top: list[dict]) -> str:
    """Share of confirmed candidates among the first 10, 25, 50, ... (precision by rank)."""
    cuts = [n for n in (10, 25, 50, 100, 200) if n <= len(top)]
    return ", ".join(f"top {n} {sum(c['confirmed'] for c in top[:n])}/{n}" for n in cuts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="A quick run (fewer tokens/merges).")
    args = parser.parse_args()
    small = args.small
    torch.manual_seed(0)
    from tokenswap import api
    from tokenswap.audit.glitch import find_glitch_tokens
    from tokenswap.io.models import load_model, load_tokenizer
    from tokenswap.vocab.pair import Provenance, build_pair

    payload: dict = {"machine": machine(), "small": small}
    md: list[str] = ["# Under-trained tokens and data mixture inference", "",
                     f"Run: `python benchmarks/glitch.py{' --small' if small else ''}`.", ""]
    verify, controls = (24, 12) if small else (100, 50)

    # 1. SmolLM2 itself
    bundle = load_model("default")
    start = time.perf_counter()
    smol = find_glitch_tokens(bundle, max_verify=verify, controls=controls)
    payload["smollm2"] = {**summary(smol), "wall": time.perf_counter() - start,
                          "top": [vars(c) for c in smol.candidates[:verify]],
                          "control_tokens": [vars(c) for c in smol.controls]}
    print("smollm2", summary(smol), flush=True)
    md += ["## SmolLM2-135M-Instruct", "",
           f"{smol.vocab_size:,} tokens, {smol.special} special, {smol.undecodable} undecodable, "
           f"{len(smol.unreachable)} unreachable; reference: {smol.reference_size} "
           f"{smol.reference_kind} tokens. {smol.confirmed} of {smol.verified} top candidates "
           f"confirmed (max repeat probability < {smol.threshold:g}); random ordinary tokens "
           f"below the threshold: {payload['smollm2']['controls_below_threshold']} of "
           f"{len(smol.controls)} (median p {payload['smollm2']['controls_median_p']:.3g} vs "
           f"{payload['smollm2']['candidates_median_p']:.3g} for candidates). "
           f"Confirmed by rank: {by_rank(payload['smollm2']['top'])}.", "",
           markdown_table(["id", "token", "similarity", "norm", "max P(repeat)", "confirmed"],
                          glitch_rows(smol)), ""]

    # 2. SmolLM2 transferred to the German 32k BPE (mean init)
    train, _ = corpus_split("de", 40_000_000, 24_000)
    tok_dir = target_tokenizer("de", train, 32000, like="default")
    target = load_tokenizer(tok_dir)
    result = api.transfer(load_model("default"), target, method="mean", report_undertrained=30)
    pair = build_pair(bundle.tokenizer, target)
    new_ids = np.flatnonzero((pair.provenance != Provenance.EXACT)
                             & (pair.provenance != Provenance.SPECIAL))
    moved = find_glitch_tokens(result.bundle, max_verify=verify, controls=controls,
                               only_ids=new_ids)
    payload["transferred"] = {**summary(moved), "new_tokens": len(new_ids),
                              "report_undertrained": result.undertrained,
                              "top": [vars(c) for c in moved.candidates[:verify]],
                              "control_tokens": [vars(c) for c in moved.controls]}
    print("transferred", summary(moved), len(result.undertrained or []), flush=True)
    md += ["## SmolLM2 transferred to a 32k German BPE (`mean`), new tokens only", "",
           f"{len(new_ids):,} new (non-exact) tokens; `--report-undertrained 30` listed "
           f"{len(result.undertrained or [])}: "
           + ", ".join(repr(t['text']) for t in (result.undertrained or [])[:12]) + ". "
           f"{moved.confirmed} of {moved.verified} top candidates confirmed; controls below "
           f"threshold: {payload['transferred']['controls_below_threshold']} of "
           f"{len(moved.controls)}.", "",
           markdown_table(["id", "token", "similarity", "norm", "max P(repeat)", "confirmed"],
                          glitch_rows(moved)), ""]
    del result, moved

    # 3. Mixture inference
    from tokenswap.audit.mixture import infer_mixture

    budget = 2_000_000 if small else 6_000_000
    texts = mixture_texts(["de", "en", "code", "ru"], budget)
    total, vocab, steps = (1_000_000, 2000, 1500) if small else (3_000_000, 5256, 3000)
    known = known_mixtures(texts, total, vocab, steps)
    payload["known_mixtures"] = known
    md += ["## Mixture inference on BPEs trained here on known mixtures", "",
           f"Byte-level BPE, {vocab} tokens, trained on {total / 1e6:.0f} MB of the mixture "
           f"(even paragraphs); {total / 2e6:.1f} MB samples per category (odd paragraphs); "
           f"first {steps} merges, 100 competitors per category, the paper's slack.", "",
           markdown_table(["true de/en/code", "inferred de/en/code", "max abs error", "seconds"],
                          [["/".join(f"{r['true'][k]:.2f}" for k in ("de", "en", "code")),
                            "/".join(f"{r['inferred'][k]:.3f}" for k in ("de", "en", "code")),
                            r["max_abs_error"], sum(r["seconds"].values())] for r in known]), ""]
    samples = {k: take_bytes(texts[k][1::2], 2_000_000) for k in ("en", "de", "ru", "code")}
    real = {}
    for name, tok in (("SmolLM2", bundle.tokenizer), ("Gemma 3", load_tokenizer(gemma_dir()))):
        r = infer_mixture(tok, samples, steps=steps)
        real[name] = r.to_dict()
        print("mixture", name, {k: round(v, 3) for k, v in r.proportions.items()}, flush=True)
    payload["tokenizers"] = real
    md += ["## Inferred mixtures of real tokenizers (relative to these four categories)", "",
           markdown_table(["tokenizer", "en", "de", "ru", "code", "merges used", "seconds"],
                          [[n, *(f"{r['proportions'][k]:.3f}" for k in ("en", "de", "ru", "code")),
                            f"{r['used_steps']}/{r['steps']}", sum(r["seconds"].values())]
                           for n, r in real.items()]), "",
           "Gemma's merge list comes from the GGUF conversion (every split of a token, in "
           "vocabulary order), not from training order; SentencePiece words are split "
           "approximately (`merge_counts.SP_WORDS`). Read its row as a rough ordering."]
    write_results("glitch", payload, "\n".join(md))


if __name__ == "__main__":
    main()
