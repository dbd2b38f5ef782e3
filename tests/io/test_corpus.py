"""Tests for tokenswap.io.corpus: formats, skipping rules, byte-exactness, budgets and splits.

Every corpus is built in tmp_path; nothing touches the network.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenswap.errors import TokenswapError
from tokenswap.io.corpus import (
    Document,
    _split_text,
    corpus_bytes,
    read_corpus,
    split_corpus,
)

EDGE_TEXTS = ["", "a", "\n", "héllo wörld", "日本語のテキスト", "emoji 😀🎉 end", "한국어 텍스트"]


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def error_of(call) -> str:
    """The message of the TokenswapError that ``call`` raises; it must be one line."""
    with pytest.raises(TokenswapError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# --- plain files ------------------------------------------------------------------------------


def test_text_file_is_one_document_with_its_path_as_source(tmp_path):
    path = write(tmp_path / "a.txt", "Hello world.\nSecond line.\n")
    assert read_corpus(str(path)) == [Document("Hello world.\nSecond line.\n", str(path))]


def test_pathlike_and_list_specs_concatenate_in_order(tmp_path):
    b = write(tmp_path / "b.txt", "bee")
    a = write(tmp_path / "a.md", "ay")
    docs = read_corpus([b, str(a)])
    assert [d.text for d in docs] == ["bee", "ay"]
    assert [d.source for d in docs] == [str(b), str(a)]


def test_crlf_and_lone_cr_are_kept_byte_exact(tmp_path):
    raw = "line one\r\nline two\r\n\r\nlast\rline\u2028sep"
    path = write(tmp_path / "win.txt", raw)
    (doc,) = read_corpus(path)
    assert doc.text == raw
    assert doc.text.encode("utf-8") == path.read_bytes()


def test_leading_bom_is_stripped_but_inner_bom_kept(tmp_path):
    path = write(tmp_path / "bom.txt", b"\xef\xbb\xbfhi\xef\xbb\xbfthere")
    (doc,) = read_corpus(path)
    assert doc.text == "hi\ufeffthere"


@pytest.mark.parametrize("text", [t for t in EDGE_TEXTS if t.strip()])
def test_edge_case_texts_round_trip(tmp_path, text):
    (doc,) = read_corpus(write(tmp_path / "t.txt", text))
    assert doc.text == text


def test_empty_and_whitespace_files_are_dropped(tmp_path):
    write(tmp_path / "d" / "a_empty.txt", "")
    write(tmp_path / "d" / "b_blank.txt", " \n\t\r\n")
    write(tmp_path / "d" / "c_text.txt", "text")
    docs = read_corpus(tmp_path / "d")
    assert [d.text for d in docs] == ["text"]


def test_corpus_without_text_is_an_error(tmp_path):
    empty = write(tmp_path / "empty.txt", "")
    blank = write(tmp_path / "blank.txt", "\n\n  \n")
    message = error_of(lambda: read_corpus([empty, blank]))
    assert message.startswith(f"corpus {empty}, {blank} holds no text")


def test_non_utf8_file_names_file_byte_and_offset(tmp_path):
    path = write(tmp_path / "latin1.txt", "abc déf".encode("latin-1"))
    message = error_of(lambda: read_corpus(path))
    assert message == (
        f"{path} is not UTF-8 text (invalid byte 0xe9 at offset 5); "
        "convert it with iconv or remove it"
    )


def test_non_utf8_offset_counts_the_bom(tmp_path):
    path = write(tmp_path / "x.txt", b"\xef\xbb\xbfok\xff")
    assert "invalid byte 0xff at offset 5" in error_of(lambda: read_corpus(path))


def test_truncated_multibyte_at_end_is_not_utf8(tmp_path):
    path = write(tmp_path / "cut.txt", "ab€".encode()[:-1])
    assert "invalid byte 0xe2 at offset 2" in error_of(lambda: read_corpus(path))


# --- compression ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)],
)
def test_compressed_text_is_decompressed(tmp_path, suffix, compress):
    text = "NAME\n  ls - Verzeichnisinhalte auflisten\r\n\nÜbersicht\n"
    path = write(tmp_path / f"ls.1{suffix}", compress(text.encode()))
    assert read_corpus(path) == [Document(text, str(path))]


def test_compressed_jsonl_uses_inner_suffix(tmp_path):
    lines = [json.dumps({"text": "eins"}), json.dumps({"text": "zwei"})]
    path = write(tmp_path / "x.jsonl.gz", gzip.compress("\n".join(lines).encode()))
    docs = read_corpus(path)
    assert docs == [Document("eins", f"{path}#line 1"), Document("zwei", f"{path}#line 2")]


def test_non_utf8_inside_gzip_reports_decompressed_offset(tmp_path):
    path = write(tmp_path / "bad.txt.gz", gzip.compress(b"abc\x80"))
    message = error_of(lambda: read_corpus(path))
    assert "invalid byte 0x80 at offset 3 after gzip decompression" in message
    assert message.startswith(str(path))


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    path = write(tmp_path / "broken.txt.gz", b"this is not gzip at all")
    message = error_of(lambda: read_corpus(path))
    assert message.startswith(f"{path} is not a valid gzip file")


# --- JSON Lines -------------------------------------------------------------------------------


def test_jsonl_one_document_per_line_skipping_blank_lines(tmp_path):
    path = write(
        tmp_path / "c.jsonl",
        '{"text": "first", "id": 1}\r\n\n{"text": "second\\r\\nline"}\n{"text": "  "}\n',
    )
    docs = read_corpus(path)
    assert docs == [
        Document("first", f"{path}#line 1"),
        Document("second\r\nline", f"{path}#line 3"),
    ]


def test_jsonl_with_bom_and_custom_field(tmp_path):
    path = write(tmp_path / "c.json", b'\xef\xbb\xbf{"body": "x"}\n{"body": "y"}')
    assert [d.text for d in read_corpus(path, field="body")] == ["x", "y"]


def test_jsonl_missing_field_names_file_line_and_keys(tmp_path):
    path = write(tmp_path / "c.jsonl", '{"text": "ok"}\n{"content": "no"}\n')
    message = error_of(lambda: read_corpus(path))
    assert message.startswith(f"{path} line 2 has no 'text' key (keys: 'content')")
    assert "PATH#FIELD" in message  # the hint names something a user can pass


def test_spec_field_suffix_chooses_the_text_field(tmp_path, capsys):
    from tokenswap.cli import main

    path = write(tmp_path / "c.jsonl", '{"content": "erstens"}\n{"content": "zweitens"}\n')
    assert [d.text for d in read_corpus(f"{path}#content")] == ["erstens", "zweitens"]
    odd = write(tmp_path / "a#b.txt", "hash in the name")  # an existing path is taken as is
    assert [d.text for d in read_corpus(odd)] == ["hash in the name"]
    # the hint works on the command line: the field comes with the spec
    assert main(["tokenizer", "train", "--corpus", str(path), "--out", str(tmp_path / "t"),
                 "--like", "none", "--vocab-size", "300"]) == 2
    assert "PATH#FIELD" in capsys.readouterr().err
    assert main(["tokenizer", "train", "--corpus", f"{path}#content", "--out",
                 str(tmp_path / "t"), "--like", "none", "--vocab-size", "300"]) == 0


def test_jsonl_non_string_field_is_an_error(tmp_path):
    path = write(tmp_path / "c.jsonl", '{"text": 3}\n')
    assert error_of(lambda: read_corpus(path)).startswith(f"{path} line 1: 'text' is int")
    path = write(tmp_path / "n.jsonl", '{"text": null}\n')
    assert "'text' is null, not a string" in error_of(lambda: read_corpus(path))


def test_jsonl_invalid_json_and_non_object(tmp_path):
    bad = write(tmp_path / "bad.jsonl", '{"text": "a"}\n{"text": \n')
    assert error_of(lambda: read_corpus(bad)).startswith(f"{bad} line 2 is not valid JSON")
    arr = write(tmp_path / "arr.jsonl", '["a"]\n')
    assert error_of(lambda: read_corpus(arr)).startswith(f"{arr} line 1 is a JSON list")


def test_jsonl_non_utf8_offset_is_in_the_file(tmp_path):
    path = write(tmp_path / "c.jsonl", b'{"text": "a"}\n{"text": "\xfe"}\n')
    assert "invalid byte 0xfe at offset 24" in error_of(lambda: read_corpus(path))


# --- parquet ----------------------------------------------------------------------------------


def write_parquet(path: Path, columns: dict) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_rows_become_documents(tmp_path):
    path = write_parquet(
        tmp_path / "p.parquet", {"text": ["null row?", "", "zwei 😀"], "n": [1, 2, 3]}
    )
    docs = read_corpus(path)
    assert docs == [Document("null row?", f"{path}#row 0"), Document("zwei 😀", f"{path}#row 2")]


def test_gzipped_parquet_is_read(tmp_path):
    plain = write_parquet(tmp_path / "p.parquet", {"body": ["a", "b"]})
    path = write(tmp_path / "q.parquet.gz", gzip.compress(plain.read_bytes()))
    assert [d.text for d in read_corpus(path, field="body")] == ["a", "b"]


def test_parquet_missing_or_non_string_column(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"body": ["a"], "n": [1]})
    message = error_of(lambda: read_corpus(path))
    assert message.startswith(f"{path} has no 'text' column (columns: 'body', 'n')")
    assert "holds int64, not strings" in error_of(lambda: read_corpus(path, field="n"))


def test_parquet_null_value_is_an_error(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"text": ["a", None]})
    assert error_of(lambda: read_corpus(path)).startswith(f"{path} row 1: 'text' is null")


def test_parquet_without_pyarrow_says_pip_install(tmp_path, monkeypatch):
    path = write(tmp_path / "p.parquet", b"PAR1 not really")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    message = error_of(lambda: read_corpus(path))
    assert message.startswith(f"reading {path} needs pyarrow; pip install pyarrow")


def test_corrupt_parquet_is_a_clear_error(tmp_path):
    pytest.importorskip("pyarrow")
    path = write(tmp_path / "p.parquet", b"not parquet at all")
    assert error_of(lambda: read_corpus(path)).startswith(f"{path} is not a readable parquet")


# --- directories and globs --------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "corpus"
    write(root / "b.txt", "bee")
    write(root / "a.md", "ay")
    write(root / "sub" / "c.py", "print('c')\n")
    write(root / "sub" / "deeper" / "d.jsonl", '{"text": "dee"}\n')
    write(root / "sub" / "e.1.gz", gzip.compress(b"man page"))
    write(root / ".hidden.txt", "hidden")
    write(root / ".git" / "config.txt", "hidden dir")
    write(root / "mod.pyc", b"\x00\x01binary")
    write(root / "lib.so", b"\x7fELF")
    write(root / "img.png", b"\x89PNG\r\n")
    write(root / "arch.tar.gz", gzip.compress(b"\x00tar"))
    write(root / "blob.dat", b"some\x00binary data")  # text format by suffix, but NUL inside
    (root / "link.txt").symlink_to(root / "b.txt")  # the same file twice: read once
    (root / "dangling.txt").symlink_to(root / "missing.txt")
    return root


def test_directory_is_recursive_sorted_and_skips_hidden_and_binary(tree):
    docs = read_corpus(tree)
    assert [(d.source, d.text) for d in docs] == [
        (str(tree / "a.md"), "ay"),
        (str(tree / "b.txt"), "bee"),
        (str(tree / "sub" / "c.py"), "print('c')\n"),
        (f"{tree / 'sub' / 'deeper' / 'd.jsonl'}#line 1", "dee"),
        (str(tree / "sub" / "e.1.gz"), "man page"),
    ]


def test_named_file_is_read_even_with_nul_bytes(tmp_path):
    path = write(tmp_path / "nul.txt", "a\x00b")
    assert read_corpus(path)[0].text == "a\x00b"


def test_directory_without_readable_files_is_an_error(tmp_path):
    write(tmp_path / "d" / "x.png", b"\x89PNG")
    message = error_of(lambda: read_corpus(tmp_path / "d"))
    assert message.startswith(f"directory {tmp_path / 'd'} holds no readable files")


def test_glob_with_double_star(tree):
    docs = read_corpus(str(tree / "**" / "*.txt"))
    assert [d.source for d in docs] == [str(tree / "b.txt")]  # link.txt is the same file
    docs = read_corpus(str(tree / "sub" / "**" / "*"))
    assert [d.text for d in docs] == ["print('c')\n", "dee", "man page"]


def test_glob_matching_directories_walks_them(tree):
    docs = read_corpus(str(tree / "su*"))
    assert [d.text for d in docs] == ["print('c')\n", "dee", "man page"]


def test_glob_matching_nothing_is_an_error(tmp_path):
    pattern = str(tmp_path / "**" / "*.nothing")
    assert (
        error_of(lambda: read_corpus(pattern))
        == f"glob {pattern} matches nothing; check the pattern"
    )


def test_missing_path_is_an_error(tmp_path):
    missing = tmp_path / "nope.txt"
    assert error_of(lambda: read_corpus(missing)).startswith(
        f"corpus path {missing} does not exist"
    )


def test_file_whose_name_looks_like_a_glob_is_read_literally(tmp_path):
    path = write(tmp_path / "[.1", "test manual")
    assert read_corpus(path) == [Document("test manual", str(path))]


def test_empty_spec_list_is_an_error():
    assert error_of(lambda: read_corpus([])).startswith("no corpus given")


# --- large files split into documents ---------------------------------------------------------


def test_big_file_splits_at_blank_lines(tmp_path):
    paragraphs = [f"Absatz {i}: Größe ändert sich.\r\nZweite Zeile {i}.\r\n" for i in range(40)]
    text = "\r\n".join(paragraphs)
    path = write(tmp_path / "big.txt", text)
    docs = read_corpus(path, max_doc_bytes=200)
    assert len(docs) > 1
    assert "".join(d.text for d in docs) == text
    assert all(len(d.text.encode()) <= 200 for d in docs)
    # every piece but the last ends at a paragraph boundary (a blank line)
    assert all(d.text.endswith("\r\n\r\n") for d in docs[:-1])
    assert docs[0].source == f"{path}#line 1"
    line_of_second = text[: len(docs[0].text)].count("\n") + 1
    assert docs[1].source == f"{path}#line {line_of_second}"


def test_big_paragraph_and_big_line_split_without_breaking_characters(tmp_path):
    line = "€😀ä" * 500  # 9 bytes a round; 3- and 4-byte characters straddle every limit
    text = "short\n" + line + "\nend\n"
    path = write(tmp_path / "wide.txt", text)
    docs = read_corpus(path, max_doc_bytes=100)
    assert "".join(d.text for d in docs) == text
    assert all(len(d.text.encode()) <= 100 for d in docs)
    assert docs[0].text.startswith("short\n")


def test_file_at_the_limit_stays_whole(tmp_path):
    text = "x" * 99 + "\n"
    path = write(tmp_path / "exact.txt", text)
    assert read_corpus(path, max_doc_bytes=100) == [Document(text, str(path))]


def test_long_jsonl_record_is_split_with_its_line_as_source(tmp_path):
    value = "\n\n".join(["wort " * 30] * 5)
    path = write(tmp_path / "c.jsonl", json.dumps({"text": value}) + "\n")
    docs = read_corpus(path, max_doc_bytes=200)
    assert len(docs) == 5
    assert "".join(d.text for d in docs) == value
    assert {d.source for d in docs} == {f"{path}#line 1"}


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(list("ab \n\r\t€😀äü日")), max_size=300),
    limit=st.integers(min_value=4, max_value=64),
)
def test_split_text_pieces_rejoin_and_fit(text, limit):
    pieces = _split_text(text, limit)
    assert "".join(piece for _, piece in pieces) == text
    assert all(len(piece.encode()) <= limit for _, piece in pieces)
    assert all(piece for _, piece in pieces) or text == ""
    lines = [number for number, _ in pieces]
    assert lines == sorted(lines)


# --- max_bytes --------------------------------------------------------------------------------


def test_max_bytes_truncates_at_a_character_boundary(tmp_path):
    first = write(tmp_path / "1.txt", "abc")
    second = write(tmp_path / "2.txt", "d€€")  # d = 1 byte, € = 3 bytes
    third = write(tmp_path / "3.txt", "never read")
    docs = read_corpus([first, second, third], max_bytes=8)
    # 3 + 1 + 3 = 7 bytes fit; the second € would make 10; the last document was cut, so the
    # byte left over is not filled from the next file
    assert docs == [Document("abc", str(first)), Document("d€", str(second))]
    assert corpus_bytes(docs) == 7


def test_max_bytes_exact_stops_before_next_file(tmp_path):
    first = write(tmp_path / "1.txt", "abc")
    second = write(tmp_path / "2.txt", "def")
    assert [d.text for d in read_corpus([first, second], max_bytes=3)] == ["abc"]


def test_max_bytes_does_not_read_past_the_budget(tmp_path):
    # the bad byte lies past the budget and is never read
    path = write(tmp_path / "big.txt", b"ok text " * 10 + b"\xff")
    docs = read_corpus(path, max_bytes=16)
    assert docs == [Document("ok text ok text ", str(path))]


def test_max_bytes_over_jsonl_and_bom(tmp_path):
    path = write(tmp_path / "c.jsonl", "\n".join(json.dumps({"text": "ü" * 10}) for _ in range(9)))
    docs = read_corpus(path, max_bytes=45)
    assert [d.text for d in docs] == ["ü" * 10, "ü" * 10, "ü" * 2]  # 20 + 20 + 4 bytes
    bom = write(tmp_path / "bom.txt", b"\xef\xbb\xbfabcdef")
    assert read_corpus(bom, max_bytes=4)[0].text == "abcd"


def test_invalid_limits_are_errors(tmp_path):
    path = write(tmp_path / "a.txt", "a")
    assert "max_bytes must be" in error_of(lambda: read_corpus(path, max_bytes=0))
    assert "max_doc_bytes must be" in error_of(lambda: read_corpus(path, max_doc_bytes=0))


# --- hf: --------------------------------------------------------------------------------------


def test_hf_spec_without_datasets_or_network_is_a_clear_error():
    message = error_of(lambda: read_corpus("hf:tokenswap-does-not-exist/nothing:cfg:test"))
    assert message.startswith("could not load hf dataset tokenswap-does-not-exist/nothing: ")
    assert message.endswith("; download it and pass local files")


def test_malformed_hf_spec_is_an_error():
    assert error_of(lambda: read_corpus("hf:")).startswith("cannot parse 'hf:'")


# --- progress ---------------------------------------------------------------------------------


def test_progress_bar_gives_the_same_documents(tree, capsys):
    assert read_corpus(tree, progress=True) == read_corpus(tree)
    assert capsys.readouterr().out == ""  # the bar goes to stderr, never into piped output


# --- corpus_bytes and split_corpus ------------------------------------------------------------


def test_corpus_bytes_counts_utf8_bytes():
    docs = [Document("ä€😀", "x"), Document("ab", "y"), Document("\r\n", "z")]
    assert corpus_bytes(docs) == 2 + 3 + 4 + 2 + 2
    assert corpus_bytes([]) == 0


def make_docs(n: int) -> list[Document]:
    return [
        Document(f"document number {i} ünd mehr", f"file{i % 7}.txt#line {i}") for i in range(n)
    ]


def test_split_is_disjoint_complete_and_near_the_fraction():
    docs = make_docs(2000)
    train, heldout = split_corpus(docs, heldout_fraction=0.1)
    assert len(train) + len(heldout) == len(docs)
    assert set(train).isdisjoint(heldout)
    assert set(train) | set(heldout) == set(docs)
    assert 140 <= len(heldout) <= 260  # 200 expected; binomial sd is about 13
    assert train == [d for d in docs if d in set(train)]  # input order kept


def test_split_is_independent_of_order_and_repeatable():
    docs = make_docs(300)
    shuffled = docs[:]
    random.Random(1).shuffle(shuffled)
    _, heldout = split_corpus(docs, heldout_fraction=0.2, seed=3)
    _, heldout_shuffled = split_corpus(shuffled, heldout_fraction=0.2, seed=3)
    assert set(heldout) == set(heldout_shuffled)
    # membership of a document does not depend on the others either
    _, heldout_half = split_corpus(docs[:150], heldout_fraction=0.2, seed=3)
    assert set(heldout_half) == {d for d in heldout if d in set(docs[:150])}


GOLDEN_HELDOUT = ["s1", "s7", "s9", "s11", "s16", "s18"]


def test_split_golden_membership():
    # Pins the hash so that held-out sets stay the same across versions and machines.
    docs = [Document(f"text {i}", f"s{i}") for i in range(20)]
    _, heldout = split_corpus(docs, heldout_fraction=0.25, seed=0)
    assert [d.source for d in heldout] == GOLDEN_HELDOUT


def test_seed_changes_the_split():
    docs = make_docs(300)
    assert split_corpus(docs, seed=0)[1] != split_corpus(docs, seed=1)[1]


@pytest.mark.parametrize("fraction", [1e-9, 0.5, 1 - 1e-9])
def test_two_documents_always_give_one_each(fraction):
    docs = [Document("one", "a"), Document("two", "b")]
    train, heldout = split_corpus(docs, heldout_fraction=fraction)
    assert len(train) == 1 and len(heldout) == 1
    assert {train[0], heldout[0]} == set(docs)


def test_single_document_is_cut_at_a_paragraph_near_the_fraction():
    paragraphs = [f"Paragraph {i} with some words.\n" for i in range(10)]
    text = "\n".join(paragraphs)
    train, heldout = split_corpus([Document(text, "f.txt")], heldout_fraction=0.3)
    assert train[0].text + heldout[0].text == text
    assert heldout[0].text.startswith("Paragraph 7 ")  # 70% of ten paragraphs
    assert train[0].text.endswith("\n\n")
    assert train[0].source == heldout[0].source == "f.txt"


def test_single_line_document_is_cut_between_characters():
    text = "😀" * 100
    train, heldout = split_corpus([Document(text, "x")], heldout_fraction=0.1)
    assert train[0].text + heldout[0].text == text
    assert len(heldout[0].text) == 10


def test_single_tiny_document_cannot_be_split():
    message = error_of(lambda: split_corpus([Document(" a ", "x")]))
    assert "too short to hold part of it out" in message


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 2])
def test_split_fraction_must_be_inside_zero_and_one(fraction):
    assert "heldout_fraction must be" in error_of(
        lambda: split_corpus(make_docs(5), heldout_fraction=fraction)
    )


def test_split_of_nothing_is_an_error():
    assert error_of(lambda: split_corpus([])).startswith("cannot split an empty corpus")
