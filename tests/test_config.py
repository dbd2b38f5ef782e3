"""Typed configs: values from strings, YAML and Python, with one-line errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import pytest

from tokenswap.config import (
    build,
    describe,
    from_dict,
    option,
    parse_value,
    read_config_file,
    to_dict,
)
from tokenswap.errors import TokenswapError


class Kind(str, enum.Enum):
    BPE = "bpe"
    UNIGRAM = "unigram"


@dataclass
class Inner:
    steps: int | None = option(None, "Steps.")
    lr: float = option(1e-4, "Learning rate.")


@dataclass
class Outer:
    name: str = option(help="A required name.")
    kind: Kind = option(Kind.BPE, "Which kind.")
    out: Path | None = option(None, "Where.")
    words: list[str] = option(default_factory=list, help="Words.")
    inner: Inner = option(default_factory=Inner, help="Nested options.")


def test_parse_value_types():
    assert parse_value("3", int, "x") == 3
    assert parse_value("1_000", int, "x") == 1000
    assert parse_value("0.5", float, "x") == 0.5
    assert parse_value("yes", bool, "x") is True and parse_value("false", bool, "x") is False
    assert parse_value("none", int | None, "x") is None
    assert parse_value("unigram", Kind, "x") is Kind.UNIGRAM
    assert parse_value("a, b", list[str], "x") == ["a", "b"]
    assert parse_value(["1", 2], list[int], "x") == [1, 2]
    for raw, tp, message in [("abc", int, "must be an integer"), ("1.5", int, "integer"),
                             ("maybe", bool, "true or false"), ("x", float, "number"),
                             ("unigam", Kind, "did you mean 'unigram'")]:
        with pytest.raises(TokenswapError, match=message):
            parse_value(raw, tp, "option x")


def test_from_dict_unknown_and_missing_keys():
    assert from_dict(Inner, {"steps": "10", "lr": "0.1"}) == Inner(steps=10, lr=0.1)
    with pytest.raises(TokenswapError, match="unknown tuning option 'step' \\(did you mean 'steps'"):
        from_dict(Inner, {"step": 1}, what="tuning option")
    with pytest.raises(TokenswapError, match="name is required"):
        from_dict(Outer, {})


def test_build_flattens_nested_fields_and_converts_strings():
    cfg = build(Outer, name="n", kind="unigram", out="dir", steps=5)
    assert cfg.kind is Kind.UNIGRAM and cfg.out == Path("dir") and cfg.inner.steps == 5
    sentinel = object()  # Python callers pass loaded objects: they are kept as they are
    assert build(Outer, name=sentinel).name is sentinel
    with pytest.raises(TokenswapError, match="did you mean 'steps'"):
        build(Outer, name="n", stesp=5)


def test_describe_and_to_dict():
    rows = {r["name"]: r for r in describe(Outer)}
    assert rows["kind"]["type"] == "bpe|unigram" and rows["kind"]["default"] == "bpe"
    assert rows["name"]["help"] == "A required name."
    assert to_dict(build(Outer, name="n", out="o")) == {
        "name": "n", "kind": "bpe", "out": "o", "words": [], "inner": {"steps": None, "lr": 1e-4}}


def test_read_config_file_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("name: x\nsteps: 3\n")
    assert read_config_file(good) == {"name": "x", "steps": 3}
    (tmp_path / "empty.yaml").write_text("")
    assert read_config_file(tmp_path / "empty.yaml") == {}
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    for name, message in [("missing.yaml", "does not exist"), ("bad.yaml", "not valid YAML"),
                          ("list.yaml", "must hold a mapping")]:
        with pytest.raises(TokenswapError, match=message):
            read_config_file(tmp_path / name)
