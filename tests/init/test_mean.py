"""``mean`` (src/tokenswap/init/mean.py) on a pair with tokens the source cannot compose."""

from __future__ import annotations

import pytest
import torch
from conftest import hand_byte_level_tokenizer
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tokenswap.init import InitContext, get_method
from tokenswap.vocab.pair import Provenance, build_pair


def target_with_unknown_byte() -> PreTrainedTokenizerFast:
    """Byte-level BPE over a, b and x, with an extra <pad> special. The source (conftest's
    hand-built a, b, c, space vocabulary) has no 'x' and no '<pad>'."""
    vocab = {"<eos>": 0, "a": 1, "b": 2, "x": 3, "ab": 4, "xa": 5, "xx": 6}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("x", "a"), ("x", "x")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<eos>", "<pad>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


@pytest.fixture(scope="module")
def fallback_pair():
    return build_pair(hand_byte_level_tokenizer(), target_with_unknown_byte())


def test_tokens_without_pieces_get_the_mean_of_all_source_rows(fallback_pair):
    pair = fallback_pair
    target = target_with_unknown_byte()
    fallback = pair.ids_with(Provenance.FALLBACK)
    ids = {target.convert_ids_to_tokens(int(t)) for t in fallback}
    assert ids == {"x", "xx", "<pad>"}  # a byte the source lacks, twice, and an unmatched special
    assert all(pair.pieces[t] == () for t in fallback)
    g = torch.Generator().manual_seed(0)
    source = torch.randn(len(pair.source.token_bytes), 4, generator=g) + 2.0  # mean far from 0

    result = get_method("mean").fn(source, pair, InitContext())

    assert torch.isfinite(result.matrix).all()
    expected = source.mean(0).expand(len(fallback), -1)
    torch.testing.assert_close(result.matrix[fallback], expected, rtol=0, atol=1e-6)
    assert (result.provenance[fallback] == Provenance.FALLBACK).all()
    # 'xa' keeps the one piece the source has ('a'); the skipped 'x' does not drag it to the mean
    xa = target.convert_tokens_to_ids("xa")
    assert pair.provenance[xa] == Provenance.COMPOSED and pair.partial == 1
    torch.testing.assert_close(result.matrix[xa], source[pair.pieces[xa][0]])
