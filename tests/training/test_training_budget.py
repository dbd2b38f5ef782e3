"""Budgets: steps, or minutes of training steps on the wall or the CPU clock; nothing else."""

from __future__ import annotations

import pytest

from tokenswap.training.budget import Budget, Clock


@pytest.mark.parametrize("clock, used", [(Clock.WALL, 2.0), (Clock.CPU, 6.0)])
def test_only_timed_steps_count_on_the_chosen_clock(fake_clocks, clock, used):
    fake_clocks.wall, fake_clocks.cpu = 1.0, 3.0  # per step
    budget = Budget(None, 0.1, clock)  # 6 s
    for _ in range(2):
        with budget.timing():
            pass
        fake_clocks.advance(50.0)  # an evaluation between the steps
    assert (budget.train_seconds, budget.train_cpu_seconds) == (2.0, 6.0)
    assert budget.elapsed() == used and budget.last_seconds == 1.0
    assert budget.progress(2, used) == pytest.approx(used / 6)
    assert budget.exhausted(2, used) == (clock == Clock.CPU)


def test_a_step_count_ends_the_run_and_measures_progress():
    budget = Budget(10, None)
    assert not budget.timed and budget.progress(5, 0.0) == 0.5
    assert not budget.exhausted(9, 1e9) and budget.exhausted(10, 0.0)
    both = Budget(10, 1.0, train_seconds=30.0)  # a resumed run continues its clock
    assert both.elapsed() == 30.0 and both.progress(5, 60.0) == 0.5
    assert both.exhausted(3, 60.0)  # whichever ends first
