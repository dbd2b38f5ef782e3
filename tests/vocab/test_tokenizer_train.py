"""Tokenizer training: Ctrl-C reaches Python while the tokenizers library trains in Rust."""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from tokenswap.vocab.train import interruptible


def test_interrupt_arrives_while_the_work_runs():
    finished: list[float] = []

    def work() -> None:  # stands for tokenizers' Rust training, which never checks signals
        time.sleep(1.0)
        finished.append(time.monotonic())

    threading.Timer(0.2, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        interruptible(work)
    interrupted = time.monotonic()
    time.sleep(1.5)  # the abandoned work ends on its own, after the interrupt was handled
    assert finished and finished[0] > interrupted


def test_results_and_errors_come_back():
    assert interruptible(lambda a, b=1: a + b, 2, b=3) == 5
    with pytest.raises(ValueError, match="bad"):
        interruptible(lambda: (_ for _ in ()).throw(ValueError("bad")))
