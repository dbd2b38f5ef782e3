"""The shared loop on a toy task: time outside the steps never counts, resume is exact (random
state included), the log says what happened, gradients are applied one way for every task."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tokenswap.distributed import Dist
from tokenswap.errors import TokenswapError
from tokenswap.training import loop
from tokenswap.training.checkpoint import TaskState, open_output, seed_everything
from tokenswap.training.config import TrainingConfig
from tokenswap.training.log import LOG_FILE, read_log

WEIGHTS = torch.tensor([1.0, -2.0, 3.0, 0.5])


class Toy:
    """Least squares through input dropout: small enough for hundreds of steps, and every step
    draws dropout masks from torch's generator. The data of step s is a function of s."""

    def __init__(self, clocks=None, slow: float = 0.0) -> None:
        seed_everything(0)
        self.model = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 1))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=0.1)
        self.clocks, self.slow = clocks, slow  # evaluation and saving take `slow` s on them

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step))  # (8, 4)
        return x, x @ WEIGHTS

    def step(self, step: int, progress: float) -> dict:
        x, y = self.batch(step)
        loss = (self.model(x).squeeze(-1) - y).pow(2).mean()
        loss.backward()
        return {"loss": float(loss.detach()), "tokens": 8}

    def evaluate(self, step: int) -> dict:
        if self.clocks is not None:
            self.clocks.advance(self.slow)
        self.model.eval()
        with torch.no_grad():
            x, y = self.batch(10**6)
            loss = float((self.model(x).squeeze(-1) - y).pow(2).mean())
        self.model.train()
        return {"eval_loss": loss}

    def state(self) -> TaskState:
        if self.clocks is not None:
            self.clocks.advance(self.slow)
        return TaskState(self.model.state_dict(), self.optimizer.state_dict())

    def load(self, state: TaskState) -> None:
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)


def train(out, task: Toy | None = None, *, stop_after: int | None = None, callback=None,
          **options) -> tuple[Toy, loop.RunResult]:
    """Run ``task`` (a fresh :class:`Toy`) into ``out``, resuming its checkpoint if any."""
    task = task or Toy()
    cfg = TrainingConfig(**{"warmup_steps": 2, "eval_every": 5, "checkpoint_every": 3,
                            **options})
    resuming = open_output(out, True, Dist())
    return task, loop.run(task, task.optimizer, cfg, out, Dist(), resuming=resuming, name="toy",
                          progress=False, stop_after=stop_after, callback=callback)


class Stop(Exception):
    pass


def test_evaluation_and_checkpoints_never_count(tmp_path, fake_clocks):
    """Evaluating and saving take 100 s each on both clocks; a 6 s budget of 1 s steps still
    trains 6 steps, and every line reports training time only."""
    task, result = train(tmp_path, Toy(fake_clocks, slow=100.0), minutes=0.1, eval_every=1,
                         checkpoint_every=1)
    assert (result.step, result.train_seconds, result.train_cpu_seconds) == (6, 6.0, 6.0)
    records = read_log(tmp_path / LOG_FILE)
    assert [r["train_seconds"] for r in records if "eval_loss" in r] == [0, 1, 2, 3, 4, 5, 6]


def test_resume_is_exact_random_state_included(tmp_path, monkeypatch):
    """Killed after step 5 (checkpoint at 3), the resumed run ends on the uninterrupted run's
    weights; without restoring the RNG states its dropout masks, and weights, differ."""
    straight, _ = train(tmp_path / "a", steps=12)

    def stop(record):
        if record["step"] == 5:
            raise Stop

    def interrupted(out) -> Toy:
        with pytest.raises(Stop):
            train(out, steps=12, callback=stop)
        return train(out, steps=12)[0]

    resumed = interrupted(tmp_path / "b")
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    a_losses = {r["step"]: r["loss"] for r in read_log(tmp_path / "a" / LOG_FILE) if "loss" in r}
    b_log = read_log(tmp_path / "b" / LOG_FILE)
    assert a_losses == {r["step"]: r["loss"] for r in b_log if "loss" in r}
    assert [r["resumed_from"] for r in b_log if "resumed_from" in r] == [3]
    assert "config" in b_log[0] and b_log[0]["start"]["steps"] == 12
    monkeypatch.setattr(loop, "set_rng_state", lambda state: None)
    forgetful = interrupted(tmp_path / "c")
    assert not torch.equal(straight.model[1].weight, forgetful.model[1].weight)


def test_stop_after_ends_the_call_not_the_schedule(tmp_path):
    _, first = train(tmp_path / "a", steps=10, stop_after=4)
    assert first.step == 4
    _, rest = train(tmp_path / "a", steps=10)
    _, straight = train(tmp_path / "b", steps=10)
    lrs = [[r["lr"] for r in read_log(tmp_path / d / LOG_FILE) if "loss" in r] for d in "ab"]
    assert lrs[0] == lrs[1] and rest.loss == straight.loss
    with pytest.raises(TokenswapError, match="other seed"):
        train(tmp_path / "a", steps=10, seed=1)


@pytest.mark.parametrize("grad_clip, moved", [(0.0, 10.0), (1.0, 1.0)])
def test_apply_gradients_clips_to_grad_clip_and_zero_means_never(grad_clip, moved):
    p = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=1.0)
    p.grad = torch.tensor([6.0, 8.0])  # norm 10
    norm = loop.apply_gradients(opt, Dist(), grad_clip)
    assert norm == pytest.approx(10.0) and float(p.detach().norm()) == pytest.approx(moved)
    assert p.grad is None
