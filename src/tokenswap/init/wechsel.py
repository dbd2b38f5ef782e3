"""``wechsel``: new tokens from their nearest source tokens in aligned cross-lingual word spaces.

Minixhofer, Paischer & Rekabsaz, "WECHSEL: Effective initialization of subword embeddings for
cross-lingual transfer of monolingual language models" (NAACL 2022, arXiv 2112.06598):

1. static word vectors for the source language and for the target language (fastText, whose
   character n-grams also give vectors to subwords);
2. the target space is rotated onto the source space with orthogonal Procrustes on the word
   pairs of a bilingual dictionary;
3. every source token and every target token gets a vector from its string (leading space and
   case removed) in its language's space;
4. each new target token = the softmax-weighted mean (temperature ``t``) of the source
   embeddings of its ``k`` nearest source tokens by cosine similarity in the shared space.

What differs from the paper, and why:

- No downloads: the paper uses pre-trained Common Crawl fastText vectors (7 GB per language).
  Here both word spaces are trained with gensim on text the user passes: ``--corpus`` (target
  language) and ``--source-corpus`` (the source model's language; on a Debian machine the English
  man pages will do). Smaller corpora give noisier spaces; the stats say how many pairs aligned.
- The dictionary is any :func:`tokenswap.io.dictionary.read_dictionary` spec, e.g.
  ``freedict:deu-eng`` from Debian's ``dict-freedict-deu-eng`` (the paper uses MUSE's). Its
  orientation (which side is the source language) is found from the word spaces.
- Tokens whose bytes exactly match a source token are copied (as in FOCUS and every other
  method here) rather than re-derived; special tokens are copied.
- A new token without a vector in the target space (no trained character n-gram: digits,
  punctuation, partial UTF-8 bytes) falls back to ``mean`` (FVT): its provenance says so.

Options: :class:`WechselOptions`. The word spaces are word-level, one per language, so they have
their own ``wechsel_dim`` / ``wechsel_epochs`` / ``wechsel_min_count`` rather than the ``aux_*``
options of the token-level space of :mod:`.auxiliary`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from tokenswap.config import option
from tokenswap.errors import TokenswapError
from tokenswap.init.auxiliary import corpus_fingerprint, lookup_vectors
from tokenswap.init.common import copy_single_piece, empty_target, mix_with_mean, piece_means
from tokenswap.init.registry import InitContext, Initialized, register
from tokenswap.vocab.bytes import ByteVocab
from tokenswap.vocab.pair import Provenance, TokenPair

MIN_PAIRS = 50  # fewer aligned dictionary pairs than this and the rotation is guesswork
_WORDS_KEY, _WEIGHTS_KEY = "wechsel_words", "wechsel_weights"
_WORD = re.compile(r"[^\W\d_]+")
_CHUNK = 1000  # words per fastText "sentence"
_REFERENCE = "the default of the WECHSEL reference code (CPJKU/wechsel, WECHSEL.apply)"


@dataclass(frozen=True)
class WechselOptions:
    """Options of ``wechsel``."""

    wechsel_k: int = option(10, "Nearest source tokens mixed into each new token.",
                            why=_REFERENCE)
    wechsel_temperature: float = option(
        0.1, "Softmax temperature over the neighbours' cosine similarities.", why=_REFERENCE)
    wechsel_mix: float = option(
        0.0, "Share of the mean (FVT) row blended into each WECHSEL row, from 0 to 1.",
        why="0 is the paper's row; not tuned")
    wechsel_dim: int = option(100, "Dimension of the fastText word vectors of each language.",
                              why="gensim's default vector size; not tuned (the paper uses "
                                  "pre-trained 300-dimensional vectors)")
    wechsel_epochs: int = option(5, "fastText training epochs over each corpus.",
                                 why="gensim's default; not tuned")
    wechsel_min_count: int = option(3, "Occurrences that give a word its own vector.",
                                    why="not tuned (gensim's default is 5)")

    def __post_init__(self) -> None:
        for name in ("wechsel_k", "wechsel_dim", "wechsel_epochs", "wechsel_min_count"):
            if getattr(self, name) < 1:
                raise TokenswapError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.wechsel_temperature > 0:
            raise TokenswapError(f"wechsel_temperature must be above 0, got "
                                 f"{self.wechsel_temperature}")
        if not 0.0 <= self.wechsel_mix <= 1.0:
            raise TokenswapError(f"wechsel_mix must be between 0 and 1, got {self.wechsel_mix}")


def word_sentences(texts: list[str]) -> list[list[str]]:
    """Lowercased letter-only words of ``texts`` in chunks of ``_CHUNK``."""
    out = []
    for text in texts:
        words = _WORD.findall(text.lower())
        out += [words[i:i + _CHUNK] for i in range(0, len(words), _CHUNK)]
    return out


def train_word_vectors(texts: list[str], *, dim: int, min_count: int, epochs: int, seed: int,
                       what: str):
    """gensim fastText word vectors (``FastTextKeyedVectors``) of ``texts``."""
    try:
        from gensim.models.fasttext import FastText
    except ImportError as err:
        raise TokenswapError("wechsel needs gensim: pip install 'gensim>=4.3'") from err
    sentences = word_sentences(texts)
    model = FastText(vector_size=dim, window=5, min_count=min_count, epochs=epochs, sg=1,
                     negative=10, min_n=3, max_n=6, bucket=200_000, seed=seed, workers=1)
    model.build_vocab(corpus_iterable=sentences)
    if len(model.wv.key_to_index) < MIN_PAIRS:
        raise TokenswapError(f"wechsel: {what} too small: {len(model.wv.key_to_index)} words occur "
                             f">= {min_count} times; pass more text")
    model.train(corpus_iterable=sentences, total_examples=len(sentences), epochs=epochs)
    return model.wv


def _normalize(x: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    x = torch.nn.functional.normalize(x, dim=1)
    if center is not None:
        x = torch.nn.functional.normalize(x - center, dim=1)
    return x


def procrustes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The orthogonal ``W`` (d, d) minimising ``||x W - y||`` (Schönemann 1966): ``U V^T``."""
    u, _, vt = torch.linalg.svd(x.double().T @ y.double())
    return (u @ vt).float()


def token_strings(vocab: ByteVocab) -> list[str]:
    """Each token's text without surrounding whitespace, lowercased ('' for specials)."""
    return [b.decode("utf-8", errors="ignore").strip().lower() if b is not None else ""
            for b in vocab.token_bytes]


@dataclass
class WechselWeights:
    """Target ``new_ids[i]`` = sum_j ``weights[i, j]`` * source[``neighbors[i, j]``]."""

    new_ids: np.ndarray
    neighbors: torch.Tensor  # (B, k) source ids
    weights: torch.Tensor  # (B, k) float32, rows sum to 1
    pairs_aligned: int
    orientation: str  # "headword is target" or "headword is source"


def _word_vectors(texts: list[str], ctx: InitContext, opts: WechselOptions, what: str):
    key = (corpus_fingerprint(texts), opts.wechsel_dim, opts.wechsel_min_count,
           opts.wechsel_epochs, ctx.seed)
    cache = ctx.cache.setdefault(_WORDS_KEY, {})
    if key not in cache:
        cache[key] = train_word_vectors(texts, dim=opts.wechsel_dim,
                                        min_count=opts.wechsel_min_count,
                                        epochs=opts.wechsel_epochs, seed=ctx.seed, what=what)
    return cache[key]


def _aligned_pairs(src_wv, tgt_wv, pairs: list[tuple[str, str]]) -> tuple[list, list, str]:
    """Dictionary pairs with both words known, as (target words, source words), oriented."""
    s_index, t_index = src_wv.key_to_index, tgt_wv.key_to_index
    forward = [(a, b) for a, b in pairs if a in t_index and b in s_index]  # headword = target
    backward = [(b, a) for a, b in pairs if a in s_index and b in t_index]  # headword = source
    chosen, name = ((forward, "headword is target") if len(forward) >= len(backward)
                    else (backward, "headword is source"))
    return [t for t, _ in chosen], [s for _, s in chosen], name


def wechsel_weights(pair: TokenPair, ctx: InitContext) -> WechselWeights:
    opts = ctx.options_as(WechselOptions)
    key = (id(pair), opts.wechsel_k, opts.wechsel_temperature, opts.wechsel_dim,
           opts.wechsel_min_count, opts.wechsel_epochs)
    cache = ctx.cache.setdefault(_WEIGHTS_KEY, {})
    if key in cache:
        return cache[key]
    target_texts = [t for t in (ctx.corpus or []) if t.strip()]
    source_texts = [t for t in (ctx.source_corpus or []) if t.strip()]
    if not target_texts:
        raise TokenswapError("wechsel needs target-language text: pass --corpus")
    if not source_texts:
        raise TokenswapError("wechsel needs text in the source model's language to learn its word "
                             "space: pass --source-corpus (e.g. /usr/share/man/man1 for English)")
    if not ctx.dictionary:
        raise TokenswapError("wechsel needs a bilingual dictionary: pass --dictionary, e.g. "
                             "freedict:deu-eng (apt-get install dict-freedict-deu-eng)")
    src_wv = _word_vectors(source_texts, ctx, opts, "--source-corpus")
    tgt_wv = _word_vectors(target_texts, ctx, opts, "--corpus")
    t_words, s_words, orientation = _aligned_pairs(src_wv, tgt_wv, ctx.dictionary)
    if len(t_words) < MIN_PAIRS:
        raise TokenswapError(
            f"wechsel: only {len(t_words)} dictionary pairs have both words in the corpora "
            f"(need {MIN_PAIRS}); use a larger dictionary or more text")

    s_center = torch.from_numpy(src_wv.vectors).float()
    s_center = torch.nn.functional.normalize(s_center, dim=1).mean(0)
    t_center = torch.from_numpy(tgt_wv.vectors).float()
    t_center = torch.nn.functional.normalize(t_center, dim=1).mean(0)
    x = _normalize(torch.from_numpy(np.stack([tgt_wv[w] for w in t_words])).float(), t_center)
    y = _normalize(torch.from_numpy(np.stack([src_wv[w] for w in s_words])).float(), s_center)
    rotation = procrustes(x, y)

    s_mat, s_known, s_sub = lookup_vectors(src_wv, token_strings(pair.source))
    t_mat, t_known, t_sub = lookup_vectors(tgt_wv, token_strings(pair.target))
    s_ids = np.flatnonzero(s_known | s_sub)
    s_ids = s_ids[[pair.source.token_bytes[i] is not None for i in s_ids]]
    new = np.isin(pair.provenance, [Provenance.COMPOSED, Provenance.FALLBACK])
    new_ids = np.flatnonzero(new & (t_known | t_sub))
    k = min(opts.wechsel_k, len(s_ids))
    if k == 0:
        new_ids = new_ids[:0]
    src = _normalize(torch.from_numpy(s_mat[s_ids]), s_center)  # (S, d)
    tgt = _normalize(torch.from_numpy(t_mat[new_ids]), t_center) @ rotation  # (B, d)
    neighbors, weights = [], []
    s_ids_t = torch.as_tensor(s_ids, dtype=torch.long)
    for start in range(0, len(new_ids), 2048):
        sims = tgt[start:start + 2048] @ src.T
        top = torch.topk(sims, k, dim=1)
        neighbors.append(s_ids_t[top.indices])
        weights.append(torch.softmax(top.values / opts.wechsel_temperature, dim=1))
    result = WechselWeights(
        new_ids=new_ids,
        neighbors=torch.cat(neighbors) if neighbors else torch.empty((0, k), dtype=torch.long),
        weights=torch.cat(weights) if weights else torch.empty((0, k)),
        pairs_aligned=len(t_words), orientation=orientation)
    cache[key] = result
    return result


@register(
    "wechsel",
    requires=("corpus", "source_corpus", "dictionary"),
    summary="exact matches copied; other tokens = softmax-weighted mix of their nearest source "
            "tokens in fastText spaces aligned with a bilingual dictionary",
    paper="Minixhofer, Paischer & Rekabsaz, 'WECHSEL: Effective initialization of subword "
          "embeddings for cross-lingual transfer of monolingual language models' (NAACL 2022)",
    url="https://arxiv.org/abs/2112.06598",
    options=WechselOptions,
)
def wechsel_init(source: torch.Tensor, pair: TokenPair, ctx: InitContext) -> Initialized:
    weights = wechsel_weights(pair, ctx)
    target = empty_target(source, pair)
    provenance = pair.provenance.copy()
    means, has_pieces = piece_means(source, pair)  # the fallback: FVT, else the mean row
    target[has_pieces] = means[has_pieces]
    target[~has_pieces] = source.float().mean(0)
    content = np.isin(pair.provenance, [Provenance.COMPOSED, Provenance.FALLBACK])
    provenance[content] = Provenance.FALLBACK  # until WECHSEL places them
    if len(weights.new_ids):
        device = source.device
        new = torch.as_tensor(weights.new_ids, device=device)
        rows = []
        for i in range(0, len(new), 4096):
            nb = weights.neighbors[i:i + 4096].to(device)
            w = weights.weights[i:i + 4096].to(device)
            rows.append(torch.einsum("bk,bkh->bh", w, source[nb].float()))
        target[new] = torch.cat(rows)
        provenance[weights.new_ids] = Provenance.COMPOSED
        mix_with_mean(target, means, has_pieces, weights.new_ids,
                      ctx.options_as(WechselOptions).wechsel_mix)
    copy_single_piece(target, source, pair)
    return Initialized(target, provenance)
