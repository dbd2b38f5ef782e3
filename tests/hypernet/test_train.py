"""Hypernet training: the loss is the model's own, it learns, resumes exactly (random state
included), keeps to its time budget with a capped warm-up, runs under DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ENGLISH, GERMAN, tiny_llama

from tokenswap.errors import TokenswapError
from tokenswap.hypernet.model import Hypernet, PieceInputs, Prediction, SourceEmbeddings
from tokenswap.hypernet.sampler import SamplerConfig, TokenizerSampler
from tokenswap.hypernet.train import (
    ChunkTeacher,
    FrozenLM,
    TrainConfig,
    _Evaluator,
    aux_loss,
    batch_for_step,
    chunk_texts,
    encode,
    sample_pool,
    train_hypernet,
)
from tokenswap.io.models import ModelBundle
from tokenswap.training import loop as training_loop
from tokenswap.vocab.pair import build_pair

TINY = dict(batch_size=4, seq_len=32, lr=3e-3, warmup_steps=2, log_every=1, progress=False,
            sampler={"vocab_min": 300, "vocab_max": 400},
            hypernet={"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64})


pytestmark = pytest.mark.usefixtures("one_thread")


def bundle(tokenizer, tied: bool = True) -> ModelBundle:
    return ModelBundle(tiny_llama(len(tokenizer), tied=tied, seed=0 if tied else 1), tokenizer,
                       "tiny-llama" if tied else "tiny-llama-untied")


def log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("tied", [True, False])
def test_identity_pair_step0_loss_is_the_models_own_loss(source_tokenizer, tied):
    b = bundle(source_tokenizer, tied)
    source = SourceEmbeddings.from_bundle(b)
    pair = build_pair(source_tokenizer, source_tokenizer)
    hn = Hypernet.for_source(source, **TINY["hypernet"])
    pred = hn(PieceInputs.from_pair(pair, 8), source)
    ids, mask = encode(source_tokenizer, ENGLISH[:3], 24, "cpu")
    nats, count = FrozenLM(b.model).loss_sum(pred, ids, mask)
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        expected = b.model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert count == int(mask[:, 1:].sum())
    torch.testing.assert_close(nats / count, expected, rtol=1e-4, atol=1e-4)
    assert float(aux_loss(pred, pair, torch.device("cpu"), source).detach()) < 1e-10
    assert all(not p.requires_grad for p in b.model.parameters())


def test_aux_loss_is_scale_free_and_positive_off_source():
    from tokenswap.vocab.pair import Provenance, TokenPair

    source = torch.randn(5, 4)
    pair = TokenPair(None, None, [(0,), (1,), (2, 3)],
                     torch.tensor([1, 1, 2]).numpy().astype("int8"))
    assert list(pair.ids_with(Provenance.EXACT)) == [0, 1]
    pred = Prediction(source[[0, 1, 2]] + 1.0)
    small = aux_loss(pred, pair, torch.device("cpu"), SourceEmbeddings(source))
    scaled = aux_loss(Prediction(10 * pred.input), pair, torch.device("cpu"),
                      SourceEmbeddings(10 * source))
    assert float(small) > 0
    torch.testing.assert_close(small, scaled)


def test_batches_are_deterministic_and_cover_the_data():
    chunks = chunk_texts(["word " * 200, "short text"], seq_len=8)
    assert all(len(c) <= 48 for c in chunks) and "short text" in chunks
    seen = [t for s in range(len(chunks)) for t in batch_for_step(chunks, s, 1, seed=3)]
    assert sorted(seen) == sorted(chunks)  # one epoch is a permutation
    assert batch_for_step(chunks, 5, 2, seed=3) == batch_for_step(chunks, 5, 2, seed=3)
    assert batch_for_step(chunks, 0, 4, seed=3) != batch_for_step(chunks, 0, 4, seed=4)


def test_sample_pool_holds_the_batch_and_more_texts_deterministically(source_tokenizer):
    chunks = [f"text number {i} " * 4 for i in range(100)]
    cfg = TrainConfig(steps=1, batch_size=4, sample_texts=32, seed=1)
    batch = batch_for_step(chunks, 7, cfg.batch_size, cfg.seed)
    pool = sample_pool(chunks, batch, 7, cfg)
    assert len(pool) == 32 and pool[:4] == batch and set(pool) <= set(chunks)
    assert pool == sample_pool(chunks, batch, 7, cfg)
    assert pool != sample_pool(chunks, batch, 8, cfg)
    alone = TrainConfig(steps=1, batch_size=4, sample_texts=4)
    assert sample_pool(chunks, batch, 7, alone) == batch
    # more text gives the sampler more repeated substrings: a larger vocabulary
    sampler = TokenizerSampler(source_tokenizer, SamplerConfig(vocab_min=8000, vocab_max=8000))
    assert len(sampler.sample(pool, seed=0)) > len(sampler.sample(batch, seed=0))


def test_training_lowers_held_out_loss_and_logs(tmp_path, source_tokenizer):
    result = train_hypernet(bundle(source_tokenizer), GERMAN * 2, tmp_path / "hn",
                            eval_texts=GERMAN[:8], steps=12, eval_every=6, identity_steps=2,
                            checkpoint_every=100, **TINY)
    assert result.step == 12
    records = log(tmp_path / "hn")
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 6, 12]
    # -0.042 nats; step 0 trains at learning rate 0 (transformers' warm-up starts there)
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"] - 0.03
    train = [r for r in records if "loss" in r]
    assert len(train) == 12 and all(r["loss"] == r["loss"] for r in train)
    assert train[0]["vocab"] == len(source_tokenizer.get_vocab())  # identity stage
    assert train[2]["vocab"] != train[0]["vocab"]
    back = Hypernet.load(tmp_path / "hn")
    assert back.config.base_model == "tiny-llama"
    torch.testing.assert_close(back.state_dict(), result.hypernet.state_dict())
    assert (tmp_path / "hn" / "checkpoint" / "state.pt").is_file()


@pytest.mark.parametrize("tied", [True, False])
def test_resume_gives_the_same_weights_as_one_run(tmp_path, source_tokenizer, tied, monkeypatch):
    """With dropout in the hypernet every step draws from torch's RNG: the resumed run ends on
    the uninterrupted run's weights only because the checkpoint restores the RNG states (a
    resume without them ends elsewhere: checked below, so the test can fail)."""
    opts = dict(TINY, steps=6, identity_steps=1, checkpoint_every=2, seed=5,
                hypernet={**TINY["hypernet"], "dropout": 0.2})
    straight = train_hypernet(bundle(source_tokenizer, tied), ENGLISH, tmp_path / "a", **opts)
    first = train_hypernet(bundle(source_tokenizer, tied), ENGLISH, tmp_path / "b",
                           stop_after=3, **opts)
    assert first.step == 3
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and state["data_position"] == 12
    resumed = train_hypernet(bundle(source_tokenizer, tied), ENGLISH, tmp_path / "b", **opts)
    assert resumed.step == 6
    torch.testing.assert_close(resumed.hypernet.state_dict(), straight.hypernet.state_dict(),
                               rtol=0, atol=0)
    with pytest.raises(TokenswapError, match="other seed, batch_size"):
        train_hypernet(bundle(source_tokenizer, tied), ENGLISH, tmp_path / "b",
                       **{**opts, "seed": 6, "batch_size": 2})
    losses = {r["step"]: r["loss"] for r in log(tmp_path / "a") if "loss" in r}
    assert losses[6] == pytest.approx(resumed.loss)
    # Something was learned: the weights moved off the FVT start.
    assert straight.hypernet.input_head[-1].weight.abs().max() > 0
    if not tied:
        assert straight.hypernet.output_head[-1].weight.abs().max() > 0
    if tied:  # once is enough to show the RNG states matter
        monkeypatch.setattr(training_loop, "set_rng_state", lambda state: None)
        train_hypernet(bundle(source_tokenizer, tied), ENGLISH, tmp_path / "c", stop_after=3,
                       **opts)
        forgetful = train_hypernet(bundle(source_tokenizer, tied), ENGLISH, tmp_path / "c",
                                   **opts)
        assert any(not torch.equal(a, b) for a, b in zip(
            forgetful.hypernet.state_dict().values(), straight.hypernet.state_dict().values(),
            strict=True))


def test_existing_output_needs_resume_and_empty_is_fine(tmp_path, source_tokenizer):
    (tmp_path / "empty").mkdir()
    train_hypernet(bundle(source_tokenizer), ENGLISH, tmp_path / "empty", steps=1, **TINY)
    with pytest.raises(TokenswapError, match="holds a checkpoint; leave out --no-resume"):
        train_hypernet(bundle(source_tokenizer), ENGLISH, tmp_path / "empty", steps=2,
                       resume=False, **TINY)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(TokenswapError, match="no checkpoint"):
        train_hypernet(bundle(source_tokenizer), ENGLISH, tmp_path / "other", steps=1, **TINY)
    with pytest.raises(TokenswapError, match="--steps or --minutes"):
        train_hypernet(bundle(source_tokenizer), ENGLISH, tmp_path / "x", **TINY)
    with pytest.raises(TokenswapError, match="unknown hypernet training option 'stepz' "
                                             r"\(did you mean 'steps'\?\)"):
        train_hypernet(bundle(source_tokenizer), ENGLISH, tmp_path / "x", steps=1, stepz=3,
                       **TINY)
    with pytest.raises(TokenswapError, match="schedule must be one of cosine, linear, constant"):
        train_hypernet(bundle(source_tokenizer), ENGLISH, tmp_path / "x", steps=1,
                       schedule="cosinus", **TINY)


def test_time_budget_counts_training_steps_and_caps_the_warm_up(tmp_path, source_tokenizer,
                                                                fake_clocks, monkeypatch):
    """A 6 s budget of 1 s steps buys 6 steps however long evaluation takes (here 1000 s each:
    it does not count), and the 100-step warm-up is capped at a tenth of the ~6 steps the
    budget is on course for: the second step trains at nearly the peak rate, not at 1/100."""
    real = _Evaluator.__call__

    def slow_evaluation(self, *args):
        fake_clocks.advance(1000.0)
        return real(self, *args)

    monkeypatch.setattr(_Evaluator, "__call__", slow_evaluation)
    result = train_hypernet(bundle(source_tokenizer), ENGLISH, tmp_path / "hn",
                            eval_texts=GERMAN[:4], minutes=0.1, eval_every=1,
                            **{**TINY, "warmup_steps": 100})
    assert (result.step, result.train_seconds) == (6, 6.0)
    assert (tmp_path / "hn" / "hypernet.safetensors").is_file()
    lrs = [r["lr"] / TINY["lr"] for r in log(tmp_path / "hn") if "loss" in r]
    assert len(lrs) == 6 and lrs[0] == 0.0 and lrs[1] > 0.9
    assert lrs[1:] == sorted(lrs[1:], reverse=True)  # then decays over the budget
    evals = [r for r in log(tmp_path / "hn") if "eval_loss" in r]
    assert [r["train_seconds"] for r in evals] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_cpu_clock_budget(tmp_path, source_tokenizer, fake_clocks):
    fake_clocks.wall, fake_clocks.cpu = 1.0, 3.0
    result = train_hypernet(bundle(source_tokenizer), ENGLISH, tmp_path / "hn", minutes=0.1,
                            clock="cpu", **TINY)
    assert (result.step, result.train_seconds, result.train_cpu_seconds) == (2, 2.0, 6.0)


DDP_SCRIPT = textwrap.dedent("""
    import json, sys
    from tokenswap.io.models import load_model
    from tokenswap.hypernet.train import train_hypernet
    model_dir, out, texts = sys.argv[1], sys.argv[2], json.loads(open(sys.argv[3]).read())
    opts = json.loads(sys.argv[4])
    train_hypernet(load_model(model_dir), texts, out, **opts)
""")


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path, tiny_model_dir):
    script = tmp_path / "train.py"
    script.write_text(DDP_SCRIPT)
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(GERMAN + ENGLISH))
    opts = json.dumps(dict(TINY, steps=3, identity_steps=1, aux_weight=0.5, seed=2))
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    single = subprocess.run([sys.executable, str(script), str(tiny_model_dir),
                             str(tmp_path / "one"), str(texts), opts],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", str(script), str(tiny_model_dir),
                          str(tmp_path / "two"), str(texts), opts],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = [r["loss"] for r in log(tmp_path / "one") if "loss" in r]
    two = [r["loss"] for r in log(tmp_path / "two") if "loss" in r]
    assert len(one) == len(two) == 3
    assert one == pytest.approx(two, rel=1e-4, abs=1e-4)
    a, b = Hypernet.load(tmp_path / "one"), Hypernet.load(tmp_path / "two")
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=1e-3, atol=1e-4)


def _tiny(arch: str, vocab: int):
    from transformers import (
        Gemma2Config,
        Gemma2ForCausalLM,
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
    )

    torch.manual_seed(0)
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                  max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    if arch == "gemma2":  # logit soft-capping, scaled input embeddings
        return Gemma2ForCausalLM(Gemma2Config(**common)).eval()
    if arch == "gemma3":  # embedding module scales by sqrt(hidden): inputs_embeds bypass it
        return Gemma3ForCausalLM(Gemma3TextConfig(**common)).eval()
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4,
                                      n_positions=256, bos_token_id=1, eos_token_id=2)).eval()


@pytest.mark.parametrize("arch", ["gpt2", "gemma2", "gemma3"])
def test_frozen_lm_reproduces_the_models_loss_across_architectures(source_tokenizer, arch):
    model = _tiny(arch, len(source_tokenizer))
    pred = Prediction(model.get_input_embeddings().weight.detach())
    ids, mask = encode(source_tokenizer, ENGLISH[:3], 24, "cpu")
    nats, count = FrozenLM(model).loss_sum(pred, ids, mask)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask,
                         labels=ids.masked_fill(mask == 0, -100)).loss
    torch.testing.assert_close(nats / count, expected, rtol=1e-5, atol=1e-5)


def test_training_works_under_no_grad(tmp_path, source_tokenizer):
    # benchmarks and inference code call it with gradients off; the steps must still learn
    with torch.no_grad():
        result = train_hypernet(bundle(source_tokenizer), GERMAN, tmp_path / "hn", steps=2,
                                **TINY)
    assert result.step == 2 and result.loss == result.loss
    assert any(p.abs().sum() > 0 for n, p in result.hypernet.named_parameters() if "head" in n)


def test_init_starts_from_a_saved_hypernet_and_refuses_another_base(tmp_path, source_tokenizer):
    """``init=DIR`` continues a finished hypernet: the step-0 evaluation is that hypernet's (not
    a fresh one's), its shape wins over ``hypernet=``, and a hypernet of another model is
    refused with one line before any step."""
    first = train_hypernet(bundle(source_tokenizer), GERMAN * 2, tmp_path / "a",
                           eval_texts=GERMAN[:8], steps=8, eval_every=8, checkpoint_every=100,
                           **TINY)
    end_of_first = [r for r in log(tmp_path / "a") if "eval_loss" in r][-1]["eval_loss"]
    options = {**TINY, "hypernet": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}}
    second = train_hypernet(bundle(source_tokenizer), GERMAN * 2, tmp_path / "b",
                            eval_texts=GERMAN[:8], steps=2, eval_every=2, checkpoint_every=100,
                            init=str(tmp_path / "a"), **options)
    start = [r for r in log(tmp_path / "b") if "eval_loss" in r][0]
    assert start["step"] == 0
    assert start["eval_loss"] == pytest.approx(end_of_first, abs=1e-5)
    assert second.hypernet.config.d_model == first.hypernet.config.d_model

    other = ModelBundle(tiny_llama(len(source_tokenizer), tied=True, seed=7), source_tokenizer,
                        "other-llama")
    with pytest.raises(TokenswapError, match="base"):
        train_hypernet(other, GERMAN * 2, tmp_path / "c",
                       steps=2, init=str(tmp_path / "a"), **TINY)
    assert not (tmp_path / "c" / "hypernet.safetensors").exists()


def test_alm_teacher_is_zero_on_the_source_tokenizer_and_positive_elsewhere(source_tokenizer,
                                                                            german_tokenizer):
    """Read with its own tokenizer and its own rows (what the identity pair predicts exactly
    when the hypernet copies them), the student is the teacher: ALM loss 0 on every chunk. With
    another tokenizer and a fresh hypernet's rows it is positive, over fewer, longer chunks."""
    b = bundle(source_tokenizer)
    lm = FrozenLM(b.model)
    source = SourceEmbeddings.from_bundle(b)
    teacher = ChunkTeacher(lm, source_tokenizer, seq_len=24, temperature=100.0)
    texts = GERMAN[:3]
    exact = Prediction(input=source.input, output=source.output, bias=source.bias)
    ids, mask = encode(source_tokenizer, texts, 24, "cpu")
    loss, chunks = teacher.loss_sum(lm.logits(exact, ids, mask), ids, mask, source_tokenizer,
                                    texts)
    assert chunks == int(mask.sum()) - len(texts)  # a chunk per token but each text's first
    assert float(loss) == pytest.approx(0.0, abs=1e-4)

    hn = Hypernet.for_source(source, **TINY["hypernet"])
    pred = hn(PieceInputs.from_pair(build_pair(source_tokenizer, german_tokenizer), 8), source)
    g_ids, g_mask = encode(german_tokenizer, texts, 24, "cpu")
    loss, g_chunks = teacher.loss_sum(lm.logits(pred, g_ids, g_mask), g_ids, g_mask,
                                      german_tokenizer, texts)
    assert float(loss.detach()) > 0.1 and 0 < g_chunks < chunks


def test_alm_gradient_lowers_the_alm_loss_of_a_batch(source_tokenizer, german_tokenizer):
    b = bundle(source_tokenizer)
    lm, source = FrozenLM(b.model), SourceEmbeddings.from_bundle(b)
    teacher = ChunkTeacher(lm, source_tokenizer, seq_len=24, temperature=100.0)
    torch.manual_seed(0)
    hn = Hypernet.for_source(source, **TINY["hypernet"])
    inputs = PieceInputs.from_pair(build_pair(source_tokenizer, german_tokenizer), 8)
    texts = GERMAN[:4]
    ids, mask = encode(german_tokenizer, texts, 24, "cpu")

    def alm() -> torch.Tensor:
        total, chunks = teacher.loss_sum(lm.logits(hn(inputs, source), ids, mask), ids, mask,
                                         german_tokenizer, texts)
        return total / chunks

    optimizer = torch.optim.Adam(hn.parameters(), lr=3e-3)
    first = float(alm().detach())
    for _ in range(15):
        optimizer.zero_grad()
        alm().backward()
        optimizer.step()
    assert float(alm().detach()) < 0.7 * first


@pytest.mark.parametrize("objective", ["alm", "lm+alm"])
def test_alm_objective_trains_and_logs(tmp_path, source_tokenizer, objective):
    """The objective reaches the update: other weights than the lm objective's, chunk counts
    and a finite ALM loss logged every step."""
    lm_run = train_hypernet(bundle(source_tokenizer), GERMAN * 2, tmp_path / "lm", steps=4,
                            checkpoint_every=100, **TINY)
    result = train_hypernet(bundle(source_tokenizer), GERMAN * 2, tmp_path / "hn", steps=4,
                            checkpoint_every=100, objective=objective, **TINY)
    train = [r for r in log(tmp_path / "hn") if "loss" in r]
    assert len(train) == 4 and all(0 <= r["alm"] < 1e3 and r["chunks"] > 0 for r in train)
    assert [r["loss"] for r in train][:1] == [r["loss"] for r in log(tmp_path / "lm")
                                              if "loss" in r][:1]  # same start
    changed = [not torch.equal(a, c) for a, c in zip(lm_run.hypernet.state_dict().values(),
                                                     result.hypernet.state_dict().values(),
                                                     strict=True)]
    assert any(changed)
