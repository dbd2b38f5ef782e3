"""`tokenswap transfer --tokenizer bytes` on the command line, then what a user does next: load it
with plain transformers, `eval` it, `tune --objective alm` it against the source."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import GERMAN
from transformers import AutoModelForCausalLM, AutoTokenizer

from tokenswap.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_transfer_to_bytes_then_eval_and_alm_tune(tmp_path, tiny_model_dir, source_tokenizer,
                                                  capsys):
    text = tmp_path / "de"
    text.mkdir()
    for i, t in enumerate(GERMAN[:8]):
        (text / f"{i}.txt").write_text(t * 3)
    out = tmp_path / "bytes"
    assert main(["transfer", "--model", str(tiny_model_dir), "--tokenizer", "bytes",
                 "--method", "mean", "--out", str(out)]) == 0
    assert "381 -> 259 tokens" in capsys.readouterr().out

    # plain transformers loads it; every byte row is the source's row for that byte
    tok, model = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out)
    source = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert len(tok) == model.get_input_embeddings().weight.shape[0] == 259
    sample = "Grüße, 日本!"
    ids = tok.encode(sample, add_special_tokens=False)
    assert len(ids) == len(sample.encode()) and tok.decode(ids) == sample
    for tid in ids:
        sid = source_tokenizer.convert_tokens_to_ids(tok.convert_ids_to_tokens(tid))
        assert torch.equal(model.get_input_embeddings().weight[tid],
                           source.get_input_embeddings().weight[sid])
    assert model.config.eos_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")

    report = tmp_path / "eval.json"
    assert main(["eval", "--model", str(out), "--baseline", str(tiny_model_dir), "--text",
                 str(text), "--max-length", "64", "--json", str(report)]) == 0
    rows = {r["name"]: r for r in json.loads(report.read_text())["rows"]}
    assert rows[str(out)]["tokens_per_byte"] == 1.0
    assert rows[str(out)]["bytes"] == rows[str(tiny_model_dir)]["bytes"]
    assert 0 < rows[str(out)]["bits_per_byte"] < 20

    tuned = tmp_path / "tuned"
    assert main(["tune", "--model", str(out), "--corpus", str(text), "--out", str(tuned),
                 "--objective", "alm", "--steps", "2", "--batch-size", "2", "--seq-len", "32",
                 "--warmup-steps", "1"]) == 0
    meta = json.loads((tuned / "tokenswap.json").read_text())
    assert meta["teacher"] == str(tiny_model_dir) and meta["tune"]["objective"] == "alm"
    steps = [json.loads(x) for x in (tuned / "log.jsonl").read_text().splitlines()]
    assert any(r.get("chunks", 0) > 0 for r in steps)


@pytest.mark.slow
def test_packaged_smollm2_to_bytes(tmp_path):
    """The real SmolLM2: its 235 single-byte tokens are copied, the 21 bytes it cannot emit fall
    back, its 17 specials and chat template are kept, and the saved model reads held-out text
    (here Python source, on every machine) better than chance at exactly one token per byte."""
    import sysconfig
    from pathlib import Path

    from tokenswap import api
    from tokenswap.io.models import load_model
    from tokenswap.scoring.bpb import bits_per_byte

    result = api.transfer("default", "bytes", method="mean", out=tmp_path / "bytes")
    assert result.stats.pair == {"special": 17, "exact": 235, "composed": 0, "fallback": 21,
                                 "partial": 0, "total": 273}
    source, model = load_model("default"), load_model(str(tmp_path / "bytes"))
    messages = [{"role": "user", "content": "Grüße 👋"}]
    assert (model.tokenizer.apply_chat_template(messages, tokenize=False)
            == source.tokenizer.apply_chat_template(messages, tokenize=False))
    text = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()[:1500]
    res = bits_per_byte(model.model, model.tokenizer, [text], max_length=512)
    assert res.tokens == res.bytes == len(text.encode())
    assert res.bits_per_byte < 8.0  # a uniform guess over 256 bytes is 8 bits
