"""Dynamic tokenization on the real packaged SmolLM2 with its shipped hypernet (slow)."""

from __future__ import annotations

import pytest
import torch

from tokenswap.dynamic import merge_levels
from tokenswap.dynamic.embed import MergedEmbeddings
from tokenswap.dynamic.prefill import score_continuations, split_continuation
from tokenswap.hypernet.model import SourceEmbeddings
from tokenswap.hypernet.shipped import for_model
from tokenswap.io.models import load_model

pytestmark = pytest.mark.slow

TEXTS = [
    "Der Befehl ls listet den Inhalt von Verzeichnissen auf. Ohne Optionen werden die Dateien "
    "alphabetisch sortiert ausgegeben. Mit der Option -l werden ausführliche Informationen "
    "angezeigt, darunter Zugriffsrechte, Eigentümer, Größe und Änderungszeit der Dateien. "
    "Die Option -a zeigt auch versteckte Dateien an, deren Namen mit einem Punkt beginnen.",
    "Die Umgebungsvariable LANG bestimmt die Sprache der Ausgabe. Wenn die Variable nicht "
    "gesetzt ist, verwendet das Programm die Standardeinstellungen des Systems. Dateien und "
    "Verzeichnisse werden in Spalten angezeigt, wenn die Ausgabe ein Terminal ist; die Breite "
    "der Spalten richtet sich nach der Breite des Terminals und der Länge der Dateinamen.",
]


def test_shipped_hypernet_embeds_merged_german_tokens():
    torch.set_num_threads(1)
    bundle = load_model("default")
    tok = bundle.tokenizer
    pairs = [split_continuation(tok, t, 60) for t in TEXTS]
    contexts, continuations = [p[0] for p in pairs], [p[1] for p in pairs]
    base, merged = merge_levels(tok, contexts, [0.0, 0.2])
    assert merged.reduction >= 0.2
    assert [merged.decode(i) for i in range(2)] == [c.encode() for c in contexts]
    source = SourceEmbeddings.from_bundle(bundle)
    hypernet = MergedEmbeddings(source, tok, hypernet=for_model(bundle))
    mean = MergedEmbeddings(source, tok, method="mean")
    new = [merged.new_tokens[k] for k in merged.used_new_tokens()]
    assert not torch.allclose(hypernet.rows(new), mean.rows(new))
    scores = {name: score_continuations(bundle.model, tok, batch, continuations, emb)
              for name, batch, emb in (("base", base, None), ("hypernet", merged, hypernet),
                                       ("mean", merged, mean))}
    bpb = {k: s.bits_per_byte for k, s in scores.items()}
    assert 0.5 < bpb["base"] < 4
    # merged contexts cost something, but stay close to the base tokenization's
    assert bpb["hypernet"] < 1.25 * bpb["base"] and bpb["mean"] < 1.25 * bpb["base"]
