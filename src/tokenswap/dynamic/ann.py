"""Approximate maximum-inner-product search over a large vocabulary's output rows.

A decoding step needs the extra tokens with the largest logits ``h . row + bias``. The bias is
folded in as one more column (query ``[h, 1]``, row ``[row, bias]``), so every backend answers a
plain inner-product query. Backends (a registry; :func:`build_index` by name):

- ``exact``: brute force with one matrix product and ``topk`` (torch; the reference);
- ``hnswlib`` (the default): the HNSW authors' own library (Malkov & Yashunin,
  arXiv 1603.09320);
- ``usearch``: Unum's usearch, an HNSW graph;
- ``faiss``: faiss-cpu's ``IndexHNSWFlat``.

Rows are centred on their mean row first (``h . mean`` is the same for every row, so a query's
ranking is unchanged) and, with ``space="l2"`` (the default), given one more column that makes
every row's norm equal, so the largest inner product is the smallest Euclidean distance
(:func:`fold_rows`). All three HNSW backends take the same graph options (``connectivity`` M,
``ef_construction``, ``ef_search``).

Why hnswlib: measured on the real SmolLM2's final hidden states (400 positions of held-out
German) against the shipped hypernet's output rows of 20,000 extra German tokens, with the same
graph options (M 32, ef_construction 128) and one thread, hnswlib gave recall@32 0.898 at
0.89 ms a query (ef_search 256); at about that query time usearch gave 0.834 (1.12 ms,
ef_search 128) and faiss 0.842 (0.84 ms, ef_search 256); usearch matches hnswlib's recall only
at twice its time (0.902, 2.09 ms). The Euclidean form lifts hnswlib from 0.810 (``ip``) to
0.898 at ef_search 256. Over all 150,000 extra rows hnswlib with ef_search 512 gives recall@32
0.863 at 2.5 ms a query against 36.5 ms for brute force (``benchmarks/dynamic_vocab.py``,
``benchmarks/results/dynamic-vocab.md``), hence the default ef_search 512.

The libraries are optional: ``bash scripts/install.sh --ann`` (or ``pip install
'tokenswap[ann]'``) installs hnswlib; usearch and faiss-cpu are imported only when asked for by
name (``bash scripts/install.sh --benchmarks`` installs them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from tokenswap.errors import TokenswapError

DEFAULT = "hnswlib"


@dataclass(frozen=True)
class IndexOptions:
    connectivity: int = 32  # M: graph neighbours per node
    ef_construction: int = 128  # candidates kept while inserting
    ef_search: int = 512  # candidates kept while searching (at least k)
    threads: int = 1  # threads to build and search with
    space: str = "l2"  # l2: inner product turned into Euclidean distance (fold_rows); ip: as is


@dataclass(frozen=True)
class Backend:
    name: str
    package: str  # the PyPI package that provides it ("" for none)
    summary: str
    build: Callable


BACKENDS: dict[str, Backend] = {}


def backend(name: str, package: str, summary: str):
    def wrap(cls):
        BACKENDS[name] = Backend(name, package, summary, cls)
        return cls
    return wrap


def _need(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        extra = " (or bash scripts/install.sh --ann)" if package == "hnswlib" else ""
        raise TokenswapError(f"the {module} index needs {package}: pip install {package}"
                             f"{extra}") from None


def fold_rows(rows: torch.Tensor, bias: torch.Tensor | None, space: str) -> np.ndarray:
    """(N, H') float32 rows for the index: centred on their mean row (which shifts every
    logit of a query alike), the bias as one more column; for ``space="l2"`` one
    more, ``sqrt(M^2 - |row|^2)`` with ``M`` the largest row norm, so every row has norm ``M``
    and the nearest row in Euclidean distance to ``[h, 1, 0]`` is the one with the largest
    inner product (Bachrach et al. 2014, "Speeding up the Xbox recommender system")."""
    rows = rows.detach().double().cpu()
    rows = rows - rows.mean(0)  # h . mean is the same for every row: the ranking is unchanged
    if bias is not None:
        rows = torch.cat([rows, bias.detach().double().cpu().reshape(-1, 1)], dim=1)
    if space == "l2":
        norms = rows.square().sum(1)
        rows = torch.cat([rows, (norms.max() - norms).clamp(min=0).sqrt()[:, None]], dim=1)
    return np.ascontiguousarray(rows.float().numpy())


def fold_query(hidden: torch.Tensor, bias: bool, space: str) -> np.ndarray:
    """(B, H') float32 queries matching :func:`fold_rows`."""
    hidden = hidden.detach().float().cpu()
    extra = int(bias) + int(space == "l2")
    if extra:
        tail = torch.zeros(hidden.shape[0], extra)
        if bias:
            tail[:, 0] = 1.0
        hidden = torch.cat([hidden, tail], dim=1)
    return np.ascontiguousarray(hidden.numpy())


def _metric(options: IndexOptions, l2, ip):
    if options.space not in ("l2", "ip"):
        raise TokenswapError(f"unknown index space {options.space!r} (known: l2, ip)")
    return l2 if options.space == "l2" else ip


@backend("exact", "", "brute force: one matrix product and topk (torch)")
class ExactIndex:
    def __init__(self, rows: np.ndarray, options: IndexOptions) -> None:
        self.rows = torch.from_numpy(rows)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        k = min(k, self.rows.shape[0])
        scores = torch.nn.functional.linear(torch.from_numpy(queries), self.rows)  # (B, N)
        return scores.topk(k, dim=1).indices.numpy().astype(np.int64)


@backend("usearch", "usearch", "HNSW graph (Unum usearch), inner product")
class USearchIndex:
    def __init__(self, rows: np.ndarray, options: IndexOptions) -> None:
        index = _need("usearch.index", "usearch")
        self.threads = options.threads
        self.ef = options.ef_search
        self.index = index.Index(ndim=rows.shape[1], metric=_metric(options, "l2sq", "ip"),
                                 dtype="f32",
                                 connectivity=options.connectivity,
                                 expansion_add=options.ef_construction,
                                 expansion_search=options.ef_search)
        self.index.add(np.arange(len(rows), dtype=np.uint64), rows, threads=options.threads)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        self.index.expansion_search = max(self.ef, k)
        found = self.index.search(queries, k, threads=self.threads)
        keys = np.asarray(found.keys, dtype=np.int64).reshape(len(queries), -1)
        counts = np.asarray(getattr(found, "counts", [len(found)])).reshape(-1)
        keys[np.arange(keys.shape[1])[None, :] >= counts[:, None]] = -1
        return keys


@backend("hnswlib", "hnswlib", "HNSW graph (hnswlib, the HNSW authors'), inner product")
class HnswlibIndex:
    def __init__(self, rows: np.ndarray, options: IndexOptions) -> None:
        hnswlib = _need("hnswlib", "hnswlib")
        self.ef = options.ef_search
        self.index = hnswlib.Index(space=_metric(options, "l2", "ip"), dim=rows.shape[1])
        self.index.init_index(max_elements=len(rows), ef_construction=options.ef_construction,
                              M=options.connectivity, random_seed=0)
        self.index.set_num_threads(options.threads)
        self.index.add_items(rows, np.arange(len(rows)))

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        self.index.set_ef(max(self.ef, k))
        labels, _ = self.index.knn_query(queries, k=k)
        return labels.astype(np.int64)


@backend("faiss", "faiss-cpu", "HNSW graph (faiss IndexHNSWFlat), inner product")
class FaissIndex:
    def __init__(self, rows: np.ndarray, options: IndexOptions) -> None:
        faiss = _need("faiss", "faiss-cpu")
        faiss.omp_set_num_threads(options.threads)
        self.ef = options.ef_search
        metric = _metric(options, faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT)
        self.index = faiss.IndexHNSWFlat(rows.shape[1], options.connectivity, metric)
        self.index.hnsw.efConstruction = options.ef_construction
        self.index.add(rows)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        self.index.hnsw.efSearch = max(self.ef, k)
        _, ids = self.index.search(queries, k)
        return ids.astype(np.int64)


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        import difflib

        close = difflib.get_close_matches(name, BACKENDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TokenswapError(f"unknown index {name!r} (known: {', '.join(BACKENDS)}){hint}")
    return BACKENDS[name]


class RowIndex:
    """An index over output rows (N, H) and bias (N,) or None; :meth:`search` takes hidden
    states (B, H) and returns (B, k) row numbers, best first (-1 where fewer were found)."""

    def __init__(self, rows: torch.Tensor, bias: torch.Tensor | None = None, *,
                 backend: str = DEFAULT, options: IndexOptions | None = None) -> None:
        if rows.ndim != 2 or not len(rows):
            raise TokenswapError("the index needs at least one row")
        self.backend = get_backend(backend)
        self.options = options or IndexOptions()
        _metric(self.options, "l2", "ip")  # a known space
        self.has_bias = bias is not None
        self.size = rows.shape[0]
        self.index = self.backend.build(fold_rows(rows, bias, self.options.space), self.options)

    def search(self, hidden: torch.Tensor, k: int) -> np.ndarray:
        if k < 1:
            raise TokenswapError(f"candidates per step must be at least 1, got {k}")
        queries = fold_query(hidden, self.has_bias, self.options.space)
        return self.index.search(queries, min(k, self.size))


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k that the index found (both (B, k))."""
    hits = [len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits) / exact.shape[1])


__all__ = ["BACKENDS", "DEFAULT", "IndexOptions", "RowIndex", "build_index", "get_backend",
           "recall_at_k"]


def build_index(rows: torch.Tensor, bias: torch.Tensor | None = None, *, backend: str = DEFAULT,
                options: IndexOptions | None = None) -> RowIndex:
    """:class:`RowIndex` (the name reads better at call sites)."""
    return RowIndex(rows, bias, backend=backend, options=options)
