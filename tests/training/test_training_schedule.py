"""The learning-rate schedule: transformers' own with a step count, the same shapes over a
time budget, and in both a warm-up capped at a tenth of the run."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

from tokenswap.training.schedule import LearningRate, Schedule, warmup_length

TRANSFORMERS = {
    Schedule.COSINE: lambda opt, warmup, steps: get_cosine_schedule_with_warmup(opt, warmup, steps),
    Schedule.LINEAR: lambda opt, warmup, steps: get_linear_schedule_with_warmup(opt, warmup, steps),
    Schedule.CONSTANT: lambda opt, warmup, steps: get_constant_schedule_with_warmup(opt, warmup),
}


@pytest.mark.parametrize("schedule", list(Schedule))
def test_a_step_count_gives_the_rates_a_transformers_scheduler_steps_through(schedule):
    """Step k trains at the rate the scheduler holds after k ``scheduler.step()`` calls."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = TRANSFORMERS[schedule](opt, 6, 60)  # 20 warm-up steps capped at 60 // 10
    expected = []
    for _ in range(60):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    lr = LearningRate(schedule, warmup_steps=20, steps=60)
    assert [lr(step, step / 60) for step in range(60)] == pytest.approx(expected, abs=1e-12)
    assert expected[0] == 0.0 and expected[6] == 1.0


def test_warmup_length_is_capped_at_a_tenth_of_the_run():
    assert [warmup_length(20, n) for n in (0, 5, 30, 199, 200, 10_000)] == [1, 1, 3, 19, 20, 20]


def test_a_time_budget_caps_the_warm_up_at_a_tenth_of_the_steps_it_is_on_course_for():
    lr = LearningRate(Schedule.COSINE, warmup_steps=20, steps=None)
    assert lr(0, 0.0) == 0.0  # before the first step: the full warm-up is assumed
    assert lr(2, 0.066) == pytest.approx(2 / 3)  # ~30 steps ahead: warm-up 3
    assert lr(3, 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1)))  # warmed up
    assert lr(3, 0.01) == pytest.approx(3 / 20)  # ~300 steps ahead: the full 20 steps


@pytest.mark.parametrize("schedule", list(Schedule))
def test_a_budget_on_course_for_n_steps_warms_up_as_n_steps_do(schedule):
    """(After the warm-up a time budget decays over its share of time, not of the steps left.)"""
    by_steps = LearningRate(schedule, warmup_steps=20, steps=50)  # warm-up 5
    by_time = LearningRate(schedule, warmup_steps=20, steps=None)
    for step in range(5):
        assert by_time(step, step / 50) == pytest.approx(by_steps(step, step / 50))


def test_a_time_budget_decays_over_the_budget():
    cosine, linear, constant = (LearningRate(s, warmup_steps=2, steps=None) for s in
                                (Schedule.COSINE, Schedule.LINEAR, Schedule.CONSTANT))
    assert (cosine(50, 0.5), linear(50, 0.5), constant(50, 0.5)) == pytest.approx((0.5, 0.5, 1))
    assert (cosine(99, 1.0), linear(99, 1.0), constant(99, 1.0)) == pytest.approx((0, 0, 1))
