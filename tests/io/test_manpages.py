"""Man pages read as the text a reader sees (groff), not as roff markup."""

from __future__ import annotations

import gzip
import shutil

import pytest

from tokenswap.errors import TokenswapError
from tokenswap.io import manpages
from tokenswap.io.corpus import read_corpus

needs_groff = pytest.mark.skipif(shutil.which("groff") is None,
                                 reason="groff missing: scripts/install.sh installs groff-base")

PAGE = r""".\" -*- coding: UTF-8 -*-
.\"*******************************************************************
.TH GRÜSSE 1 "Dezember 2026" "tokenswap" "Beispiele"
.SH BEZEICHNUNG
grüße \- sagt Hallo
.SH BESCHREIBUNG
.PP
Dieses Programm gibt \fBeinen Gruß\fP aus, der über
mehrere Zeilen der Quelle geht, und \fIsonst\fP nichts.
.TP
\fB\-\-laut\fP
Größer schreiben.
"""


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENSWAP_CACHE", str(tmp_path / "cache"))


@needs_groff
def test_render_gives_prose_without_markup(tmp_path):
    page = tmp_path / "gruesse.1.gz"
    page.write_bytes(gzip.compress(PAGE.encode()))
    text = manpages.render(page)
    assert "Dieses Programm gibt einen Gruß aus, der über mehrere Zeilen der Quelle geht, und " \
           "sonst nichts." in text  # one line per paragraph, UTF-8 kept, fonts dropped
    assert "BESCHREIBUNG" in text and "--laut" in text and "grüße - sagt Hallo" in text
    for markup in (".TH", "\\f", "\\-", ".\\\"", "****", "GRÜSSE(1)"):
        assert markup not in text, markup
    assert "\b" not in text and not text.startswith(" ")
    assert manpages.render(page) == text  # the second read comes from the cache
    assert list((tmp_path / "cache" / "man").glob("*.txt"))


@needs_groff
def test_man_corpus_spec_reads_rendered_pages_and_skips_redirects(tmp_path):
    pages = tmp_path / "man" / "man1"
    pages.mkdir(parents=True)
    (pages / "gruesse.1").write_text(PAGE)
    (pages / "hallo.1.gz").write_bytes(gzip.compress(b".so man1/gruesse.1\n"))
    docs = read_corpus([f"man:{tmp_path / 'man'}"])
    assert [d.source for d in docs] == [str(pages / "gruesse.1")]
    assert "\\fB" not in docs[0].text
    raw = read_corpus([str(pages / "gruesse.1")])  # without man: the roff source, as before
    assert "\\fB" in raw[0].text


def test_missing_groff_is_one_line(tmp_path, monkeypatch):
    page = tmp_path / "gruesse.1"
    page.write_text(PAGE)
    monkeypatch.setattr(manpages.shutil, "which", lambda name: None)
    with pytest.raises(TokenswapError, match="apt-get install groff-base"):
        manpages.render(page)


def test_clean_drops_header_overstrikes_and_indentation():
    rendered = ("\n\nLS(1)        User Commands        LS(1)\n\nN\bNA\bAM\bME\bE\n"
                "       ls - list\n\n\n\n       more\n")
    assert manpages.clean(rendered) == "NAME\nls - list\n\nmore\n"
