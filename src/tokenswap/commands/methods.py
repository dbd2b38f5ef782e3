"""``tokenswap methods``: list the embedding-initialisation methods, their inputs and options.

Generated from the registry (:mod:`tokenswap.init.registry`): adding a method there lists it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenswap.config import option
from tokenswap.io.save import json_text


@dataclass
class Config:
    as_json: bool = option(False, "Print JSON.", flag="--json")


def run(cfg: Config) -> list[dict]:
    """One dict per method: name, aliases, summary, paper, inputs and declared options."""
    from tokenswap.hypernet.shipped import available
    from tokenswap.init import list_methods

    shipped = [{"name": h.name, "base": h.base, "results": h.results} for h in available()]
    rows = []
    for m in list_methods():
        describe = getattr(m, "describe_options", None)
        rows.append({"name": m.name, "aliases": list(m.aliases), "summary": m.summary,
                     "paper": m.paper, "url": m.url, "requires": list(m.requires),
                     "accepts": list(m.accepts), "needs_corpus": m.needs_corpus,
                     "options": describe() if describe is not None else [],
                     **({"shipped": shipped} if "hypernet" in m.requires else {})})
    return rows


def show(rows: list[dict], cfg: Config, console) -> None:
    from rich.table import Table

    from tokenswap.init.registry import REQUIREMENTS

    if cfg.as_json:
        print(json_text(rows), end="")
        return
    table = Table(title="init methods")
    for col in ("method", "aliases", "what it does", "needs", "paper"):
        table.add_column(col)
    for m in rows:
        flags = [REQUIREMENTS[r].split(" ")[0] for r in m["requires"]]
        flags += [f"[{REQUIREMENTS[r].split(' ')[0]}]" for r in m["accepts"]]  # optional
        table.add_row(m["name"], ", ".join(m["aliases"]), m["summary"], ", ".join(flags),
                      f"{m['paper']}\n{m['url']}")
    console.print(table)
    options = Table(title="method options (-O KEY=VALUE)")
    for col in ("method", "option", "type", "default", "what it does"):
        options.add_column(col)
    for m in rows:
        for k, o in enumerate(m["options"]):
            options.add_row(m["name"] if k == 0 else "", o["name"], o["type"], repr(o["default"]),
                            o["help"] + (f" ({o['why']})" if o.get("why") else ""),
                            end_section=k == len(m["options"]) - 1)
    if options.row_count:
        console.print(options)
    for m in rows:
        for h in m.get("shipped", []):
            console.print(f"shipped {m['name']}: {h['name']} for {h['base']} ({h['results']}); "
                          "used without --hypernet", highlight=False)
        if "shipped" in m and not m["shipped"]:
            console.print(f"no {m['name']} ships with this installation: train one with "
                          "`tokenswap hypernet train`", highlight=False)
