"""The byte tokenizer (``--tokenizer bytes``): one token per byte, the source's specials carried,
a real fast tokenizer that saves and loads back."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from tokenswap.io.models import load_tokenizer
from tokenswap.vocab.byte_tokenizer import byte_tokenizer
from tokenswap.vocab.bytes import ByteVocab, TokenizerFamily
from tokenswap.vocab.pair import Provenance, build_pair

SOURCES = ["source_tokenizer", "sentencepiece_tokenizer", "wordpiece_tokenizer", None]


@pytest.fixture(scope="module", params=SOURCES)
def source_and_bytes(request, tmp_path_factory):
    """(source or None, its byte tokenizer, the byte tokenizer saved and loaded back)."""
    source = request.getfixturevalue(request.param) if request.param else None
    tok = byte_tokenizer(source)
    path = tmp_path_factory.mktemp("bytes")
    tok.save_pretrained(path)
    return source, tok, AutoTokenizer.from_pretrained(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=64))
def test_every_text_is_its_bytes_and_decodes_back(source_and_bytes, text):
    _, tok, loaded = source_and_bytes
    vocab = ByteVocab.from_tokenizer(tok)
    for t in (tok, loaded):
        ids = t.encode(text, add_special_tokens=False, split_special_tokens=True)
        assert len(ids) == len(text.encode("utf-8"))  # one token per byte
        assert vocab.decode_bytes(ids) == text.encode("utf-8")
        assert t.decode(ids) == text


def test_is_byte_level_with_one_byte_per_token(source_and_bytes):
    source, tok, loaded = source_and_bytes
    vocab = ByteVocab.from_tokenizer(loaded)
    specials = ByteVocab.from_tokenizer(source).special_ids if source is not None else {}
    assert isinstance(loaded, PreTrainedTokenizerFast)
    assert vocab.family is TokenizerFamily.BYTE_LEVEL and vocab.missing_bytes() == []
    assert len(loaded) == len(tok) == 256 + len(specials)
    emitted = [b for b in vocab.token_bytes if b is not None]
    assert sorted(emitted) == [bytes([b]) for b in range(256)]
    assert dict(vocab.special_ids) == {c: i for i, c in enumerate(specials)}  # same, first


def test_specials_roles_and_chat_template_round_trip(source_tokenizer, tmp_path):
    tok = byte_tokenizer(source_tokenizer)
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "<|im_start|>user\nGrüße <|im_end|>\n"
    for t in (tok, loaded):
        ids = t.encode(text, add_special_tokens=False)
        assert ids[0] == t.convert_tokens_to_ids("<|im_start|>") == 1  # ChatML id kept
        assert len(ids) == 2 + len("user\nGrüße ".encode()) + 1
        assert t.decode(ids) == text
        assert t.decode(ids, skip_special_tokens=True) == "user\nGrüße \n"
        for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
            assert getattr(t, role) == getattr(source_tokenizer, role)
        messages = [{"role": "user", "content": "Hallo"}]
        assert (t.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                == source_tokenizer.apply_chat_template(messages, tokenize=False,
                                                        add_generation_prompt=True))


def test_a_bos_the_source_adds_is_added_with_its_new_id(source_tokenizer, tmp_path):
    adds_bos = PreTrainedTokenizerFast(tokenizer_object=source_tokenizer.backend_tokenizer,
                                       bos_token="<|im_start|>", eos_token="<|im_end|>")
    adds_bos.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
    assert adds_bos.encode("a")[0] == 0
    tok = byte_tokenizer(adds_bos)
    tok.save_pretrained(tmp_path)
    for t in (tok, AutoTokenizer.from_pretrained(tmp_path)):
        assert t.encode("ab") == [0, 3 + ord("a"), 3 + ord("b")]
        assert t.encode("ab", add_special_tokens=False) == [3 + ord("a"), 3 + ord("b")]


def test_pairs_with_a_byte_level_source_as_exact_copies(source_tokenizer):
    pair = build_pair(source_tokenizer, byte_tokenizer(source_tokenizer))
    counts = pair.counts()
    assert counts["special"] == 3 and counts["exact"] == 256 and counts["composed"] == 0
    for tid in pair.ids_with(Provenance.EXACT):  # each byte token is the source's byte token
        assert pair.source.token_bytes[pair.pieces[tid][0]] == pair.target.token_bytes[tid]
    for tid in pair.ids_with(Provenance.SPECIAL):
        content = source_tokenizer.convert_ids_to_tokens(pair.pieces[tid][0])
        assert pair.target.special_ids[content] == tid


def test_bytes_is_a_tokenizer_spec(source_tokenizer):
    tok = load_tokenizer("bytes", like=source_tokenizer)
    assert json.loads(tok.backend_tokenizer.to_str())["model"]["merges"] == []
    assert len(load_tokenizer("bytes")) == 256
