"""CoverIndex: the byte-sorted vocabulary answers prefix and exact lookups like a scan does."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenswap.bytes.cover import CoverIndex, grouped_logsumexp, successor
from tokenswap.errors import TokenswapError

TOKENS = [b"a", b"ab", None, b"b", b"abc", b"\xff", b"\xff\xff", b"", b"a", b"\xe4\xb8"]


def test_prefix_and_exact_ranges_match_a_scan():
    index = CoverIndex(TOKENS, model_vocab=12)
    for prefix in [b"", b"a", b"ab", b"abc", b"abcd", b"b", b"\xff", b"\xff\xff", b"\xe4", b"z"]:
        lo, hi = index.prefix_range(prefix)
        got = sorted(index.order[lo:hi].tolist())
        assert got == [t for t, d in enumerate(TOKENS) if d and d.startswith(prefix)], prefix
        assert sorted(index.exact_ids(prefix)) == [t for t, d in enumerate(TOKENS) if d and d == prefix]


def test_end_ids_are_tokens_without_text_and_padded_rows():
    index = CoverIndex(TOKENS, model_vocab=12)
    assert index.end_ids.tolist() == [2, 7, 10, 11]
    assert len(index) == 8


def test_byte_matrix_rows_are_token_bytes():
    index = CoverIndex(TOKENS)
    for k, data in enumerate(index.sorted_bytes):
        row = index.byte_matrix[k].tolist()
        assert bytes(row[: len(data)]) == data and set(row[len(data):]) == {-1}


def test_model_smaller_than_tokenizer_is_an_error():
    try:
        CoverIndex(TOKENS, model_vocab=3)
    except TokenswapError as err:
        assert "does not belong" in str(err)
    else:
        raise AssertionError("expected TokenswapError")


@given(st.binary(max_size=4))
def test_successor_bounds_every_extension(prefix):
    after = successor(prefix)
    for tail in [b"", b"\x00", b"\xff\xff\xff"]:
        assert after is None or prefix + tail < after
    if after is not None:
        assert not after.startswith(prefix)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 0), st.integers(0, 4)), min_size=1, max_size=20))
def test_grouped_logsumexp_matches_per_group(pairs):
    values = torch.tensor([v for v, _ in pairs], dtype=torch.float64)
    groups = torch.tensor([g for _, g in pairs])
    out = grouped_logsumexp(values, groups, 5)
    for g in range(5):
        chosen = values[groups == g]
        expected = torch.logsumexp(chosen, 0) if len(chosen) else torch.tensor(-torch.inf)
        assert torch.allclose(out[g], expected.double(), atol=1e-12) or (
            out[g] == expected == -torch.inf)
