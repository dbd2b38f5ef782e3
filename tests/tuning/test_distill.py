"""Cross-tokenizer distillation (ALM): aligned packing, the binarised chunk loss, the alm
objectives of `tokenswap tune`, their resume and their one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ENGLISH, GERMAN, tiny_llama

from tokenswap.cli import main
from tokenswap.errors import TokenswapError
from tokenswap.io.models import ModelBundle
from tokenswap.tuning import tune_model
from tokenswap.tuning.data import pack
from tokenswap.tuning.distill import (
    alm_loss,
    chunk_sums,
    micro_batch,
    pack_aligned,
    token_logprobs,
)
from tokenswap.vocab.bytes import ByteVocab

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = GERMAN * 2 + ENGLISH[:10]
TINY = dict(batch_size=4, seq_len=32, lr=3e-3, warmup_steps=2, progress=False)


def spelled(vocab: ByteVocab, ids, chunks, n: int) -> list[bytes]:
    """Bytes of chunks 0..n-1 (special tokens as b'<s>')."""
    out = [b""] * n
    for i, c in zip(ids.tolist(), chunks.tolist(), strict=True):
        if c >= 0:
            out[c] += vocab.token_bytes[i] if vocab.token_bytes[i] is not None else b"<s>"
    return out


@pytest.mark.parametrize("teacher_name", ["source_tokenizer", "sentencepiece_tokenizer"])
def test_packing_keeps_the_lm_rows_and_chunks_spell_the_same_bytes(request, german_tokenizer,
                                                                   teacher_name):
    teacher = request.getfixturevalue(teacher_name)
    aligned = pack_aligned(german_tokenizer, teacher, TEXTS, 32)
    assert torch.equal(aligned.blocks, pack(german_tokenizer, TEXTS, 32))  # same data as lm
    sv, tv = ByteVocab.from_tokenizer(german_tokenizer), ByteVocab.from_tokenizer(teacher)
    rows = list(range(len(aligned.blocks)))
    mb = micro_batch(aligned, rows)
    assert int(mb.count.sum()) == aligned.chunk_count(rows) > 2 * len(rows)
    for r in rows:
        n = int(mb.count[r])
        assert int(mb.chunks[r, 0]) == -1 and int(mb.teacher_chunks[r][0]) == -1  # no context
        s = spelled(sv, mb.ids[r], mb.chunks[r], n)
        t = spelled(tv, mb.teacher[r], mb.teacher_chunks[r], n)
        assert s == t and all(s)
        # scored chunks are consecutive: between the first and last, nothing is skipped
        scored = mb.chunks[r][mb.chunks[r] >= 0].tolist()
        assert scored == sorted(scored) and set(scored) == set(range(n))


def test_chunk_logprobs_of_one_model_match_across_its_own_tokenization(source_tokenizer):
    """Teacher and student the same model and tokenizer: every token is its own chunk, the
    chunk log-likelihoods are equal and the loss is zero, with zero gradient."""
    model = tiny_llama(len(source_tokenizer))
    aligned = pack_aligned(source_tokenizer, source_tokenizer, TEXTS, 32)
    mb = micro_batch(aligned, [0, 3])
    assert all(int(c) == 31 for c in mb.count)  # 32 tokens: the first has no context
    ids = mb.ids
    logp = token_logprobs(model(input_ids=ids).logits, ids)
    student = chunk_sums(logp, mb.chunks, 31)
    teacher = torch.stack([chunk_sums(token_logprobs(model(input_ids=w[None]).logits, w[None]),
                                      c[None], 31)[0] for w, c in zip(mb.teacher,
                                                                      mb.teacher_chunks,
                                                                      strict=True)])
    torch.testing.assert_close(student, teacher, rtol=1e-4, atol=1e-4)
    assert float(alm_loss(teacher, student, 100.0).detach().abs().max()) < 1e-3


def test_alm_loss_is_the_binarised_kl_and_its_large_temperature_limit():
    t, s = torch.tensor([-3.0, -0.5, -8.0]), torch.tensor([-1.0, -0.5, -12.0])
    tau = 100.0
    pt, ps = torch.exp(t / tau), torch.exp(s / tau)
    kl = pt * torch.log(pt / ps) + (1 - pt) * torch.log((1 - pt) / (1 - ps))
    torch.testing.assert_close(alm_loss(t, s, tau), tau * kl, rtol=1e-3, atol=1e-5)
    # at large temperatures: |t| (r - 1 - ln r), r = s / t (tokenkit's binary_kl_temp_limit)
    r = s / t
    torch.testing.assert_close(alm_loss(t, s, 1e4), t.abs() * (r - 1 - torch.log(r)),
                               rtol=2e-2, atol=1e-3)
    # the student is pulled toward the teacher from both sides
    s = torch.tensor([-1.0, -6.0], requires_grad=True)
    alm_loss(torch.tensor([-3.0, -3.0]), s, tau).sum().backward()
    assert s.grad[0] > 0 and s.grad[1] < 0  # descending lowers s[0], raises s[1]


def teacher_bundle(tokenizer) -> ModelBundle:
    return ModelBundle(tiny_llama(len(tokenizer), seed=7), tokenizer, "tiny-teacher")


def alm_on_every_row(student, teacher, aligned) -> float:
    """Mean ALM loss over every packed row (a fixed set, unlike the training batches)."""
    mb = micro_batch(aligned, list(range(len(aligned.blocks))))
    size = int(mb.count.max())
    with torch.no_grad():
        t = torch.stack([chunk_sums(token_logprobs(teacher(input_ids=w[None]).logits, w[None]),
                                    c[None], size)[0]
                         for w, c in zip(mb.teacher, mb.teacher_chunks, strict=True)])
        s = chunk_sums(token_logprobs(student(input_ids=mb.ids).logits, mb.ids), mb.chunks, size)
    valid = torch.arange(size)[None] < mb.count[:, None]
    return float(alm_loss(t[valid], s[valid], 100.0).mean())


def test_alm_moves_the_student_toward_the_teacher(tmp_path, german_tokenizer, source_tokenizer):
    out = tmp_path / "alm"
    student, teacher = tiny_llama(len(german_tokenizer)), teacher_bundle(source_tokenizer)
    aligned = pack_aligned(german_tokenizer, source_tokenizer, TEXTS, 32)
    before = alm_on_every_row(student, teacher.model, aligned)
    tune_model(ModelBundle(student, german_tokenizer, "s"), TEXTS, out, steps=12,
               objective="alm", teacher=teacher, embedding_fraction=0.0,
               **{**TINY, "lr": 1e-2})
    assert alm_on_every_row(student, teacher.model, aligned) < 0.85 * before
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "alm_loss" in r]
    assert len(steps) == 12 and all(r["chunks"] > 0 and r["teacher_tokens"] > 0 for r in steps)
    meta = json.loads((out / "tokenswap.json").read_text())
    assert meta["tune"]["objective"] == "alm"


def test_bad_pairs_are_one_line_errors(german_tokenizer, source_tokenizer, wordpiece_tokenizer,
                                       sentencepiece_tokenizer, tmp_path):
    with pytest.raises(TokenswapError, match="neither a bos nor an eos"):
        pack_aligned(german_tokenizer, wordpiece_tokenizer, TEXTS, 32)
    with pytest.raises(TokenswapError, match=r"teacher's tokenizer does not spell"):
        # '▁' reads as a space in SentencePiece: that text cannot be spelled
        pack_aligned(german_tokenizer, sentencepiece_tokenizer, ["a▁b " * 20] + TEXTS, 32)
    eos_only = ModelBundle(tiny_llama(len(source_tokenizer)), source_tokenizer, "t")
    eos_only.tokenizer = source_tokenizer.__class__(tokenizer_object=source_tokenizer
                                                    .backend_tokenizer, eos_token="<|im_end|>")
    with pytest.raises(TokenswapError, match="starts documents with its bos token and the "
                                             "teacher with its eos token"):
        pack_aligned(german_tokenizer, eos_only.tokenizer, TEXTS, 32)
    with pytest.raises(TokenswapError, match="needs a teacher"):
        tune_model(ModelBundle(tiny_llama(len(german_tokenizer)), german_tokenizer, "s"), TEXTS,
                   tmp_path / "o", steps=1, objective="lm+alm", **TINY)
    assert not (tmp_path / "o").exists()


def test_cli_teacher_defaults_to_the_recorded_source(tmp_path, tiny_model_dir, german_tokenizer,
                                                     text_dir, capsys):
    student = tmp_path / "student"
    tiny_llama(len(german_tokenizer)).save_pretrained(student)
    german_tokenizer.save_pretrained(student)
    base = ["tune", "--model", str(student), "--corpus", str(text_dir), "--steps", "2",
            "--batch-size", "2", "--seq-len", "16", "--warmup-steps", "1"]
    assert main([*base, "--out", str(tmp_path / "o1"), "--objective", "alm"]) == 2
    err = capsys.readouterr().err
    assert "needs a teacher: pass --teacher MODEL" in err and "Traceback" not in err
    assert not (tmp_path / "o1").exists()
    (student / "tokenswap.json").write_text(json.dumps({"source_model": str(tiny_model_dir)}))
    assert main([*base, "--out", str(tmp_path / "o2"), "--objective", "lm+alm"]) == 0
    meta = json.loads((tmp_path / "o2" / "tokenswap.json").read_text())
    assert meta["teacher"] == str(tiny_model_dir) and meta["tune"]["objective"] == "lm+alm"
    assert main([*base, "--out", str(tmp_path / "o3"), "--objective", "alm", "--teacher",
                 str(tmp_path / "nowhere")]) == 2
    assert not (tmp_path / "o3").exists()
