"""`tokenswap audit`: the side-by-side table, the files it writes, one-line errors."""

from __future__ import annotations

import json

import pytest
from conftest import ENGLISH, GERMAN

from tokenswap.cli import main
from tokenswap.commands.audit import parse_named


def test_audit_prints_tables_and_writes_the_report(tmp_path, tiny_model_dir,
                                                   german_tokenizer, capsys):
    for lang, texts in (("en", ENGLISH), ("de", GERMAN)):
        (tmp_path / f"book.{lang}.txt").write_text(" ".join(texts[:8]))
    german_tokenizer.save_pretrained(tmp_path / "de-tok")
    out = tmp_path / "out"
    code = main(["audit", str(tiny_model_dir), f"german={tmp_path / 'de-tok'}",
                 "--corpus", f"en={tmp_path / 'book.en.txt'}",
                 "--corpus", f"de={tmp_path / 'book.de.txt'}", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "tokenizers side by side" in printed and "german" in printed
    assert "parity" in printed and "unreachable" in printed
    data = json.loads((out / "audit.json").read_text())
    assert [t["name"] for t in data["tokenizers"]] == [tiny_model_dir.name, "german"]
    parity = data["parity"]["ratios"]
    assert parity[tiny_model_dir.name]["de"]["ratio"] > parity["german"]["de"]["ratio"]
    assert (out / "report.html").is_file()

    assert main(["audit", "german=" + str(tmp_path / "de-tok"), "--corpus",
                 f"de={tmp_path / 'book.de.txt'}", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["corpus"] for r in rows] == ["de"]


@pytest.mark.parametrize("args, expected", [
    (["audit", "{model}", "--corpus", "nolang"], "NAME=PATH"),
    (["audit", "{model}", "--corpus", "en={tmp}/missing.txt"], "does not exist"),
    (["audit", "{tmp}/no-tokenizer", "--corpus", "en={tmp}/t.txt"], "does not exist"),
    (["audit", "{model}", "--corpus", "en={tmp}/t.txt", "--out", "{tmp}"], "already exists"),
])
def test_audit_errors_are_one_line(args, expected, tmp_path, tiny_model_dir, capsys):
    (tmp_path / "t.txt").write_text("some text")
    argv = [a.format(model=tiny_model_dir, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_parse_named():
    assert parse_named(["de=a/", "de=b=c.txt"], "--corpus") == [("de", "a/"), ("de", "b=c.txt")]
