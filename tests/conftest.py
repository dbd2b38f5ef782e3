"""Session fixtures: tiny tokenizers trained in memory and tiny random models.

Nothing here touches the network or the packaged real model; tests marked ``slow`` do that.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
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


def train_byte_level_bpe(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A GPT-2/SmolLM-style byte-level BPE with ChatML specials at ids 0, 1, 2."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
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
