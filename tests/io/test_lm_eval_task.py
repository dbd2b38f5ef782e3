"""The lm-eval task over local files: what it holds, bad input, and the real lm-evaluation-harness
scoring a tiny model on it like :func:`tokenswap.scoring.bpb.bits_per_byte`.

The same check on the real SmolLM2 transferred to German, through the ``lm_eval`` command
line, is tests/test_slow_lm_eval.py.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import ENGLISH, tiny_llama, train_byte_level_bpe
from tokenizers import Tokenizer, processors
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from tokenswap.cli import main
from tokenswap.errors import TokenswapError
from tokenswap.io.corpus import corpus_texts
from tokenswap.io.lm_eval_task import model_args, task_yaml, write_task
from tokenswap.scoring.bpb import bits_per_byte

# Each is one window at max_length 64 for the tiny tokenizer: scored the same by both tools.
DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "Größere Häuser stehen am Fluss. 漢字 and emoji 🦊 too.\r\n",
    "def add(a, b):\n    return a + b\n",
    "[1, 2, 3]",  # would be a Python list if lm-eval rendered it through a template
    "  leading spaces, a trailing tab\t",
    "x",
]


def test_task_reads_the_documents_back_exactly(tmp_path):
    out = tmp_path / "dir with: space"
    task = write_task([*DOCS, "   \n"], out, name="held-out_1")
    assert (task.documents, task.bytes) == (len(DOCS), sum(len(d.encode()) for d in DOCS))
    assert sorted(p.name for p in out.iterdir()) == ["held-out_1.jsonl", "held-out_1.yaml"]
    config = yaml.safe_load(task.yaml_path.read_text())
    assert config["task"] == "held-out_1"
    assert config["output_type"] == "loglikelihood_rolling"
    assert config["dataset_path"] == "json"
    assert config["dataset_kwargs"]["data_files"]["test"] == str(task.data_path)
    assert config["doc_to_target"] == "text"
    assert "bits_per_byte" in [m["metric"] for m in config["metric_list"]]
    # tokenswap eval reads the .jsonl into the same documents (whitespace-only one left out)
    assert corpus_texts([str(task.data_path)]) == DOCS
    assert [json.loads(line)["text"] for line in task.data_path.open()] == DOCS


def test_task_yaml_quotes_any_path():
    path = '/tmp/a "quoted": path #not a comment/x.jsonl'
    assert yaml.safe_load(task_yaml("t", path))["dataset_kwargs"]["data_files"]["test"] == path


@pytest.mark.parametrize("args, message", [
    (["--name", "1st task"], "task name '1st task'"),
    (["--name", "a/b"], "task name 'a/b'"),
    (["--text", "EMPTY"], "holds no text"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    text = tmp_path / "held.txt"
    text.write_text("Ein Satz.\n")
    (tmp_path / "empty.txt").write_text("  \n")
    args = [str(tmp_path / "empty.txt") if a == "EMPTY" else a for a in args]
    out = tmp_path / "task"
    argv = ["lm-eval", "task", "--out", str(out)]
    if "--text" not in args:
        argv += ["--text", str(text)]
    assert main(argv + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "held.txt"]


def test_existing_out_is_kept_without_overwrite(tmp_path, capsys):
    text = tmp_path / "held.txt"
    text.write_text("Ein Satz.\n")
    out = tmp_path / "task"
    out.mkdir()
    (out / "keep").write_text("x")
    assert main(["lm-eval", "task", "--text", str(text), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep"]
    assert main(["lm-eval", "task", "--text", str(text), "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tokenswap_heldout.jsonl",
                                                     "tokenswap_heldout.yaml"]


def test_write_task_refuses_one_string(tmp_path):
    with pytest.raises(TokenswapError, match="not one string"):
        write_task("one document", tmp_path / "t")
    assert not (tmp_path / "t").exists()


# ------------------------------------------------------------------ the real lm-eval, tiny models


def _bos_adding(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """The same vocabulary with a Llama-style post-processor that adds a BOS to every text."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    bos = tokenizer.bos_token
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos,
                                   eos_token=tokenizer.eos_token, pad_token=tokenizer.pad_token,
                                   unk_token=tokenizer.unk_token)


@pytest.mark.parametrize("adds_bos", [False, True])
def test_lm_eval_scores_the_task_like_tokenswap(tmp_path, monkeypatch, one_thread, adds_bos):
    """lm-eval's ``hf`` backend and tokenswap score the documents in one window each (fewer than
    max_length tokens) with the same start token and the same bytes, so the bits per byte agree
    to float noise: asserted within 1e-5 relative. With a tokenizer that adds a BOS itself this
    holds only thanks to ``add_bos_token=False`` in :func:`model_args`: without it lm-eval
    would score that BOS after its own prefix token."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    tokenizer = train_byte_level_bpe(ENGLISH, 400)
    if adds_bos:
        tokenizer = _bos_adding(tokenizer)
        assert tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id
    model_dir = tmp_path / "model"
    tiny_llama(len(tokenizer), seed=3).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    task = write_task(DOCS, tmp_path / "task")

    results = lm_eval.simple_evaluate(
        model="hf", model_args=model_args(str(model_dir), max_length=64), tasks=[task.name],
        task_manager=TaskManager(include_path=str(task.directory), include_defaults=False),
        batch_size=4, device="cpu", log_samples=False)
    got = results["results"][task.name]["bits_per_byte,none"]

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    want = bits_per_byte(model, AutoTokenizer.from_pretrained(model_dir), DOCS, max_length=64)
    assert max(len(ids) for ids in tokenizer(DOCS, add_special_tokens=False)["input_ids"]) < 63
    assert got == pytest.approx(want.bits_per_byte, rel=1e-5)
