"""The base check on the real SmolLM2: a copy fine-tuned here by `tokenswap tune` is taken for a
fine-tuned variant; the same model with another tokenizer is not."""

from __future__ import annotations

import re

import pytest
from conftest import GERMAN

import tokenswap
from tokenswap.errors import TokenswapError
from tokenswap.hypernet.model import Hypernet, SourceEmbeddings
from tokenswap.io.models import load_model


@pytest.mark.slow
def test_smollm2_fine_tuned_copy_is_a_variant_transferred_copy_is_not(tmp_path):
    base = load_model("default")
    hn = Hypernet.for_source(SourceEmbeddings.from_bundle(base), base_model="default",
                             tokenizer=base.tokenizer, d_model=32, n_layers=1, n_heads=2,
                             d_ff=64)
    assert hn.check_base(SourceEmbeddings.from_bundle(base), "default",
                         tokenizer=base.tokenizer) == "base"
    # every weight trained, embeddings at a high learning rate: still SmolLM2's rows
    tokenswap.tune("default", None, tmp_path / "tuned", texts=GERMAN * 5, steps=4,
                   batch_size=2, seq_len=64, embedding_fraction=0.5, embedding_lr=1e-3,
                   lr=1e-4, warmup_steps=1, progress=False)
    tuned = load_model(tmp_path / "tuned")
    source = SourceEmbeddings.from_bundle(tuned)
    assert source.hash() != hn.config.base_hash
    match = hn.check_base(source, "tuned", tokenizer=tuned.tokenizer)
    assert re.fullmatch(r"fine-tuned variant of default \(embedding rows (0\.9\d\d|1\.000) "
                        r"similar\)", match), match
    # SmolLM2 given a German tokenizer: not a variant, whatever its rows look like
    tok = tokenswap.tokenizer_train(None, 600, texts=GERMAN * 5, like="default",
                                    out=tmp_path / "tok")
    moved = tokenswap.transfer("default", tok, method="mean").bundle
    with pytest.raises(TokenswapError, match="its tokenizer is not the base's"):
        hn.check_base(SourceEmbeddings.from_bundle(moved), "moved", tokenizer=moved.tokenizer)


@pytest.mark.slow
def test_the_shipped_hypernet_transfers_the_packaged_model_without_a_flag(tmp_path):
    import subprocess
    import sys

    from tokenswap.hypernet import shipped

    assert [h.name for h in shipped.available()] == ["smollm2-135m-instruct"]  # it ships
    tok = tokenswap.tokenizer_train(None, 600, texts=GERMAN * 5, like="default",
                                    out=tmp_path / "tok")
    result = tokenswap.transfer("default", tok, method="hypernet", out=tmp_path / "m")
    assert result.stats.hypernet_base == "base"
    assert result.stats.input["composed"] > 0
    # the command line, as the README gives it; another base is refused in one line
    proc = subprocess.run([sys.executable, "-m", "tokenswap.cli", "transfer", "--model",
                           str(tmp_path / "m"), "--tokenizer", str(tmp_path / "tok"),
                           "--method", "hypernet", "--hypernet", "default", "--out",
                           str(tmp_path / "never")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "no shipped hypernet for" in proc.stderr
    assert not (tmp_path / "never").exists()
