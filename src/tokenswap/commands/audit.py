"""``tokenswap audit``: measure tokenizers per corpus, with parity across languages and a report.

The metrics live in :mod:`tokenswap.audit.metrics` (a registry), parity in
:mod:`tokenswap.audit.parity`, the report in :mod:`tokenswap.audit.report`; this module reads
the corpora, runs every tokenizer over them and assembles the report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.io.save import json_text


@dataclass
class Config:
    tokenizers: list[str] = option(help=(
        "Tokenizers: dir, tokenizer.json, .model, or a model spec (default, HF dir, .gguf: only "
        "its tokenizer is read); NAME=TOK names one."), argument=True)
    corpus: list[str] = option(help=(
        "NAME=PATH: a language or domain and its text (files, dirs, globs; HTML becomes text); "
        "repeat per language. 'debian-reference[:en,de,...]' = the installed Debian Reference "
        "translations (parallel text)."))
    out: Path | None = option(None, "Directory for audit.json, report.html and the plots.",
                              short="-o")
    reference: str = option("en", "Language parity is measured against.")
    max_bytes: int | None = option(None, "Read at most this much per corpus.")
    examples: bool = option(True, "Segmentation examples in the report.")
    overwrite: bool = option(False, "Replace an existing --out.")
    as_json: bool = option(False, "Print the JSON instead of tables.", flag="--json")


def parse_named(items: Sequence[str], what: str) -> list[tuple[str, str]]:
    """``["de=a/", "de=b.txt", "en=c"]`` -> ``[("de", "a/"), ("de", "b.txt"), ("en", "c")]``."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise TokenswapError(f"{what} {item!r}: expected NAME=PATH, e.g. de=texts/de/")
        out.append((name.strip(), value.strip()))
    return out


def run(cfg: Config, progress=None):
    """An :class:`~tokenswap.audit.report.AuditReport` of every tokenizer on every corpus."""
    from tokenswap.audit.parity import debian_reference

    specs: dict[str, list[str]] = {}
    for item in cfg.corpus or []:
        if item.split(":", 1)[0] == "debian-reference":
            langs = item.split(":", 1)[1].split(",") if ":" in item else None
            for lang, spec in debian_reference(langs).items():
                specs.setdefault(lang, []).append(spec)
            continue
        for name, path in parse_named([item], "--corpus"):
            specs.setdefault(name, []).append(path)
    names, toks = [], []
    for item in cfg.tokenizers or []:
        name, sep, spec = item.partition("=")
        if sep and name and spec and not Path(item).exists():
            names.append(name)
            toks.append(spec)
        else:
            names.append(None)
            toks.append(item)
    labels = None
    if any(n is not None for n in names):
        labels = [n if n is not None else tokenizer_label(t) for n, t in zip(names, toks, strict=True)]
    return audit_tokenizers(toks, specs, out=cfg.out, overwrite=cfg.overwrite, names=labels,
                            reference=cfg.reference, max_bytes=cfg.max_bytes,
                            examples=cfg.examples, progress=progress)


def show(report, cfg: Config, console) -> None:
    if cfg.as_json:
        print(json_text(report.to_dict(), ensure_ascii=False), end="")
        return
    print_audit(report, console)
    if cfg.out is not None:
        console.print(f"wrote {Path(cfg.out) / 'report.html'} and {Path(cfg.out) / 'audit.json'}")


def print_audit(report, console) -> None:
    from rich.table import Table

    from tokenswap.audit.report import HEADLINE, format_value

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
                     else format_value(v, metrics[metric]) for v in values]
            table.add_row(c["name"] if k == 0 else "", label, *cells,
                          end_section=k == len(shown) - 1)
    console.print(table)
    vocab = Table(title="vocabularies")
    for col in ("metric", *names):
        vocab.add_column(col, justify="left" if col == "metric" else "right")
    vocab.add_row("family", *[t["family"] for t in report.tokenizers])
    for m in report.metrics:
        if m["scope"] == "vocab":
            vocab.add_row(m["name"], *[format_value(t["vocab"].get(m["name"]), m)
                                       for t in report.tokenizers])
    console.print(vocab)
    console.print(f"{report.timing['bytes']:,} bytes per tokenizer, "
                  f"{report.timing['mb_per_s']:.2f} MB/s")


# ----------------------------------------------------------------------------- the audit


def tokenizer_label(spec) -> str:
    """A short name for a tokenizer spec (its file or directory name) or a loaded tokenizer."""
    from transformers import PreTrainedTokenizerBase

    if isinstance(spec, PreTrainedTokenizerBase):
        return Path(str(getattr(spec, "name_or_path", "") or "tokenizer")).name or "tokenizer"
    text = str(spec)
    path = Path(text)
    name = path.stem if path.suffix in (".json", ".model", ".gguf") else path.name or text
    if name in ("model", "tokenizer", "") and path.parent.name:
        name = path.parent.name
    return name


def audit_tokenizers(
    tokenizers: Sequence,
    corpora: dict,
    *,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    names: Sequence[str] | None = None,
    reference: str = "en",
    max_bytes: int | None = None,
    examples: bool = True,
    progress=None,
):
    """Measure what each tokenizer does to each corpus; parity against ``reference``.

    ``tokenizers`` are tokenizer paths, model specs (``"default"``, a HF dir, a ``.gguf``: only
    the tokenizer is used) or loaded tokenizers. ``corpora`` maps a language or domain name to
    corpus specs (files, directories, globs; HTML is reduced to text), to read documents or to
    a :class:`~tokenswap.audit.parity.ParallelCorpus`; ``max_bytes`` caps each corpus. Parity
    is computed for the corpora that share files (chapters) with ``reference`` (see
    :mod:`tokenswap.audit.parity`). With ``out`` the JSON, the HTML report and the plots are
    written there atomically. ``progress`` is called with a line of text per step.
    Returns an :class:`~tokenswap.audit.report.AuditReport`.
    """
    from transformers import PreTrainedTokenizerBase

    from tokenswap.audit.metrics import (
        METRICS,
        TokenizerInfo,
        corpus_metrics,
        encode_corpus,
        vocab_metrics,
    )
    from tokenswap.audit.parity import ParallelCorpus, pair_keys, parity, read_language
    from tokenswap.audit.report import AuditReport, pick_sample, segment
    from tokenswap.io.corpus import Document
    from tokenswap.io.models import as_tokenizer
    from tokenswap.io.save import atomic_dir, check_output_dir

    if not tokenizers:
        raise TokenswapError("no tokenizer to audit; pass at least one tokenizer or model spec")
    if not corpora:
        raise TokenswapError("no corpus to audit on; pass --corpus NAME=PATH")
    if names is not None and len(names) != len(tokenizers):
        raise TokenswapError(f"{len(names)} names for {len(tokenizers)} tokenizers")
    if out is not None:
        check_output_dir(out, overwrite=overwrite)
    say = progress or (lambda line: None)

    parallel: list[ParallelCorpus] = []
    for name, value in corpora.items():
        if isinstance(value, ParallelCorpus):
            parallel.append(value)
        elif isinstance(value, Sequence) and value and isinstance(value[0], Document):
            docs = list(value)
            parallel.append(ParallelCorpus(name, docs, pair_keys([d.source for d in docs], name)))
        else:
            parallel.append(read_language(name, value, max_bytes=max_bytes))
        say(f"read {name}: {len(parallel[-1].docs)} documents, {parallel[-1].n_bytes:,} bytes")

    labels = list(names) if names is not None else [tokenizer_label(t) for t in tokenizers]
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label}#{seen[label]}"

    report = AuditReport(metrics=[m.describe() for m in METRICS.values()])
    samples = {c.lang: pick_sample(c.texts) for c in parallel} if examples else {}
    report.examples = [{"corpus": lang, "text": text, "pieces": {}, "tokens": {}, "unk": {}}
                       for lang, text in samples.items()]
    counts: dict[str, dict] = {}
    encode_seconds = 0.0
    for spec, label in zip(tokenizers, labels, strict=True):
        tokenizer = as_tokenizer(spec)
        info = TokenizerInfo.from_tokenizer(tokenizer, label, spec=None if isinstance(
            spec, PreTrainedTokenizerBase) else str(spec))
        start = time.perf_counter()
        vocab = vocab_metrics(info)
        report.tokenizers.append({"name": label, "spec": info.spec,
                                  "family": info.vocab.family.value, "vocab": vocab,
                                  "seconds": time.perf_counter() - start})
        say(f"{label}: {info.size:,} tokens, {int(vocab['unreachable'])} unreachable")
        counts[label] = {}
        for corpus in parallel:
            enc = encode_corpus(info, corpus.texts)
            begin = time.perf_counter()
            values = corpus_metrics(enc)
            seconds = enc.seconds + time.perf_counter() - begin
            encode_seconds += seconds
            report.rows.append({"tokenizer": label, "corpus": corpus.lang, "metrics": values,
                                "tokens": enc.n_tokens, "bytes": enc.n_bytes,
                                "seconds": seconds, "mb_per_s": enc.n_bytes / 1e6 / seconds})
            if len(report.corpora) < len(parallel):
                report.corpora.append({
                    "name": corpus.lang, "docs": enc.n_docs, "bytes": enc.n_bytes,
                    "chars": enc.n_chars, "words": enc.n_words,
                    "chars_per_word": enc.chars_per_word,
                    "word_length_per_char": enc.word_length_per_char,
                    "unit": "word" if enc.spaced else "character"})
            counts[label][corpus.lang] = (corpus.keys, enc.doc_tokens.tolist())
            say(f"{label} on {corpus.lang}: {values['tokens_per_byte']:.4f} tokens/byte, "
                f"{enc.n_bytes / 1e6 / seconds:.2f} MB/s")
            del enc
        for example in report.examples:
            pieces = segment(info.backend, example["text"])
            example["pieces"][label] = pieces
            ids = sorted({i for p in pieces for i in p["ids"]})
            example["tokens"][label] = {str(i): info.backend.id_to_token(i) for i in ids}
            example["unk"][label] = info.unk_id

    if any(c.lang == reference for c in parallel):
        report.parity = {"reference": reference, "ratios": {
            label: {lang: p.to_dict() for lang, p in parity(by_lang, reference).items()}
            for label, by_lang in counts.items()}}
    total = sum(c["bytes"] for c in report.corpora)
    report.timing = {"encode_seconds": encode_seconds, "bytes": total,
                     "mb_per_s": total * len(labels) / 1e6 / max(encode_seconds, 1e-9)}
    if out is not None:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            report.write(tmp)
    return report
