"""Canonical bytes: every token maps to the exact bytes it emits, specials kept apart."""

from __future__ import annotations

import pickle

import pytest
from conftest import ENGLISH, GERMAN, train_byte_level_bpe
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import PreTrainedTokenizerFast

from tokenswap.errors import TokenswapError
from tokenswap.vocab import ByteVocab, TokenizerFamily
from tokenswap.vocab.bytes import byte_level_bytes, bytes_to_unicode

BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
MULTILINGUAL = ENGLISH[:5] + GERMAN[:4] + [
    "東京は日本の首都です。中文字符也在这里。",
    "مرحبا بالعالم שלום עולם",
    "Emoji 😀🎉👍🏽 and e\u0301 combining, ñ, Ω, \t tabs\r\n",
] * 10

# Any text without surrogates: emoji, CJK, RTL, combining marks, NUL and other controls.
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
# '▁' in the input decodes as a space in every SentencePiece tokenizer: excluded on purpose.
SP_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                         blacklist_characters="▁"), max_size=60)
PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _no_special_text(text: str, tokenizer) -> bool:
    return not any(tok in text for tok in tokenizer.get_added_vocab())


def _wrap(tok: Tokenizer, **specials) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tok, **specials)


def _train_sp(prepend: str) -> PreTrainedTokenizerFast:
    """A Llama-2-style byte-fallback BPE whose encoder prepends '▁' to the text.

    ``prepend="metaspace"``: Metaspace pre-tokenizer with prepend_scheme 'first' (the current
    transformers conversion); ``prepend="normalizer"``: the legacy Prepend('▁') + Replace
    normalizer. Both decode with Replace, ByteFallback, Fuse, Strip(' ', 1, 0).
    """
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    if prepend == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                               normalizers.Replace(" ", "▁")])
        tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=500, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>", *BYTE_TOKENS])
    tok.train_from_iterator(MULTILINGUAL, trainer)
    return _wrap(tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _hand_byte_level(extra: list[str]) -> Tokenizer:
    """Byte-level BPE with the 256 byte symbols and ``extra`` tokens, each built by one merge."""
    table = bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    merges = []
    for token in extra:
        merges.append((token[:-1], token[-1]))
        vocab[token] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok


@pytest.fixture(scope="module")
def llama2_metaspace():
    return _train_sp("metaspace")


@pytest.fixture(scope="module")
def llama2_legacy():
    return _train_sp("normalizer")


@pytest.fixture(scope="module")
def multilingual_byte_level():
    return train_byte_level_bpe(MULTILINGUAL, 600)


# --- family detection and layout ------------------------------------------------------------


def test_families_detected_from_json(source_tokenizer, sentencepiece_tokenizer,
                                     wordpiece_tokenizer, llama2_metaspace, llama2_legacy):
    cases = [
        (source_tokenizer, TokenizerFamily.BYTE_LEVEL, False),
        (sentencepiece_tokenizer, TokenizerFamily.SENTENCEPIECE, False),  # Gemma-style
        (llama2_metaspace, TokenizerFamily.SENTENCEPIECE, True),
        (llama2_legacy, TokenizerFamily.SENTENCEPIECE, True),
        (wordpiece_tokenizer, TokenizerFamily.WORDPIECE, True),
    ]
    for tokenizer, family, strip in cases:
        vocab = ByteVocab.from_tokenizer(tokenizer)
        assert (vocab.family, vocab.strip_leading_space) == (family, strip)
        assert len(vocab) == len(tokenizer)


def test_raw_tokenizers_object_gives_same_bytes(source_tokenizer, sentencepiece_tokenizer):
    # without the wrapper the only role left is the model's own unk (the byte-level BPE has none)
    for tokenizer, roles in ((source_tokenizer, {}), (sentencepiece_tokenizer, {"unk": 3})):
        wrapped = ByteVocab.from_tokenizer(tokenizer)
        raw = ByteVocab.from_tokenizer(tokenizer.backend_tokenizer)
        assert raw.token_bytes == wrapped.token_bytes
        assert raw.special_ids == wrapped.special_ids
        assert raw.roles == roles


def test_unsupported_layouts_raise_one_line_error():
    word_level = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    suffix_bpe = Tokenizer(models.BPE({"a": 0, "b</w>": 1}, [], end_of_word_suffix="</w>"))
    suffix_bpe.decoder = decoders.BPEDecoder()
    for tok in (word_level, suffix_bpe):
        with pytest.raises(TokenswapError, match="unsupported tokenizer layout") as err:
            ByteVocab.from_tokenizer(tok)
        assert "\n" not in str(err.value)
    with pytest.raises(TokenswapError, match="fast"):
        ByteVocab.from_tokenizer(object())


def test_vocab_is_frozen_and_picklable(source_tokenizer):
    vocab = ByteVocab.from_tokenizer(source_tokenizer)
    with pytest.raises(TypeError):
        vocab.special_ids["x"] = 3  # type: ignore[index]
    with pytest.raises(AttributeError):
        vocab.family = TokenizerFamily.WORDPIECE  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(vocab)) == vocab


# --- byte-level -----------------------------------------------------------------------------


def test_gpt2_table_is_a_bijection_onto_printables():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert (table[0], table[ord(" ")], table[ord("\n")], table[0x7F], table[0xAD]) == (
        "Ā", "Ġ", "Ċ", "ġ", "Ń")


def test_byte_level_worked_examples(source_tokenizer):
    vocab = ByteVocab.from_tokenizer(source_tokenizer)
    ids = source_tokenizer.convert_tokens_to_ids
    assert vocab.token_bytes[ids("Ġthe")] == b" the"
    assert vocab.token_bytes[ids("Ċ")] == b"\n"
    assert vocab.token_bytes[ids("Ā")] == b"\x00"
    assert vocab.token_bytes[ids("a")] == b"a"
    assert vocab.exact_ids()[b" the"] == ids("Ġthe")
    assert vocab.missing_bytes() == []  # trained with the full initial alphabet


def test_byte_level_specials_are_none_and_mapped_by_role(source_tokenizer):
    vocab = ByteVocab.from_tokenizer(source_tokenizer)
    assert dict(vocab.special_ids) == {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    assert dict(vocab.roles) == {"bos": 1, "eos": 2, "pad": 2, "unk": 0}
    assert vocab.token_bytes[:3] == (None, None, None)
    assert all(b is not None for b in vocab.token_bytes[3:])
    assert not set(vocab.special_ids.values()) & set(vocab.exact_ids().values())
    the = source_tokenizer.convert_tokens_to_ids("Ġthe")
    assert vocab.decode_bytes([1, the, 2, 0, the]) == b" the the"  # no strip in byte-level
    assert vocab.byte_fallback_ids == {}


@PROPERTY
@given(text=ANY_TEXT)
def test_byte_level_round_trip(text, multilingual_byte_level):
    tok = multilingual_byte_level
    assume(_no_special_text(text, tok))
    vocab = ByteVocab.from_tokenizer(tok)
    ids = tok.encode(text, add_special_tokens=False)
    assert vocab.decode_bytes(ids) == text.encode("utf-8")
    assert vocab.decode_bytes(ids) == tok.decode(ids, clean_up_tokenization_spaces=False).encode()


def test_byte_level_partial_utf8_tokens():
    # '中' is E4 B8 AD; 'ä¸' is the byte-level spelling of its first two bytes.
    tok = _hand_byte_level(["ä¸", "ä¸Ń", "ðŁ", "ðŁĺ"])
    vocab = ByteVocab.from_tokenizer(tok)
    by = tok.token_to_id
    assert vocab.token_bytes[by("ä¸")] == b"\xe4\xb8"
    assert vocab.token_bytes[by("ðŁĺ")] == b"\xf0\x9f\x98"  # 3 of the 4 bytes of '😀'
    assert vocab.token_bytes[by("Ģ")] == b"\x80"
    ids = tok.encode("丁😀").ids  # E4 B8 81, F0 9F 98 80
    assert ids == [by("ä¸"), by("ģ"), by("ðŁĺ"), by("Ģ")]
    assert vocab.decode_bytes(ids).decode("utf-8") == "丁😀"
    assert tok.encode("中").ids == [by("ä¸Ń")]


def test_trained_byte_level_has_partial_tokens_that_join_to_utf8(multilingual_byte_level):
    vocab = ByteVocab.from_tokenizer(multilingual_byte_level)
    partial = [tid for tid, data in enumerate(vocab.token_bytes)
               if data is not None and not _is_utf8(data)]
    assert len(partial) > 10
    text = "東京は日本の首都です 😀🎉"
    ids = multilingual_byte_level.encode(text, add_special_tokens=False)
    assert any(i in partial for i in ids)
    assert vocab.decode_bytes(ids).decode("utf-8") == text


def test_missing_bytes_of_restricted_alphabet():
    corpus = "plain ascii text only"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=60, special_tokens=["<|endoftext|>"],
                                  show_progress=False)
    tok.train_from_iterator([corpus] * 10, trainer)
    vocab = ByteVocab.from_tokenizer(_wrap(tok, eos_token="<|endoftext|>"))
    assert vocab.missing_bytes() == sorted(set(range(256)) - set(corpus.encode()))
    assert dict(vocab.roles) == {"eos": 0}


def test_byte_level_added_tokens_emit_their_content(source_tokenizer):
    tok = train_byte_level_bpe(ENGLISH, 400)
    tok.add_tokens(["hello world", "über", AddedToken("中文", normalized=False)])
    tok.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    vocab = ByteVocab.from_tokenizer(tok)
    ids = tok.convert_tokens_to_ids
    assert vocab.token_bytes[ids("hello world")] == b"hello world"
    assert vocab.token_bytes[ids("über")] == "über".encode()  # not the decoder's b"\xfcber"
    assert vocab.token_bytes[ids("中文")] == "中文".encode()
    assert vocab.token_bytes[ids("<|tool|>")] is None
    assert vocab.special_ids["<|tool|>"] == ids("<|tool|>")
    text = "say hello world, über 中文!"
    assert vocab.decode_bytes(tok.encode(text, add_special_tokens=False)) == text.encode()


# --- SentencePiece --------------------------------------------------------------------------


def test_sentencepiece_worked_examples(sentencepiece_tokenizer):
    vocab = ByteVocab.from_tokenizer(sentencepiece_tokenizer)
    ids = sentencepiece_tokenizer.convert_tokens_to_ids
    assert dict(vocab.special_ids) == {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    assert dict(vocab.roles) == {"bos": 2, "eos": 1, "pad": 0, "unk": 3}
    assert vocab.token_bytes[:4] == (None,) * 4
    # the '<0xNN>' tokens were registered as special added tokens, yet each emits its byte
    assert dict(vocab.byte_fallback_ids) == {b: 4 + b for b in range(256)}
    assert all(vocab.token_bytes[4 + b] == bytes([b]) for b in range(256))
    assert vocab.token_bytes[ids("<0xF0>")] == b"\xf0"
    assert vocab.token_bytes[ids("▁the")] == b" the"
    assert vocab.token_bytes[ids("▁")] == b" "
    assert vocab.missing_bytes() == []


def test_unigram_without_byte_fallback():
    """A T5-style Unigram: model-only '<unk>' (no added token) is special; bytes can be missing."""
    pieces = [("<unk>", 0.0), ("▁", -1.0), ("▁ab", -2.0), ("b", -2.0), ("é", -3.0)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=0, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    vocab = ByteVocab.from_tokenizer(tok)
    assert (vocab.family, vocab.strip_leading_space) == (TokenizerFamily.SENTENCEPIECE, True)
    assert vocab.token_bytes == (None, b" ", b" ab", b"b", "é".encode())
    assert dict(vocab.special_ids) == {"<unk>": 0} and dict(vocab.roles) == {"unk": 0}
    assert vocab.byte_fallback_ids == {}
    # 'a' and 0xC3 only occur inside longer tokens
    assert vocab.missing_bytes() == sorted(set(range(256)) - {ord(" "), ord("b")})
    ids = tok.encode("ab b").ids
    assert vocab.decode_bytes(ids) == tok.decode(ids).encode() == b"ab b"


def test_byte_level_bytes_keeps_out_of_table_strings_as_utf8():
    assert byte_level_bytes("ĠhelloĊ") == b" hello\n"
    assert byte_level_bytes("hello world") == b"hello world"  # ' ' is not a table character
    assert byte_level_bytes("中") == "中".encode()


def test_exact_ids_prefer_ordinary_token_over_byte_fallback(sentencepiece_tokenizer):
    vocab = ByteVocab.from_tokenizer(sentencepiece_tokenizer)
    exact = vocab.exact_ids()
    a = sentencepiece_tokenizer.convert_tokens_to_ids("a")
    assert vocab.byte_fallback_ids[ord("a")] < a  # the fallback has the lower id ...
    assert exact[b"a"] == a  # ... but the ordinary token wins
    assert exact[b"\xf0"] == vocab.byte_fallback_ids[0xF0]  # no ordinary token for F0
    assert exact[b" "] == sentencepiece_tokenizer.convert_tokens_to_ids("▁")
    assert len(exact) == len({b for b in vocab.token_bytes if b is not None})


def test_exact_ids_prefer_lower_id_among_ordinary_tokens(sentencepiece_tokenizer):
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(
        sentencepiece_tokenizer.backend_tokenizer.to_str()))
    tok.add_tokens([AddedToken(" the", normalized=False), AddedToken("▁and", normalized=True)])
    vocab = ByteVocab.from_tokenizer(tok)
    the, added_the = tok.convert_tokens_to_ids(["▁the", " the"])
    assert vocab.token_bytes[added_the] == vocab.token_bytes[the] == b" the"
    assert the < added_the and vocab.exact_ids()[b" the"] == the
    # a normalized added token is read with the family's rules: '▁' is a space
    assert vocab.token_bytes[tok.convert_tokens_to_ids("▁and")] == b" and"


def test_sentencepiece_byte_fallback_pieces_join_to_utf8(sentencepiece_tokenizer):
    vocab = ByteVocab.from_tokenizer(sentencepiece_tokenizer)
    ids = sentencepiece_tokenizer.encode("😀", add_special_tokens=False)
    assert sentencepiece_tokenizer.convert_ids_to_tokens(ids) == [
        "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert [vocab.token_bytes[i] for i in ids] == [b"\xf0", b"\x9f", b"\x98", b"\x80"]
    assert vocab.decode_bytes(ids).decode("utf-8") == "😀"


@PROPERTY
@given(text=SP_TEXT)
def test_sentencepiece_round_trip_without_prepend(text, sentencepiece_tokenizer):
    tok = sentencepiece_tokenizer
    assume(_no_special_text(text, tok))
    vocab = ByteVocab.from_tokenizer(tok)
    ids = tok.encode(text, add_special_tokens=False)
    assert vocab.decode_bytes(ids) == text.encode("utf-8")
    assert vocab.decode_bytes(ids) == tok.decode(ids, clean_up_tokenization_spaces=False).encode()


@PROPERTY
@given(text=SP_TEXT)
def test_sentencepiece_round_trip_with_prepend(text, llama2_metaspace, llama2_legacy):
    for tok in (llama2_metaspace, llama2_legacy):
        assume(_no_special_text(text, tok))
        vocab = ByteVocab.from_tokenizer(tok)
        ids = tok.encode(text, add_special_tokens=False)
        decoded = tok.decode(ids, clean_up_tokenization_spaces=False)
        assert vocab.decode_bytes(ids) == decoded.encode()
        # Metaspace prepends only when the text does not already start with a space
        if tok is llama2_legacy or not text.startswith(" "):
            assert vocab.decode_bytes(ids) == text.encode("utf-8")


def test_prepend_space_is_stripped_once_on_first_emitted_token(llama2_metaspace):
    tok = llama2_metaspace
    vocab = ByteVocab.from_tokenizer(tok)
    ids = tok.encode("The fox", add_special_tokens=False)
    assert vocab.token_bytes[ids[0]].startswith(b" ")  # the encoder prepended '▁'
    assert vocab.decode_bytes(ids) == b"The fox"
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert vocab.decode_bytes([bos, *ids, eos]) == b"The fox"  # specials are skipped first
    assert vocab.decode_bytes(ids + ids) == b"The fox The fox"  # only the first token


# --- WordPiece ------------------------------------------------------------------------------


def test_wordpiece_worked_examples(wordpiece_tokenizer):
    vocab = ByteVocab.from_tokenizer(wordpiece_tokenizer)
    tokens = wordpiece_tokenizer.convert_ids_to_tokens(list(range(len(vocab))))
    assert dict(vocab.special_ids) == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3,
                                       "[MASK]": 4}
    assert dict(vocab.roles) == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    for tid, token in enumerate(tokens[5:], start=5):
        expected = token[2:] if token.startswith("##") else " " + token
        assert vocab.token_bytes[tid] == expected.encode()
    ids = wordpiece_tokenizer.convert_tokens_to_ids(["the", "##e", ","])
    assert vocab.decode_bytes(ids) == b"thee ,"  # cleanup=False: no punctuation rewrite
    assert vocab.byte_fallback_ids == {}


@PROPERTY
@given(data=st.data())
def test_wordpiece_matches_decoder_without_cleanup(data, wordpiece_tokenizer):
    vocab = ByteVocab.from_tokenizer(wordpiece_tokenizer)
    ids = data.draw(st.lists(st.integers(5, len(vocab) - 1), max_size=20))
    tokens = wordpiece_tokenizer.convert_ids_to_tokens(ids)
    expected = decoders.WordPiece(prefix="##", cleanup=False).decode(tokens)
    if tokens and tokens[0].startswith("##"):
        # the decoder keeps '##' on a leading continuation piece; we emit only its characters
        expected = expected[2:]
    assert vocab.decode_bytes(ids) == expected.encode()


@PROPERTY
@given(data=st.data())
def test_wordpiece_round_trip_for_plain_words(data, wordpiece_tokenizer):
    """Exact for in-vocabulary words, single spaces, no punctuation (see module doc)."""
    vocab = wordpiece_tokenizer.get_vocab()
    starts = sorted(t for t in vocab if t.isalnum())
    pieces = sorted(t for t in vocab if t.startswith("##") and t[2:].isalnum())
    word = st.tuples(st.sampled_from(starts), st.lists(st.sampled_from(pieces), max_size=3))
    words = data.draw(st.lists(word, max_size=8))
    text = " ".join(start + "".join(p[2:] for p in rest) for start, rest in words)
    ids = wordpiece_tokenizer.encode(text, add_special_tokens=False)
    assert wordpiece_tokenizer.unk_token_id not in ids
    assert ByteVocab.from_tokenizer(wordpiece_tokenizer).decode_bytes(ids) == text.encode()


def test_decode_bytes_rejects_out_of_range_ids(source_tokenizer):
    vocab = ByteVocab.from_tokenizer(source_tokenizer)
    for bad in (-1, len(vocab)):
        with pytest.raises(IndexError):
            vocab.decode_bytes([bad])


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
