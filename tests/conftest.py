"""Session fixtures: tiny tokenizers trained in memory and tiny random models.

Nothing here touches the network or the packaged real model; tests marked ``slow`` do that.
"""

from __future__ import annotations

import itertools
import math
import signal

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from tokenswap.vocab.bytes import ByteVocab

# A shell starts a background job (`bash .ci/run &`) with SIGINT ignored, and Python then leaves
# it ignored: Ctrl-C and `_thread.interrupt_main` do nothing, and so would the interrupt tests'
# subprocesses, which inherit the ignored signal. Python's own handler here makes them see
# SIGINT as a terminal user's process does (a caught signal is reset to the default on exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# the pre-tokenizer splits of Llama 3's and Qwen2's tokenizer.json
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
                r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "A tokenizer splits text into tokens; a model predicts the next token.",
    "def add(a, b):\n    return a + b\n",
    "Numbers like 12345 and 3.14159 appear in text, too.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
] * 20
GERMAN = [
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Die Straße ist nass, weil es geregnet hat. Größere Häuser stehen am Fluss.",
    "Übung macht den Meister, und Ärger hilft niemandem.",
    "Ein Tokenizer zerlegt den Text in Tokens; das Modell sagt das nächste Token voraus.",
] * 20


def train_byte_level_bpe(texts: list[str], vocab_size: int, *, split: str | None = None,
                         normalizer=None) -> PreTrainedTokenizerFast:
    """A GPT-2/SmolLM-style byte-level BPE with ChatML specials at ids 0, 1, 2; with ``split``,
    a Llama 3/Qwen2-style one: that regex splits (isolated), then bytes without GPT-2's regex."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split is not None:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    return fast


def train_sentencepiece_bpe(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A Llama-2/Gemma-style BPE: ``▁`` for spaces and ``<0xNN>`` byte fallback."""
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>", "<bos>", "<unk>", *byte_tokens],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>",
    )


def train_wordpiece(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece with ``##`` continuation pieces (cased, no accent stripping)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def tiny_qwen(kind: str, vocab_size: int, *, seed: int = 0, std: float = 0.02):
    """A tiny random ``qwen2`` (Q/K/V biases) or ``qwen3`` (Q/K norms, heads wider than hidden /
    heads as in Qwen3-0.6B) model, tied, with weights
    of standard deviation ``std`` (a larger one spreads the logits: no near-ties in greedy
    decoding)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM),
                             "qwen3": (Qwen3Config, Qwen3ForCausalLM)}[kind]
    torch.manual_seed(seed)
    config = config_cls(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        head_dim={"qwen2": 16, "qwen3": 32}[kind],  # Qwen3's may differ from hidden / heads
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
        initializer_range=std)
    model = model_cls(config).eval()
    with torch.no_grad():  # biases and norms start at 0 and 1: make them matter
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * std)
    return model


def tiny_llama(vocab_size: int, *, tied: bool = True, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def source_tokenizer() -> PreTrainedTokenizerFast:
    """English-centric byte-level BPE, the tiny stand-in for SmolLM2's tokenizer."""
    return train_byte_level_bpe(ENGLISH, 400)


@pytest.fixture(scope="session")
def german_tokenizer() -> PreTrainedTokenizerFast:
    """A target byte-level BPE trained on German."""
    return train_byte_level_bpe(GERMAN, 420)


@pytest.fixture(scope="session")
def sentencepiece_tokenizer() -> PreTrainedTokenizerFast:
    return train_sentencepiece_bpe(ENGLISH + GERMAN, 420)


@pytest.fixture(scope="session")
def wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    return train_wordpiece(ENGLISH + GERMAN, 300)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, source_tokenizer):
    """A saved HF model directory: tiny tied Llama + the source tokenizer."""
    path = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_llama(len(source_tokenizer))
    model.save_pretrained(path)
    source_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_untied_model_dir(tmp_path_factory, source_tokenizer):
    path = tmp_path_factory.mktemp("tiny-llama-untied")
    model = tiny_llama(len(source_tokenizer), tied=False, seed=1)
    model.save_pretrained(path)
    source_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, source_tokenizer):
    """A tiny GPT-2 (tied, learned positions) saved with the source tokenizer."""
    path = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(2)
    config = GPT2Config(
        vocab_size=len(source_tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=256,
        bos_token_id=1, eos_token_id=2,
    )
    GPT2LMHeadModel(config).eval().save_pretrained(path)
    source_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pair(source_tokenizer, german_tokenizer):
    """The byte-level source/German target pair the init-method tests share."""
    from tokenswap.vocab.pair import build_pair

    return build_pair(source_tokenizer, german_tokenizer)


@pytest.fixture(scope="module")
def source_matrix(source_tokenizer):
    """A random (V_s, 16) source matrix with non-zero mean."""
    torch.manual_seed(0)
    return torch.randn(len(source_tokenizer), 16) * 0.5 + 1.0


# ----------------------------------------------------------------------------- hypernet/

HYPERNET_SMALL = dict(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_pieces=4)


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is faster than two fighting over the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- bytes/
# Tiny hand-built vocabularies, tiny float64 models and a brute-force reference for
# tests/bytes. The reference enumerates token sequences directly from the definition - every
# sequence of text tokens, each cut short by an end token - and sums the probabilities of those
# whose bytes qualify. It shares nothing with tokenswap.bytes.exact.ByteLM but the model.
# (One conftest for all tests: a second conftest.py would shadow this one's `from conftest import`.)
def hand_byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2 style: alphabet a, b, c, space; merges ab, abc, Ġa, ca; <eos> at 0."""
    vocab = {"<eos>": 0, "a": 1, "b": 2, "c": 3, "Ġ": 4, "ab": 5, "Ġa": 6, "abc": 7, "ca": 8}
    merges = [("a", "b"), ("Ġ", "a"), ("ab", "c"), ("c", "a")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<eos>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def hand_sentencepiece_tokenizer() -> PreTrainedTokenizerFast:
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


def hand_prepended_sentencepiece_tokenizer() -> PreTrainedTokenizerFast:
    """The SentencePiece vocabulary with Llama-2's prepended '▁' (decoding drops it again)."""
    tok = Tokenizer.from_str(hand_sentencepiece_tokenizer().backend_tokenizer.to_str())
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
    return hand_byte_level_tokenizer()


@pytest.fixture(scope="module")
def sp_tokenizer():
    return hand_sentencepiece_tokenizer()


@pytest.fixture(scope="module")
def spp_tokenizer():
    return hand_prepended_sentencepiece_tokenizer()


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


# ----------------------------------------------------------------------------- training/


class FakeClocks:
    """Stand-ins for the wall and CPU clocks of the training budget (tokenswap.training.budget).

    Every reading moves a clock on by its per-reading seconds (``wall``, ``cpu``), and the
    budget reads each clock once before and once after a training step: a step takes ``wall``
    seconds of wall time and ``cpu`` of CPU time, whatever the machine does. :meth:`advance`
    moves both by time spent outside the steps (a slow evaluation, a slow disk).
    """

    def __init__(self, wall: float = 1.0, cpu: float = 1.0) -> None:
        self.wall, self.cpu = wall, cpu
        self.now = {"wall": 0.0, "cpu": 0.0}

    def read(self, clock: str) -> float:
        self.now[clock] += getattr(self, clock)
        return self.now[clock]

    def advance(self, seconds: float) -> None:
        for clock in self.now:
            self.now[clock] += seconds


@pytest.fixture
def fake_clocks(monkeypatch) -> FakeClocks:
    """Training budgets counted on :class:`FakeClocks` (1 s a step on both) for the test."""
    from tokenswap.training import budget

    clocks = FakeClocks()
    monkeypatch.setattr(budget, "wall_clock", lambda: clocks.read("wall"))
    monkeypatch.setattr(budget, "cpu_clock", lambda: clocks.read("cpu"))
    return clocks


@pytest.fixture
def text_dir(tmp_path):
    """Eight German training files in ``tmp_path/text``, and held-out text in
    ``tmp_path/held.txt`` (the tuning tests' corpus)."""
    d = tmp_path / "text"
    d.mkdir()
    for i, t in enumerate(GERMAN[:8]):
        (d / f"{i}.txt").write_text(t * 3)
    (tmp_path / "held.txt").write_text(GERMAN[1] + " " + GERMAN[2])
    return d


def german_transfer(tmp, *, max_bytes: int, vocab_size: int) -> list[str]:
    """The packaged SmolLM2 transferred (``mean``) to a ``vocab_size`` German BPE trained on 90%
    of Debian's German man pages (the first ``max_bytes``), saved to ``tmp / "model"`` (the
    tokenizer to ``tmp / "tok"``); returns the other 10%, the held-out pages. For the slow
    tests that run a transferred real model in another program (llama.cpp, lm-eval)."""
    from tokenswap import api
    from tokenswap.demo import demo_corpus
    from tokenswap.io.corpus import read_corpus, split_corpus

    docs = read_corpus(demo_corpus("de"), max_bytes=max_bytes)
    train, held = split_corpus(docs, heldout_fraction=0.1, seed=0)
    api.tokenizer_train(None, vocab_size, texts=[d.text for d in train], like="default",
                        out=tmp / "tok")
    api.transfer("default", str(tmp / "tok"), method="mean", out=tmp / "model")
    return [d.text for d in held]
