"""A fresh UnigramLM tokenizer per batch, drawn from that batch's own text, without training.

Zero-shot tokenizer transfer (Minixhofer et al., arXiv 2405.07883, section 3) trains the
hypernet on a different tokenizer at every step, so that it learns to embed *any* vocabulary.
The paper samples each tokenizer from the batch's text: substring frequencies, perturbed by
noise, decide which pieces enter a UnigramLM vocabulary. Here:

1. the texts are normalised and pre-tokenized like the source tokenizer when it is byte-level
   (GPT-2 ``ByteLevel`` alphabet: every character of a word stands for one byte); otherwise
   with a plain ``ByteLevel`` pre-tokenizer;
2. every substring of up to ``max_chars`` characters of every word is counted (words are
   counted once and weighted by their frequency, which keeps this a second or so for a few
   hundred KB of text);
3. ``score = log(count) + noise``, noise ~ N(0, ``noise_std``); the top ``vocab_size - 256 -
   specials`` multi-character substrings are kept, where ``vocab_size`` is drawn uniformly from
   ``[vocab_min, vocab_max]``;
4. all 256 byte symbols (so every text is coverable, no ``<unk>``) and the source's special
   tokens (same ids first, same roles) are added; scores become log-probabilities and go into
   ``tokenizers.models.Unigram`` wrapped in a ``PreTrainedTokenizerFast``.

The result depends only on the texts, the options and the seed. Not here: EM training of the
Unigram model (the paper does not train either) and SentencePiece-style ``▁`` vocabularies.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tokenswap.hypernet.config import SamplerConfig
from tokenswap.vocab.bytes import ByteVocab, TokenizerFamily, bytes_to_unicode

BYTE_SYMBOLS = tuple(bytes_to_unicode()[b] for b in range(256))


class TokenizerSampler:
    """Draws UnigramLM tokenizers that share the source's pre-tokenizer and special tokens."""

    def __init__(self, source_tokenizer, config: SamplerConfig | None = None) -> None:
        self.config = config or SamplerConfig()
        if self.config.vocab_min > self.config.vocab_max:
            raise ValueError("vocab_min must not exceed vocab_max")
        backend = getattr(source_tokenizer, "backend_tokenizer", None)
        family = ByteVocab.from_tokenizer(source_tokenizer).family
        if backend is not None and family is TokenizerFamily.BYTE_LEVEL:
            self.normalizer = backend.normalizer
            self.pre_tokenizer = backend.pre_tokenizer
        else:
            self.normalizer = None
            self.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        self.specials = _specials(source_tokenizer)
        self.roles = {role: tok for role, tok in source_tokenizer.special_tokens_map.items()
                      if isinstance(tok, str)}

    def words(self, texts: Sequence[str]) -> Counter:
        """Pre-tokenized words (byte-level strings) of ``texts`` with their counts."""
        counts: Counter = Counter()
        for text in texts:
            if self.normalizer is not None:
                text = self.normalizer.normalize_str(text)
            counts.update(w for w, _ in self.pre_tokenizer.pre_tokenize_str(text))
        return counts

    def substring_counts(self, words: Counter) -> dict[str, int]:
        """Counts of every substring of 2..``max_chars`` characters inside the ``words``."""
        limit = self.config.max_chars
        counts: dict[str, int] = {}
        get = counts.get
        for word, n in words.items():
            size = len(word)
            for i in range(size - 1):
                for j in range(i + 2, min(size, i + limit) + 1):
                    piece = word[i:j]
                    counts[piece] = get(piece, 0) + n
        return counts

    def sample(self, texts: Sequence[str], seed: int | Sequence[int],
               vocab_size: int | None = None) -> PreTrainedTokenizerFast:
        """A UnigramLM tokenizer for ``texts``; the same texts and seed give the same tokenizer.

        ``seed`` is an int or a sequence of ints (a numpy ``SeedSequence`` entropy), so that
        callers can keep separate streams, e.g. ``(seed, step)`` and ``(seed, 0, 1)``.
        """
        c = self.config
        rng = np.random.default_rng(seed)
        if vocab_size is None:
            vocab_size = int(rng.integers(c.vocab_min, c.vocab_max + 1))
        words = self.words(texts)
        counts = {k: v for k, v in self.substring_counts(words).items()
                  if v >= c.min_count and k not in self.specials}
        pieces = list(counts)
        scores = np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(pieces)))
        scores += rng.normal(0.0, c.noise_std, size=len(pieces)) if c.noise_std > 0 else 0.0
        keep = max(0, vocab_size - len(BYTE_SYMBOLS) - len(self.specials))
        order = np.lexsort((np.array(pieces, dtype=object).astype(str), -scores))[:keep]
        chars = _char_counts(words)
        char_scores = np.log(np.array([chars.get(s, 0) + 1.0 for s in BYTE_SYMBOLS]))
        all_scores = np.concatenate([char_scores, scores[order]])
        log_probs = all_scores - _logsumexp(all_scores)
        vocab = [(s, 0.0) for s in self.specials]
        vocab += [(s, float(p)) for s, p in zip(BYTE_SYMBOLS, log_probs[:256], strict=True)]
        vocab += [(pieces[i], float(p)) for i, p in zip(order, log_probs[256:], strict=True)]
        return self._wrap(vocab)

    def _wrap(self, vocab: list[tuple[str, float]]) -> PreTrainedTokenizerFast:
        tok = Tokenizer(models.Unigram(vocab, unk_id=None, byte_fallback=False))
        if self.normalizer is not None:
            tok.normalizer = self.normalizer
        tok.pre_tokenizer = self.pre_tokenizer
        tok.decoder = decoders.ByteLevel()
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, **self.roles)
        fast.add_special_tokens({"additional_special_tokens": [
            s for s in self.specials if s not in self.roles.values()]})
        return fast


def _specials(tokenizer) -> list[str]:
    """The source's special tokens in id order (so ids 0, 1, 2 ... keep their meaning)."""
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    found = {i: t.content for i, t in decoder.items() if getattr(t, "special", False)}
    for tok in tokenizer.all_special_tokens:
        found.setdefault(tokenizer.convert_tokens_to_ids(tok), tok)
    return [found[i] for i in sorted(found)]


def _char_counts(words: Counter) -> dict[str, int]:
    out: Counter = Counter()
    for word, n in words.items():
        for ch in word:
            out[ch] += n
    return out


def _logsumexp(x: np.ndarray) -> float:
    top = float(x.max())
    return top + math.log(float(np.exp(x - top).sum()))


__all__ = ["BYTE_SYMBOLS", "SamplerConfig", "TokenizerSampler"]
