"""Static auxiliary embeddings for the target vocabulary, learned from target-language text.

FOCUS (Dobler & de Melo, EMNLP 2023, arXiv 2305.14481) and OMP-style methods need a space in
which *target* tokens can be compared with each other, before any model knows them. Following
FOCUS, we tokenize ``ctx.corpus`` with the target tokenizer and train fastText (Bojanowski et
al., "Enriching Word Vectors with Subword Information", TACL 2017) on the token sequences:
every token is one "word", spelled by its token string (``Ġschnell``, ``▁Haus``, ``##en``), so
fastText's character n-grams run over the token's surface form.

Three kinds of rows come out (:class:`AuxiliaryEmbeddings`):

- ``known``: the token occurs at least ``min_count`` times; its vector is fastText's (its own
  vector averaged with its n-gram vectors).
- ``subword``: rarer or unseen, but some of its character n-grams were trained (they occur in
  known tokens); its vector is the mean of those trained n-gram vectors only. FOCUS's reference
  implementation leaves such tokens at random; fastText's subword vectors are its own reason
  for using fastText, so we use them.
- neither: an all-zero row (no trained n-gram at all, or a special token); callers must give
  those tokens their own fallback.

Every method that trains this space (``focus``, and ``omp`` without a donor) takes its options,
:class:`AuxiliaryOptions` (``aux_dim``, ``aux_epochs``, ``aux_min_count``): the method's options
class inherits them, so one name means the same model for every method.

Training is deterministic given ``ctx.seed``: gensim runs with one worker thread, because
several workers interleave updates nondeterministically. Measured on a 2-core machine here with
10 MB of German man pages (2.7 M target tokens, 32k vocabulary): tokenizing ~10 s, skip-gram
~31 s per epoch (CBOW ~18 s), so ~3 minutes at the defaults; two workers were no faster.

Left out: word-level (pre-trained) fastText vectors, FOCUS's other auxiliary mode, which needs a
download; and any caching on disk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.init.registry import InitContext

MIN_KNOWN = 50  # fewer known tokens than this (or a tenth of V_t) and the space says nothing
_CACHE_KEY = "auxiliary"
_CHUNK = 1000  # tokens per fastText "sentence" (gensim silently truncates at 10,000)


@dataclass(frozen=True)
class AuxiliaryOptions:
    """Options of the fastText space of target tokens; inherited by the options of every method
    that trains it."""

    aux_dim: int = option(100, "Dimension of the fastText vectors of the target tokens.",
                          why="gensim's default vector size; not tuned")
    aux_epochs: int = option(5, "fastText training epochs over the tokenized --corpus.",
                             why="gensim's default; not tuned")
    aux_min_count: int = option(
        3, "Occurrences in the tokenized --corpus that give a target token its own vector; "
           "rarer tokens get subword vectors.",
        why="not tuned (gensim's default is 5)")

    def __post_init__(self) -> None:
        for name in ("aux_dim", "aux_epochs", "aux_min_count"):
            if getattr(self, name) < 1:
                raise TokenswapError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class AuxiliaryEmbeddings:
    """fastText vectors for the target vocabulary, one row per target id."""

    matrix: torch.Tensor  # (V_t, dim) float32; zero rows where neither known nor subword
    known: torch.Tensor  # (V_t,) bool: occurs >= min_count times in the corpus
    subword: torch.Tensor  # (V_t,) bool: not known, vector from trained character n-grams
    counts: np.ndarray  # (V_t,) int64: occurrences in the tokenized corpus
    corpus_tokens: int  # tokens in the tokenized corpus

    @property
    def defined(self) -> torch.Tensor:
        """(V_t,) bool: rows that carry a vector (known or subword)."""
        return self.known | self.subword

    def describe(self) -> str:
        n = len(self.known)
        return (f"auxiliary fastText: {int(self.known.sum()):,} of {n:,} target tokens known, "
                f"{int(self.subword.sum()):,} from subwords, "
                f"{n - int(self.defined.sum()):,} without a vector "
                f"({self.corpus_tokens:,} corpus tokens)")


def auxiliary_embeddings(ctx: InitContext, *, dim: int = 100, min_count: int = 3,
                         epochs: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Static embeddings for the TARGET vocabulary learned from ``ctx.corpus``.

    Returns ``(matrix (V_t, dim) float32, known (V_t,) bool)`` where ``known`` marks tokens seen
    at least ``min_count`` times. Rows of tokens that are not known hold fastText subword
    vectors where some of their character n-grams were trained, else zeros; see
    :func:`auxiliary_space` for the full picture. Cached in ``ctx.cache``, so the
    input/output/bias passes of one transfer train once (they share the cache).

    Raises :class:`~tokenswap.errors.TokenswapError` when ``ctx.corpus`` is missing or empty, or
    too small for ``MIN_KNOWN`` tokens to be known.
    """
    aux = auxiliary_space(ctx, dim=dim, min_count=min_count, epochs=epochs)
    return aux.matrix, aux.known


def auxiliary_space(ctx: InitContext, *, dim: int = 100, min_count: int = 3, epochs: int = 5,
                    window: int = 5, buckets: int | None = None) -> AuxiliaryEmbeddings:
    """:func:`auxiliary_embeddings` with the subword mask and counts (same cache)."""
    if ctx.target_tokenizer is None:
        raise TokenswapError("auxiliary embeddings need the target tokenizer")
    texts = [t for t in (ctx.corpus or []) if t and not t.isspace()]
    if not texts:
        raise TokenswapError("this method needs target-language text to learn auxiliary "
                             "embeddings from: pass --corpus")
    key = (corpus_fingerprint(texts), id(ctx.target_tokenizer), dim, min_count, epochs, window,
           buckets, ctx.seed)
    cache = ctx.cache.setdefault(_CACHE_KEY, {})
    if key not in cache:
        cache[key] = _train(texts, ctx.target_tokenizer, dim=dim, min_count=min_count,
                            epochs=epochs, window=window, buckets=buckets, seed=ctx.seed)
    return cache[key]


def corpus_fingerprint(texts: list[str]) -> str:
    """A content hash of ``texts``: caches keyed by it survive a new list of the same texts."""
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def token_words(tokenizer) -> list[str]:
    """One distinct string per target id: the token string, made unique with ``\\x00id``."""
    n = len(tokenizer)
    words = tokenizer.convert_ids_to_tokens(list(range(n)))
    seen: set[str] = set()
    out = []
    for i, w in enumerate(words):
        w = f"\x00{i}" if w is None else w
        if w in seen:
            w = f"{w}\x00{i}"
        seen.add(w)
        out.append(w)
    return out


def _sentences(texts: list[str], tokenizer, words: list[str]) -> tuple[list[list[str]], np.ndarray]:
    """The corpus as fastText sentences of token strings, and each id's count."""
    n = len(words)
    counts = np.zeros(n, dtype=np.int64)
    sentences: list[list[str]] = []
    batch = 256
    for start in range(0, len(texts), batch):
        encoded = tokenizer(texts[start:start + batch], add_special_tokens=False)["input_ids"]
        for ids in encoded:
            if not ids:
                continue
            arr = np.asarray(ids, dtype=np.int64)
            arr = arr[arr < n]
            counts += np.bincount(arr, minlength=n)
            for piece in range(0, len(arr), _CHUNK):
                sentences.append([words[i] for i in arr[piece:piece + _CHUNK]])
    return sentences, counts


def _train(texts: list[str], tokenizer, *, dim: int, min_count: int, epochs: int, window: int,
           buckets: int | None, seed: int) -> AuxiliaryEmbeddings:
    try:
        from gensim.models.fasttext import FastText
    except ImportError as err:
        raise TokenswapError("auxiliary embeddings need gensim: pip install 'gensim>=4.3'") from err

    words = token_words(tokenizer)
    n = len(words)
    sentences, counts = _sentences(texts, tokenizer, words)
    known_np = counts >= min_count
    n_known = int(known_np.sum())
    need = min(MIN_KNOWN, max(1, n // 10))  # tiny vocabularies: a tenth of them
    if n_known < need:
        raise TokenswapError(
            f"auxiliary corpus too small: only {n_known} of {n} target tokens occur "
            f">= {min_count} times; pass more text with --corpus or lower aux_min_count")

    # Enough buckets that the n-grams of the known tokens rarely collide, few enough to keep
    # the n-gram matrix small (the fastText default of 2M rows is 800 MB at dim 100).
    buckets = buckets or int(min(2_000_000, max(1 << 16, 16 * n_known)))
    model = FastText(vector_size=dim, window=window, min_count=min_count, epochs=epochs,
                     sg=1, negative=10, min_n=3, max_n=6, bucket=buckets, seed=seed, workers=1)
    model.build_vocab(corpus_iterable=sentences)
    model.train(corpus_iterable=sentences, total_examples=len(sentences), epochs=epochs)
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    matrix, known, subword = lookup_vectors(model.wv, words, skip=specials)
    return AuxiliaryEmbeddings(matrix=torch.from_numpy(matrix), known=torch.from_numpy(known),
                               subword=torch.from_numpy(subword), counts=counts,
                               corpus_tokens=int(counts.sum()))


def lookup_vectors(wv, words: list[str], *, skip: set[int] = frozenset()
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fastText vectors of ``words`` from trained gensim ``FastTextKeyedVectors``.

    Returns ``(matrix (n, dim) float32, known (n,) bool, subword (n,) bool)``: a word in the
    vocabulary gets its vector (``known``); another word gets the mean of those of its character
    n-gram vectors that were trained (``subword``) - gensim's own out-of-vocabulary lookup would
    also average untrained buckets, which hold random initial values. A word with no trained
    n-gram, and an unknown word whose index is in ``skip``, gets a zero row.
    """
    from gensim.models.fasttext import ft_ngram_hashes

    n, dim = len(words), wv.vector_size
    matrix = np.zeros((n, dim), dtype=np.float32)
    known = np.zeros(n, dtype=bool)
    index = wv.key_to_index
    for i, word in enumerate(words):
        row = index.get(word)
        if row is not None:
            matrix[i] = wv.vectors[row]
            known[i] = True
    buckets = wv.vectors_ngrams.shape[0]
    trained = np.zeros(buckets, dtype=bool)  # buckets that received gradient: the known words'
    for hashes in wv.buckets_word:
        trained[hashes] = True
    subword = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(~known):
        if i in skip or not words[i]:
            continue
        hashes = np.asarray(ft_ngram_hashes(words[i], wv.min_n, wv.max_n, buckets), dtype=np.int64)
        hashes = hashes[trained[hashes]] if len(hashes) else hashes
        if len(hashes):
            matrix[i] = wv.vectors_ngrams[hashes].mean(0)
            subword[i] = True
    return matrix, known, subword
