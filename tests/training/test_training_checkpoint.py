"""Checkpoints: every RNG state round-trips, other resume keys are refused in one line, and a
checkpoint an interrupted swap left beside its name is put back before a resume reads it."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from tokenswap.distributed import Dist
from tokenswap.errors import TokenswapError
from tokenswap.training.checkpoint import (
    Counters,
    TaskState,
    check_resume,
    open_output,
    read_checkpoint,
    rng_state,
    seed_everything,
    set_rng_state,
    write_checkpoint,
)
from tokenswap.training.config import TrainingConfig


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_restores_python_numpy_and_torch():
    seed_everything(3)
    state = rng_state()
    first = draws()
    seed_everything(4)  # something else ran in between
    set_rng_state(state)
    assert draws() == first
    seed_everything(3)
    assert draws() == first  # seeding seeds all three


def test_write_read_round_trip_and_readable_summary(tmp_path):
    cfg = TrainingConfig(steps=10, batch_size=4)
    model = {"w": torch.arange(3.0)}
    write_checkpoint(tmp_path, TaskState(model, {"state": {}, "param_groups": []},
                                         {"best_bpb": 1.5}), Counters(7, 3.5, 7.0), cfg)
    task, counters, rng = read_checkpoint(tmp_path)
    assert torch.equal(task.model["w"], model["w"]) and task.extra == {"best_bpb": 1.5}
    assert counters == Counters(7, 3.5, 7.0) and set(rng) >= {"python", "numpy", "torch"}
    summary = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert summary["step"] == 7 and summary["data_position"] == 28 and summary["best_bpb"] == 1.5
    assert summary["config"]["batch_size"] == 4


def test_other_resume_keys_are_refused_in_one_line(tmp_path):
    write_checkpoint(tmp_path, TaskState({}, {}), Counters(), TrainingConfig(steps=1, seed=1))
    assert check_resume(tmp_path, TrainingConfig(steps=5, seed=1, lr=1.0))["step"] == 0
    with pytest.raises(TokenswapError) as err:
        check_resume(tmp_path, TrainingConfig(steps=1, seed=2, batch_size=8))
    assert str(err.value) == (f"checkpoint {tmp_path / 'checkpoint'} was written with other "
                              "seed, batch_size (seed=1, batch_size=16); resume with the same "
                              "values or choose another --out")
    summary = tmp_path / "checkpoint" / "state.json"  # as tokenswap 0.1.0 wrote it
    summary.write_text(json.dumps({"step": 0, "config": {"seed": 1}}))
    with pytest.raises(TokenswapError, match="written by an older tokenswap"):
        check_resume(tmp_path, TrainingConfig(steps=5, seed=1))


def test_a_checkpoint_left_beside_by_an_interrupted_swap_is_resumed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    write_checkpoint(out, TaskState({}, {}), Counters(6), TrainingConfig(steps=9))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a process id nobody owns now: the killed writer's
    (out / "checkpoint").rename(out / f".checkpoint.new-{child.pid}-x")
    assert open_output(out, resume=True, ctx=Dist())
    assert read_checkpoint(out)[1].step == 6


def test_a_resume_key_newer_than_the_checkpoint_compares_with_its_default(tmp_path):
    """`objective` became a resume key after checkpoints without it were written: those ran
    with the next-token loss, so they resume as `lm` and are refused as `alm`."""
    from tokenswap.tuning.config import TuneConfig

    write_checkpoint(tmp_path, TaskState({}, {}), Counters(), TuneConfig(steps=1))
    summary = tmp_path / "checkpoint" / "state.json"
    older = json.loads(summary.read_text())
    del older["config"]["objective"]
    summary.write_text(json.dumps(older))
    assert check_resume(tmp_path, TuneConfig(steps=1))["step"] == 0
    with pytest.raises(TokenswapError, match=r"other objective \(objective=lm\)"):
        check_resume(tmp_path, TuneConfig(steps=1, objective="alm"))
