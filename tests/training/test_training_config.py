"""The trainers' configs: one shared base, flat keyword arguments, help on every field,
enums for choices, one-line errors."""

from __future__ import annotations

from dataclasses import MISSING, fields

import pytest

from tokenswap.config import help_of
from tokenswap.errors import TokenswapError
from tokenswap.hypernet.config import SamplerConfig, TrainConfig
from tokenswap.training.config import Clock, Schedule, TrainingConfig
from tokenswap.tuning.config import Stage, TuneConfig


@pytest.mark.parametrize("cls", [TrainingConfig, TuneConfig, TrainConfig])
def test_every_field_has_help_and_a_default(cls):
    for f in fields(cls):
        assert help_of(f), f"{cls.__name__}.{f.name} has no help"
        assert f.default is not MISSING or f.default_factory is not MISSING, f.name


def test_trainers_inherit_the_shared_options_with_their_own_defaults():
    assert issubclass(TuneConfig, TrainingConfig) and issubclass(TrainConfig, TrainingConfig)
    shared = {f.name for f in fields(TrainingConfig)}
    assert shared <= {f.name for f in fields(TuneConfig)} & {f.name for f in fields(TrainConfig)}
    assert TrainConfig(steps=1).warmup_steps == 100 and TuneConfig(steps=1).warmup_steps == 20
    assert TrainConfig(steps=1).schedule is Schedule.COSINE


def test_options_parse_from_strings_through_the_inherited_fields():
    """Fields declared in tokenswap.training resolve in a subclass's module that never imports
    their types (the hypernet's)."""
    cfg = TrainConfig.from_options(steps="5", clock="cpu", schedule="constant",
                                   sampler={"vocab_min": "300"})
    assert (cfg.steps, cfg.clock, cfg.schedule) == (5, Clock.CPU, Schedule.CONSTANT)
    assert cfg.sampler == SamplerConfig(vocab_min=300)
    tune = TuneConfig.from_options(minutes="1.5", stage="lora", embedding_lr="none")
    assert (tune.minutes, tune.stage, tune.embedding_lr) == (1.5, Stage.LORA, None)
    assert TuneConfig(steps=1, clock="cpu").to_dict()["clock"] == "cpu"


@pytest.mark.parametrize("cls, options, message", [
    (TuneConfig, {}, "say how long to train: --steps or --minutes"),
    (TrainConfig, {"steps": 1, "stepz": 2},
     "unknown hypernet training option 'stepz' (did you mean 'steps'?)"),
    (TuneConfig, {"steps": 1, "schedule": "cosin"},
     "tuning option schedule must be one of cosine, linear, constant (got 'cosin')"),
    (TrainConfig, {"minutes": 0}, "--minutes must be positive"),
    (TuneConfig, {"steps": 1, "seed": -1}, "seed must be in [0, 2**32)"),
    (TrainConfig, {"steps": 1, "batch_size": "eight"}, "batch_size must be an integer"),
])
def test_errors_are_one_line(cls, options, message):
    with pytest.raises(TokenswapError) as err:
        cls.from_options(**options)
    assert message in str(err.value) and "\n" not in str(err.value)
