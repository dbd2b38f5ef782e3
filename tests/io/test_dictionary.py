"""Bilingual dictionaries: dictd databases (FreeDict's format), word-pair files, clear errors."""

from __future__ import annotations

import gzip

import pytest

from tokenswap.errors import TokenswapError
from tokenswap.io import dictionary
from tokenswap.io.dictionary import read_dictionary

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(n: int) -> str:
    out = ""
    while True:
        out = _B64[n % 64] + out
        n //= 64
        if n == 0:
            return out


def write_dictd(path, entries: dict[str, str], *, compress: bool = True) -> None:
    """A dictd database: the bodies concatenated, an index of (headword, offset, length)."""
    body, index = b"", []
    header = b"00-database-info\nA test dictionary\n\n"
    index.append(f"00-database-info\t{b64(0)}\t{b64(len(header))}")
    body += header
    for head, text in entries.items():
        data = text.encode()
        index.append(f"{head}\t{b64(len(body))}\t{b64(len(data))}")
        body += data
    name = path.name.removesuffix(".dz").removesuffix(".dict")
    (gzip.open(path, "wb") if compress else open(path, "wb")).write(body)
    path.with_name(name + ".index").write_text("\n".join(index) + "\n", encoding="utf-8")


ENTRIES = {
    "Haus": "Haus /haʊs/ <n, neut, sg>\nhouse\nbuilding, home\n   Synonym: {Gebäude}\n\n",
    "schnell": "schnell /ʃnɛl/ <adj>\nfast; quick (speedy)\n see: {rasch}\n\n",
    "Größe": "Größe <fem>\nsize\n",
    "aber dalli": "aber dalli\nmake it snappy\n",  # a phrase: not a single word
    "Fuchs": "Fuchs\nfox <n>\n         Note: the animal\n      \"Der Fuchs\" - The fox\n",
}


@pytest.mark.parametrize("compress", [True, False])
def test_dictd_single_word_pairs(tmp_path, compress):
    path = tmp_path / ("test.dict.dz" if compress else "test.dict")
    write_dictd(path, ENTRIES, compress=compress)
    pairs = read_dictionary(path)
    assert pairs == [("haus", "house"), ("haus", "building"), ("haus", "home"),
                     ("schnell", "fast"), ("schnell", "quick"), ("größe", "size"),
                     ("fuchs", "fox")]


def test_freedict_shorthand(tmp_path, monkeypatch):
    monkeypatch.setattr(dictionary, "FREEDICT_DIR", tmp_path)
    write_dictd(tmp_path / "freedict-deu-eng.dict.dz", ENTRIES)
    assert ("fuchs", "fox") in read_dictionary("freedict:deu-eng")
    with pytest.raises(TokenswapError, match="apt-get install dict-freedict-eng-ell"):
        read_dictionary("freedict:eng-ell")


def test_word_pair_files(tmp_path):
    muse = tmp_path / "de-en.txt"
    muse.write_text("haus house\nHaus House\nschnell\tfast\nzu viele wörter hier\n\n", encoding="utf-8")
    assert read_dictionary(muse) == [("haus", "house"), ("schnell", "fast")]
    gz = tmp_path / "de-en.txt.gz"
    gz.write_bytes(gzip.compress(b"fuchs fox\n"))
    assert read_dictionary(gz) == [("fuchs", "fox")]


@pytest.mark.parametrize("content, match", [
    (b"\xff\xfe not utf-8 \xff\n", "cannot read dictionary"),
    (b"only phrases here and there\n", "no single-word pairs"),
])
def test_bad_dictionaries(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(TokenswapError, match=match):
        read_dictionary(path)


def test_missing_files(tmp_path):
    with pytest.raises(TokenswapError, match="not found"):
        read_dictionary(tmp_path / "nope.txt")
    (tmp_path / "lonely.dict.dz").write_bytes(gzip.compress(b"x"))
    with pytest.raises(TokenswapError, match="has no index"):
        read_dictionary(tmp_path / "lonely.dict.dz")
