"""The bf16 speed check (src/tokenswap/tuning/precision.py): measured, and loud when slow."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import GERMAN
from test_loop import TINY, bundle

from tokenswap.tuning import precision, tune_model


def test_slowdown_is_a_measured_ratio_and_accelerators_are_not_timed():
    threads = torch.get_num_threads()
    factor = precision.bf16_slowdown("cpu", size=64)
    assert factor > 0 and factor == precision.bf16_slowdown("cpu", size=64)  # cached
    assert precision.bf16_slowdown(torch.device("cuda")) == 1.0
    assert torch.get_num_threads() == threads  # timed on one thread, then restored


def test_warning_names_the_factor_only_when_slow(monkeypatch):
    monkeypatch.setattr(precision, "_cpu_slowdown", lambda size: 50.0)
    msg = precision.bf16_warning("cpu")
    assert msg is not None and "50x slower" in msg and "--precision fp32" in msg
    assert "\n" not in msg
    monkeypatch.setattr(precision, "_cpu_slowdown", lambda size: 0.7)  # AMX: bf16 is faster
    assert precision.bf16_warning("cpu") is None


def test_tune_warns_before_a_slow_bf16_run(tmp_path, monkeypatch, german_tokenizer):
    monkeypatch.setattr(precision, "_cpu_slowdown", lambda size: 50.0)
    with pytest.warns(RuntimeWarning, match="50x slower than float32"):
        tune_model(bundle(german_tokenizer), GERMAN, tmp_path / "bf16", steps=1,
                   precision="bf16", **TINY)
    monkeypatch.setattr(precision, "_cpu_slowdown", lambda size: 1.0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        tune_model(bundle(german_tokenizer), GERMAN, tmp_path / "fast", steps=1,
                   precision="bf16", **TINY)
    assert not [w for w in seen if "slower than float32" in str(w.message)]
