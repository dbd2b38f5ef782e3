"""Token pairs: exact overlap, decomposition into source pieces, special tokens by role."""

from __future__ import annotations

import pytest
from conftest import GERMAN, train_byte_level_bpe, train_sentencepiece_bpe, train_wordpiece

from tokenswap.vocab.bytes import ByteVocab
from tokenswap.vocab.pair import Provenance, build_pair


def _check_pieces(pair, source_vocab: ByteVocab, target_vocab: ByteVocab):
    """Every composed token's pieces concatenate to its bytes (unless bytes were skipped)."""
    checked = 0
    for tid in pair.ids_with(Provenance.EXACT, Provenance.COMPOSED):
        joined = b"".join(source_vocab.token_bytes[i] for i in pair.pieces[tid])
        if pair.provenance[tid] == Provenance.EXACT:
            assert len(pair.pieces[tid]) == 1
        if pair.skipped[tid]:
            assert len(joined) + pair.skipped[tid] == len(target_vocab.token_bytes[tid])
            continue
        assert joined == target_vocab.token_bytes[tid], (tid, pair.pieces[tid])
        checked += 1
    return checked


def test_byte_level_pair(source_tokenizer, german_tokenizer):
    pair = build_pair(source_tokenizer, german_tokenizer)
    counts = pair.counts()
    assert counts["total"] == len(german_tokenizer)
    assert counts["exact"] + counts["composed"] + counts["fallback"] + counts["special"] == len(pair)
    assert counts["fallback"] == 0  # byte-level source covers every byte
    assert counts["special"] == 3
    assert _check_pieces(pair, pair.source, pair.target) > 300


def test_composition_follows_source_bpe(source_tokenizer, german_tokenizer):
    pair = build_pair(source_tokenizer, german_tokenizer)
    backend = source_tokenizer.backend_tokenizer.model
    for tid in pair.ids_with(Provenance.COMPOSED)[:50]:
        token = german_tokenizer.convert_ids_to_tokens(int(tid))
        assert tuple(t.id for t in backend.tokenize(token)) == pair.pieces[tid]


def test_partial_utf8_tokens_decompose_into_bytes(source_tokenizer):
    # "ß" is two bytes; a target trained on it has both the char and, often, merges with it.
    target = train_byte_level_bpe(["ßßß ää öö"] * 50, 300)
    pair = build_pair(source_tokenizer, target)
    ss = target.convert_tokens_to_ids("ÃŁ")  # the byte-level spelling of "ß"
    assert pair.target.token_bytes[ss] == "ß".encode()
    assert _check_pieces(pair, pair.source, pair.target) > 0


def test_missing_source_bytes_fall_back_or_skip(german_tokenizer):
    # A source that never saw non-ASCII bytes, with a restricted alphabet.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<|endoftext|>", "<|im_start|>",
                                  "<|im_end|>"], show_progress=False)
    tok.train_from_iterator(["plain ascii text only"] * 10, trainer)
    source = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                     bos_token="<|im_start|>")
    pair = build_pair(source, german_tokenizer)
    counts = pair.counts()
    assert counts["fallback"] > 0  # e.g. 'ü' alone: no source byte covers it
    assert counts["partial"] > 0   # e.g. 'über': 'ber' covered, 'ü' skipped
    for tid in pair.ids_with(Provenance.FALLBACK):
        assert pair.pieces[tid] == ()


@pytest.mark.parametrize("make, size", [(train_sentencepiece_bpe, 460), (train_wordpiece, 300)])
def test_cross_family_pairs(make, size, source_tokenizer):
    target = make(GERMAN, size)
    pair = build_pair(source_tokenizer, target)
    counts = pair.counts()
    assert counts["exact"] > 20 and counts["composed"] > 20
    assert _check_pieces(pair, pair.source, pair.target) > 40
    # and the other way round: a SentencePiece/WordPiece source
    back = build_pair(target, source_tokenizer)
    assert _check_pieces(back, back.source, back.target) > 40


def test_specials_matched_by_content_then_role(source_tokenizer, sentencepiece_tokenizer):
    pair = build_pair(source_tokenizer, sentencepiece_tokenizer)
    bos = sentencepiece_tokenizer.bos_token_id
    eos = sentencepiece_tokenizer.eos_token_id
    assert pair.pieces[bos] == (source_tokenizer.bos_token_id,)
    assert pair.pieces[eos] == (source_tokenizer.eos_token_id,)
    assert pair.provenance[bos] == Provenance.SPECIAL
