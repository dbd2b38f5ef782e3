"""`tokenswap tune` on the real packaged SmolLM2 after a transfer: a few steps, the output
loads with plain transformers, generates, and its logged bits/byte is `tokenswap eval`'s."""

from __future__ import annotations

import json

import pytest
from conftest import GERMAN
from transformers import AutoModelForCausalLM, AutoTokenizer

import tokenswap

HELD_OUT = ["Die Katze schläft auf dem warmen Ofen, und draußen regnet es seit Stunden.",
            "Größere Häuser stehen am Fluss; die Straße dorthin ist schmal."]


@pytest.mark.slow
def test_tune_smollm2_after_transfer(tmp_path):
    tok = tokenswap.tokenizer_train(None, 600, texts=GERMAN * 5, like="default",
                                    out=tmp_path / "tok")
    tokenswap.transfer("default", tok, method="mean", out=tmp_path / "new")
    result = tokenswap.tune(tmp_path / "new", None, tmp_path / "tuned", texts=GERMAN * 5, steps=3,
                            batch_size=2, seq_len=64, embedding_fraction=0.34,
                            embedding_lr=1e-3, eval_texts=HELD_OUT, eval_every=3,
                            progress=False)
    assert result.step == 3 and result.loss == result.loss
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tuned")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tuned")
    assert loaded.get_vocab() == tok.get_vocab() and model.config.vocab_size >= len(tok)
    ids = model.generate(**loaded("Die Katze", return_tensors="pt"), max_new_tokens=8,
                         do_sample=False)
    assert ids.shape[1] > 2
    report = tokenswap.evaluate([str(tmp_path / "tuned")], HELD_OUT, progress=False)
    assert report.rows[0].result.bits_per_byte == pytest.approx(result.eval_bpb, rel=1e-4)
    meta = json.loads((tmp_path / "tuned" / "tokenswap.json").read_text())
    assert meta["transfer"]["method"] == "mean" and meta["tune"]["step"] == 3


@pytest.mark.slow
def test_distill_smollm2_transfer_from_the_recorded_source(tmp_path):
    """`--objective lm+alm` on the real pair: the teacher is the source the transfer recorded
    (the packaged SmolLM2 with its own tokenizer); every scored chunk spells the same bytes on
    both sides, and the step logs the ALM loss, chunks and teacher tokens."""
    from tokenswap.io.models import load_model
    from tokenswap.tuning.distill import micro_batch, pack_aligned
    from tokenswap.vocab.bytes import ByteVocab

    tok = tokenswap.tokenizer_train(None, 600, texts=GERMAN * 5, like="default",
                                    out=tmp_path / "tok")
    tokenswap.transfer("default", tok, method="mean", out=tmp_path / "new")
    teacher_tok = load_model("default").tokenizer
    aligned = pack_aligned(tok, teacher_tok, GERMAN * 5, 64)
    mb = micro_batch(aligned, list(range(len(aligned.blocks))))
    sv, tv = ByteVocab.from_tokenizer(tok), ByteVocab.from_tokenizer(teacher_tok)
    for r in range(len(aligned.blocks)):
        for k in range(int(mb.count[r])):
            s = b"".join(sv.token_bytes[i] or b"<s>" for i, c in zip(mb.ids[r].tolist(),
                         mb.chunks[r].tolist(), strict=True) if c == k)
            t = b"".join(tv.token_bytes[i] or b"<s>" for i, c in zip(mb.teacher[r].tolist(),
                         mb.teacher_chunks[r].tolist(), strict=True) if c == k)
            assert s == t and s
    result = tokenswap.tune(tmp_path / "new", None, tmp_path / "tuned", texts=GERMAN * 5,
                            steps=2, batch_size=2, seq_len=64, objective="lm+alm",
                            warmup_steps=0, progress=False)
    assert result.step == 2
    steps = [json.loads(x) for x in (tmp_path / "tuned" / "log.jsonl").read_text().splitlines()
             if '"alm_loss"' in x]
    assert len(steps) == 2 and all(s["alm_loss"] > 0 and s["chunks"] > 0 for s in steps)
    assert all(s["teacher_tokens"] > 0 for s in steps)
    meta = json.loads((tmp_path / "tuned" / "tokenswap.json").read_text())
    assert meta["teacher"] == "default" and meta["tune"]["objective"] == "lm+alm"
