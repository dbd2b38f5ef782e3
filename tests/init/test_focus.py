"""FOCUS and its pieces: sparsemax against a brute-force simplex projection, the auxiliary
fastText space, and the method on the tiny English -> German tokenizer pair."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from conftest import GERMAN
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenswap
import tokenswap.init.focus  # noqa: F401  (registers "focus")
from tokenswap.errors import TokenswapError
from tokenswap.init import InitContext, get_method
from tokenswap.init.auxiliary import auxiliary_embeddings, auxiliary_space
from tokenswap.init.common import piece_means
from tokenswap.init.focus import FocusOptions, focus_weights, sparsemax, topk_sparsemax
from tokenswap.vocab.pair import Provenance


def brute_force_simplex_projection(z: np.ndarray) -> np.ndarray:
    """argmin ||p - z|| over the simplex, by trying every support set (small n only).

    On a support S the KKT solution is p_i = z_i - tau with tau = (sum_S z - 1) / |S|; the
    projection is the feasible (all p_i >= 0 on S) candidate closest to z.
    """
    best, best_dist = None, np.inf
    n = len(z)
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            s = list(support)
            tau = (z[s].sum() - 1) / size
            p = np.zeros(n)
            p[s] = z[s] - tau
            if (p[s] >= -1e-12).all():
                dist = np.sum((p - z) ** 2)
                if dist < best_dist:
                    best, best_dist = p, dist
    return best


# ----------------------------------------------------------------------------- sparsemax


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=7))
def test_sparsemax_matches_brute_force_projection(values):
    z = np.array(values, dtype=np.float64)
    got = sparsemax(torch.tensor(z)).numpy()
    np.testing.assert_allclose(got, brute_force_simplex_projection(z), atol=1e-9)


def test_sparsemax_is_a_sparse_distribution():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 300, generator=g) * 3
    p = sparsemax(z)
    torch.testing.assert_close(p.sum(1), torch.ones(64, dtype=z.dtype))
    assert (p >= 0).all()
    assert ((p > 0).sum(1) < 300).all() and ((p == 0).float().mean() > 0.5)
    # order preserving, and the argmax always keeps weight
    assert (p.argmax(1) == z.argmax(1)).all()
    # along another dim
    torch.testing.assert_close(sparsemax(z.T, dim=0), p.T)


def test_sparsemax_edge_cases():
    torch.testing.assert_close(sparsemax(torch.tensor([5.0])), torch.tensor([1.0]))
    torch.testing.assert_close(sparsemax(torch.zeros(4)), torch.full((4,), 0.25))
    torch.testing.assert_close(sparsemax(torch.tensor([2.0, 1.0, 0.1])), torch.tensor([1.0, 0, 0]))
    torch.testing.assert_close(sparsemax(torch.tensor([0.5, 0.4, -1.0])),
                               torch.tensor([0.55, 0.45, 0.0]))


@pytest.mark.parametrize("k", [1, 3, 16, 500])
def test_topk_sparsemax_equals_full_sparsemax(k):
    g = torch.Generator().manual_seed(1)
    scale = torch.logspace(-2, 1, 40).unsqueeze(1)  # flat rows (wide support) to sharp ones
    scores = torch.randn(40, 200, generator=g) * scale
    weights, idx = topk_sparsemax(scores, k)
    dense = torch.zeros_like(scores).scatter_add_(1, idx, weights)
    full = sparsemax(scores)
    fits = (full > 0).sum(1) <= k
    assert fits.any()
    # exact wherever the support fits in k entries ...
    torch.testing.assert_close(dense[fits], full[fits])
    # ... else the k largest weights, renormalised: still a distribution
    torch.testing.assert_close(dense.sum(1), torch.ones(40))
    assert (dense >= 0).all() and ((dense > 0).sum(1) <= k).all()
    if not fits.all():
        rows = ~fits
        top = full[rows].topk(min(k, 200), dim=1).indices
        assert torch.equal((dense[rows].gather(1, top) > 0), torch.ones_like(top, dtype=torch.bool))


# ----------------------------------------------------------------------------- fixtures


def german_ctx(german_tokenizer, seed=0, **options) -> InitContext:
    return InitContext(seed=seed, corpus=list(GERMAN), target_tokenizer=german_tokenizer,
                       options=FocusOptions(aux_dim=16, aux_epochs=3, **options))


@pytest.fixture(scope="module")
def focus_result(pair, source_matrix, german_tokenizer):
    ctx = german_ctx(german_tokenizer, focus_mix=0.0)  # the paper's rows, no FVT blended in
    return get_method("focus").fn(source_matrix, pair, ctx), ctx


# ----------------------------------------------------------------------------- auxiliary


def test_auxiliary_space_shapes_and_cache(german_tokenizer):
    ctx = InitContext(corpus=list(GERMAN), target_tokenizer=german_tokenizer)
    matrix, known = auxiliary_embeddings(ctx, dim=8, epochs=1)
    assert matrix.shape == (len(german_tokenizer), 8) and matrix.dtype == torch.float32
    assert known.dtype == torch.bool and int(known.sum()) >= 40
    assert torch.isfinite(matrix).all()
    aux = auxiliary_space(ctx, dim=8, epochs=1)  # same key: served from ctx.cache
    assert aux.matrix is matrix
    assert not (aux.known & aux.subword).any()
    defined = aux.defined
    assert (matrix[~defined] == 0).all() and (matrix[defined].norm(dim=1) > 0).all()
    for tid in german_tokenizer.all_special_ids:
        assert not defined[tid]
    # known means seen >= min_count times in the tokenized corpus
    counts = np.zeros(len(german_tokenizer), dtype=np.int64)
    for ids in german_tokenizer(list(GERMAN), add_special_tokens=False)["input_ids"]:
        counts += np.bincount(ids, minlength=len(counts))
    np.testing.assert_array_equal(known.numpy(), counts >= 3)


def test_auxiliary_needs_corpus(german_tokenizer):
    for corpus in (None, [], ["   "]):
        with pytest.raises(TokenswapError, match="--corpus"):
            auxiliary_embeddings(InitContext(corpus=corpus, target_tokenizer=german_tokenizer))


def test_auxiliary_too_small_corpus_is_one_clear_line(german_tokenizer):
    ctx = InitContext(corpus=["Der Hund schläft."], target_tokenizer=german_tokenizer)
    with pytest.raises(TokenswapError, match="auxiliary corpus too small") as err:
        auxiliary_embeddings(ctx)
    assert "\n" not in str(err.value) and "min_count" in str(err.value)


# ----------------------------------------------------------------------------- focus


def test_focus_is_registered():
    method = get_method("focus")
    assert method.needs_corpus and method.url == "https://arxiv.org/abs/2305.14481"


def test_focus_rows_finite_and_overlap_copied(focus_result, pair, source_matrix):
    result, _ = focus_result
    assert result.matrix.shape == (len(pair), 16)
    assert torch.isfinite(result.matrix).all()
    for tid in pair.ids_with(Provenance.SPECIAL, Provenance.EXACT):
        torch.testing.assert_close(result.matrix[tid], source_matrix[pair.pieces[tid][0]])
    kept = pair.ids_with(Provenance.SPECIAL, Provenance.EXACT)
    np.testing.assert_array_equal(result.provenance[kept], pair.provenance[kept])


def test_focus_mix_blends_the_fvt_row(focus_result, pair, source_matrix, german_tokenizer):
    pure, ctx = focus_result
    blended = get_method("focus").fn(source_matrix, pair, InitContext(
        seed=0, corpus=ctx.corpus, target_tokenizer=german_tokenizer,
        options=dataclasses.replace(ctx.options, focus_mix=0.5), cache=ctx.cache))
    assert len(ctx.cache["focus_weights"]) == 1  # the mix does not change the weights: reused
    means, _ = piece_means(source_matrix, pair)
    (weights,) = ctx.cache["focus_weights"].values()
    new = weights.new_ids
    torch.testing.assert_close(blended.matrix[new], 0.5 * pure.matrix[new] + 0.5 * means[new])
    with pytest.raises(TokenswapError, match="focus_mix must be between 0 and 1"):
        german_ctx(german_tokenizer, focus_mix=1.5)


def test_focus_new_rows_are_convex_combinations_of_overlap(focus_result, pair, source_matrix,
                                                          german_tokenizer):
    result, ctx = focus_result
    (weights,) = ctx.cache["focus_weights"].values()
    new_ids = weights.new_ids
    assert len(new_ids) >= 0.5 * len(pair.ids_with(Provenance.COMPOSED))
    assert (result.provenance[new_ids] == Provenance.COMPOSED).all()
    # the weights of every new token are >= 0 and sum to one, over exact-overlap rows only
    assert (weights.weights > 0).all()
    sums = torch.zeros(len(pair)).index_add_(0, weights.rows, weights.weights)
    torch.testing.assert_close(sums[new_ids], torch.ones(len(new_ids)))
    overlap_sources = {pair.pieces[t][0] for t in pair.ids_with(Provenance.EXACT)}
    assert set(weights.anchors.tolist()) <= overlap_sources
    # and the rows are exactly those combinations
    rebuilt = torch.zeros(len(pair), 16).index_add_(
        0, weights.rows, source_matrix[weights.anchors] * weights.weights[:, None])
    torch.testing.assert_close(result.matrix[new_ids], rebuilt[new_ids])
    # so each lies in the bounding box of the overlap rows (a necessary hull condition)
    overlap = source_matrix[sorted(overlap_sources)]
    assert (result.matrix[new_ids] >= overlap.min(0).values - 1e-5).all()
    assert (result.matrix[new_ids] <= overlap.max(0).values + 1e-5).all()


def test_focus_falls_back_to_mean_without_auxiliary_vector(focus_result, pair, source_matrix):
    result, ctx = focus_result
    (weights,) = ctx.cache["focus_weights"].values()
    rest = np.setdiff1d(pair.ids_with(Provenance.COMPOSED), weights.new_ids)
    for tid in rest:
        torch.testing.assert_close(result.matrix[tid], source_matrix[list(pair.pieces[tid])].mean(0))
    fallback = np.setdiff1d(pair.ids_with(Provenance.FALLBACK), weights.new_ids)
    for tid in fallback:
        torch.testing.assert_close(result.matrix[tid], source_matrix.mean(0))


def test_focus_deterministic_given_seed(pair, source_matrix, german_tokenizer, focus_result):
    a = focus_result[0].matrix
    ctx = german_ctx(german_tokenizer, focus_mix=0.0)
    b = get_method("focus").fn(source_matrix, pair, ctx).matrix
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    ctx = german_ctx(german_tokenizer, seed=5, focus_mix=0.0)
    c = get_method("focus").fn(source_matrix, pair, ctx).matrix
    assert not torch.equal(a, c)


def test_focus_temperature_changes_sparsity(pair):
    g = torch.Generator().manual_seed(0)
    aux = torch.randn(len(pair), 8, generator=g)
    anchors, new = pair.ids_with(Provenance.EXACT), pair.ids_with(Provenance.COMPOSED)
    sharp = focus_weights(pair, aux, anchors, new, temperature=0.05)
    plain = focus_weights(pair, aux, anchors, new, temperature=1.0)
    assert 1 <= sharp.support < plain.support < len(anchors)
    # a near-zero temperature picks the single most similar anchor (the nearest neighbour)
    unit = torch.nn.functional.normalize(aux, dim=1)
    nearest = (unit[new] @ unit[anchors].T).argmax(1)
    hard = focus_weights(pair, aux, anchors, new, temperature=1e-6)
    assert torch.equal(hard.rows, torch.as_tensor(new))
    expected = torch.tensor([pair.pieces[anchors[i]][0] for i in nearest.tolist()])
    assert torch.equal(hard.anchors, expected)


def test_focus_too_small_corpus_raises(pair, source_matrix, german_tokenizer):
    ctx = InitContext(corpus=GERMAN[:2], target_tokenizer=german_tokenizer)
    with pytest.raises(TokenswapError, match="auxiliary corpus too small"):
        get_method("focus").fn(source_matrix, pair, ctx)


def test_transfer_with_focus_needs_corpus(tiny_model_dir, german_tokenizer):
    with pytest.raises(TokenswapError, match="needs --corpus"):
        tokenswap.transfer(str(tiny_model_dir), german_tokenizer, method="focus")
