"""Tokenizer metrics over a corpus: a registry of named metrics, each computed with numpy from
one batch encoding of the corpus.

:func:`encode_corpus` encodes every document once with the ``tokenizers`` batch encoder and
keeps flat arrays (:class:`Encoded`): the token ids, and for every token the byte range of the
text it covers. Every metric reads those arrays; none loops over tokens in Python.

Byte ranges come from the canonical bytes of the tokens (:mod:`tokenswap.vocab.bytes`): when a
document's tokens emit exactly the document's bytes (byte-level BPE, SentencePiece with byte
fallback: *lossless*), token ``i`` covers the bytes between the running sums of token lengths,
so even a token that holds half a UTF-8 character gets its exact range. That check is itself a
metric (``roundtrip``). A document that does not round-trip (WordPiece drops spaces and
lowercases; an NFKC normalizer rewrites characters) is encoded again with offsets, and the
tokenizer's character offsets are mapped to bytes.

Words are *whitespace words*: maximal runs of bytes that are not ASCII whitespace (space, tab,
newline, carriage return, form feed, vertical tab), never crossing a document boundary. A token
belongs to every word whose bytes it overlaps, so ``'Ġthe'`` counts for ``the`` and a token
spanning ``of the`` counts for both. Scripts written without spaces (Japanese, Chinese, Thai)
have few, long whitespace words: a sentence is one word. The word/character ratio that tells
them apart is weighted by characters - the length of the whitespace word the average character
sits in, ``sum(len**2) / sum(len)`` - because such text in practice is mixed with short Latin
words (commands, names, numbers) that pull a plain mean down. A corpus above
:data:`UNSPACED_CHARS_PER_WORD` is *unspaced* and its ``fertility`` is measured per character
instead of per word.

Vocabulary metrics (``scope="vocab"``) depend on the tokenizer alone: unreachable and
undecodable tokens (:mod:`tokenswap.audit.reachability`), tokens whose decoder output differs
from their canonical bytes, digit and whitespace tokens.

Add a metric with :func:`metric`::

    @metric("tokens_per_byte", summary="...", paper="...")
    def tokens_per_byte(enc: Encoded) -> float:
        return enc.n_tokens / enc.n_bytes

Left out: metrics that need a model (bits per byte: :mod:`tokenswap.scoring`), morphological
alignment (needs gold segmentations), and Unicode whitespace other than ASCII in word splitting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from tokenswap.errors import TokenswapError
from tokenswap.vocab.bytes import ByteVocab, TokenizerFamily

__all__ = ["METRICS", "UNSPACED_CHARS_PER_WORD", "Encoded", "Metric", "TokenizerInfo",
           "corpus_metrics", "decode_mismatches", "encode_corpus", "metric", "vocab_metrics"]

#: text whose characters sit in whitespace words longer than this (on average, weighted by
#: characters) is written without spaces. Measured on the Debian Reference as HTML text: en 8.2,
#: de 10.9, Python code 12.6; zh-cn 17.0, zh-tw 17.7, ja 19.3 (half of their text is untranslated
#: commands and Latin names; pure Japanese or Chinese prose is far above).
UNSPACED_CHARS_PER_WORD = 15.0

_SPACE = np.zeros(256, dtype=bool)
_SPACE[list(b" \t\n\r\x0b\x0c")] = True
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[list(b"0123456789")] = True


# ----------------------------------------------------------------------------- the tokenizer


@dataclass
class TokenizerInfo:
    """A tokenizer with per-id arrays of its canonical bytes, ready for vectorised lookups.

    ``flat[flat_start[i]:flat_start[i] + byte_len[i]]`` are the bytes token ``i`` emits
    (empty for special tokens, which emit none).
    """

    name: str
    tokenizer: Any  # transformers fast tokenizer or tokenizers.Tokenizer
    vocab: ByteVocab
    byte_len: np.ndarray  # (V,) int64
    flat_start: np.ndarray  # (V,) int64
    flat: np.ndarray  # (sum of byte_len,) uint8
    special: np.ndarray  # (V,) bool
    fallback: np.ndarray  # (V,) bool: SentencePiece '<0xNN>' byte tokens
    lead_space: np.ndarray  # (V,) bool: bytes start with b" "
    unk_id: int | None
    spec: str | None = None

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, name: str, spec: str | None = None) -> TokenizerInfo:
        vocab = ByteVocab.from_tokenizer(tokenizer)
        data = [b if b is not None else b"" for b in vocab.token_bytes]
        byte_len = np.fromiter((len(b) for b in data), dtype=np.int64, count=len(data))
        flat_start = np.concatenate([[0], np.cumsum(byte_len)[:-1]]).astype(np.int64)
        flat = np.frombuffer(b"".join(data), dtype=np.uint8)
        special = np.array([b is None for b in vocab.token_bytes], dtype=bool)
        fallback = np.zeros(len(vocab), dtype=bool)
        fallback[list(vocab.byte_fallback_ids.values())] = True
        lead_space = np.array([b[:1] == b" " for b in data], dtype=bool)
        return cls(name=name, tokenizer=tokenizer, vocab=vocab, byte_len=byte_len,
                   flat_start=flat_start, flat=flat, special=special, fallback=fallback,
                   lead_space=lead_space, unk_id=vocab.roles.get("unk"), spec=spec)

    @cached_property
    def backend(self) -> Any:
        """A copy of the ``tokenizers.Tokenizer`` without truncation or padding (a saved
        tokenizer may truncate to the model's context: an audit counts every token)."""
        from tokenizers import Tokenizer

        backend = getattr(self.tokenizer, "backend_tokenizer", self.tokenizer)
        if backend.truncation is None and backend.padding is None:
            return backend
        copy = Tokenizer.from_str(backend.to_str())
        copy.no_truncation()
        copy.no_padding()
        return copy

    @property
    def size(self) -> int:
        return len(self.byte_len)

    @cached_property
    def reachability(self):
        from tokenswap.audit.reachability import check_reachability

        return check_reachability(self.tokenizer)


# ----------------------------------------------------------------------------- encoding


@dataclass
class Encoded:
    """One corpus encoded by one tokenizer, as flat arrays over all documents.

    Byte offsets index :attr:`text`, the documents' UTF-8 bytes concatenated in order.
    """

    info: TokenizerInfo
    text: np.ndarray  # (B,) uint8
    doc_bounds: np.ndarray  # (D+1,) int64: document d is text[doc_bounds[d]:doc_bounds[d+1]]
    ids: np.ndarray  # (N,) int64
    tok_bounds: np.ndarray  # (D+1,) int64: document d's tokens are ids[tok_bounds[d]:...]
    start: np.ndarray  # (N,) int64: first byte each token covers
    end: np.ndarray  # (N,) int64: one past its last byte (start == end: covers nothing)
    lossless: np.ndarray  # (D,) bool: the document's tokens emit exactly its bytes
    seconds: float = 0.0
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def n_bytes(self) -> int:
        return len(self.text)

    @property
    def n_docs(self) -> int:
        return len(self.doc_bounds) - 1

    @property
    def doc_tokens(self) -> np.ndarray:
        """(D,) tokens per document."""
        return np.diff(self.tok_bounds)

    @cached_property
    def space(self) -> np.ndarray:
        return _SPACE[self.text]

    @cached_property
    def char_start(self) -> np.ndarray:
        """(B,) bool: the byte starts a UTF-8 character."""
        return (self.text & 0xC0) != 0x80

    @cached_property
    def n_chars(self) -> int:
        return int(self.char_start.sum())

    @cached_property
    def n_word_chars(self) -> int:
        """Characters that are not ASCII whitespace."""
        return int((self.char_start & ~self.space).sum())

    @cached_property
    def words(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) byte offsets of the whitespace words."""
        return _runs(~self.space, self.doc_bounds)

    @cached_property
    def word_tokens(self) -> np.ndarray:
        """(W,) number of tokens overlapping each whitespace word."""
        return self.overlap(*self.words)

    @property
    def n_words(self) -> int:
        return len(self.words[0])

    @cached_property
    def word_chars(self) -> np.ndarray:
        """(W,) characters in each whitespace word."""
        run = np.concatenate([[0], np.cumsum(self.char_start & ~self.space)])
        starts, ends = self.words
        return run[ends] - run[starts]

    @property
    def chars_per_word(self) -> float:
        """Mean characters per whitespace word."""
        return self.n_word_chars / max(self.n_words, 1)

    @property
    def word_length_per_char(self) -> float:
        """Characters of the whitespace word the average character sits in."""
        lengths = self.word_chars.astype(np.float64)
        return float((lengths**2).sum() / max(lengths.sum(), 1.0))

    @property
    def spaced(self) -> bool:
        """False for text written without spaces between words (see the module docstring)."""
        return self.word_length_per_char <= UNSPACED_CHARS_PER_WORD

    def overlap(self, span_start: np.ndarray, span_end: np.ndarray) -> np.ndarray:
        """Number of tokens whose byte range overlaps each span ``[span_start, span_end)``.

        Token starts and ends are non-decreasing, so two binary searches count the tokens that
        start before the span ends minus those that end before it starts.
        """
        before_end = np.searchsorted(self.start, span_end, side="left")
        ended = np.searchsorted(self.end, span_start, side="right")
        return (before_end - ended).astype(np.int64)


def _runs(mask: np.ndarray, doc_bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the maximal runs of True in ``mask``, cut at document boundaries.

    >>> s, e = _runs(np.array([1, 1, 0, 1, 1, 1], bool), np.array([0, 4, 6]))
    >>> s.tolist(), e.tolist()
    ([0, 3, 4], [2, 4, 6])
    """
    n = len(mask)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = np.zeros(n, dtype=bool)
    last = np.zeros(n, dtype=bool)
    inner = doc_bounds[(doc_bounds > 0) & (doc_bounds < n)]
    first[0] = True
    first[inner] = True
    last[-1] = True
    last[inner - 1] = True
    prev = np.concatenate([[False], mask[:-1]])
    nxt = np.concatenate([mask[1:], [False]])
    starts = np.flatnonzero(mask & (~prev | first))
    ends = np.flatnonzero(mask & (~nxt | last)) + 1
    return starts.astype(np.int64), ends.astype(np.int64)


def _batches(sizes: Sequence[int], budget: int) -> list[slice]:
    """Consecutive slices of documents holding about ``budget`` bytes each."""
    out, begin, used = [], 0, 0
    for i, size in enumerate(sizes):
        used += size
        if used >= budget:
            out.append(slice(begin, i + 1))
            begin, used = i + 1, 0
    if begin < len(sizes):
        out.append(slice(begin, len(sizes)))
    return out


def _ids_of(encodings: list) -> tuple[np.ndarray, np.ndarray]:
    """Flat ids and per-document token bounds of a list of ``tokenizers.Encoding``."""
    arrays = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
    counts = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    ids = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    return ids, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _canonical_offsets(info: TokenizerInfo, ids: np.ndarray, tok_bounds: np.ndarray,
                       text: np.ndarray, doc_bounds: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte ranges from running sums of token lengths, and which documents round-trip.

    Returns ``(start, end, lossless)``; ``start``/``end`` are only meaningful for the tokens of
    lossless documents. With :attr:`ByteVocab.strip_leading_space` the first token that emits
    bytes loses its leading space, as the decoder drops it.
    """
    n_docs = len(doc_bounds) - 1
    lens = info.byte_len[ids]  # a fresh array (fancy indexing)
    skip = np.zeros(len(ids), dtype=np.int64)
    tok_doc = np.repeat(np.arange(n_docs), np.diff(tok_bounds))
    if info.vocab.strip_leading_space and len(ids):
        emitting = np.flatnonzero(lens > 0)
        _, first_of_doc = np.unique(tok_doc[emitting], return_index=True)
        firsts = emitting[first_of_doc]
        firsts = firsts[info.lead_space[ids[firsts]]]
        skip[firsts] = 1
        lens[firsts] -= 1
    run = np.concatenate([[0], np.cumsum(lens)])
    decoded_len = run[tok_bounds[1:]] - run[tok_bounds[:-1]]
    doc_len = np.diff(doc_bounds)
    same_len = decoded_len == doc_len

    lossless = np.zeros(n_docs, dtype=bool)
    if same_len.any():
        selected = same_len[tok_doc]
        sel_lens = lens[selected]
        total = int(sel_lens.sum())
        begin = info.flat_start[ids[selected]] + skip[selected]
        gather = np.repeat(begin - (np.cumsum(sel_lens) - sel_lens), sel_lens) + np.arange(total)
        decoded = info.flat[gather]
        original = text[np.repeat(same_len, doc_len)]
        mismatch = np.concatenate([[0], np.cumsum(decoded != original)])
        bounds = np.concatenate([[0], np.cumsum(doc_len[same_len])])
        lossless[same_len] = (mismatch[bounds[1:]] - mismatch[bounds[:-1]]) == 0

    local = run[:-1] - run[tok_bounds[:-1]][tok_doc]  # offset inside the document
    start = doc_bounds[:-1][tok_doc] + local
    return start, start + lens, lossless


def _offsets_from_chars(encodings: list, texts: list[bytes], doc_base: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Byte ranges from the tokenizer's character offsets (documents that do not round-trip)."""
    starts, ends = [], []
    for enc, data, base in zip(encodings, texts, doc_base, strict=True):
        offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
        raw = np.frombuffer(data, dtype=np.uint8)
        lead = np.concatenate([np.flatnonzero((raw & 0xC0) != 0x80), [len(raw)]])
        chars = np.clip(offsets, 0, len(lead) - 1)
        starts.append(base + lead[chars[:, 0]])
        ends.append(base + lead[chars[:, 1]])
    empty = np.zeros(0, np.int64)
    return (np.concatenate(starts) if starts else empty, np.concatenate(ends) if ends else empty)


def encode_corpus(info: TokenizerInfo, texts: Sequence[str], *,
                  batch_bytes: int = 4 << 20) -> Encoded:
    """Encode ``texts`` (no special tokens added) and keep flat arrays for the metrics.

    Documents are encoded in batches of about ``batch_bytes`` with ``encode_batch_fast``
    (no offsets; the ``tokenizers`` thread pool encodes a batch's documents in parallel); only
    the documents that do not round-trip, and every document of a WordPiece tokenizer, are
    encoded with offsets.
    """
    if not texts:
        raise TokenswapError(f"no text to audit {info.name} on")
    begin = time.perf_counter()
    backend = info.backend
    fast = getattr(backend, "encode_batch_fast", backend.encode_batch)
    with_offsets = info.vocab.family is TokenizerFamily.WORDPIECE
    raw = [t.encode("utf-8") for t in texts]
    sizes = [len(b) for b in raw]
    doc_bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    text = np.frombuffer(b"".join(raw), dtype=np.uint8)

    all_ids, all_bounds, all_start, all_end, all_lossless = [], [], [], [], []
    tokens_before = 0
    for part in _batches(sizes, batch_bytes):
        batch = list(texts[part])
        encode = backend.encode_batch if with_offsets else fast
        encodings = encode(batch, add_special_tokens=False)
        ids, tok_bounds = _ids_of(encodings)
        byte_base = doc_bounds[part.start]
        local_docs = doc_bounds[part.start:part.stop + 1] - byte_base
        local_text = text[byte_base:doc_bounds[part.stop]]
        start, end, lossless = _canonical_offsets(info, ids, tok_bounds, local_text, local_docs)
        redo = np.flatnonzero(~lossless)
        if len(redo):
            if with_offsets:
                again = [encodings[d] for d in redo]
            else:  # the same ids, now with offsets
                again = backend.encode_batch([batch[d] for d in redo], add_special_tokens=False)
            s, e = _offsets_from_chars(again, [raw[part.start + d] for d in redo],
                                       local_docs[redo])
            redo_tokens = np.concatenate(
                [np.arange(tok_bounds[d], tok_bounds[d + 1]) for d in redo])
            start[redo_tokens], end[redo_tokens] = s, e
        all_ids.append(ids)
        all_bounds.append(tok_bounds[1:] + tokens_before)
        all_start.append(start + byte_base)
        all_end.append(end + byte_base)
        all_lossless.append(lossless)
        tokens_before += len(ids)
    # offsets of documents re-encoded with offsets can step back inside a document (normalizers
    # that expand characters); searchsorted needs non-decreasing arrays
    start = np.maximum.accumulate(np.concatenate(all_start))
    end = np.maximum.accumulate(np.concatenate(all_end))
    return Encoded(info=info, text=text, doc_bounds=doc_bounds, ids=np.concatenate(all_ids),
                   tok_bounds=np.concatenate([[0], *all_bounds]).astype(np.int64),
                   start=start, end=end, lossless=np.concatenate(all_lossless),
                   seconds=time.perf_counter() - begin)


# ----------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Metric:
    """A named metric: ``compute(Encoded)`` (corpus scope) or ``compute(TokenizerInfo)`` (vocab)."""

    name: str
    summary: str
    paper: str
    url: str
    scope: str  # "corpus" | "vocab"
    better: str | None  # "lower", "higher" or None (descriptive)
    fmt: str
    compute: Callable[[Any], float]

    def format(self, value: float | None) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "-"
        return format(value, self.fmt)

    def describe(self) -> dict:
        return {"name": self.name, "summary": self.summary, "paper": self.paper, "url": self.url,
                "scope": self.scope, "better": self.better}


METRICS: dict[str, Metric] = {}


def metric(name: str, *, summary: str, paper: str = "", url: str = "", scope: str = "corpus",
           better: str | None = None, fmt: str = ".3f") -> Callable:
    """Register ``fn`` as metric ``name`` (decorator); names are unique."""
    if scope not in ("corpus", "vocab"):
        raise ValueError(f"scope must be corpus or vocab, not {scope!r}")

    def register(fn: Callable[[Any], float]) -> Callable[[Any], float]:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = Metric(name, summary, paper, url, scope, better, fmt, fn)
        return fn

    return register


def corpus_metrics(enc: Encoded, names: Sequence[str] | None = None) -> dict[str, float]:
    """Every corpus-scope metric (or ``names``) of one encoded corpus."""
    chosen = [METRICS[n] for n in names] if names else [
        m for m in METRICS.values() if m.scope == "corpus"]
    return {m.name: float(m.compute(enc)) for m in chosen}


def vocab_metrics(info: TokenizerInfo, names: Sequence[str] | None = None) -> dict[str, float]:
    """Every vocabulary-scope metric (or ``names``) of one tokenizer."""
    chosen = [METRICS[n] for n in names] if names else [
        m for m in METRICS.values() if m.scope == "vocab"]
    return {m.name: float(m.compute(info)) for m in chosen}


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


RUST = ("Rust et al. 2021, How Good is Your Tokenizer? On the Monolingual Performance of "
        "Multilingual Language Models")
RUST_URL = "https://arxiv.org/abs/2012.15613"
GOLDMAN = ("Goldman et al. 2024, Unpacking Tokenization: Evaluating Text Compression and its "
           "Correlation with Model Performance")
GOLDMAN_URL = "https://arxiv.org/abs/2403.06265"
ALI = "Ali et al. 2024, Tokenizer Choice For LLM Training: Negligible or Crucial?"
ALI_URL = "https://arxiv.org/abs/2310.08754"
QTOK = ("Chelombitko et al. 2024, Qtok: A Comprehensive Framework for Evaluating Multilingual "
        "Tokenizer Quality in Large Language Models")
QTOK_URL = "https://arxiv.org/abs/2410.12989"
MAGIKARP = ("Land & Bartolo 2024, Fishing for Magikarp: Automatically Detecting Under-trained "
            "Tokens in Large Language Models")
MAGIKARP_URL = "https://arxiv.org/abs/2405.05417"
DIGITS = ("Singh & Strouse 2024, Tokenization counts: the impact of tokenization on arithmetic "
          "in frontier LLMs")
DIGITS_URL = "https://arxiv.org/abs/2402.14903"
NEOX = "Black et al. 2022, GPT-NeoX-20B: An Open-Source Autoregressive Language Model"
NEOX_URL = "https://arxiv.org/abs/2204.06745"


# --- corpus scope -------------------------------------------------------------------------


@metric("tokens_per_byte", summary="tokens per UTF-8 byte of text (sequence cost)",
        paper=GOLDMAN, url=GOLDMAN_URL, better="lower", fmt=".4f")
def _tokens_per_byte(enc: Encoded) -> float:
    return _ratio(enc.n_tokens, enc.n_bytes)


@metric("bytes_per_token", summary="UTF-8 bytes per token (compression)", paper=GOLDMAN,
        url=GOLDMAN_URL, better="higher", fmt=".2f")
def _bytes_per_token(enc: Encoded) -> float:
    return _ratio(enc.n_bytes, enc.n_tokens)


@metric("chars_per_token", summary="Unicode characters per token", paper=ALI, url=ALI_URL,
        better="higher", fmt=".2f")
def _chars_per_token(enc: Encoded) -> float:
    return _ratio(enc.n_chars, enc.n_tokens)


@metric("fertility", summary="tokens per whitespace word; per character for text written "
        "without spaces (ja, zh: see 'unit')", paper=RUST, url=RUST_URL, better="lower")
def _fertility(enc: Encoded) -> float:
    return _tokens_per_word(enc) if enc.spaced else _tokens_per_char(enc)


@metric("tokens_per_word", summary="tokens overlapping each whitespace word, averaged",
        paper=RUST, url=RUST_URL, better="lower")
def _tokens_per_word(enc: Encoded) -> float:
    return _ratio(enc.word_tokens.sum(), enc.n_words)


@metric("tokens_per_char", summary="tokens overlapping words per non-whitespace character",
        paper=RUST, url=RUST_URL, better="lower")
def _tokens_per_char(enc: Encoded) -> float:
    return _ratio(enc.word_tokens.sum(), enc.n_word_chars)


@metric("continued_words", summary="share of whitespace words split into 2 or more tokens",
        paper=RUST, url=RUST_URL, better="lower")
def _continued_words(enc: Encoded) -> float:
    return _ratio((enc.word_tokens >= 2).sum(), enc.n_words)


@metric("vocab_used", summary="share of the non-special vocabulary this text uses at least once",
        paper=QTOK, url=QTOK_URL)
def _vocab_used(enc: Encoded) -> float:
    info = enc.info
    used = np.bincount(enc.ids, minlength=info.size)[: info.size] > 0
    return _ratio((used & ~info.special).sum(), (~info.special).sum())


@metric("unk_rate", summary="share of tokens that are the unknown token (text lost)", paper=RUST,
        url=RUST_URL, better="lower", fmt=".4f")
def _unk_rate(enc: Encoded) -> float:
    unk = enc.info.unk_id
    return 0.0 if unk is None else _ratio((enc.ids == unk).sum(), enc.n_tokens)


@metric("byte_fallback_rate", summary="share of tokens that are <0xNN> byte-fallback tokens",
        paper=ALI, url=ALI_URL, better="lower", fmt=".4f")
def _byte_fallback_rate(enc: Encoded) -> float:
    return _ratio(enc.info.fallback[enc.ids].sum(), enc.n_tokens)


@metric("roundtrip", summary="share of the text's bytes in documents whose tokens decode to "
        "exactly the same bytes", paper=GOLDMAN, url=GOLDMAN_URL, better="higher")
def _roundtrip(enc: Encoded) -> float:
    return _ratio(np.diff(enc.doc_bounds)[enc.lossless].sum(), enc.n_bytes)


@metric("tokens_per_digit", summary="tokens overlapping runs of digits per digit "
        "(1 = digits split one by one)", paper=DIGITS, url=DIGITS_URL)
def _tokens_per_digit(enc: Encoded) -> float:
    starts, ends = _digit_runs(enc)
    return _ratio(enc.overlap(starts, ends).sum(), (ends - starts).sum())


@metric("whitespace_run_tokens", summary="tokens overlapping each run of 2+ whitespace bytes "
        "(indentation, blank lines); 0 = whitespace dropped", paper=NEOX, url=NEOX_URL,
        fmt=".2f")
def _whitespace_run_tokens(enc: Encoded) -> float:
    starts, ends = _runs(enc.space, enc.doc_bounds)
    long = (ends - starts) >= 2
    return _ratio(enc.overlap(starts[long], ends[long]).sum(), long.sum())


def _digit_runs(enc: Encoded) -> tuple[np.ndarray, np.ndarray]:
    if "digit_runs" not in enc._cache:
        enc._cache["digit_runs"] = _runs(_DIGIT[enc.text], enc.doc_bounds)
    return enc._cache["digit_runs"]


# --- vocabulary scope -----------------------------------------------------------------------


@metric("vocab_size", summary="token ids, special tokens included", scope="vocab", fmt=",.0f")
def _vocab_size(info: TokenizerInfo) -> float:
    return info.size


@metric("unreachable", summary="tokens that encoding their own text never produces (never "
        "trained)", paper=MAGIKARP, url=MAGIKARP_URL, scope="vocab", better="lower", fmt=",.0f")
def _unreachable(info: TokenizerInfo) -> float:
    return int(info.reachability.unreachable.sum())


@metric("undecodable", summary="tokens whose bytes are not valid UTF-8 alone (partial "
        "characters)", paper=MAGIKARP, url=MAGIKARP_URL, scope="vocab", fmt=",.0f")
def _undecodable(info: TokenizerInfo) -> float:
    return int(info.reachability.undecodable.sum())


@metric("decode_mismatch", summary="valid-UTF-8 tokens that the tokenizer's decoder turns into "
        "other text than their bytes", paper=MAGIKARP, url=MAGIKARP_URL, scope="vocab",
        better="lower", fmt=",.0f")
def _decode_mismatch(info: TokenizerInfo) -> float:
    return int(decode_mismatches(info).size)


@metric("digit_tokens", summary="tokens made only of digits (an optional leading space "
        "allowed)", paper=DIGITS, url=DIGITS_URL, scope="vocab", fmt=",.0f")
def _digit_tokens(info: TokenizerInfo) -> float:
    return int((_digit_token_lengths(info) > 0).sum())


@metric("max_digits_per_token", summary="most digits in one token (1 = digits split one by one)",
        paper=DIGITS, url=DIGITS_URL, scope="vocab", fmt=".0f")
def _max_digits(info: TokenizerInfo) -> float:
    lengths = _digit_token_lengths(info)
    return int(lengths.max()) if lengths.size else 0


@metric("whitespace_tokens", summary="tokens made only of whitespace", paper=NEOX, url=NEOX_URL,
        scope="vocab", fmt=",.0f")
def _whitespace_tokens(info: TokenizerInfo) -> float:
    return int((_whitespace_token_lengths(info) > 0).sum())


@metric("max_whitespace_token", summary="longest whitespace-only token in bytes", paper=NEOX,
        url=NEOX_URL, scope="vocab", fmt=".0f")
def _max_whitespace(info: TokenizerInfo) -> float:
    lengths = _whitespace_token_lengths(info)
    return int(lengths.max()) if lengths.size else 0


@metric("missing_bytes", summary="byte values no single token emits (text with them needs "
        "several tokens or is lost)", paper=MAGIKARP, url=MAGIKARP_URL, scope="vocab",
        better="lower", fmt=".0f")
def _missing_bytes(info: TokenizerInfo) -> float:
    return len(info.vocab.missing_bytes())


def _token_class_lengths(info: TokenizerInfo, table: np.ndarray, allow_lead_space: bool
                         ) -> np.ndarray:
    """(V,) length of each token whose bytes are all in ``table`` (0 otherwise); with
    ``allow_lead_space`` one leading space is allowed and not counted."""
    member = table[info.flat].astype(np.int64)
    run = np.concatenate([[0], np.cumsum(member)])
    inside = run[info.flat_start + info.byte_len] - run[info.flat_start]
    lengths = info.byte_len.copy()
    if allow_lead_space:
        lead = (info.lead_space & ~table[ord(" ")]).astype(np.int64)
        inside = inside + lead
        lengths = lengths - lead
    ok = (inside == info.byte_len) & (lengths > 0)
    return np.where(ok, lengths, 0)


def _digit_token_lengths(info: TokenizerInfo) -> np.ndarray:
    return _token_class_lengths(info, _DIGIT, allow_lead_space=True)


def _whitespace_token_lengths(info: TokenizerInfo) -> np.ndarray:
    return _token_class_lengths(info, _SPACE, allow_lead_space=False)


def decode_mismatches(info: TokenizerInfo) -> np.ndarray:
    """Ids of valid-UTF-8 tokens that the tokenizer's own decoder turns into other text.

    The decoder drops a leading space for tokenizers that prepend one (compared without it),
    and WordPiece shows a lone ``'##x'`` as ``'##x'`` (compared as ``'x'``): neither counts.
    What remains are real rewrites: a byte-level added token made of table characters, a
    decoder that strips or cleans text.
    """
    reach = info.reachability
    ids = np.flatnonzero(~info.special & ~reach.undecodable)
    if not ids.size:
        return ids
    decoded = info.backend.decode_batch([[int(i)] for i in ids], skip_special_tokens=False)
    strip = info.vocab.strip_leading_space
    wordpiece = info.vocab.family is TokenizerFamily.WORDPIECE
    bad = []
    for tid, text in zip(ids.tolist(), decoded, strict=True):
        want = info.vocab.token_bytes[tid].decode("utf-8")
        if strip and want.startswith(" "):
            want = want[1:]
        if wordpiece and text.startswith("##"):
            text = text[2:]
        if text != want:
            bad.append(tid)
    return np.asarray(bad, dtype=np.int64)
