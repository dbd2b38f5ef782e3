"""``tokenswap dynamic`` on a tiny model: mean and hypernet embeddings, the JSON report, a
hypernet of another base refused. (Bad-input cases run as processes in tests/test_contract.py.)"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import HYPERNET_SMALL, tiny_llama

from tokenswap.cli import main
from tokenswap.hypernet.model import Hypernet, SourceEmbeddings
from tokenswap.io.models import load_model

TEXTS = ["The lazy dog sleeps. The lazy dog dreams of the lazy fox and the lazy cat. The end.",
         "She sells sea shells by the sea shore; the shells she sells are surely sea shells."]


def args(model_dir, *extra):
    out = ["dynamic", "--model", str(model_dir), "--continuation-bytes", "12"]
    for t in TEXTS:
        out += ["--text", t]
    return out + list(extra)


def test_mean_embeddings_json_report(tmp_path, tiny_model_dir, capsys, one_thread):
    report = tmp_path / "r.json"
    assert main(args(tiny_model_dir, "--method", "mean", "--reduction", "0.2", "--generate", "3",
                     "--json", str(report))) == 0
    result = json.loads(report.read_text())
    assert result["batch"]["reduction"] >= 0.2 and result["batch"]["texts"] == 2
    c = result["continuation"]
    assert c["base"]["bytes"] == c["dynamic"]["bytes"] and c["base"]["tokens"] == c["dynamic"][
        "tokens"]
    assert c["dynamic"]["context_tokens"] < c["base"]["context_tokens"]
    assert result["cache"]["misses"] == result["batch"]["new_tokens"]
    assert "fewer" in capsys.readouterr().out


def test_hypernet_for_this_model_and_refused_for_another(tmp_path, tiny_model_dir, capsys,
                                                          one_thread):
    bundle = load_model(str(tiny_model_dir))
    own = Hypernet.for_source(SourceEmbeddings.from_bundle(bundle), base_model="tiny",
                              tokenizer=bundle.tokenizer, **HYPERNET_SMALL)
    own.save(tmp_path / "own")
    assert main(args(tiny_model_dir, "--hypernet", str(tmp_path / "own"), "--merges", "5")) == 0
    assert "embedded by hypernet" in capsys.readouterr().out

    other = tiny_llama(len(bundle.tokenizer), seed=7)
    with torch.no_grad():  # unrelated rows: not a fine-tuned variant of the tiny model
        other.get_input_embeddings().weight.copy_(torch.randn_like(
            other.get_input_embeddings().weight))
    source = SourceEmbeddings(other.get_input_embeddings().weight)
    Hypernet.for_source(source, base_model="other", **HYPERNET_SMALL).save(tmp_path / "other")
    assert main(args(tiny_model_dir, "--hypernet", str(tmp_path / "other"), "--merges", "5")) == 2
    assert "was trained for other" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--method", "focus"], "needs corpus"),
    (["--method", "maen"], "did you mean 'mean'"),
])
def test_methods_that_cannot_embed_merged_tokens(tiny_model_dir, capsys, extra, message):
    assert main(args(tiny_model_dir, *extra)) == 2
    assert message in capsys.readouterr().err
