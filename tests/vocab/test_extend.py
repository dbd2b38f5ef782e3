"""Vocabulary extension: source ids kept, target tokens appended, text round-trips."""

from __future__ import annotations

import pytest
import torch
from conftest import ENGLISH, GERMAN, train_byte_level_bpe, train_sentencepiece_bpe
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenswap
from tokenswap.errors import TokenswapError
from tokenswap.vocab.extend import extend_tokenizer


@pytest.fixture(scope="module")
def extended(source_tokenizer, german_tokenizer):
    return extend_tokenizer(source_tokenizer, german_tokenizer)


def test_source_ids_unchanged_and_new_tokens_appended(source_tokenizer, extended):
    old = source_tokenizer.get_vocab()
    new = extended.get_vocab()
    assert all(new[token] == i for token, i in old.items())
    assert len(extended) > len(source_tokenizer)
    assert sorted(new.values()) == list(range(len(extended)))


def test_extension_shortens_the_target_language(source_tokenizer, extended):
    text = " ".join(GERMAN[:4])
    assert len(extended.tokenize(text)) < 0.8 * len(source_tokenizer.tokenize(text))
    english = " ".join(ENGLISH[:5])
    assert len(extended.tokenize(english)) <= len(source_tokenizer.tokenize(english))


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60))
def test_extended_tokenizer_round_trips(extended, text):
    ids = extended(text, add_special_tokens=False)["input_ids"]
    assert extended.decode(ids) == text


def test_max_new_limits_growth(source_tokenizer, german_tokenizer):
    small = extend_tokenizer(source_tokenizer, german_tokenizer, max_new=7)
    assert len(small) == len(source_tokenizer) + 7


def test_family_mismatch_is_an_error(source_tokenizer):
    with pytest.raises(TokenswapError, match="one family"):
        extend_tokenizer(source_tokenizer, train_sentencepiece_bpe(GERMAN, 460))


def test_transfer_extend_keeps_every_source_row(tiny_model_dir, german_tokenizer, tmp_path):
    source = tokenswap.load_model(str(tiny_model_dir))
    before = source.input_embeddings().detach().clone()
    result = tokenswap.transfer(str(tiny_model_dir), german_tokenizer, method="mean", extend=True,
                                out=tmp_path / "ext")
    after = result.bundle.input_embeddings().detach()
    torch.testing.assert_close(after[: before.shape[0]], before)
    assert result.stats.input["composed"] > 0
    assert result.stats.input["exact"] + result.stats.input["special"] == before.shape[0]
    assert result.stats.pair["fallback"] == 0
    reloaded = tokenswap.load_model(str(tmp_path / "ext"))
    assert len(reloaded.tokenizer) == after.shape[0]


def test_extension_can_add_missing_base_symbols():
    # a source without most byte symbols (train_byte_level_bpe would seed all 256)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["plain ascii words only"] * 20,
                            trainers.BpeTrainer(vocab_size=100, special_tokens=["<|endoftext|>"],
                                                show_progress=False))
    narrow = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    wide = extend_tokenizer(narrow, train_byte_level_bpe(GERMAN, 420))
    text = "Größe"
    assert wide.decode(wide(text, add_special_tokens=False)["input_ids"]) == text
    assert narrow.decode(narrow(text, add_special_tokens=False)["input_ids"]) != text
