"""tokenswap.api.audit end to end on tiny tokenizers and parallel files: the JSON, the HTML
(escaped, self-contained) and the page as headless Chromium renders it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import ENGLISH, GERMAN

from tokenswap import api
from tokenswap.audit.report import AuditReport, pick_sample, segment
from tokenswap.errors import TokenswapError

HOSTILE = ("Tokenizers see <script>alert('x')</script> & <b>markup</b> as plain text, and the "
           "report must escape it. This paragraph is long enough to be picked as the example.")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def write_corpora(root):
    """en/ and de/ with two parallel chapters each, and a code/ corpus with no counterpart."""
    chapters = {"en": [HOSTILE + "\n\n" + " ".join(ENGLISH[:5]), " ".join(ENGLISH[5:10])],
                "de": [" ".join(GERMAN[:4]) * 2, " ".join(GERMAN[4:8]) * 2]}
    for lang, texts in chapters.items():
        (root / lang).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / lang / f"ch{i}.txt").write_text(text)
    (root / "code").mkdir()
    (root / "code" / "m.py").write_text("def add(a, b):\n    return a + b\n\n\n" * 5)
    return {lang: str(root / lang) for lang in ("en", "de", "code")}


@pytest.fixture(scope="module")
def audited(tmp_path_factory, source_tokenizer, wordpiece_tokenizer):
    root = tmp_path_factory.mktemp("audit")
    bpe, wp = root / "bpe", root / "wp"
    source_tokenizer.save_pretrained(bpe)
    wp_tok = wordpiece_tokenizer
    wp_tok.save_pretrained(wp)
    corpora = write_corpora(root / "text")
    report = api.audit([str(bpe), str(wp / "tokenizer.json")], corpora, out=root / "out")
    return report, root / "out"


def test_json_has_every_tokenizer_corpus_and_metric(audited):
    report, out = audited
    data = json.loads((out / "audit.json").read_text())
    assert [t["name"] for t in data["tokenizers"]] == ["bpe", "wp"]  # wp/tokenizer.json -> wp
    assert [c["name"] for c in data["corpora"]] == ["en", "de", "code"]
    assert len(data["rows"]) == 6
    names = {m["name"] for m in data["metrics"] if m["scope"] == "corpus"}
    assert all(set(row["metrics"]) == names for row in data["rows"])
    assert data["tokenizers"][1]["family"] == "wordpiece"
    # parity: en and de pair by chapter, code pairs with nothing
    ratios = data["parity"]["ratios"]["bpe"]
    assert set(ratios) == {"en", "de"} and ratios["de"]["units"] == 2
    en_tokens = sum(r["tokens"] for r in data["rows"] if r["tokenizer"] == "bpe"
                    and r["corpus"] == "en")
    de_tokens = sum(r["tokens"] for r in data["rows"] if r["tokenizer"] == "bpe"
                    and r["corpus"] == "de")
    assert ratios["de"]["ratio"] == pytest.approx(de_tokens / en_tokens)
    assert ratios["de"]["ratio"] > 1  # an English tokenizer needs more tokens for German
    assert data["timing"]["mb_per_s"] > 0
    assert report.value("bpe", "de", "parity") == ratios["de"]["ratio"]


def test_html_is_self_contained_and_escaped(audited):
    _, out = audited
    page = (out / "report.html").read_text()
    assert "<script" not in page and "<b>" not in page
    text = re.sub(r"</?span[^>]*>", "", page)  # the example, without its token boxes
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;markup" in text
    assert page.count("<img src='data:image/png;base64,") == 3
    assert "http" not in page.replace("https://arxiv.org/abs/", "")  # nothing loads from outside
    for table in ("headline", "metrics", "parity", "vocab", "glossary"):
        assert f"<table id='{table}'>" in page
    assert (out / "tokens_per_byte.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_segments_tile_the_text(source_tokenizer, wordpiece_tokenizer):
    text = "Größe ☃ of  the\tdog"
    for tok in (source_tokenizer, wordpiece_tokenizer):
        pieces = segment(tok, text)
        assert "".join(text[p["start"]:p["end"]] for p in pieces) == text
        ids = [i for p in pieces for i in p["ids"]]
        assert ids == tok(text, add_special_tokens=False)["input_ids"]
    snowman = [p for p in segment(source_tokenizer, text) if text[p["start"]:p["end"]] == "☃"]
    assert snowman and snowman[0]["partial"] and len(snowman[0]["ids"]) >= 2
    gaps = [p for p in segment(wordpiece_tokenizer, text) if not p["ids"]]
    assert gaps and all(not text[p["start"]:p["end"]].strip() for p in gaps)  # dropped spaces


def test_pick_sample_prefers_a_sentence():
    texts = ["short\n\n" + "x" * 70, "A first sentence that is long enough. " * 5]
    assert pick_sample(texts).startswith("A first sentence")
    assert pick_sample(["def f():\n    return 1\n" * 5]).startswith("def f")
    assert len(pick_sample(["word " * 400])) <= 320


def test_existing_output_is_not_overwritten(audited, source_tokenizer):
    _, out = audited
    with pytest.raises(TokenswapError, match="already exists"):
        api.audit([source_tokenizer], {"en": [str(out / "audit.json")]}, out=out)
    with pytest.raises(TokenswapError, match="no corpus"):
        api.audit([source_tokenizer], {})


def test_report_without_matplotlib_still_renders():
    page = AuditReport().to_html(images={})
    assert "install matplotlib" in page and page.rstrip().endswith("</html>")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                    "(scripts/install.sh installs it when run as root)")
def test_report_renders_in_headless_chromium(audited, tmp_path):
    _, out = audited
    url = (out / "report.html").as_uri()
    base = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                         timeout=180, check=True).stdout
    assert '<table id="headline">' in dom and '<table id="parity">' in dom
    assert dom.count('<img src="data:image/png;base64,') == 3
    assert "<script" not in dom and "&lt;script&gt;" in re.sub(r"</?span[^>]*>", "", dom)

    shot = tmp_path / "page.png"
    subprocess.run([*base, "--window-size=1200,4000", f"--screenshot={shot}", url],
                   capture_output=True, timeout=180, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (4000, 1200)
    assert pixels.std() > 0.05  # not blank
    # the plots were decoded and drawn: matplotlib's first bar colour (#1f77b4) is on the page
    blue = np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255).max(axis=-1) < 0.02
    assert blue.sum() > 500
