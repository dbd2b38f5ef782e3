"""`tokenswap tune` on the command line: a plain model dir out, readable errors with exit 2."""

from __future__ import annotations

import json

import pytest

from tokenswap.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cli_tunes_and_resumes(tmp_path, tiny_model_dir, text_dir, capsys):
    out = tmp_path / "tuned"
    args = ["tune", "--model", str(tiny_model_dir), "--corpus", str(text_dir), "--out", str(out),
            "--steps", "4", "--batch-size", "2", "--seq-len", "16", "--eval-corpus",
            str(tmp_path / "held.txt"), "--eval-every", "2", "--warmup-steps", "1"]
    assert main(args) == 0
    assert "tuned 4 steps" in capsys.readouterr().out
    assert (out / "config.json").is_file() and (out / "best" / "config.json").is_file()
    evals = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()
             if "eval_bpb" in line]
    assert [r["step"] for r in evals] == [0, 2, 4]
    assert main(args) == 0  # the finished checkpoint resumes to the same end, no new steps
    assert main(args + ["--no-resume"]) == 2
    assert "holds a checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--steps", "1", "--stage", "lorra"], "did you mean 'lora'"),
    ([], "--steps or --minutes"),
    (["--steps", "1", "--lora-rnak", "4"], "No such option: --lora-rnak"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--steps", "1", "--seq-len", "100000"], "less than one sequence"),
    (["--steps", "1", "--batch-size", "3", "--grad-accum", "2"], "multiple of ranks x grad_accum"),
])
def test_cli_errors_are_one_line(tmp_path, tiny_model_dir, text_dir, capsys, extra, message):
    code = main(["tune", "--model", str(tiny_model_dir), "--corpus", str(text_dir), "--out",
                 str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err.replace("\n", " ")
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written for bad input
