"""The audit's results as JSON and as one self-contained HTML page.

:class:`AuditReport` holds what :func:`tokenswap.api.audit` measured: the metric table (one row
per tokenizer and corpus), the vocabulary metrics of each tokenizer, parity per language, and
segmentation examples. :meth:`AuditReport.write` saves ``audit.json``, ``report.html`` and the
plots as PNG files; the HTML embeds the same plots as base64 PNG, its styles inline, and no
script, so the page can be mailed or archived alone.

Segmentation examples show one passage per corpus as each tokenizer cuts it: every token is a
box with alternating colours and a title naming its id and token string; a character split
over several byte-level tokens is outlined with a dashed border and names every id; text that
no token covers (WordPiece drops whitespace) is grey. Newlines and tabs inside tokens are drawn
as ``↵`` and ``→``; the unknown token (text lost) is red. All text is escaped.

Left out: interactive plots (no JavaScript), and PDF output.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tokenswap import __version__

__all__ = ["AuditReport", "pick_sample", "segment"]

HEADLINE = ("tokens_per_byte", "fertility", "continued_words", "unk_rate", "roundtrip")
PLOTS = {  # file stem -> (metric or "parity", title, y label)
    "tokens_per_byte": ("tokens_per_byte", "Tokens per byte (lower is cheaper)", "tokens / byte"),
    "parity": ("parity", "Parity: tokens relative to the reference language", "x reference"),
    "fertility": ("fertility", "Fertility (tokens per word; per character for ja/zh)",
                  "tokens / unit"),
}


def segment(tokenizer: Any, text: str) -> list[dict]:
    """``text`` cut into the pieces ``tokenizer`` makes, for display.

    Each piece is ``{"start", "end", "ids", "partial"}`` in characters of ``text``; ``ids`` is
    empty for text no token covers, and ``partial`` marks pieces shared by several tokens (a
    character split over byte-level tokens).

    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> tok = Tokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a"))
    >>> tok.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> [(p["start"], p["end"], p["ids"]) for p in segment(tok, "a b")]
    [(0, 1, [0]), (1, 2, []), (2, 3, [1])]
    """
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    enc = backend.encode(text, add_special_tokens=False)
    pieces: list[dict] = []
    cursor = 0
    for tid, (start, end) in zip(enc.ids, enc.offsets, strict=True):
        if end <= cursor and pieces:  # inside what is drawn already
            pieces[-1]["ids"].append(int(tid))
            pieces[-1]["partial"] = True
            continue
        if start > cursor:
            pieces.append({"start": cursor, "end": start, "ids": [], "partial": False})
        overlaps = start < cursor
        if overlaps and pieces:
            pieces[-1]["partial"] = True
        pieces.append({"start": max(start, cursor), "end": end, "ids": [int(tid)],
                       "partial": overlaps})
        cursor = max(cursor, end)
    if cursor < len(text):
        pieces.append({"start": cursor, "end": len(text), "ids": [], "partial": False})
    return pieces


def pick_sample(texts: list[str], max_chars: int = 320) -> str:
    """A passage to show: the first paragraph of 150+ characters with a sentence in it, else
    the first of 60+ characters (code), cut near ``max_chars`` at a space."""
    fallback = ""
    for text in texts:
        for para in re.split(r"\n\s*\n", text):
            body = para.strip("\n")
            if not body.strip():
                continue
            if len(body) >= 150 and re.search(r"[.!?。！？]( |\n|$)|[。！？]", body):
                return _cut(body, max_chars)
            if not fallback and len(body) >= 60:
                fallback = body
    return _cut(fallback or (texts[0] if texts else ""), max_chars)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    space = text.rfind(" ", limit // 2, limit)
    return text[: space if space > 0 else limit]


@dataclass
class AuditReport:
    """Everything an audit measured; see the module docstring."""

    tokenizers: list[dict] = field(default_factory=list)  # name, spec, family, vocab metrics
    corpora: list[dict] = field(default_factory=list)  # name, docs, bytes, words, unit, ...
    rows: list[dict] = field(default_factory=list)  # tokenizer, corpus, metrics, seconds
    parity: dict = field(default_factory=dict)  # reference, ratios[tokenizer][lang]
    examples: list[dict] = field(default_factory=list)  # corpus, text, pieces[tokenizer]
    metrics: list[dict] = field(default_factory=list)  # the registry's descriptions
    timing: dict = field(default_factory=dict)

    # --- lookups -----------------------------------------------------------------------

    @property
    def tokenizer_names(self) -> list[str]:
        return [t["name"] for t in self.tokenizers]

    @property
    def corpus_names(self) -> list[str]:
        return [c["name"] for c in self.corpora]

    def value(self, tokenizer: str, corpus: str, metric: str) -> float | None:
        if metric == "parity":
            entry = self.parity.get("ratios", {}).get(tokenizer, {}).get(corpus)
            return None if entry is None else entry["ratio"]
        for row in self.rows:
            if row["tokenizer"] == tokenizer and row["corpus"] == corpus:
                return row["metrics"].get(metric)
        return None

    # --- JSON -----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"tokenswap": __version__, **asdict(self)}

    def write_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(_finite(self.to_dict()), indent=2, ensure_ascii=False) + "\n")
        return path

    def write(self, out: str | os.PathLike) -> dict[str, Path]:
        """``audit.json``, ``report.html`` and one PNG per plot in directory ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = {"json": self.write_json(out / "audit.json")}
        images = self.plots()
        for stem, png in images.items():
            (out / f"{stem}.png").write_bytes(png)
            written[stem] = out / f"{stem}.png"
        (out / "report.html").write_text(self.to_html(images), encoding="utf-8")
        written["html"] = out / "report.html"
        return written

    # --- plots ----------------------------------------------------------------------------

    def plots(self) -> dict[str, bytes]:
        """PNG bytes per plot (empty without matplotlib)."""
        try:
            import matplotlib

            matplotlib.use("Agg", force=True)
            import matplotlib.pyplot as plt
        except ImportError:
            return {}
        out = {}
        for stem, (metric, title, ylabel) in PLOTS.items():
            corpora = [c for c in self.corpus_names
                       if any(self.value(t, c, metric) is not None for t in self.tokenizer_names)]
            if not corpora:
                continue
            fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(corpora) + 3), 3.6), dpi=100)
            width = 0.8 / max(len(self.tokenizer_names), 1)
            for i, name in enumerate(self.tokenizer_names):
                ys = [self.value(name, c, metric) for c in corpora]
                xs = [k + (i - (len(self.tokenizer_names) - 1) / 2) * width
                      for k in range(len(corpora))]
                ax.bar(xs, [float("nan") if y is None else y for y in ys], width, label=name)
            if metric == "parity":
                ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_xticks(range(len(corpora)), corpora)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8, ncols=min(len(self.tokenizer_names), 4))
            ax.grid(axis="y", alpha=0.3)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            plt.close(fig)
            out[stem] = buf.getvalue()
        return out

    # --- HTML -----------------------------------------------------------------------------

    def to_html(self, images: dict[str, bytes] | None = None) -> str:
        images = self.plots() if images is None else images
        esc = html.escape
        metrics = {m["name"]: m for m in self.metrics}
        names = self.tokenizer_names
        parts = [_HEAD.format(title="tokenswap audit")]
        total = sum(c["bytes"] for c in self.corpora)
        parts.append(
            f"<h1>Tokenizer audit</h1><p class='meta'>{len(names)} tokenizer(s) on "
            f"{len(self.corpora)} corpora, {total:,} bytes; tokenswap {esc(__version__)}. "
            f"Encoding took {self.timing.get('encode_seconds', 0):.1f} s "
            f"({self.timing.get('mb_per_s', 0):.2f} MB/s per tokenizer).</p>")

        # headline: tokenizers side by side
        parts.append("<h2>Side by side</h2><table id='headline'><thead><tr><th>corpus</th>"
                     "<th>metric</th>" + "".join(f"<th>{esc(n)}</th>" for n in names)
                     + "</tr></thead><tbody>")
        shown = [m for m in HEADLINE if m in metrics]
        if self.parity.get("ratios"):
            shown.append("parity")
        for corpus in self.corpora:
            rows = [m for m in shown if any(
                self.value(n, corpus["name"], m) is not None for n in names)]
            for k, metric in enumerate(rows):
                values = [self.value(n, corpus["name"], metric) for n in names]
                label = metric if metric != "fertility" else f"fertility (per {corpus['unit']})"
                cells = _cells(values, metrics.get(metric, {}).get("better")
                               if metric != "parity" else "lower",
                               ".3f" if metric != "tokens_per_byte" else ".4f")
                head = (f"<th rowspan='{len(rows)}'>{esc(corpus['name'])}</th>" if k == 0 else "")
                parts.append(f"<tr>{head}<td class='l'>{esc(label)}</td>{cells}</tr>")
        parts.append("</tbody></table>")

        # every metric
        corpus_metrics = [m for m in self.metrics if m["scope"] == "corpus"]
        parts.append("<h2>All corpus metrics</h2><table id='metrics'><thead><tr><th>corpus</th>"
                     "<th>tokenizer</th>" + "".join(
                         f"<th title='{esc(m['summary'])}'>{esc(m['name'])}</th>"
                         for m in corpus_metrics) + "<th>MB/s</th></tr></thead><tbody>")
        for row in self.rows:
            cells = "".join(f"<td>{format_value(row['metrics'].get(m['name']), m)}</td>"
                            for m in corpus_metrics)
            parts.append(f"<tr><td class='l'>{esc(row['corpus'])}</td>"
                         f"<td class='l'>{esc(row['tokenizer'])}</td>"
                         f"{cells}<td>{row.get('mb_per_s', 0):.2f}</td></tr>")
        parts.append("</tbody></table>")

        # parity
        ratios = self.parity.get("ratios") or {}
        if ratios:
            langs = [c for c in self.corpus_names if any(c in ratios.get(n, {}) for n in names)]
            parts.append(f"<h2>Parity</h2><p>Tokens for each language's version over tokens "
                         f"for the {esc(self.parity['reference'])} version of the same units "
                         "(files, chapters), Petrov et al. 2023; in brackets the range over "
                         "units.</p><table id='parity'><thead><tr><th>language</th><th>units"
                         "</th>" + "".join(f"<th>{esc(n)}</th>" for n in names)
                         + "</tr></thead><tbody>")
            for lang in langs:
                entries = [ratios.get(n, {}).get(lang) for n in names]
                units = next((e["units"] for e in entries if e), 0)
                cells = "".join(
                    "<td>-</td>" if e is None else
                    f"<td>{e['ratio']:.2f} <span class='range'>[{e['min']:.2f}-{e['max']:.2f}]"
                    "</span></td>" for e in entries)
                parts.append(f"<tr><td class='l'>{esc(lang)}</td><td>{units}</td>{cells}</tr>")
            parts.append("</tbody></table>")

        # vocabulary
        vocab_metrics = [m for m in self.metrics if m["scope"] == "vocab"]
        parts.append("<h2>Vocabulary</h2><table id='vocab'><thead><tr><th>metric</th>" + "".join(
            f"<th>{esc(n)}</th>" for n in names) + "</tr></thead><tbody>")
        parts.append("<tr><td class='l'>family</td>" + "".join(
            f"<td>{esc(t['family'])}</td>" for t in self.tokenizers) + "</tr>")
        for m in vocab_metrics:
            values = [t["vocab"].get(m["name"]) for t in self.tokenizers]
            parts.append(f"<tr><td class='l' title='{esc(m['summary'])}'>{esc(m['name'])}</td>"
                         + "".join(f"<td>{format_value(v, m)}</td>" for v in values) + "</tr>")
        parts.append("</tbody></table>")

        # plots
        if images:
            parts.append("<h2>Plots</h2>")
            for stem, png in images.items():
                title = PLOTS.get(stem, (stem, stem, ""))[1]
                data = base64.b64encode(png).decode("ascii")
                parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{esc(title)}'>"
                             f"<figcaption>{esc(title)}</figcaption></figure>")
        else:
            parts.append("<p>No plots: install matplotlib (pip install matplotlib).</p>")

        # segmentation examples
        if self.examples:
            parts.append("<h2>Segmentation examples</h2><p>Each box is one token (hover for its "
                         "id and string); dashed boxes are characters split over several "
                         "tokens; red boxes are the unknown token (text lost); grey text is "
                         "covered by no token.</p>")
            for example in self.examples:
                parts.append(f"<h3>{esc(example['corpus'])}</h3>")
                for name in names:
                    pieces = example["pieces"].get(name)
                    if pieces is None:
                        continue
                    count = sum(len(p["ids"]) for p in pieces)
                    parts.append(f"<div class='seg'><div class='who'>{esc(name)} "
                                 f"<span class='range'>{count} tokens</span></div><div class='text'>"
                                 + _render(example["text"], pieces,
                                           example.get("tokens", {}).get(name, {}),
                                           example.get("unk", {}).get(name))
                                 + "</div></div>")

        # glossary
        parts.append("<h2>Metrics</h2><table id='glossary'><thead><tr><th>metric</th><th>scope"
                     "</th><th>what it measures</th><th>source</th></tr></thead><tbody>")
        for m in self.metrics:
            source = (f"<a href='{esc(m['url'])}'>{esc(m['paper'])}</a>" if m["url"]
                      else esc(m["paper"]))
            parts.append(f"<tr><td class='l'>{esc(m['name'])}</td><td class='l'>"
                         f"{esc(m['scope'])}</td><td class='l'>{esc(m['summary'])}</td>"
                         f"<td class='l'>{source}</td></tr>")
        parts.append("</tbody></table></body></html>\n")
        return "\n".join(parts)


def format_value(value: float | None, metric: dict) -> str:
    if value is None or value != value:
        return "-"
    fmt = _FORMATS.get(metric["name"], ".3f")
    return format(value, fmt)


_FORMATS = {"tokens_per_byte": ".4f", "bytes_per_token": ".2f", "chars_per_token": ".2f",
            "unk_rate": ".4f", "byte_fallback_rate": ".4f", "whitespace_run_tokens": ".2f",
            "vocab_size": ",.0f", "unreachable": ",.0f", "undecodable": ",.0f",
            "decode_mismatch": ",.0f", "digit_tokens": ",.0f", "max_digits_per_token": ".0f",
            "whitespace_tokens": ",.0f", "max_whitespace_token": ".0f", "missing_bytes": ".0f"}


def _cells(values: list[float | None], better: str | None, fmt: str) -> str:
    real = [v for v in values if v is not None and v == v]
    best = None
    if better and len(set(real)) > 1:  # nothing to point out when all are equal
        best = min(real) if better == "lower" else max(real)
    out = []
    for v in values:
        if v is None or v != v:
            out.append("<td>-</td>")
        else:
            cls = " class='best'" if best is not None and v == best else ""
            out.append(f"<td{cls}>{format(v, fmt)}</td>")
    return "".join(out)


def _render(text: str, pieces: list[dict], strings: dict, unk: int | None = None) -> str:
    out = []
    k = 0
    for piece in pieces:
        chunk = text[piece["start"]:piece["end"]]
        shown = html.escape(chunk).replace("\t", "→\t").replace("\n", "↵\n")
        if not piece["ids"]:
            out.append(f"<span class='gap'>{shown}</span>")
            continue
        title = " ".join(f"{i}:{strings.get(str(i), strings.get(i, ''))}" for i in piece["ids"])
        cls = f"tok t{k % 2}" + (" partial" if piece["partial"] else "") + (
            " unk" if unk is not None and unk in piece["ids"] else "")
        out.append(f"<span class='{cls}' title='{html.escape(title, quote=True)}'>"
                   f"{shown or '∅'}</span>")
        k += 1
    return "".join(out)


def _finite(obj):
    """NaN and infinities as null, so the JSON is standard."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f0f0f0; }}
td.l {{ text-align: left; }}
td.best {{ font-weight: bold; background: #e6f4e6; }}
.meta, .range {{ color: #666; font-size: 0.9em; }}
figure {{ margin: 1em 0; }}
figure img {{ max-width: 100%; border: 1px solid #ddd; }}
.seg {{ margin: 0.6em 0 1em; }}
.who {{ font-weight: bold; margin-bottom: 0.2em; }}
.text {{ white-space: pre-wrap; font-family: ui-monospace, monospace; line-height: 1.9;
  border: 1px solid #ddd; padding: 0.5em; }}
.tok {{ border: 1px solid #888; border-radius: 3px; margin-right: 1px; }}
.t0 {{ background: #dbeafe; }}
.t1 {{ background: #fde68a; }}
.partial {{ border: 1px dashed #c00; }}
.gap {{ color: #aaa; }}
.unk {{ background: #fca5a5; }}
</style></head><body>"""
