"""The real packaged SmolLM2-135M: loading, a transfer to a trained tokenizer, bits per byte.

Marked slow (minutes): ``python -m pytest -m slow``. The text is Python's own standard library
source, which is on every machine.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import tokenswap
from tokenswap.io.models import default_gguf_path, load_model
from tokenswap.scoring.bpb import bits_per_byte

pytestmark = pytest.mark.slow
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def smollm2():
    return load_model("default")


@pytest.fixture(scope="module")
def code_texts():
    files = sorted(STDLIB.glob("*.py"))
    train = [f.read_text(encoding="utf-8") for f in files if not f.name.startswith(("t", "u"))]
    held = [f.read_text(encoding="utf-8")[:3000] for f in files
            if f.name in ("textwrap.py", "uuid.py", "tokenize.py")]
    return train, held


def test_default_model_matches_the_gguf_and_round_trips(smollm2):
    assert smollm2.input_embeddings().shape == (49152, 576) and smollm2.tied
    text = "Grüße, мир, 世界! def f(x):\n    return x ** 2  # 👋"
    ids = smollm2.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert smollm2.tokenizer.decode(ids) == text
    gguf = default_gguf_path()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    prompt = smollm2.tokenizer("The capital of France is", return_tensors="pt")
    a = smollm2.model.generate(**prompt, max_new_tokens=12, do_sample=False)
    b = direct.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert torch.equal(a, b)


def test_transfer_to_code_tokenizer(smollm2, code_texts, tmp_path):
    train, held = code_texts
    tok = tokenswap.tokenizer_train(None, 8000, texts=train, like=smollm2.tokenizer)
    base = bits_per_byte(smollm2.model, smollm2.tokenizer, held, max_length=512)
    scores = {}
    for method in ("random", "mean"):
        out = tmp_path / method
        tokenswap.transfer("default", tok, method=method, out=out)
        model = AutoModelForCausalLM.from_pretrained(out)
        reloaded = AutoTokenizer.from_pretrained(out)
        assert model.config.vocab_size == len(reloaded) == len(tok)
        score = bits_per_byte(model, reloaded, held, max_length=512)
        assert score.bytes == base.bytes and torch.isfinite(torch.tensor(score.bits))
        scores[method] = score
        ids = reloaded("def main():\n", return_tensors="pt")
        gen = model.generate(**ids, max_new_tokens=8, do_sample=False)
        assert gen.shape[1] > ids["input_ids"].shape[1]
    # SmolLM2 saw a lot of code: an 8k code vocabulary does not read it in fewer tokens, but the
    # mean initialisation must keep most of what the model knows, and random must not.
    assert scores["mean"].bits_per_byte < 2.0 * base.bits_per_byte
    assert scores["mean"].bits_per_byte < 0.6 * scores["random"].bits_per_byte
    print({k: round(v.bits_per_byte, 3) for k, v in scores.items()}, round(base.bits_per_byte, 3))
