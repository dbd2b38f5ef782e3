"""``tokenswap export`` checked in real llama.cpp: the packaged SmolLM2 transferred to a German
BPE, exported, then run by llama.cpp's own tools (built by scripts/build_llamacpp.sh).

Marked slow (minutes). German text: Debian's manpages-de (installed by scripts/install.sh),
rendered by groff; a 8k BPE is trained on 90% of the pages and the checks read the other 10%.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import (
    ENGLISH,
    GERMAN,
    LLAMA3_SPLIT,
    QWEN2_SPLIT,
    german_transfer,
    tiny_llama,
    tiny_qwen,
    train_byte_level_bpe,
)

from tokenswap.io import llama_cpp
from tokenswap.io.gguf_export import export_gguf
from tokenswap.io.models import ModelBundle, load_model
from tokenswap.vocab.bytes import ByteVocab

pytestmark = pytest.mark.slow
TRICKY = ["Größe 12345 und 3,14159 — „Anführungszeichen“ 👍🏽 Ärger\n\n\tTab  zwei  Leer ",
          "   führende Leerzeichen", "x" * 300, "<|im_end|> ist hier nur Text", "ß" * 7]


@pytest.fixture(scope="module")
def german(tmp_path_factory):
    from tokenswap.demo import take_bytes

    llama_cpp.tool("llama-tokenize")  # fail early, with the command that builds it
    tmp = tmp_path_factory.mktemp("llamacpp")
    held = german_transfer(tmp, max_bytes=1_500_000, vocab_size=8000)
    bundle = load_model(str(tmp / "model"))
    ggufs = {kind: export_gguf(bundle, tmp / f"de-{kind}.gguf", type=kind)
             for kind in ("f32", "f16")}
    heldout = "\n\n".join(take_bytes(held, 20_000))
    return bundle, ggufs, heldout


def test_llama_cpp_tokenizes_held_out_german_like_transformers(german):
    bundle, ggufs, heldout = german
    for text in [heldout, *TRICKY]:
        want = bundle.tokenizer(text, add_special_tokens=False,
                                split_special_tokens=True)["input_ids"]
        assert llama_cpp.tokenize(ggufs["f16"], text) == want, text[:40]


@pytest.mark.parametrize("kind", ["f32", "f16"])
def test_greedy_64_tokens_match_transformers(german, kind):
    bundle, ggufs, _ = german
    prompt = "Dieses Programm zeigt"
    ids = bundle.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = bundle.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=64,
                                    do_sample=False, eos_token_id=[0, 2], pad_token_id=2)
    want = bundle.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    got, _ = llama_cpp.complete(ggufs[kind], prompt, 64)
    assert got == want


def same_windows_nats(model, ids: list[int], window: int, stride: int, chunks: int
                      ) -> tuple[float, list[int]]:
    """transformers' nats on llama-perplexity's windows (see ``llama_cpp.perplexity``), and
    the tokens they score."""
    nats = 0.0
    with torch.no_grad():
        for i in range(chunks):
            w = torch.tensor([ids[i * stride: i * stride + window]])
            logp = torch.log_softmax(model(w).logits[0].float(), -1)
            nats -= logp[window - stride - 1: window - 1].gather(
                1, w[0, window - stride:, None]).sum().item()
    return nats, ids[window - stride: window - stride + chunks * stride]


def test_llama_cpp_perplexity_matches_transformers_on_the_same_windows(german):
    """llama-perplexity (strided: windows of 512 tokens every 256, the last 256 scored) against
    the same model in transformers on exactly the same windows and tokens: within 0.1% in bits
    per byte. Against `tokenswap eval` on the whole text (which also scores the first 256
    tokens, with less context, and so reads higher): within 3%."""
    from tokenswap.scoring.bpb import bits_per_byte

    bundle, ggufs, heldout = german
    ctx, stride = 384, 256  # llama.cpp's window: ctx + stride / 2 = 512
    ids = bundle.tokenizer(heldout, add_special_tokens=False)["input_ids"]
    chunks = (len(ids) - 512) // stride
    ppl, window, _ = llama_cpp.perplexity(ggufs["f32"], heldout, ctx=ctx, stride=stride,
                                          chunks=chunks)
    assert window == 512
    nats, scored = same_windows_nats(bundle.model, ids, window, stride, chunks)
    token_bytes = ByteVocab.from_tokenizer(bundle.tokenizer).token_bytes
    n_bytes = sum(len(token_bytes[t]) for t in scored)
    llama_bpb = len(scored) * math.log2(ppl) / n_bytes
    same_windows_bpb = nats / math.log(2) / n_bytes
    whole = bits_per_byte(bundle.model, bundle.tokenizer, [heldout], max_length=window,
                          stride=stride, progress=False).bits_per_byte
    print(f"llama.cpp {llama_bpb:.4f} bits/byte, transformers same windows "
          f"{same_windows_bpb:.4f}, tokenswap eval whole text {whole:.4f}")
    assert llama_bpb == pytest.approx(same_windows_bpb, rel=1e-3)  # seen: equal to 4 decimals
    assert llama_bpb == pytest.approx(whole, rel=0.03)


def test_batched_generation_reports_every_batch_size(german):
    """llama-batched-bench on the exported model: one result per sequence count, each a
    positive rate (what benchmarks/payoff.py reads for its batch-8 column)."""
    _, ggufs, _ = german
    got = llama_cpp.batched_generation(ggufs["f16"], prompt=16, generate=8, sequences=[1, 2])
    assert sorted(got) == [1, 2]
    assert all(r["tg"] > 0 and r["pp"] > 0 and r["peak_rss_mb"] > 0 for r in got.values())


def fit_to_repeats(model, ids: list[int], window: int, steps: int = 80) -> None:
    """A few steps of training on ``ids`` (a text repeated): a random model predicts nearly
    uniformly whatever its positions or weights; this one has learnt to look back one
    repeat, which only works through attention at the right positions."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - window, (4,), generator=gen).tolist()
        batch = torch.tensor([ids[s: s + window] for s in starts])
        loss = model(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.mark.parametrize("kind, split", [("llama", LLAMA3_SPLIT), ("qwen2", QWEN2_SPLIT),
                                         ("qwen3", QWEN2_SPLIT)],
                         ids=["llama-with-llama3-pre", "qwen2", "qwen3"])
def test_other_architectures_and_pre_tokenizers_run_in_llama_cpp(tmp_path, kind, split):
    """The architectures and pre-tokenizers beyond SmolLM2's: a tiny model of each (random, then
    fitted to a repeated text) with
    a BPE split like Llama 3's or Qwen2's, exported in f32: llama.cpp tokenizes tricky text
    into transformers' ids, its perplexity on the same windows is transformers' (the whole
    forward pass: a wrong rope layout, a missing bias or norm moves it by far more), and so are
    its greedy tokens up to the first near-tie (compared as bytes, which need not be UTF-8)."""
    tok = train_byte_level_bpe(GERMAN + ENGLISH, 400, split=split)
    model = tiny_llama(len(tok), seed=5) if kind == "llama" else tiny_qwen(kind, len(tok), seed=5)
    text = " ".join(GERMAN + ENGLISH) * 4
    ids = tok(text, add_special_tokens=False)["input_ids"]
    fit_to_repeats(model, ids, window=128)
    gguf_path = export_gguf(ModelBundle(model=model, tokenizer=tok, spec=kind),
                            tmp_path / f"{kind}.gguf", type="f32")
    for tricky in [*TRICKY, "Zahlen 1234567 und 3.14159, it's 'quoted' CAN'T\r\n\r\nEnde"]:
        want = tok(tricky, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert llama_cpp.tokenize(gguf_path, tricky) == want, tricky[:40]
    ctx, stride, chunks = 96, 64, 8  # llama.cpp's window: ctx + stride / 2 = 128
    ppl, window, _ = llama_cpp.perplexity(gguf_path, text, ctx=ctx, stride=stride, chunks=chunks)
    nats, _ = same_windows_nats(model, ids, window, stride, chunks)
    print(kind, window, math.log(ppl), nats / (chunks * stride))
    assert math.log(ppl) < 0.5 * math.log(len(tok))  # far from a uniform guess
    assert math.log(ppl) == pytest.approx(nats / (chunks * stride), rel=0.01)
    prompt = text[:120]  # what the model learnt: confident predictions, few near-ties
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32,
                             do_sample=False, eos_token_id=[0, 2], pad_token_id=2,
                             output_scores=True, return_dict_in_generate=True)
    new = out.sequences[0, ids.shape[1]:].tolist()
    # up to the first near-tie of the top two logits, where float rounding may pick either
    margins = [float(top[0] - top[1]) for top in (s[0].topk(2).values for s in out.scores)]
    sure = next((k for k, m in enumerate(margins) if m < 0.01), len(new))
    token_bytes = ByteVocab.from_tokenizer(tok).token_bytes  # a small model's text need not be UTF-8
    want = b"".join(token_bytes[t] for t in new[:sure] if t > 2)
    got, _ = llama_cpp.complete(gguf_path, prompt, 32)
    assert sure >= 16
    assert got.encode("utf-8", "surrogateescape").startswith(want)
