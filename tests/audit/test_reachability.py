"""Unreachable and undecodable tokens on tokenizers built here, with exact expected sets."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tokenswap.audit.reachability import check_reachability, undecodable_tokens, unreachable_tokens
from tokenswap.vocab.bytes import ByteVocab


def _names(tokenizer, ids) -> set[str]:
    return set(tokenizer.convert_ids_to_tokens([int(i) for i in ids]))


def test_byte_level_bpe_reaches_every_token(source_tokenizer):
    result = check_reachability(source_tokenizer)
    assert result.unreachable_ids().size == 0
    assert result.tested.sum() == len(source_tokenizer) - result.special.sum()


def test_undecodable_are_exactly_the_invalid_utf8_tokens(german_tokenizer):
    vocab = ByteVocab.from_tokenizer(german_tokenizer)
    expected = []
    for tid, data in enumerate(vocab.token_bytes):
        if data is None:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            expected.append(tid)
    got = undecodable_tokens(german_tokenizer)
    assert got.tolist() == expected
    assert undecodable_tokens(vocab).tolist() == expected  # a ByteVocab works too
    assert b"\xc3" in {vocab.token_bytes[t] for t in got}  # first byte of ä, ö, ü, ß


def test_merge_that_is_never_applied_makes_a_token_unreachable():
    """'bc' is in the vocabulary but no merge builds it: encoding 'bc' gives 'b', 'c'."""
    vocab = {"<eos>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "bc": 5, "abc": 6}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("ab", "c")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<eos>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    assert unreachable_tokens(fast).tolist() == [5]


def test_lowercasing_normalizer_hides_every_token_with_a_capital(wordpiece_tokenizer):
    backend = Tokenizer.from_str(wordpiece_tokenizer.backend_tokenizer.to_str())
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                  cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    result = check_reachability(tok)
    text = [t for t, i in tok.get_vocab().items() if i >= 5]  # ids 0-4 are the specials
    expected = {t for t in text if t.removeprefix("##") != t.removeprefix("##").lower()}
    assert expected  # the corpus has capitals: the test can fail
    assert _names(tok, result.unreachable_ids()) == expected
    # the cased original reaches every word-internal '##' piece through the anchor context
    assert check_reachability(wordpiece_tokenizer).unreachable_ids().size == 0


def test_byte_fallback_tokens_of_characters_in_the_vocabulary_are_unreachable(
        sentencepiece_tokenizer):
    tok = sentencepiece_tokenizer
    result = check_reachability(tok)
    vocab = tok.get_vocab()
    expected = {f"<0x{b:02X}>" for b in range(0x80)
                if f"<0x{b:02X}>" in vocab and chr(b).replace(" ", "▁") in vocab}
    assert expected
    assert _names(tok, result.unreachable_ids()) == expected
    high = [vocab[f"<0x{b:02X}>"] for b in range(0x80, 0x100)]
    assert result.undecodable[high].all() and not result.tested[high].any()


def test_special_tokens_are_neither(source_tokenizer):
    result = check_reachability(source_tokenizer)
    ids = np.array(source_tokenizer.all_special_ids)
    assert result.special[ids].all()
    assert not (result.unreachable[ids] | result.undecodable[ids] | result.tested[ids]).any()


@pytest.mark.slow
def test_smollm2_reaches_every_token():
    from tokenswap.io.models import load_tokenizer

    tok = load_tokenizer("default")
    result = check_reachability(tok)
    assert result.unreachable_ids().size == 0
    assert 200 < result.undecodable.sum() < 1000  # partial UTF-8 pieces of a byte-level BPE
