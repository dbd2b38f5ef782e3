"""WECHSEL: Procrustes, alignment of two word spaces trained here, and the method end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ENGLISH, GERMAN

import tokenswap
from tokenswap.errors import TokenswapError
from tokenswap.init import InitContext, get_method, wechsel
from tokenswap.init.wechsel import (
    WechselOptions,
    procrustes,
    train_word_vectors,
    word_sentences,
)
from tokenswap.vocab.pair import Provenance

# Words that occur in both conftest corpora, as (German, English) pairs.
PAIRS = [("der", "the"), ("schnelle", "quick"), ("braune", "brown"), ("fuchs", "fox"),
         ("springt", "jumps"), ("über", "over"), ("faulen", "lazy"), ("hund", "dog"),
         ("ein", "a"), ("tokenizer", "tokenizer"), ("text", "text"), ("tokens", "tokens"),
         ("modell", "model"), ("token", "token"), ("nächste", "next"), ("und", "and"),
         ("das", "the"), ("in", "into")]


def test_procrustes_recovers_a_rotation():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    w = procrustes(x, x @ q)
    assert torch.allclose(w, q, atol=1e-4)
    assert torch.allclose(w @ w.T, torch.eye(16), atol=1e-5)


def test_word_sentences_lowercase_letters_only():
    assert word_sentences(["Größe 42, x_y Haus-Tür!"]) == [["größe", "x", "y", "haus", "tür"]]


def parallel_corpora(n_concepts=80, clusters=8, sentences=1500, seed=0):
    """Two languages with unrelated spellings of the same concepts, used in the same way.

    Each sentence draws a cluster and then words of that cluster, rendered word by word in each
    language; so the two skip-gram spaces share their geometry, which Procrustes must find.
    """
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz")

    def word():
        return "".join(rng.choice(letters, size=rng.integers(4, 9)))

    lang_a = [word() for _ in range(n_concepts)]
    lang_b = [word() + "q" for _ in range(n_concepts)]
    cluster = np.arange(n_concepts) % clusters
    texts_a, texts_b = [], []
    for _ in range(sentences):
        members = np.flatnonzero(cluster == rng.integers(clusters))
        ids = rng.choice(members, size=8)
        texts_a.append(" ".join(lang_a[i] for i in ids))
        texts_b.append(" ".join(lang_b[i] for i in ids))
    return lang_a, lang_b, cluster, texts_a, texts_b


def test_alignment_maps_held_out_words_to_their_cluster():
    lang_a, lang_b, cluster, texts_a, texts_b = parallel_corpora()
    kw = dict(dim=16, min_count=3, epochs=10, seed=0)
    src = train_word_vectors(texts_a, what="source", **kw)
    tgt = train_word_vectors(texts_b, what="target", **kw)
    train_ids, test_ids = np.arange(0, 60), np.arange(60, 80)

    def unit(m):
        return torch.nn.functional.normalize(torch.as_tensor(np.asarray(m)).float(), dim=1)

    w = procrustes(unit([tgt[lang_b[i]] for i in train_ids]), unit([src[lang_a[i]] for i in train_ids]))
    all_src = unit([src[w_] for w_ in lang_a])
    hits_rotated = hits_plain = 0
    for i in test_ids:
        t = unit([tgt[lang_b[i]]])
        hits_rotated += cluster[int((t @ w @ all_src.T).argmax())] == cluster[i]
        hits_plain += cluster[int((t @ all_src.T).argmax())] == cluster[i]
    assert hits_rotated >= 16  # of 20; chance is 1 in 8
    assert hits_rotated > hits_plain + 5  # the rotation is what does it


@pytest.fixture
def few_pairs(monkeypatch):
    monkeypatch.setattr(wechsel, "MIN_PAIRS", 5)


def ctx_for(german_tokenizer, source_tokenizer, **kw):
    base = dict(corpus=GERMAN, source_corpus=ENGLISH, dictionary=PAIRS,
                target_tokenizer=german_tokenizer, source_tokenizer=source_tokenizer,
                options=WechselOptions(wechsel_dim=16))
    return InitContext(**{**base, **kw})


def test_wechsel_rows_are_convex_mixes_of_source_rows(few_pairs, pair, source_matrix,
                                                      german_tokenizer, source_tokenizer):
    ctx = ctx_for(german_tokenizer, source_tokenizer)
    result = get_method("wechsel").fn(source_matrix, pair, ctx)
    weights = wechsel.wechsel_weights(pair, ctx)
    assert weights.pairs_aligned >= 10 and weights.orientation == "headword is target"
    assert len(weights.new_ids) > 0
    assert torch.allclose(weights.weights.sum(1), torch.ones(len(weights.new_ids)))
    i = int(weights.new_ids[0])
    expected = (weights.weights[0, :, None] * source_matrix[weights.neighbors[0]]).sum(0)
    assert torch.allclose(result.matrix[i], expected, atol=1e-5)
    assert result.provenance[i] == Provenance.COMPOSED
    assert torch.isfinite(result.matrix).all()
    exact = pair.ids_with(Provenance.EXACT)
    assert torch.equal(result.matrix[exact],
                       source_matrix[[pair.pieces[t][0] for t in exact]])
    # tokens WECHSEL could not place are FVT rows and say so
    fallback = np.setdiff1d(np.flatnonzero(np.isin(pair.provenance, [Provenance.COMPOSED])),
                            weights.new_ids)
    assert (result.provenance[fallback] == Provenance.FALLBACK).all()


def test_wechsel_finds_the_dictionary_orientation(few_pairs, pair, source_matrix,
                                                  german_tokenizer, source_tokenizer):
    forward = get_method("wechsel").fn(source_matrix, pair, ctx_for(german_tokenizer, source_tokenizer))
    swapped = [(b, a) for a, b in PAIRS]
    ctx = ctx_for(german_tokenizer, source_tokenizer, dictionary=swapped)
    backward = get_method("wechsel").fn(source_matrix, pair, ctx)
    assert wechsel.wechsel_weights(pair, ctx).orientation == "headword is source"
    assert torch.allclose(forward.matrix, backward.matrix)


def test_wechsel_clear_errors(pair, source_matrix, german_tokenizer, source_tokenizer,
                              monkeypatch):
    fn = get_method("wechsel").fn
    # MIN_PAIRS is 50: the 36 English words seen 3 times are too few to align anything
    with pytest.raises(TokenswapError, match="--source-corpus too small: 36 words"):
        fn(source_matrix, pair, ctx_for(german_tokenizer, source_tokenizer))
    monkeypatch.setattr(wechsel, "MIN_PAIRS", 30)
    with pytest.raises(TokenswapError, match=r"only 1\d dictionary pairs .* \(need 30\)"):
        fn(source_matrix, pair, ctx_for(german_tokenizer, source_tokenizer))
    with pytest.raises(TokenswapError, match="--source-corpus"):
        fn(source_matrix, pair, ctx_for(german_tokenizer, source_tokenizer, source_corpus=None))
    with pytest.raises(TokenswapError, match="--dictionary"):
        fn(source_matrix, pair, ctx_for(german_tokenizer, source_tokenizer, dictionary=[]))
    with pytest.raises(TokenswapError, match="wechsel_k must be at least 1"):
        WechselOptions(wechsel_k=0)


def test_transfer_names_every_missing_input(tiny_model_dir, german_tokenizer):
    with pytest.raises(TokenswapError, match="--source-corpus .* and --dictionary"):
        tokenswap.transfer(str(tiny_model_dir), german_tokenizer, method="wechsel",
                           corpus=["x"])


def test_transfer_with_wechsel_end_to_end(few_pairs, tmp_path, tiny_model_dir, german_tokenizer):
    dict_file = tmp_path / "de-en.txt"
    dict_file.write_text("\n".join(f"{a} {b}" for a, b in PAIRS), encoding="utf-8")
    de, en = tmp_path / "de.txt", tmp_path / "en.txt"
    de.write_text("\n".join(GERMAN), encoding="utf-8")
    en.write_text("\n".join(ENGLISH), encoding="utf-8")
    result = tokenswap.transfer(str(tiny_model_dir), german_tokenizer, method="wechsel",
                                corpus=[str(de)], source_corpus=[str(en)],
                                dictionary=str(dict_file), options={"wechsel_dim": 16},
                                out=tmp_path / "out")
    assert result.stats.input["composed"] > 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
