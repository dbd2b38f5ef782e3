"""The tuning loop: it learns, scores held-out text as `tokenswap eval` does, keeps the best
model, saves a plain model dir, resumes after kill -9 (or a kill mid-checkpoint) to the same
weights, random state included, runs on 2 ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ENGLISH, GERMAN, tiny_llama
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from tokenswap.errors import TokenswapError
from tokenswap.io.models import ModelBundle
from tokenswap.scoring.bpb import bits_per_byte
from tokenswap.training import loop as training_loop
from tokenswap.tuning import tune_model
from tokenswap.tuning.config import TuneConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(batch_size=4, seq_len=32, lr=3e-3, warmup_steps=2, progress=False)
HELD_OUT = GERMAN[1::4][:3] + ENGLISH[:2]


def bundle(tokenizer, tied: bool = True) -> ModelBundle:
    return ModelBundle(tiny_llama(len(tokenizer), tied=tied, seed=0 if tied else 1), tokenizer,
                       "tiny-llama")


def log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def weights(path) -> dict:
    model = AutoModelForCausalLM.from_pretrained(path)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("tied", [True, False])
def test_tuning_lowers_held_out_bpb_and_saves_a_plain_model(tmp_path, german_tokenizer, tied):
    out = tmp_path / "tuned"
    result = tune_model(bundle(german_tokenizer, tied), GERMAN * 3, out, eval_texts=HELD_OUT,
                        steps=16, eval_every=4, checkpoint_every=8, embedding_fraction=0.25,
                        **TINY)
    records = log(out)
    evals = [r for r in records if "eval_bpb" in r]
    assert [r["step"] for r in evals] == [0, 4, 8, 12, 16]
    assert evals[-1]["eval_bpb"] < evals[0]["eval_bpb"] - 0.2
    stages = [r["stage"] for r in records if "loss" in r]
    assert stages == ["embeddings"] * 4 + ["full"] * 12
    # the logged number is `tokenswap eval`'s bits/byte of the saved model on the same bytes
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.get_vocab() == german_tokenizer.get_vocab()
    again = bits_per_byte(model, tok, HELD_OUT)
    assert again.bits_per_byte == pytest.approx(evals[-1]["eval_bpb"], rel=1e-5)
    assert again.bytes == evals[-1]["eval_bytes"] == sum(len(t.encode()) for t in HELD_OUT)
    assert result.best_bpb == min(r["eval_bpb"] for r in evals)
    best = AutoModelForCausalLM.from_pretrained(out / "best")
    assert bits_per_byte(best, tok, HELD_OUT).bits_per_byte == pytest.approx(result.best_bpb,
                                                                             rel=1e-5)
    assert model.config.tie_word_embeddings == tied
    generated = model.generate(**tok("Die", return_tensors="pt"), max_new_tokens=4,
                               do_sample=False)
    assert generated.shape[1] > 1
    meta = json.loads((out / "tokenswap.json").read_text())
    assert meta["tune"]["step"] == 16 and meta["tune"]["stage"] == "full"


def test_embedding_stage_leaves_the_body_untouched(tmp_path, german_tokenizer):
    b = bundle(german_tokenizer, tied=False)
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    tune_model(b, GERMAN, tmp_path / "emb", steps=3, stage="embeddings", **TINY)
    after = weights(tmp_path / "emb")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"model.embed_tokens.weight", "lm_head.weight"}


def test_gradient_accumulation_matches_one_big_batch(tmp_path, german_tokenizer):
    a = tune_model(bundle(german_tokenizer), GERMAN, tmp_path / "a", steps=3, **TINY)
    b = tune_model(bundle(german_tokenizer), GERMAN, tmp_path / "b", steps=3, grad_accum=4,
                   **TINY)
    assert a.loss == pytest.approx(b.loss, rel=1e-5)
    torch.testing.assert_close(a.model.state_dict(), b.model.state_dict(), rtol=1e-4,
                               atol=1e-6)


def test_pure_bf16_trains_and_saves_bf16(tmp_path, german_tokenizer):
    result = tune_model(bundle(german_tokenizer), GERMAN * 2, tmp_path / "bf16",
                        eval_texts=HELD_OUT, steps=8, eval_every=8, precision="bf16", **TINY)
    evals = [r["eval_bpb"] for r in log(tmp_path / "bf16") if "eval_bpb" in r]
    assert evals[-1] < evals[0]
    assert next(result.model.parameters()).dtype == torch.bfloat16
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"


def test_lora_output_is_merged_and_differs_from_the_start(tmp_path, german_tokenizer):
    b = bundle(german_tokenizer)
    start = {k: v.clone() for k, v in b.model.state_dict().items()}
    tune_model(b, GERMAN, tmp_path / "lora", steps=4, stage="lora", lora_rank=4,
               embedding_fraction=0.0, save_adapter=True, **TINY)
    after = weights(tmp_path / "lora")
    assert set(after) == set(start)  # no adapter tensors left in the plain model
    assert not torch.equal(after["model.layers.0.self_attn.q_proj.weight"],
                           start["model.layers.0.self_attn.q_proj.weight"])
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()


def test_time_budget_and_no_grad_callers(tmp_path, german_tokenizer, fake_clocks):
    fake_clocks.wall, fake_clocks.cpu = 1.0, 2.0  # seconds per training step
    with torch.no_grad():  # benchmarks call with gradients off; the steps must still learn
        result = tune_model(bundle(german_tokenizer), GERMAN, tmp_path / "t", minutes=0.1,
                            **TINY)
    assert (result.step, result.train_seconds, result.train_cpu_seconds) == (6, 6.0, 12.0)
    records = [r for r in log(tmp_path / "t") if "loss" in r]
    assert records[-1]["loss"] < records[0]["loss"]
    # both clocks are logged, and the schedule follows the budget: warm-up, then decay to zero
    assert [r["train_cpu_seconds"] for r in records] == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    lrs = [r["lr"] / TINY["lr"] for r in records]
    assert lrs[0] == 0.0 and lrs[1] > 0.9 and lrs[1:] == sorted(lrs[1:], reverse=True)


def test_cpu_clock_budget(tmp_path, german_tokenizer, fake_clocks):
    """clock="cpu" stops on the process's CPU time in training steps, not the wall clock: with
    steps of 1 s wall and 3 s CPU time, a 6 s budget buys 2 steps on the CPU clock, 6 on the
    wall clock."""
    fake_clocks.wall, fake_clocks.cpu = 1.0, 3.0
    cpu = tune_model(bundle(german_tokenizer), GERMAN, tmp_path / "cpu", minutes=0.1,
                     clock="cpu", **TINY)
    assert (cpu.step, cpu.train_seconds, cpu.train_cpu_seconds) == (2, 2.0, 6.0)
    wall = tune_model(bundle(german_tokenizer), GERMAN, tmp_path / "wall", minutes=0.1, **TINY)
    assert (wall.step, wall.train_seconds, wall.train_cpu_seconds) == (6, 6.0, 18.0)
    with pytest.raises(TokenswapError, match="clock must be one of wall, cpu"):
        TuneConfig(minutes=1.0, clock="gpu")


def test_evaluation_and_checkpoints_do_not_count_against_the_budget(tmp_path, german_tokenizer,
                                                                     fake_clocks, monkeypatch):
    """Evaluation and checkpoints that take 100 s each (on both clocks) leave a 6 s budget
    its 6 steps of 1 s."""
    import tokenswap.tuning.loop as tuning_loop

    def slow(real):
        def call(*args):
            fake_clocks.advance(100.0)
            return real(*args)
        return call

    monkeypatch.setattr(training_loop, "write_checkpoint", slow(training_loop.write_checkpoint))
    monkeypatch.setattr(tuning_loop, "_held_out", slow(tuning_loop._held_out))
    result = tune_model(bundle(german_tokenizer), GERMAN, tmp_path / "t", eval_texts=HELD_OUT,
                        minutes=0.1, eval_every=1, checkpoint_every=1, **TINY)
    assert (result.step, result.train_seconds) == (6, 6.0)
    evals = [r for r in log(tmp_path / "t") if "eval_bpb" in r]
    assert [r["train_seconds"] for r in evals] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


class Stop(Exception):
    """Ends a run from its callback, as a kill would (after the step's checkpoint, if any)."""


def dropout_bundle(tokenizer) -> ModelBundle:
    """The tiny Llama with attention dropout: every training step draws from torch's RNG."""
    config = tiny_llama(len(tokenizer)).config
    config.attention_dropout = 0.3
    torch.manual_seed(0)
    return ModelBundle(LlamaForCausalLM(config), tokenizer, "tiny-llama-dropout")


@pytest.mark.parametrize("objective", ["lm", "lm+alm"])
def test_resume_restores_the_random_state(tmp_path, german_tokenizer, source_tokenizer,
                                          monkeypatch, objective):
    """Stopped after step 4 (checkpoint at 3) and resumed, a run with attention dropout ends on
    the weights of an uninterrupted one; a resume that did not restore the RNG states would
    draw other dropout masks and end elsewhere (checked: the test can fail). With a teacher
    (lm+alm) too: it is frozen and rebuilt, the checkpoint holds only the student."""
    opts = dict(TINY, steps=6, checkpoint_every=3, seed=4, embedding_fraction=0.0,
                objective=objective)
    if objective != "lm":
        opts["teacher"] = ModelBundle(tiny_llama(len(source_tokenizer), seed=7),
                                      source_tokenizer, "tiny-teacher")

    def stop(record):
        if record["step"] == 4:
            raise Stop

    def interrupted_and_resumed(out) -> dict:
        with pytest.raises(Stop):
            tune_model(dropout_bundle(german_tokenizer), GERMAN, out, callback=stop, **opts)
        tune_model(dropout_bundle(german_tokenizer), GERMAN, out, **opts)
        return weights(out)

    tune_model(dropout_bundle(german_tokenizer), GERMAN, tmp_path / "straight", **opts)
    straight = weights(tmp_path / "straight")
    resumed = interrupted_and_resumed(tmp_path / "resumed")
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    monkeypatch.setattr(training_loop, "set_rng_state", lambda state: None)
    forgetful = interrupted_and_resumed(tmp_path / "forgetful")
    assert any(not torch.equal(straight[k], forgetful[k]) for k in straight)


def test_output_directory_rules(tmp_path, german_tokenizer):
    out = tmp_path / "o"
    tune_model(bundle(german_tokenizer), GERMAN, out, steps=1, **TINY)
    with pytest.raises(TokenswapError, match="holds a checkpoint; leave out --no-resume"):
        tune_model(bundle(german_tokenizer), GERMAN, out, steps=2, resume=False, **TINY)
    with pytest.raises(TokenswapError, match="other seed, batch_size"):
        tune_model(bundle(german_tokenizer), GERMAN, out, steps=2, **{**TINY, "batch_size": 2},
                   seed=3)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(TokenswapError, match="no checkpoint"):
        tune_model(bundle(german_tokenizer), GERMAN, tmp_path / "other", steps=1, **TINY)
    with pytest.raises(TokenswapError, match="parent directory"):
        tune_model(bundle(german_tokenizer), GERMAN, tmp_path / "x" / "y", steps=1, **TINY)


KILL_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    from tokenswap.io import save
    from tokenswap.io.models import load_model
    from tokenswap.tuning import tune_model
    torch.set_num_threads(1)
    model_dir, out, texts, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    opts = json.loads(sys.argv[5])

    def die(record):  # kill -9 in the middle of the run, after the step's checkpoint (if any)
        if str(record["step"]) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    if kill_at == "swap":  # no renameat2: killed once the old checkpoint moved aside
        save.exchange = lambda a, b: False
        real_replace = os.replace

        def replace(src, dst):
            real_replace(src, dst)
            if os.path.basename(dst).startswith(".checkpoint.old-"):
                os._exit(9)

        os.replace = replace
    tune_model(load_model(model_dir), json.loads(open(texts).read()), out, callback=die, **opts)
""")


def run_script(tmp_path, args: list[str], *, torchrun: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"] if torchrun else [sys.executable]
    return subprocess.run(launcher + args, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # five subprocesses: ~40 s on 2 busy cores
def test_resume_after_kill_9_or_a_kill_mid_checkpoint_gives_the_same_weights(tmp_path,
                                                                            tiny_model_dir):
    script = tmp_path / "tune.py"
    script.write_text(KILL_SCRIPT)
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(GERMAN + ENGLISH))
    opts = json.dumps(dict(TINY, steps=8, checkpoint_every=3, eval_every=4, seed=4,
                           embedding_fraction=0.25, weight_decay=0.1))
    held = tmp_path / "held.json"
    held.write_text(json.dumps(HELD_OUT))
    base = [str(script), str(tiny_model_dir)]
    straight = run_script(tmp_path, base + [str(tmp_path / "a"), str(texts), "none", opts])
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = run_script(tmp_path, base + [str(tmp_path / "b"), str(texts), "5", opts])
    assert killed.returncode == -signal.SIGKILL
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and state["data_position"] == 12
    assert not (tmp_path / "b" / "config.json").exists()  # no final model from a killed run
    resumed = run_script(tmp_path, base + [str(tmp_path / "b"), str(texts), "none", opts])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    losses_a = {r["step"]: r["loss"] for r in log(tmp_path / "a") if "loss" in r}
    losses_b = {r["step"]: r["loss"] for r in log(tmp_path / "b") if "loss" in r}
    assert losses_a == losses_b  # steps 4-5 ran twice in b, with the same losses
    assert any("resumed_from" in r for r in log(tmp_path / "b"))
    # killed between the renames of a checkpoint swap: the complete one beside is resumed
    swapped = run_script(tmp_path, base + [str(tmp_path / "c"), str(texts), "swap", opts])
    assert swapped.returncode == 9, swapped.stderr[-2000:]
    assert not (tmp_path / "c" / "checkpoint").exists()
    resumed = run_script(tmp_path, base + [str(tmp_path / "c"), str(texts), "none", opts])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [r["resumed_from"] for r in log(tmp_path / "c") if "resumed_from" in r] == [6]
    c = weights(tmp_path / "c")
    for key in a:
        assert torch.equal(a[key], c[key]), key
    assert [p.name for p in (tmp_path / "c").iterdir() if p.name.startswith(".")] == []


DDP_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from tokenswap.io.models import load_model
    from tokenswap.tuning import tune_model
    model_dir, out, texts, held = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    opts = json.loads(sys.argv[5])
    record = os.path.join(model_dir, "tokenswap.json")
    if os.path.exists(record):  # the teacher: the recorded source, loaded by every rank
        opts["teacher"] = load_model(json.loads(open(record).read())["source_model"])
    tune_model(load_model(model_dir), json.loads(open(texts).read()), out,
               eval_texts=json.loads(open(held).read()), **opts)
""")


@pytest.mark.slow  # torchrun + one process: ~25-35 s each on 2 busy cores
@pytest.mark.parametrize("fsdp, objective", [(False, "lm"), (True, "lm"), (False, "lm+alm"),
                                             (True, "alm")],
                         ids=["ddp", "fsdp", "ddp-lm+alm", "fsdp-alm"])
def test_two_ranks_match_one_process(tmp_path, tiny_model_dir, german_tokenizer, fsdp,
                                     objective):
    """Two ranks give the losses, scores and weights of one process; with a teacher (one copy
    per rank, its windows and chunk counts normalised over the global batch) too."""
    script = tmp_path / "tune.py"
    script.write_text(DDP_SCRIPT)
    texts, held = tmp_path / "texts.json", tmp_path / "held.json"
    texts.write_text(json.dumps(GERMAN + ENGLISH))
    held.write_text(json.dumps(HELD_OUT))
    opts = json.dumps(dict(TINY, steps=4, grad_accum=2, eval_every=2, checkpoint_every=2,
                           embedding_fraction=0.25, seed=2, fsdp=fsdp, objective=objective))
    student = tiny_model_dir
    if objective != "lm":  # a German student distilled from the tiny model
        student = tmp_path / "student"
        tiny_llama(len(german_tokenizer), seed=3).save_pretrained(student)
        german_tokenizer.save_pretrained(student)
        (student / "tokenswap.json").write_text(json.dumps({"source_model":
                                                            str(tiny_model_dir)}))
    args = [str(script), str(student)]
    one = run_script(tmp_path, args + [str(tmp_path / "one"), str(texts), str(held), opts])
    assert one.returncode == 0, one.stderr[-2000:]
    two = run_script(tmp_path, args + [str(tmp_path / "two"), str(texts), str(held), opts],
                     torchrun=True)
    assert two.returncode == 0, two.stderr[-3000:]
    loss1 = [r["loss"] for r in log(tmp_path / "one") if "loss" in r]
    loss2 = [r["loss"] for r in log(tmp_path / "two") if "loss" in r]
    assert len(loss1) == len(loss2) == 4
    assert loss1 == pytest.approx(loss2, rel=1e-5)
    bpb1 = [r["eval_bpb"] for r in log(tmp_path / "one") if "eval_bpb" in r]
    bpb2 = [r["eval_bpb"] for r in log(tmp_path / "two") if "eval_bpb" in r]
    assert bpb1 == pytest.approx(bpb2, rel=1e-5)
    torch.testing.assert_close(weights(tmp_path / "one"), weights(tmp_path / "two"), rtol=1e-4,
                               atol=1e-5)
