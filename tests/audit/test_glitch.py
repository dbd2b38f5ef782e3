"""Under-trained tokens: the unused direction, planted under-trained rows found first, repeat
prompts equal to a plain full-sequence computation, the transfer report and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_llama

from tokenswap.audit.glitch import (
    UnusedDirection,
    find_glitch_tokens,
    impossible_in_text,
    reference_ids,
    undertrained_new_tokens,
)
from tokenswap.audit.repeat import TEMPLATES, _frame, repeat_probabilities
from tokenswap.cli import main
from tokenswap.io.models import ModelBundle, load_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_impossible_bytes():
    assert impossible_in_text(b"\xff") and impossible_in_text(b"\xc0\x80")
    assert impossible_in_text(b"\x80\x80\x80\x80")  # four continuation bytes: no character
    assert not impossible_in_text(b"\xe4\xb8") and not impossible_in_text(b"\xb8\xadx")
    assert not impossible_in_text(b"abc")


def test_unused_direction_ignores_the_shared_offset():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(200, 16, generator=g)
    unused = torch.randn(16, generator=g)
    m[:10] = unused + 0.05 * torch.randn(10, 16, generator=g)  # the known-unused rows
    m[50] = unused + 0.05 * torch.randn(16, generator=g)  # an unknown one that looks like them
    sim = UnusedDirection.fit(m, np.arange(10)).similarity(m)
    assert int(torch.argmax(sim[10:])) + 10 == 50
    shifted = m + 5.0 * torch.randn(16, generator=g)  # every row moves by the same vector
    sim2 = UnusedDirection.fit(shifted, np.arange(10)).similarity(shifted)
    assert int(torch.argmax(sim2[10:])) + 10 == 50


def planted(bundle: ModelBundle, ids: list[int]) -> torch.Tensor:
    """Make ``ids`` look under-trained: their rows become the reference tokens' mean."""
    ref, kind = reference_ids(bundle.tokenizer, bundle.input_embeddings())
    # the full byte alphabet holds bytes that never occur in UTF-8 text (C0, C1, F5-FF)
    assert kind == "unreachable" and len(ref) == 13
    with torch.no_grad():
        emb = bundle.input_embeddings()
        g = torch.Generator().manual_seed(1)
        for t in ids:
            emb[t] = emb[ref].mean(0) + 0.001 * torch.randn(emb.shape[1], generator=g)
    return emb


def test_planted_under_trained_tokens_rank_first_and_are_verified(source_tokenizer):
    bundle = ModelBundle(model=tiny_llama(len(source_tokenizer)), tokenizer=source_tokenizer,
                         spec="tiny")
    words = [source_tokenizer.convert_tokens_to_ids(t) for t in ("Ġquick", "Ġshells", "Ġmodel")]
    planted(bundle, words)
    result = find_glitch_tokens(bundle, max_verify=5, controls=3, threshold=0.5)
    assert result.indicator == "similarity" and result.tied
    assert {c.id for c in result.candidates[:3]} == set(words)
    assert result.reference_kind == "unreachable" and result.reference_size == 13
    assert not {r["id"] for r in result.reference} & {c.id for c in result.candidates}
    verified = result.candidates[:5]
    assert all(0 < c.probability < 1 for c in verified + result.controls)
    assert all(c.confirmed == (c.probability < 0.5) for c in verified)
    assert all(c.probability is None for c in result.candidates[5:])
    assert result.confirmed == sum(c.confirmed for c in verified)
    md = result.to_markdown()
    assert "Ġquick" in md and "| 1 |" in md


def test_untied_model_ranks_by_input_norm(source_tokenizer):
    bundle = ModelBundle(model=tiny_llama(len(source_tokenizer), tied=False),
                         tokenizer=source_tokenizer, spec="tiny")
    small = source_tokenizer.convert_tokens_to_ids("Ġsea")
    with torch.no_grad():
        bundle.input_embeddings()[small] *= 0.01
    result = find_glitch_tokens(bundle, max_verify=0)
    assert result.indicator == "norm" and not result.tied
    assert result.candidates[0].id == small and result.verified == 0


def test_repeat_probabilities_equal_a_full_forward(source_tokenizer):
    model = tiny_llama(len(source_tokenizer))
    ids = [source_tokenizer.convert_tokens_to_ids(t) for t in ("Ġquick", "fox", "Ġthe", "12")]
    got = repeat_probabilities(model, source_tokenizer, ids, batch_size=3)
    expected = np.zeros(len(ids))
    with torch.no_grad():
        for user, answer in TEMPLATES:
            before, after = _frame(source_tokenizer, user, answer)
            for k, t in enumerate(ids):
                seq = torch.tensor([before + [t] + after])
                p = torch.softmax(model(seq).logits[0, -1].float(), -1)[t]
                expected[k] = max(expected[k], float(p))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    before, after = _frame(source_tokenizer, *TEMPLATES[0])
    text = source_tokenizer.decode(before)
    assert text.startswith("<|im_start|>user\n") and "repeat the string '" in text


def test_transfer_reports_new_tokens_that_look_unused(tiny_model_dir, german_tokenizer):
    from tokenswap import api
    from tokenswap.vocab.pair import Provenance, build_pair

    result = api.transfer(str(tiny_model_dir), german_tokenizer, method="random",
                          report_undertrained=5)
    pair = build_pair(load_model(str(tiny_model_dir)).tokenizer, german_tokenizer)
    fresh = {int(t) for t in np.flatnonzero(pair.provenance != Provenance.EXACT)}
    assert result.undertrained is not None and len(result.undertrained) <= 5
    assert all(t["id"] in fresh and t["similarity"] >= t["threshold"] for t in result.undertrained)

    # a planted row is found, an ordinary one is not
    source = load_model(str(tiny_model_dir))
    src = source.input_embeddings().detach()
    ref, _ = reference_ids(source.tokenizer, src)
    new = torch.randn(len(german_tokenizer), src.shape[1])
    new[300] = src[ref].mean(0)
    found = undertrained_new_tokens(src, source.tokenizer, new, [299, 300], german_tokenizer)
    assert [t["id"] for t in found] == [300]


def test_cli_glitch_writes_the_report_and_fails_in_one_line(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "g"
    assert main(["glitch", "--model", str(tiny_model_dir), "--out", str(out),
                 "--max-verify", "4", "--show", "3"]) == 0
    data = json.loads((out / "glitch.json").read_text())
    assert data["verified"] == 4 and len(data["candidates"]) >= 4
    assert (out / "glitch.md").read_text().startswith("# Under-trained tokens")
    assert "under-trained token candidates" in capsys.readouterr().out
    assert main(["glitch", "--model", str(tiny_model_dir), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["glitch", "--model", str(tiny_model_dir), "--out", str(tmp_path / "h"),
                 "--threshold", "2"]) == 2
    err = capsys.readouterr().err
    assert "threshold between 0 and 1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "h").exists()


@pytest.mark.slow
def test_smollm2_candidates_are_confirmed_and_ordinary_tokens_are_not():
    torch.set_num_threads(2)
    bundle = load_model("default")
    result = find_glitch_tokens(bundle, max_verify=8, controls=8)
    # SmolLM2 has no unreachable token; its control-byte tokens are the reference
    assert result.unreachable == [] and result.reference_kind == "control"
    assert result.confirmed >= 6  # e.g. 'InterfaceSelection', 'swigfaiss', 'kinesisfirehose'
    controls = [c.probability for c in result.controls]
    candidates = [c.probability for c in result.candidates[:8]]
    assert np.median(controls) > 10 * np.median(candidates)
