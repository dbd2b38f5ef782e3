"""The CLI: commands work, and every expected error is one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tokenswap.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tokenswap.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_methods_lists_registry(capsys):
    assert main(["methods", "--json"]) == 0
    names = {m["name"] for m in json.loads(capsys.readouterr().out)}
    assert {"mean", "random", "copy-overlap"} <= names


def test_tokenizer_train_transfer_eval(tmp_path, tiny_model_dir, capsys):
    corpus = tmp_path / "de.txt"
    corpus.write_text("\n\n".join(["Der schnelle braune Fuchs springt über den faulen Hund."
                                   " Die Straße ist nass."] * 40))
    tok = tmp_path / "tok"
    assert main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "400",
                 "--like", str(tiny_model_dir), "--out", str(tok)]) == 0
    out = tmp_path / "model"
    assert main(["transfer", "--model", str(tiny_model_dir), "--tokenizer", str(tok),
                 "--method", "fvt", "--out", str(out)]) == 0
    report = tmp_path / "report.json"
    assert main(["eval", "--model", str(out), "--baseline", str(tiny_model_dir),
                 "--text", str(corpus), "--json", str(report), "--max-length", "64"]) == 0
    rows = json.loads(report.read_text())["rows"]
    assert len(rows) == 2 and rows[0]["bytes"] == rows[1]["bytes"]
    assert rows[1]["tokens_per_byte"] < rows[0]["tokens_per_byte"]
    assert rows[0]["bpb_ratio"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["transfer", "--model", "/no/such/model", "--tokenizer", "x", "--out", "{tmp}/o"],
         "does not exist"),
        (["transfer", "--model", "{model}", "--tokenizer", "{tmp}/nothing", "--out", "{tmp}/o"],
         "does not exist"),
        (["transfer", "--model", "{model}", "--tokenizer", "{model}", "--method", "maen",
          "--out", "{tmp}/o"], "did you mean 'mean'"),
        (["tokenizer", "train", "--corpus", "{tmp}/empty.txt", "--out", "{tmp}/o",
          "--like", "none"], "no text"),
        (["tokenizer", "train", "--corpus", "{tmp}/latin1.txt", "--out", "{tmp}/o",
          "--like", "none"], "not UTF-8"),
        (["eval", "--model", "{model}", "--text", "{tmp}/missing.txt"], "missing.txt"),
        (["transfer", "--model", "{model}", "--tokenizer", "{model}", "--out", "{tmp}/o",
          "-O", "focus_temperature"], "expected KEY=VALUE"),
        (["transfer", "--model", "{model}", "--tokenizer", "{model}", "--out", "{tmp}/o",
          "--method", "wechsel", "--corpus", "{tmp}/empty.txt"],
         "needs --source-corpus (text in the source model's language) and --dictionary"),
        (["transfer", "--model", "{model}", "--tokenizer", "{model}", "--out", "{tmp}/o",
          "--method", "wechsel", "--corpus", "{tmp}/de.txt", "--source-corpus",
          "{tmp}/de.txt", "--dictionary", "freedict:xxx-yyy"], "dict-freedict-xxx-yyy"),
    ],
)
def test_expected_errors_are_one_line_exit_2(args, expected, tmp_path, tiny_model_dir):
    (tmp_path / "empty.txt").write_text("   \n")
    (tmp_path / "latin1.txt").write_bytes("Straße".encode("latin-1"))
    (tmp_path / "de.txt").write_text("Die Straße ist nass.")
    args = [a.format(tmp=tmp_path, model=tiny_model_dir) for a in args]
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 3  # one logical line, maybe wrapped
    assert not (tmp_path / "o").exists()


def test_hypernet_train_then_transfer(tmp_path, tiny_model_dir, german_tokenizer, capsys):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread beats two fighting over the cores
    try:
        corpus = tmp_path / "de.txt"
        corpus.write_text("\n\n".join(["Der schnelle braune Fuchs springt über den faulen Hund."
                                       " Die Straße ist nass."] * 20))
        hn = tmp_path / "hn"
        train = ["hypernet", "train", "--model", str(tiny_model_dir), "--corpus", str(corpus),
                 "--steps", "2", "--out", str(hn), "--batch-size", "2", "--seq-len", "16",
                 "--vocab-min", "300", "--vocab-max", "350", "--sample-texts", "4",
                 "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--d-ff", "64",
                 "--warmup-steps", "1", "--noise-std", "0.5"]
        assert main(train) == 0
        assert "2 steps" in capsys.readouterr().out
        assert (hn / "hypernet.safetensors").is_file() and (hn / "log.jsonl").is_file()
        assert main([*train, "--no-resume"]) == 2
        assert "leave out --no-resume" in capsys.readouterr().err
        assert main([*train, "--d-modle", "3"]) == 2
        assert "--d-model" in capsys.readouterr().err
        assert main([*train[:-2], "--steps", "0"]) == 2
        assert "--steps must be at least 1" in capsys.readouterr().err

        tok = tmp_path / "tok"
        german_tokenizer.save_pretrained(tok)
        out = tmp_path / "model"
        assert main(["transfer", "--model", str(tiny_model_dir), "--tokenizer", str(tok),
                     "--method", "hypernet", "--hypernet", str(hn), "--out", str(out)]) == 0
        assert json.loads((out / "tokenswap.json").read_text())["method"] == "hypernet"
        assert main(["transfer", "--model", str(tiny_model_dir), "--tokenizer", str(tok),
                     "--method", "hypernet", "--hypernet", str(hn), "-O", "hypernet_exact=predict",
                     "--out", str(tmp_path / "o4")]) == 0
        assert main(["transfer", "--model", str(tiny_model_dir), "--tokenizer", str(tok),
                     "--method", "hypernet", "--hypernet", str(hn), "-O", "hypernet_exact=both",
                     "--out", str(tmp_path / "o5")]) == 2
        assert "hypernet_exact must be one of" in capsys.readouterr().err
        assert not (tmp_path / "o5").exists()
        assert main(["transfer", "--model", str(tiny_model_dir), "--tokenizer", str(tok),
                     "--method", "hypernet", "--out", str(tmp_path / "o2")]) == 2
        err = capsys.readouterr().err  # no shipped hypernet fits the tiny model
        assert "needs --hypernet" in err or "no shipped hypernet for" in err
        assert main(["transfer", "--model", str(out), "--tokenizer", str(tok), "--method",
                     "hypernet", "--hypernet", str(hn), "--out", str(tmp_path / "o3")]) == 2
        err = capsys.readouterr().err
        assert "was trained for" in err and "allow-other-base" in err
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("args, expected", [
    (["transfer", "--tokenizr", "x"], "No such option: --tokenizr"),
    (["transfer", "--out", "o"], "missing option --tokenizer"),
    (["tokenizer", "train", "--corpus", "c", "--out", "o", "--vocab-size", "abc"], "--vocab-size"),
    (["tokenizer", "train", "--corpus", "c", "--out", "o", "--kind", "bep"],
     "did you mean 'bpe'"),
    (["bogus"], "No such command 'bogus'"),
])
def test_usage_errors_are_one_line_exit_2(args, expected, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [[], ["tokenizer"], ["bytes"]])
def test_bare_groups_print_help_and_exit_2(args, capsys):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "Usage" in captured.out and "Traceback" not in captured.err


def test_help_lists_choices_and_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps help to the terminal's width
    assert main(["tokenizer", "train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "bpe|unigram" in out and "--config" in out
    assert main(["tune", "--help"]) == 0
    out = capsys.readouterr().out
    assert "full|lora|embeddings" in out and "fp32|bf16" in out


def test_config_file_values_and_command_line_precedence(tmp_path, monkeypatch, capsys):
    import tokenswap.commands.tokenizer_train as command

    seen = []
    monkeypatch.setattr(command, "run", lambda cfg: seen.append(cfg) or [])
    monkeypatch.setattr(command, "show", lambda result, cfg, console: None)
    config = tmp_path / "tok.yaml"
    config.write_text("corpus: [a.txt, b.txt]\nvocab-size: 500\nkind: unigram\nout: tok\n")
    assert main(["tokenizer", "train", "--config", str(config), "--vocab-size", "700"]) == 0
    cfg = seen[-1]
    assert cfg.corpus == ["a.txt", "b.txt"] and cfg.out == Path("tok")
    assert cfg.vocab_size == 700  # the command line wins over the file
    assert cfg.kind.value == "unigram"
    assert main(["tokenizer", "train", "--config", str(config)]) == 0
    assert seen[-1].vocab_size == 500

    bad = tmp_path / "bad.yaml"
    for text, message in [("vocab_sise: 3\n", "unknown key 'vocab_sise'"),
                          ("vocab_size: many\n", "must be an integer"),
                          ("kind: [x\n", "not valid YAML")]:
        bad.write_text(text)
        assert main(["tokenizer", "train", "--config", str(bad), "--corpus", "c",
                     "--out", "o"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert main(["tokenizer", "train", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_ctrl_c_exits_130_with_a_line(monkeypatch, capsys):
    import tokenswap.commands.methods as command

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "run", interrupted)
    assert main(["methods"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_eval_json_output_is_checked_before_scoring(tmp_path, tiny_model_dir, capsys):
    corpus = tmp_path / "t.txt"
    corpus.write_text("Die Straße ist nass.")
    existing = tmp_path / "report.json"
    existing.write_text("keep me")
    for target, message in [(existing, "already exists"), (tmp_path / "no" / "r.json",
                                                           "does not exist"),
                            (tmp_path, "is a directory")]:
        assert main(["eval", "--model", str(tiny_model_dir), "--text", str(corpus),
                     "--json", str(target)]) == 2
        err = capsys.readouterr().err
        assert message in err and "bits/byte" not in capsys.readouterr().out
    assert existing.read_text() == "keep me"


def test_entry_point_usage_error_has_no_traceback():
    proc = run_cli("transfer", "--tokenizr", "x")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:")


def test_sigint_stops_tokenizer_training_with_130_and_no_output(tmp_path):
    """The tokenizers library trains in Rust and ignored Ctrl-C until the training was done
    (and then wrote the output)."""
    import random
    import signal
    import time

    import psutil

    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyzäöüß"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 12)))
             for _ in range(200_000)]
    corpus = tmp_path / "big.txt"
    with corpus.open("w") as f:
        for _ in range(6000):
            f.write(" ".join(rng.choices(words, k=1000)) + "\n\n")
    out = tmp_path / "tok"
    proc = subprocess.Popen([sys.executable, "-m", "tokenswap.cli", "tokenizer", "train",
                             "--corpus", str(corpus), "--out", str(out), "--like", "none",
                             "--vocab-size", "150000"], stderr=subprocess.PIPE, text=True)
    child = psutil.Process(proc.pid)
    # past the imports and the reading (about 5 CPU s), well inside the training
    while proc.poll() is None and sum(child.cpu_times()[:2]) < 10:
        time.sleep(0.1)
    assert proc.poll() is None, "training finished before the interrupt: make the corpus bigger"
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]
