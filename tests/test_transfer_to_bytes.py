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
