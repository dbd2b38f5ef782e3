"""Every init method on the byte tokenizer (``--tokenizer bytes``) as the target: each byte the
source emits as one token is copied exactly, specials are copied, every row is finite.

Two tiny sources that, like SmolLM2 (21 of 256 bytes missing), lack byte tokens: a byte-level
BPE trained without the full byte alphabet, and a WordPiece (another family)."""

from __future__ import annotations

import pytest
import torch
from conftest import ENGLISH, GERMAN, HYPERNET_SMALL, SPECIALS, tiny_llama, train_wordpiece
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tokenswap import api
from tokenswap.hypernet.model import Hypernet, SourceEmbeddings
from tokenswap.init import list_methods
from tokenswap.io.models import ModelBundle
from tokenswap.vocab.bytes import ByteVocab

pytestmark = pytest.mark.usefixtures("one_thread")
DICTIONARY = [("der", "the"), ("schnelle", "quick"), ("braune", "brown"), ("fuchs", "fox"),
              ("hund", "dog"), ("und", "and"), ("ist", "is"), ("den", "the"), ("die", "the"),
              ("text", "text"), ("in", "in"), ("das", "the"), ("modell", "model"),
              ("nächste", "next"), ("token", "token")]


def byte_level_without_full_alphabet() -> PreTrainedTokenizerFast:
    """A byte-level BPE with only the bytes of its English training text (no 'ü', no 0xC3)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(ENGLISH, trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS,
                                                         show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", unk_token="<|endoftext|>")


@pytest.fixture(scope="module", params=["byte_level", "wordpiece"])
def source(request):
    if request.param == "byte_level":
        return byte_level_without_full_alphabet()
    return train_wordpiece(ENGLISH + GERMAN, 300)


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    d = tmp_path_factory.mktemp("bytes-init")
    (d / "de.txt").write_text("\n\n".join(GERMAN))
    (d / "en.txt").write_text("\n\n".join(ENGLISH))
    return d


@pytest.mark.parametrize("method", [m.name for m in list_methods()])
def test_every_method_fills_a_bytes_target(method, source, texts, monkeypatch):
    import tokenswap.init.wechsel as wechsel

    monkeypatch.setattr(wechsel, "MIN_PAIRS", 5)  # a tiny dictionary (as tests/init/test_wechsel)
    bundle = ModelBundle(tiny_llama(len(source), seed=4), source, "tiny")
    before = bundle.input_embeddings().detach().clone()
    inputs = {"corpus": [str(texts / "de.txt")]}
    if method == "hypernet":
        inputs["hypernet"] = Hypernet.for_source(SourceEmbeddings.from_bundle(bundle),
                                                 **HYPERNET_SMALL)
    if method == "wechsel":
        inputs.update(source_corpus=[str(texts / "en.txt")], dictionary=DICTIONARY)
    result = api.transfer(bundle, "bytes", method=method, **inputs)

    src, tgt = ByteVocab.from_tokenizer(source), ByteVocab.from_tokenizer(result.bundle.tokenizer)
    after = result.bundle.input_embeddings().detach()
    assert after.shape == (256 + len(src.special_ids), before.shape[1])
    assert torch.isfinite(after).all()
    one_byte = {b: i for b, i in src.exact_ids().items() if len(b) == 1}
    assert 20 < len(one_byte) < 256  # some bytes are missing: those rows fall back
    assert result.stats.pair["exact"] == len(one_byte)
    assert result.stats.pair["special"] == len(src.special_ids)
    copies = {tgt.exact_ids()[b]: sid for b, sid in one_byte.items()}
    copies.update({tid: src.special_ids[c] for c, tid in tgt.special_ids.items()})
    if method != "random":  # random draws every content row
        for tid, sid in copies.items():
            assert torch.equal(after[tid], before[sid]), (tid, sid)
