"""`tokenswap bytes score|generate` on tiny saved models; errors are one line with exit 2."""

from __future__ import annotations

import copy
import json
import math

import pytest
from typer.testing import CliRunner

from tokenswap.bytes import ByteLM
from tokenswap.cli import app, main
from tokenswap.io.models import load_model

runner = CliRunner()


@pytest.fixture(scope="module")
def bl_dir(tmp_path_factory, bl_model, bl_tokenizer):
    path = tmp_path_factory.mktemp("bytes-bl")
    copy.deepcopy(bl_model).float().save_pretrained(path)
    bl_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sp_dir(tmp_path_factory, sp_model, sp_tokenizer):
    path = tmp_path_factory.mktemp("bytes-sp")
    copy.deepcopy(sp_model).float().save_pretrained(path)
    sp_tokenizer.save_pretrained(path)
    return path


def test_score_json_matches_bytelm(bl_dir):
    result = runner.invoke(app, ["bytes", "score", "--model", str(bl_dir), "--text", "abc a",
                                 "--json", "--per-byte", "--prune", "0", "--max-nodes", "4096"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    bundle = load_model(str(bl_dir))
    lm = ByteLM(bundle.model, bundle.tokenizer)
    expected = -lm.prefix_logprob(b"abc a") / math.log(2)
    assert report["bytes"] == 5 and len(report["per_byte"]) == 5
    assert report["bits"] == pytest.approx(expected, rel=1e-6)
    assert report["bits_per_byte"] == pytest.approx(expected / 5, rel=1e-6)
    assert report["dropped_mass"] == 0.0


def test_score_table_output(bl_dir):
    result = runner.invoke(app, ["bytes", "score", "--model", str(bl_dir), "--text", "ab",
                                 "--end-of-text", "--per-byte"])
    assert result.exit_code == 0, result.output
    assert "bits/byte" in result.stdout and "<end>" in result.stdout


def test_generate_single_and_ensemble(bl_dir, sp_dir):
    one = runner.invoke(app, ["bytes", "generate", "--model", str(bl_dir), "--prompt", "ab",
                              "--max-bytes", "4", "--json"])
    assert one.exit_code == 0, one.output
    report = json.loads(one.stdout)
    assert report["bytes"] <= 4 and report["combine"] is None
    both = runner.invoke(app, ["bytes", "generate", "--model", str(bl_dir), "--model",
                               str(sp_dir), "--weight", "1", "--weight", "3", "--combine",
                               "product", "--prompt", "a ", "--max-bytes", "3", "--sample",
                               "--seed", "2", "--json"])
    assert both.exit_code == 0, both.output
    report = json.loads(both.stdout)
    assert report["combine"] == "product" and len(report["members"]) == 2
    assert report["stop_reason"] in {"max_bytes", "end_of_text", "stop"}
    text = runner.invoke(app, ["bytes", "generate", "--model", str(bl_dir), "--prompt", "ab",
                               "--max-bytes", "3"])
    assert text.exit_code == 0 and "forward passes" in text.stdout


@pytest.mark.parametrize("quiet, terminal, shown", [
    (False, True, True), (True, True, False), (False, False, False)])
def test_generate_progress_on_a_terminal_unless_quiet(bl_dir, capsys, monkeypatch, quiet,
                                                       terminal, shown):
    from rich.console import Console

    monkeypatch.setattr(Console, "is_terminal", property(lambda self: terminal))
    code = main(["bytes", "generate", "--model", str(bl_dir), "--prompt", "ab", "--max-bytes",
                 "3", "--json", *(["--quiet"] if quiet else [])])
    out = capsys.readouterr()
    assert code == 0 and json.loads(out.out)["bytes"] <= 3
    assert ("generating bytes" in out.err) == shown, out.err


@pytest.mark.parametrize("args, expected", [
    (["--combine", "mixtrue"], "did you mean 'mixture'"),
    (["--weight", "1", "--weight", "2"], "2 weights for 1 models"),
    (["--sample", "--temperature", "0"], "temperature"),
])
def test_generate_errors_are_one_line_exit_2(bl_dir, capsys, args, expected):
    code = main(["bytes", "generate", "--model", str(bl_dir), "--prompt", "a", *args])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err


def test_missing_model_is_exit_2(capsys):
    assert main(["bytes", "score", "--model", "/no/such/model", "--text", "a"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_pruned_score_reports_its_bound(bl_dir):
    result = runner.invoke(app, ["bytes", "score", "--model", str(bl_dir), "--text", "abcabcab",
                                 "--prune", "0.05", "--max-nodes", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert 0 < report["dropped_mass"] < 1
    exact = runner.invoke(app, ["bytes", "score", "--model", str(bl_dir), "--text", "abcabcab",
                                "--prune", "0", "--max-nodes", "4096", "--json"])
    p_exact = 2 ** -json.loads(exact.stdout)["bits"]
    p_pruned = 2 ** -report["bits"]
    assert p_pruned <= p_exact * (1 + 1e-6) and p_exact <= p_pruned + report["dropped_mass"]
