"""The init registry and the built-in methods, on tiny in-memory vocabularies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokenswap.errors import TokenswapError
from tokenswap.init import InitContext, get_method, list_methods, method_names
from tokenswap.init.common import fit_normal, piece_means
from tokenswap.vocab.pair import Provenance


def test_registry_lists_builtins_with_papers():
    names = {m.name for m in list_methods()}
    assert {"random", "mean", "copy-overlap"} <= names
    assert "fvt" in method_names()
    assert get_method("fvt").name == "mean"
    assert all(m.url.startswith("http") and m.summary for m in list_methods())


def test_methods_declare_required_and_optional_inputs():
    from tokenswap.init.registry import register

    assert get_method("focus").requires == ("corpus",) and get_method("focus").needs_corpus
    assert get_method("omp").requires == () and get_method("omp").accepts == ("donor", "corpus")
    assert get_method("convex").accepts == ("corpus",)
    for bad in ({"requires": ("corpsu",)}, {"accepts": ("donr",)}):
        with pytest.raises(ValueError, match="unknown requirements"):
            register("never-registered", summary="x", **bad)


def test_unknown_method_suggests_closest():
    with pytest.raises(TokenswapError, match="did you mean 'mean'"):
        get_method("maen")


@pytest.mark.parametrize("name", ["random", "mean", "copy-overlap"])
def test_every_row_finite_and_specials_copied(name, pair, source_matrix):
    result = get_method(name).fn(source_matrix, pair, InitContext(seed=3))
    assert result.matrix.shape == (len(pair), 16)
    assert torch.isfinite(result.matrix).all()
    for tid in pair.ids_with(Provenance.SPECIAL):
        torch.testing.assert_close(result.matrix[tid], source_matrix[pair.pieces[tid][0]])
    assert (result.provenance[pair.ids_with(Provenance.SPECIAL)] == Provenance.SPECIAL).all()


def test_mean_copies_exact_and_averages_pieces(pair, source_matrix):
    result = get_method("mean").fn(source_matrix, pair, InitContext())
    exact = pair.ids_with(Provenance.EXACT)
    composed = pair.ids_with(Provenance.COMPOSED)
    assert len(exact) > 100 and len(composed) > 10
    for tid in exact[:20]:
        torch.testing.assert_close(result.matrix[tid], source_matrix[pair.pieces[tid][0]])
    for tid in composed[:20]:
        expected = source_matrix[list(pair.pieces[tid])].mean(0)
        torch.testing.assert_close(result.matrix[tid], expected)


def test_copy_overlap_randomises_composed_tokens(pair, source_matrix):
    result = get_method("copy-overlap").fn(source_matrix, pair, InitContext())
    composed = pair.ids_with(Provenance.COMPOSED)
    assert (result.provenance[composed] == Provenance.FALLBACK).all()
    means, _ = piece_means(source_matrix, pair)
    assert not torch.allclose(result.matrix[composed], means[composed])


def test_random_is_seeded_and_matches_source_statistics(pair, source_matrix):
    a = get_method("random").fn(source_matrix, pair, InitContext(seed=1)).matrix
    b = get_method("random").fn(source_matrix, pair, InitContext(seed=1)).matrix
    c = get_method("random").fn(source_matrix, pair, InitContext(seed=2)).matrix
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    content = pair.ids_with(Provenance.EXACT, Provenance.COMPOSED)
    assert torch.allclose(a[content].mean(0), source_matrix.mean(0), atol=0.15)
    assert torch.allclose(a[content].std(0), source_matrix.std(0), rtol=0.2)


def test_input_and_output_draws_differ(pair, source_matrix):
    fn = get_method("random").fn
    a = fn(source_matrix, pair, InitContext(seed=1, matrix="input")).matrix
    b = fn(source_matrix, pair, InitContext(seed=1, matrix="output")).matrix
    assert not torch.allclose(a, b)


def test_fit_normal_recovers_covariance():
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[2.0, 0.8], [0.8, 1.0]])
    x = torch.randn(20000, 2, generator=g) @ torch.linalg.cholesky(cov).T + torch.tensor([1.0, -1.0])
    mean, factor = fit_normal(x)
    torch.testing.assert_close(mean, torch.tensor([1.0, -1.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(factor @ factor.T, cov, atol=0.08, rtol=0)


def test_fit_normal_survives_rank_deficient_rows():
    x = torch.zeros(50, 4)
    x[:, 0] = torch.arange(50.0)
    mean, factor = fit_normal(x)
    assert torch.isfinite(factor).all() and np.isclose(float(mean[0]), 24.5)
