"""The contract of every command, run as a user runs it (a real process): expected errors and
usage errors print one line on stderr without a traceback and exit with 2, and nothing new
appears on disk; a long command interrupted mid-run exits with 130 and leaves no output.
(Outputs that exist: tests/io/test_save.py.)"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import torch

M = "{model}"
CASES = {
    "unknown option": (["transfer", "--tokenizr", "x"], "No such option: --tokenizr"),
    "missing option": (["transfer", "--out", "{tmp}/o"], "missing option --tokenizer"),
    "not an integer": (["tokenizer", "train", "--corpus", "{tmp}/de.txt", "--out", "{tmp}/o",
                        "--vocab-size", "abc"], "--vocab-size"),
    "unknown choice": (["tokenizer", "train", "--corpus", "{tmp}/de.txt", "--out", "{tmp}/o",
                        "--kind", "bep"], "did you mean 'bpe'"),
    "unknown command": (["bogus"], "No such command 'bogus'"),
    "out under a file": (["transfer", "--model", M, "--tokenizer", M, "--out",
                          "{tmp}/de.txt/sub"], "is a file, not a directory"),
    "out under /proc": (["tokenizer", "train", "--corpus", "{tmp}/de.txt", "--out",
                         "/proc/tokenswap-out", "--like", "none"], "cannot write to"),
    "tune out under a file": (["tune", "--model", M, "--corpus", "{tmp}/de.txt", "--steps", "1",
                               "--out", "{tmp}/de.txt/sub"], "is a file, not a directory"),
    "json into a missing dir": (["eval", "--model", M, "--text", "{tmp}/de.txt", "--json",
                                 "{tmp}/no/r.json"], "does not exist"),
    "json onto a file": (["eval", "--model", M, "--text", "{tmp}/de.txt", "--json",
                          "{tmp}/de.txt"], "already exists"),
    "json onto a dir": (["mixture", "--sample", "de={tmp}/de.txt", "--tokenizer", M, "--json",
                         "{tmp}"], "is a directory"),
    "steps 0": (["tune", "--model", M, "--corpus", "{tmp}/de.txt", "--steps", "0", "--out",
                 "{tmp}/o"], "--steps must be at least 1"),
    "no length": (["tune", "--model", M, "--corpus", "{tmp}/de.txt", "--out", "{tmp}/o"],
                  "--steps or --minutes"),
    "empty text": (["bytes", "score", "--model", M, "--text", ""], "nothing to score"),
    "empty prompt": (["bytes", "generate", "--model", M, "--prompt", ""], "--prompt is empty"),
    "no bytes to generate": (["bytes", "generate", "--model", M, "--prompt", "a", "--max-bytes",
                              "0"], "--max-bytes must be at least 1"),
    "jsonl without text": (["tokenizer", "train", "--corpus", "{tmp}/c.jsonl", "--out", "{tmp}/o",
                            "--like", "none"], "PATH#FIELD"),
    "unknown method option": (["transfer", "--model", M, "--tokenizer", M, "--out", "{tmp}/o",
                               "-O", "multivariate_scal=1", "--method", "multivariate"],
                              "did you mean 'multivariate_scale'"),
    "bad config file": (["tokenizer", "train", "--config", "{tmp}/bad.yaml"], "not valid YAML"),
    "unknown config key": (["tokenizer", "train", "--config", "{tmp}/typo.yaml"],
                           "unknown key 'vocab_sise'"),
    "not a device": (["glitch", "--out", "{tmp}/o", "--device", "gpu0"], "not a torch device"),
    "dynamic reduction": (["dynamic", "--model", M, "--text", "a b", "--reduction", "1",
                           "--json", "{tmp}/r.json"], "--reduction must be in [0, 1)"),
    "dynamic no hypernet": (["dynamic", "--model", M, "--text", "a b", "--json",
                             "{tmp}/r.json"], "no shipped hypernet for"),
}
if not torch.cuda.is_available():
    CASES["no cuda"] = (["glitch", "--out", "{tmp}/o", "--device", "cuda"], "no CUDA device")


def snapshot(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), root)
            for d, dirs, files in os.walk(root) for n in dirs + files}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, tiny_model_dir):
    (tmp_path / "de.txt").write_text("Die Straße ist nass. " * 20)
    (tmp_path / "c.jsonl").write_text('{"content": "kein Text-Feld"}\n')
    (tmp_path / "bad.yaml").write_text("vocab_size: [1\n")
    (tmp_path / "typo.yaml").write_text("vocab_sise: 3\n")
    args, expected = CASES[case]
    args = [a.format(tmp=tmp_path, model=tiny_model_dir) for a in args]
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "tokenswap.cli", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "300"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert snapshot(tmp_path) == before


# Long commands, interrupted mid-run as Ctrl-C does (SIGINT to the process): exit 130, one line,
# and the output they were asked for is not there (a trainer's resumable checkpoint may be).
LONG = {
    "transfer": (["transfer", "--model", M, "--tokenizer", M, "--method", "focus",
                  "--corpus", "{tmp}/big.txt", "--out", "{tmp}/out"], "out"),
    "tune": (["tune", "--model", M, "--corpus", "{tmp}/big.txt", "--steps", "100000",
              "--checkpoint-every", "100000", "--out", "{tmp}/out"], "out/model.safetensors"),
    "hypernet train": (["hypernet", "train", "--model", M, "--corpus", "{tmp}/big.txt",
                        "--steps", "100000", "--vocab-min", "300", "--vocab-max", "400",
                        "--out", "{tmp}/out"], "out/hypernet.safetensors"),
    "eval": (["eval", "--model", M, "--text", "{tmp}/big.txt", "--json", "{tmp}/out.json"],
             "out.json"),
    "bytes score": (["bytes", "score", "--model", M, "--text", "Die Straße ist nass. " * 400],
                    None),
    "bytes generate": (["bytes", "generate", "--model", M, "--prompt", "Die Stra",
                        "--max-bytes", "100000"], None),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(LONG))
def test_interrupt_mid_run_exits_130_and_writes_no_output(case, tmp_path, tiny_model_dir):
    import signal
    import time

    import psutil
    from conftest import ENGLISH, GERMAN

    rng = random.Random(0)
    (tmp_path / "big.txt").write_text("\n".join(" ".join(rng.choices(ENGLISH + GERMAN, k=8))
                                                for _ in range(4000)))
    args, output = LONG[case]
    args = [a.format(tmp=tmp_path, model=tiny_model_dir) for a in args]
    proc = subprocess.Popen([sys.executable, "-m", "tokenswap.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "300", "OMP_NUM_THREADS": "1"})
    child = psutil.Process(proc.pid)
    # past the imports and loading (about 4 CPU s), inside the work
    while proc.poll() is None and sum(child.cpu_times()[:2]) < 9:
        time.sleep(0.1)
    assert proc.poll() is None, f"{case} finished before the interrupt: make the work bigger"
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted"), err
    if output is not None:
        assert not (tmp_path / output).exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers
