"""The nearest-neighbour indexes: every installed backend against brute force on random rows
with a bias, the inner-product folding, recall, unknown names."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from tokenswap.dynamic.ann import IndexOptions, build_index, fold_query, fold_rows, recall_at_k
from tokenswap.errors import TokenswapError

INSTALLED = [name for name, module in (("hnswlib", "hnswlib"), ("usearch", "usearch"),
                                       ("faiss", "faiss"))
             if importlib.util.find_spec(module) is not None]


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(300, 16, generator=g) + 2.0  # a common direction, like embedding rows
    bias = torch.randn(300, generator=g)
    hidden = torch.randn(20, 16, generator=g) * 5
    return rows, bias, hidden


@pytest.mark.parametrize("space", ["l2", "ip"])
def test_folding_keeps_the_ranking_of_logits(data, space):
    rows, bias, hidden = data
    folded = torch.from_numpy(fold_rows(rows, bias, space)).double()
    queries = torch.from_numpy(fold_query(hidden, True, space)).double()
    logits = hidden.double() @ rows.double().T + bias.double()
    if space == "l2":  # smallest distance first
        order = torch.cdist(queries, folded).argsort(1)
    else:
        order = (queries @ folded.T).argsort(1, descending=True)
    assert torch.equal(order[:, :10], logits.argsort(1, descending=True)[:, :10])


def test_exact_index_is_the_top_k_of_the_logits(data):
    rows, bias, hidden = data
    found = build_index(rows, bias, backend="exact").search(hidden, 5)
    want = (hidden @ rows.T + bias).topk(5, 1).indices.numpy()
    assert np.array_equal(found, want)


@pytest.mark.skipif(not INSTALLED, reason="no index library installed (scripts/install.sh --ann)")
@pytest.mark.parametrize("backend", INSTALLED)
@pytest.mark.parametrize("space", ["l2", "ip"])
def test_backends_find_the_exact_top_k(data, backend, space):
    rows, bias, hidden = data
    want = (hidden @ rows.T + bias).topk(10, 1).indices.numpy()
    index = build_index(rows, bias, backend=backend, options=IndexOptions(space=space))
    assert recall_at_k(index.search(hidden, 10), want) >= 0.95
    everything = index.search(hidden, len(rows))  # k = all rows: all of them, once each
    assert all(sorted(r.tolist()) == list(range(len(rows))) for r in everything)


def test_a_missing_library_says_how_to_install_it(monkeypatch):
    import sys

    from tokenswap.dynamic import ann

    monkeypatch.setitem(sys.modules, "hnswlib", None)  # as if not installed: import fails
    with pytest.raises(TokenswapError, match=r"needs hnswlib: pip install hnswlib \(or bash "
                                             r"scripts/install.sh --ann\)"):
        build_index(torch.ones(3, 2), backend="hnswlib")
    assert ann.DEFAULT == "hnswlib"


def test_recall_and_bad_names():
    assert recall_at_k(np.array([[1, 2], [3, 4]]), np.array([[2, 9], [4, 3]])) == 0.75
    with pytest.raises(TokenswapError, match="did you mean 'hnswlib'"):
        build_index(torch.ones(3, 2), backend="hnswlb")
    with pytest.raises(TokenswapError, match="unknown index space"):
        build_index(torch.ones(3, 2), backend="exact", options=IndexOptions(space="cos"))
