"""ByteLM on the real packaged SmolLM2-135M (slow: ``python -m pytest -m slow tests/bytes``).

The token-level model cannot continue a prompt that ends inside a word: after the token
"Par" it rarely emits "is", because the tokenizer would have written "Paris" differently
(tokenization bias, Phan et al. 2024). The byte-level view sums over every tokenization and
so completes mid-word prompts.
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from tokenswap.bytes import ByteLM
from tokenswap.bytes.generate import generate
from tokenswap.io.models import load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_bytes():
    bundle = load_model("default")
    return ByteLM(bundle.model, bundle.tokenizer, prune=1e-6, max_nodes=32, batch_size=32), bundle


def test_mid_word_prompt_completes_and_beats_token_level(smollm2_bytes):
    lm, bundle = smollm2_bytes
    prompt = b"The capital of France is Par"
    start = time.perf_counter()
    dist = lm.next_byte_distribution(prompt)
    seconds = time.perf_counter() - start
    assert abs(float(dist.sum()) - 1) < 1e-9
    assert int(torch.argmax(dist)) == ord("i")
    tok = bundle.tokenizer
    ids = tok(prompt.decode(), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = bundle.model(torch.tensor([[lm.context[0], *ids]])).logits[0, -1]
    token_lp = torch.log_softmax(logits.double(), -1)
    starts_i = [t for t, d in enumerate(lm.vocab.token_bytes) if d and d.startswith(b"i")]
    p_token_level = float(token_lp[starts_i].exp().sum())
    assert float(dist[ord("i")]) > p_token_level
    print(f"\nP('i' | ...Par): byte-level {float(dist[ord('i')]):.3f}, token-level next token "
          f"starting with 'i' {p_token_level:.3f}; {lm.forward_passes} passes, {seconds:.1f} s, "
          f"dropped <= {math.exp(lm.dropped_logmass()):.2g}")


def test_prefix_probability_is_at_least_the_canonical_tokenization(smollm2_bytes):
    lm, bundle = smollm2_bytes
    text = "def add(a, b):\n    return a + b"
    ids = bundle.tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = bundle.model(torch.tensor([[lm.context[0], *ids]])).logits[0, :-1]
    canonical = float(torch.log_softmax(logits.double(), -1)[range(len(ids)), ids].sum())
    assert lm.tokenizations_logprob(text.encode()) >= canonical - 1e-6
    assert lm.prefix_logprob(text.encode()) >= canonical - 1e-6


def test_greedy_generation_from_mid_token_costs_one_pass_per_byte(smollm2_bytes):
    lm, _ = smollm2_bytes
    prompt = b"def add(a, b):\n    retu"
    lm.next_byte_logprobs(prompt)
    before = lm.forward_passes
    start = time.perf_counter()
    out = generate(lm, prompt, max_bytes=12, stop="\n")
    seconds = time.perf_counter() - start
    assert out.output.startswith(b"rn"), out
    assert lm.forward_passes - before <= len(out.output) + 1
    print(f"\ngenerated {out.output!r} ({out.stop_reason}): {lm.forward_passes - before} passes "
          f"for {len(out.output)} bytes, {seconds:.1f} s")


def test_conditioned_prompt_is_cheap_and_completes_the_word(smollm2_bytes):
    _, bundle = smollm2_bytes
    lm = ByteLM(bundle.model, bundle.tokenizer, prune=1e-3, max_nodes=64)
    prompt = (b'def read_corpus(paths, max_bytes=None):\n    """Read every file under paths."""\n'
              b"    docs = []\n    for path in pa")
    head = lm.condition(prompt)
    assert len(head) > len(prompt) - 16  # only the last words are left to the tree
    lm.next_byte_logprobs(prompt)
    read = lm.forward_passes
    assert read <= 1 + len(prompt) - len(head)
    out = generate(lm, prompt, max_bytes=24)
    assert out.output.startswith(b"ths"), out  # token-level greedy writes "paos" here
    passes = lm.forward_passes - read
    assert passes < 0.6 * len(out.output)  # deferred in-token paths: ~a pass per token
    print(f"\nread the prompt in {read} passes; generated {out.output!r} in {passes} passes")
