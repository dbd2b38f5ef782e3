"""Shipped hypernets: chosen for their base model without a flag, and checked against their
recorded hashes (src/tokenswap/hypernet/shipped.py, Hypernet.load)."""

from __future__ import annotations

import pytest
import torch
from conftest import HYPERNET_SMALL as SMALL
from conftest import tiny_llama

from tokenswap import api
from tokenswap.errors import TokenswapError
from tokenswap.hypernet import shipped
from tokenswap.hypernet.model import CHECKSUM_FILE, Hypernet, SourceEmbeddings
from tokenswap.io.models import ModelBundle

pytestmark = pytest.mark.usefixtures("one_thread")


def base_and_hypernet(source_tokenizer, path):
    base = ModelBundle(tiny_llama(len(source_tokenizer), seed=1), source_tokenizer, "tiny-base")
    hn = Hypernet.for_source(SourceEmbeddings.from_bundle(base), base_model="tiny-base",
                             tokenizer=source_tokenizer, **SMALL)
    torch.nn.init.normal_(hn.input_head[-1].weight, std=0.01)
    hn.save(path)
    return base, hn


@pytest.mark.parametrize("damaged", ["hypernet.safetensors", "hypernet.json"])
def test_damaged_files_are_refused(tmp_path, source_tokenizer, damaged):
    base_and_hypernet(source_tokenizer, tmp_path / "hn")
    assert (tmp_path / "hn" / CHECKSUM_FILE).is_file()
    Hypernet.load(tmp_path / "hn")  # intact: loads
    data = bytearray((tmp_path / "hn" / damaged).read_bytes())
    data[-2] ^= 0x01
    (tmp_path / "hn" / damaged).write_bytes(bytes(data))
    with pytest.raises(TokenswapError, match=f"{damaged} does not match its recorded sha256"):
        Hypernet.load(tmp_path / "hn")


def test_the_shipped_hypernet_is_used_for_its_base_only(tmp_path, monkeypatch, source_tokenizer,
                                                       german_tokenizer):
    weights = tmp_path / "weights"
    base, _ = base_and_hypernet(source_tokenizer, weights / "tiny")
    monkeypatch.setattr(shipped, "WEIGHTS", weights)
    monkeypatch.setattr(shipped, "SHIPPED", (shipped.ShippedHypernet(
        "tiny", "tiny-base", "benchmarks/results/none.md", "a test"),))
    result = api.transfer(base, german_tokenizer, method="hypernet", out=tmp_path / "m")
    assert result.stats.hypernet_base is not None and result.stats.input["composed"] > 0
    explicit = ModelBundle(tiny_llama(len(source_tokenizer), seed=1), source_tokenizer,
                           "tiny-base")
    again = api.transfer(explicit, german_tokenizer, method="hypernet", hypernet="default")
    assert torch.equal(again.bundle.input_embeddings(), result.bundle.input_embeddings())

    other = ModelBundle(tiny_llama(len(source_tokenizer), seed=7), source_tokenizer, "other")
    for hypernet in (None, "default"):
        with pytest.raises(TokenswapError, match="no shipped hypernet for other"):
            api.transfer(other, german_tokenizer, method="hypernet", hypernet=hypernet,
                         out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_no_shipped_hypernet_names_the_flag(monkeypatch, tmp_path, source_tokenizer,
                                            german_tokenizer):
    monkeypatch.setattr(shipped, "WEIGHTS", tmp_path / "none")
    base = ModelBundle(tiny_llama(len(source_tokenizer), seed=1), source_tokenizer, "tiny-base")
    with pytest.raises(TokenswapError, match="needs --hypernet"):
        api.transfer(base, german_tokenizer, method="hypernet")
    with pytest.raises(TokenswapError, match="no shipped hypernet for tiny-base"):
        api.transfer(base, german_tokenizer, method="hypernet", hypernet="default")
