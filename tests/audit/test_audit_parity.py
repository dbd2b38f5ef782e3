"""Parallel text: HTML to text, pairing files across languages, parity ratios."""

from __future__ import annotations

import gzip

import pytest

from tokenswap.audit.parity import (
    debian_reference,
    html_to_text,
    pair_keys,
    parity,
    read_language,
)
from tokenswap.errors import TokenswapError

PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Kapitel 2</title>
<style>p {{ color: red }}</style><script>var x = "<p>no</p>";</script></head>
<body><div class="navheader"><table><tr><td><a href="ch01.html">Zurück</a></td></tr></table></div>
<div class="chapter"><h1 class="title"><a id="x"/>Kapitel 2. {title}</h1>
<p>Ein   Absatz
 über &lt;Pakete&gt; &amp; mehr.<br/>Zweite Zeile</p>
<pre class="screen">$ apt-get install
   foo   bar</pre>
<table><tr><td>a</td><td>b</td></tr></table></div>
<div class="navfooter"><a href="ch03.html">Weiter</a></div></body></html>"""


def test_html_to_text_keeps_the_content_only():
    text = html_to_text(PAGE.format(title="Pakete"))
    assert text == ("Kapitel 2. Pakete\n\nEin Absatz über <Pakete> & mehr.\nZweite Zeile\n\n"
                    "$ apt-get install\n   foo   bar\n\na\n\nb\n")
    for gone in ("Zurück", "Weiter", "color", "var x", "Kapitel 2\n"):
        assert gone not in text


def test_pair_keys():
    assert pair_keys(["/d/ch01.de.html", "/d/sub/ch02.de.html"], "de") == [
        "ch01.html", "sub/ch02.html"]
    assert pair_keys(["/d/ch01.zh-cn.html"], "zh-cn") == ["ch01.html"]
    assert pair_keys(["/m/de/man1/ls.1.gz", "/m/de/man8/ip.8.gz"], "de") == [
        "man1/ls.1.gz", "man8/ip.8.gz"]
    assert pair_keys(["/m/man1/ls.1.gz", "/m/man8/ip.8.gz"], "en") == [
        "man1/ls.1.gz", "man8/ip.8.gz"]
    assert pair_keys(["/t/en.txt"], "en") == pair_keys(["/u/de.txt"], "de") == ["txt"]
    assert pair_keys(["/x/a.txt#line 40"], "de") == ["a.txt"]  # pieces of one file pair as one


def test_parity_ratio_of_totals_over_shared_units():
    tokens = {"en": (["a", "b", "c"], [10, 20, 30]),
              "de": (["a", "b", "x"], [15, 40, 99]),  # 'x' has no English counterpart
              "code": (["y"], [5])}  # nothing shared: no parity
    result = parity(tokens, "en")
    assert set(result) == {"en", "de"}
    assert result["de"].ratio == pytest.approx(55 / 30)
    assert result["de"].units == 2
    assert (result["de"].low, result["de"].high) == (1.5, 2.0)
    assert result["de"].median == pytest.approx(1.75)
    assert result["en"].ratio == 1.0
    with pytest.raises(TokenswapError, match="reference"):
        parity(tokens, "fr")


def test_read_language_reads_html_and_pairs_files(tmp_path):
    for lang, title in (("en", "Packages"), ("de", "Pakete")):
        (tmp_path / f"ch02.{lang}.html").write_text(PAGE.format(title=title))
        with gzip.open(tmp_path / f"ch03.{lang}.html.gz", "wt") as f:
            f.write(PAGE.format(title=title + " 3"))
    de = read_language("de", str(tmp_path / "*.de.html*"))
    en = read_language("en", [str(tmp_path / "ch02.en.html"), str(tmp_path / "ch03.en.html.gz")])
    assert de.keys == en.keys == ["ch02.html", "ch03.html.gz"]
    assert de.texts[0].startswith("Kapitel 2. Pakete\n")
    assert de.texts[1].startswith("Kapitel 2. Pakete 3\n")  # gzip-compressed HTML
    capped = read_language("de", str(tmp_path / "*.de.html*"), max_bytes=30)
    assert capped.n_bytes <= 30 and len(capped.docs) == 1
    with pytest.raises(TokenswapError, match="does not exist|matches nothing"):
        read_language("fr", str(tmp_path / "nothing-*.html"))


def test_debian_reference_lists_installed_languages(tmp_path):
    for lang in ("de", "en", "zh-cn"):
        (tmp_path / f"ch01.{lang}.html").write_text("<p>x</p>")
    (tmp_path / "index.html").write_text("<p>x</p>")
    found = debian_reference(root=tmp_path)
    assert list(found) == ["en", "de", "zh-cn"]
    assert found["zh-cn"] == str(tmp_path / "*.zh-cn.html")
    assert list(debian_reference(["de"], root=tmp_path)) == ["de"]
    with pytest.raises(TokenswapError, match="debian-reference-ja"):
        debian_reference(["ja"], root=tmp_path)
    with pytest.raises(TokenswapError, match="no Debian Reference"):
        debian_reference(root=tmp_path / "empty")
