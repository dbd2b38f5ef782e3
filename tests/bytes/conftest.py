"""Tiny hand-built vocabularies, tiny float64 models and a brute-force reference.

The reference enumerates token sequences directly from the definition - every sequence of
text tokens, each cut short by an end token - and sums the probabilities of those whose
bytes qualify. It shares nothing with :class:`~tokenswap.bytes.exact.ByteLM` but the model.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tokenswap.vocab.bytes import ByteVocab


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2 style: alphabet a, b, c, space; merges ab, abc, Ġa, ca; <eos> at 0."""
    vocab = {"<eos>": 0, "a": 1, "b": 2, "c": 3, "Ġ": 4, "ab": 5, "Ġa": 6, "abc": 7, "ca": 8}
    merges = [("a", "b"), ("Ġ", "a"), ("ab", "c"), ("c", "a")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<eos>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def sentencepiece_tokenizer() -> PreTrainedTokenizerFast:
    """Llama-2 style without a prepended space: '▁' is a space, <0xNN> byte fallback.

    'a' and <0x61> emit the same byte; 'é' only exists as <0xC3><0xA9>.
    """
    vocab = {"<unk>": 0, "<eos>": 1, "<0x61>": 2, "<0x63>": 3, "<0xC3>": 4, "<0xA9>": 5,
             "<0x20>": 6, "▁": 7, "a": 8, "b": 9, "ab": 10, "▁a": 11}
    merges = [("a", "b"), ("▁", "a")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>",
                               fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    tok.add_special_tokens(["<unk>", "<eos>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")


def prepended_sentencepiece_tokenizer() -> PreTrainedTokenizerFast:
    """The SentencePiece vocabulary with Llama-2's prepended '▁' (decoding drops it again)."""
    tok = Tokenizer.from_str(sentencepiece_tokenizer().backend_tokenizer.to_str())
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")


def tiny_llama64(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval().double()
    with torch.no_grad():  # sharper than the default init, so paths differ a lot in probability
        model.model.embed_tokens.weight.mul_(8.0)
    return model


def tiny_gpt2_64(vocab_size: int, seed: int = 3) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval().double()


class BruteForce:
    """Probabilities by enumerating token sequences from the definition (float64).

    Every sequence of ``d`` text tokens is scored with plain full-sequence forward passes,
    batched per depth; nothing is pruned.
    """

    def __init__(self, model, tokenizer, context: list[int]):
        self.model = model
        self.context = context
        vocab = self.vocab = ByteVocab.from_tokenizer(tokenizer)
        rows = model.get_output_embeddings().weight.shape[0]
        self.bytes = list(vocab.token_bytes) + [None] * (rows - len(vocab))
        self.text_ids = [t for t, b in enumerate(self.bytes) if b]
        self.end_ids = [t for t, b in enumerate(self.bytes) if not b]
        self._tables: dict[int, tuple[list[tuple[int, ...]], torch.Tensor, torch.Tensor]] = {}

    def table(self, depth: int):
        """(sequences, log P(sequence) (N,), next-token log-probs (N, V)) at ``depth``."""
        if depth not in self._tables:
            seqs = list(itertools.product(self.text_ids, repeat=depth))
            rows = torch.tensor([self.context + list(seq) for seq in seqs])
            with torch.no_grad():
                nxt = torch.cat([torch.log_softmax(self.model(chunk).logits[:, -1].double(), -1)
                                 for chunk in rows.split(4096)])
            if depth == 0:
                lp = torch.zeros(1, dtype=torch.float64)
            else:
                prev_seqs, prev_lp, prev_next = self.table(depth - 1)
                n = len(self.text_ids)
                parent = torch.arange(len(seqs)) // n
                last = torch.tensor([seq[-1] for seq in seqs])
                lp = prev_lp[parent] + prev_next[parent, last]
            self._tables[depth] = (seqs, lp, nxt)
        return self._tables[depth]

    def sequences(self, depth: int):
        seqs, lp, _ = self.table(depth)
        return zip(seqs, lp.tolist(), strict=True)

    def text(self, seq) -> bytes:
        return self.vocab.decode_bytes(seq)  # drops the first token's space where the decoder does

    def end_logprob(self, seq) -> float:
        seqs, _, nxt = self.table(len(seq))
        row = nxt[seqs.index(tuple(seq))]
        return float(torch.logsumexp(row[self.end_ids], 0))

    def prefix_prob(self, s: bytes) -> float:
        """P(text starts with s): sequences of len(s) text tokens (each emits >= 1 byte; one
        more when a first token may emit nothing), plus every shorter sequence followed by an
        end token."""
        total = 0.0
        deepest = len(s) + self.vocab.strip_leading_space
        for depth in range(deepest + 1):
            seqs, lp, nxt = self.table(depth)
            ends = torch.logsumexp(nxt[:, self.end_ids], -1)
            for k, seq in enumerate(seqs):
                data = self.text(seq)
                if depth == deepest:
                    assert len(data) >= len(s)
                    total += math.exp(float(lp[k])) * data.startswith(s)
                elif data.startswith(s):
                    total += math.exp(float(lp[k] + ends[k]))
        return total

    def tokenizations(self, s: bytes) -> list[tuple[tuple[int, ...], float]]:
        deepest = len(s) + self.vocab.strip_leading_space
        return [(seq, lp) for depth in range(deepest + 1) for seq, lp in self.sequences(depth)
                if self.text(seq) == s]


@pytest.fixture(scope="module")
def bl_tokenizer():
    return byte_level_tokenizer()


@pytest.fixture(scope="module")
def sp_tokenizer():
    return sentencepiece_tokenizer()


@pytest.fixture(scope="module")
def spp_tokenizer():
    return prepended_sentencepiece_tokenizer()


@pytest.fixture(scope="module")
def bl_model(bl_tokenizer):
    return tiny_llama64(len(bl_tokenizer))


@pytest.fixture(scope="module")
def sp_model(sp_tokenizer):
    return tiny_llama64(len(sp_tokenizer) + 2, seed=1)  # two padded output rows: end tokens


@pytest.fixture(scope="session")
def brute_force():
    """The :class:`BruteForce` class (test modules cannot import this conftest by name)."""
    return BruteForce


@pytest.fixture(scope="session")
def make_gpt2():
    return tiny_gpt2_64
