"""Large-vocabulary decoding on the real packaged SmolLM2 with its shipped hypernet and a real
hnswlib index (slow)."""

from __future__ import annotations

import pytest
import torch

from tokenswap.dynamic.ann import build_index
from tokenswap.dynamic.decode import LargeVocabLM
from tokenswap.dynamic.embed import MergedEmbeddings
from tokenswap.dynamic.rows import predict_rows
from tokenswap.dynamic.vocab import LargeVocab, count_runs
from tokenswap.hypernet.model import SourceEmbeddings
from tokenswap.hypernet.shipped import for_model
from tokenswap.io.models import load_model
from tokenswap.vocab.bytes import ByteVocab

pytestmark = pytest.mark.slow

TRAIN = [
    "Der Befehl ls listet den Inhalt von Verzeichnissen auf. Ohne Optionen werden die Dateien "
    "alphabetisch sortiert ausgegeben. Mit der Option -l werden ausführliche Informationen "
    "angezeigt, darunter Zugriffsrechte, Eigentümer, Größe und Änderungszeit der Dateien.",
    "Die Umgebungsvariable LANG bestimmt die Sprache der Ausgabe. Wenn die Variable nicht "
    "gesetzt ist, verwendet das Programm die Standardeinstellungen des Systems.",
]
ROOM = 120  # extra tokens; the text has 180 runs that are not base tokens
HELD = "Die Option -a zeigt auch versteckte Dateien an, deren Namen mit einem Punkt beginnen."


def test_shipped_hypernet_large_vocabulary_through_hnswlib():
    torch.set_num_threads(1)
    bundle = load_model("default")
    tok, model = bundle.tokenizer, bundle.model
    vocab = ByteVocab.from_tokenizer(tok)
    base = model.get_output_embeddings().weight.shape[0]
    counts = count_runs(tok, TRAIN, vocab=vocab)
    large = LargeVocab.from_counts(vocab, base, counts, base + ROOM, min_count=1)
    new_runs = set(counts) - set(vocab.exact_ids())  # runs that are not already one base token
    assert len(new_runs) > ROOM  # the text has more runs than room: the cut is exercised
    assert len(large.extra) == ROOM and len(set(large.extra)) == ROOM
    assert set(large.extra) <= new_runs
    # the most frequent are kept: nothing left out is counted more often than the rarest kept
    assert max(counts[d] for d in new_runs - set(large.extra)) <= min(counts[d] for d in large.extra)
    ids = large.encode(tok, [HELD])[0]
    assert large.decode(ids) == HELD.encode()
    assert len(ids) < len(tok(HELD, add_special_tokens=False)["input_ids"])
    source = SourceEmbeddings.from_bundle(bundle)
    rows = predict_rows(for_model(bundle), source, tok, large)
    mean = MergedEmbeddings(source, tok, method="mean").rows(large.extra)
    assert not torch.allclose(rows.input, mean, atol=1e-3)
    index = build_index(rows.output, backend="hnswlib")
    lm = LargeVocabLM(model, tok, large, rows, index, candidates=len(rows))  # k = every row
    score = lm.score([HELD])
    assert score.extra_tokens > 0 and score.missed == 0
    assert score.approx_bits == pytest.approx(score.exact_bits, rel=1e-5)
    assert 0.5 < score.exact_bits_per_byte < 8
    prompt = TRAIN[0][:60]
    gen = lm.generate(prompt, 12)
    assert gen.ids == lm.generate(prompt, 12, mode="exact").ids
    assert gen.data == b"".join(large.token_bytes(t) or b"" for t in gen.ids)
    few = LargeVocabLM(model, tok, large, rows, index, candidates=4).score([HELD])
    assert few.approx_bits <= score.exact_bits and few.exact_bits == pytest.approx(
        score.exact_bits, rel=1e-5)
