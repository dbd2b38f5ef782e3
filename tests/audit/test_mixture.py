"""Data mixture inference: pair counts under replayed merges, and proportions recovered from
byte-level BPEs trained here on known mixtures of real text."""

from __future__ import annotations

import random
import sysconfig
from collections import Counter
from pathlib import Path

import pytest
from conftest import ENGLISH, train_byte_level_bpe, train_wordpiece
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from tokenswap.audit.merge_counts import PairCounter, merge_list, word_splitter, word_table
from tokenswap.audit.mixture import infer_mixture
from tokenswap.cli import main
from tokenswap.demo import take_bytes
from tokenswap.errors import TokenswapError
from tokenswap.io.corpus import read_corpus

GERMAN_MAN = Path("/usr/share/man/de")


def naive_counts(words: Counter, merges: list[tuple[str, str]]) -> Counter:
    """Pair counts after applying ``merges`` to every word from scratch (the reference)."""
    out: Counter = Counter()
    for word, freq in words.items():
        symbols = list(word)
        for a, b in merges:
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        for pair in zip(symbols, symbols[1:], strict=False):
            out[pair] += freq
    return out


def test_incremental_counts_match_a_recount_from_scratch():
    tables = [Counter({"aaaa": 3, "abab": 2, "banana": 1}), Counter({"aaa": 5, "nab": 4})]
    merges = [("a", "a"), ("a", "b"), ("ab", "ab"), ("n", "a"), ("aa", "a"), ("x", "y")]
    counter = PairCounter(tables, [10, 20])
    for t in range(len(merges) + 1):
        for c, table in enumerate(tables):
            expected = naive_counts(table, merges[:t])
            names = {v: k for k, v in counter.symbols.items()}
            got = Counter()
            for (a, b), p in counter.pair_ids.items():
                if counter.counts[p, c]:
                    got[(names[a], names[b])] = counter.counts[p, c]
            assert got == expected, (t, c)
        if t < len(merges):
            counter.merge(*merges[t])


def category_texts() -> dict[str, list[str]]:
    """English prose (Python's own documentation topics), Python code, German man pages, as
    paragraphs in random order (so training text and samples are drawn alike)."""
    from pydoc_data.topics import topics

    docs = {"en": list(topics.values()),
            "code": [d.text for d in read_corpus(
                [str(Path(sysconfig.get_paths()["stdlib"]) / "*.py")], max_bytes=2_000_000)]}
    if GERMAN_MAN.is_dir():
        docs["de"] = [d.text for d in read_corpus([str(GERMAN_MAN)], max_bytes=2_000_000)]
    texts = {}
    for name, items in docs.items():
        paragraphs = [p + "\n\n" for d in items for p in d.split("\n\n") if p.strip()]
        random.Random(0).shuffle(paragraphs)
        texts[name] = paragraphs
    return texts


def train_on_mixture(texts: dict[str, list[str]], mixture: dict[str, float], total: int,
                     vocab_size: int) -> tuple[Tokenizer, dict[str, list[str]]]:
    """A byte-level BPE trained on ``mixture`` of the even paragraphs of each category; odd
    paragraphs are the samples the inference sees (never the training text itself)."""
    train, samples = [], {}
    for name, share in mixture.items():
        docs = texts[name]
        train += take_bytes(docs[::2], int(share * total))
        samples[name] = take_bytes(docs[1::2], total // 2)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(train, trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return tok, samples


def test_recovers_a_known_two_way_mixture():
    # (70% English comes out at 0.65 at this size: the documentation topics hold code too)
    tok, samples = train_on_mixture(category_texts(), {"en": 0.3, "code": 0.7}, 300_000, 556)
    result = infer_mixture(tok, samples, steps=300, competitors=50)
    assert result.proportions["en"] == pytest.approx(0.3, abs=0.05)
    assert sum(result.proportions.values()) == pytest.approx(1.0)
    assert result.used_steps > 250 and result.constraints > result.used_steps


@pytest.mark.skipif(not GERMAN_MAN.is_dir(), reason="needs Debian's manpages-de (scripts/install.sh)")
def test_recovers_a_known_three_way_mixture():
    mixture = {"de": 0.6, "en": 0.3, "code": 0.1}
    tok, samples = train_on_mixture(category_texts(), mixture, 300_000, 556)
    result = infer_mixture(tok, samples, steps=300, competitors=50)
    for name, share in mixture.items():
        assert result.proportions[name] == pytest.approx(share, abs=0.05), result.proportions
    # the other mixture gives other proportions: the answer comes from the merges
    tok2, samples2 = train_on_mixture(category_texts(), {"de": 0.1, "en": 0.3, "code": 0.6},
                                      300_000, 556)
    other = infer_mixture(tok2, samples2, steps=300, competitors=50)
    assert other.proportions["code"] == pytest.approx(0.6, abs=0.05)
    assert other.proportions["de"] == pytest.approx(0.1, abs=0.05)


def test_word_splitter_follows_the_pre_tokenizer(source_tokenizer, sentencepiece_tokenizer):
    assert word_splitter(source_tokenizer)("Hello world, hi") == ["Hello", "Ġworld", ",", "Ġhi"]
    text = "Die Straße 12 ist nass. " * 4
    words = word_splitter(sentencepiece_tokenizer)(text)
    assert words[:5] == ["Die", "▁Straße", "▁12", "▁ist", "▁nass."]  # its own pre-tokenizer
    # Gemma-style: no pre-tokenizer at all, so words are split as SentencePiece's trainer does
    raw = Tokenizer.from_str(sentencepiece_tokenizer.backend_tokenizer.to_str())
    raw.pre_tokenizer = None
    words = word_splitter(raw)(text)
    assert words[:7] == ["Die", "▁Straße", "▁1", "2", "▁ist", "▁nass", "."]
    counts, size = word_table(["ab ab\nab"], word_splitter(source_tokenizer))
    assert counts == Counter({"ab": 2, "Ġab": 1, "Ċ": 1}) and size == 8


def test_merge_list_is_in_training_order(source_tokenizer):
    merges = merge_list(source_tokenizer)
    assert len(merges) == len(source_tokenizer) - 256 - 3
    vocab = source_tokenizer.get_vocab()
    assert all(a + b in vocab for a, b in merges)
    assert [vocab[a + b] for a, b in merges] == sorted(vocab[a + b] for a, b in merges)


def test_bad_input_is_one_clear_error():
    wordpiece = train_wordpiece(ENGLISH, 200)
    with pytest.raises(TokenswapError, match="BPE tokenizer with an ordered merge list"):
        infer_mixture(wordpiece, {"a": ["x y"], "b": ["y z"]})
    bpe = train_byte_level_bpe(ENGLISH, 300)
    with pytest.raises(TokenswapError, match="at least two categories"):
        infer_mixture(bpe, {"a": ENGLISH})
    with pytest.raises(TokenswapError, match="no text for category b"):
        infer_mixture(bpe, {"a": ENGLISH, "b": ["  "]})
    with pytest.raises(TokenswapError, match="no merge of the tokenizer occurs"):
        infer_mixture(bpe, {"a": ["Ж"], "b": ["Щ"]}, steps=5)
    with pytest.raises(TokenswapError, match="slack must be one of"):
        infer_mixture(bpe, {"a": ENGLISH, "b": ENGLISH}, steps=5, slack="none")


def test_cli_mixture(tmp_path, source_tokenizer, capsys):
    from conftest import GERMAN

    (tmp_path / "en.txt").write_text("\n".join(ENGLISH))
    (tmp_path / "de.txt").write_text("\n".join(GERMAN))
    source_tokenizer.save_pretrained(tmp_path / "tok")
    out = tmp_path / "m.json"
    assert main(["mixture", "--tokenizer", str(tmp_path / "tok"), "--sample",
                 f"en={tmp_path / 'en.txt'}", "--sample", f"de={tmp_path / 'de.txt'}",
                 "--steps", "100", "--json", str(out)]) == 0
    import json

    data = json.loads(out.read_text())
    assert data["proportions"]["en"] > 0.8  # trained on ENGLISH only
    assert "inferred training mixture" in capsys.readouterr().out
    assert main(["mixture", "--sample", "nothing"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
