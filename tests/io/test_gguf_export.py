"""GGUF export: tensors, vocabulary and metadata read back with gguf.GGUFReader; bad input.

The check in real llama.cpp (same ids, same greedy text, same perplexity) is in
tests/test_slow_llamacpp.py.
"""

from __future__ import annotations

import json
import math

import gguf
import numpy as np
import pytest
import torch
from conftest import (
    CHATML,
    ENGLISH,
    GERMAN,
    LLAMA3_SPLIT,
    QWEN2_SPLIT,
    tiny_llama,
    tiny_qwen,
    train_byte_level_bpe,
)
from tokenizers import normalizers

from tokenswap.cli import main
from tokenswap.errors import TokenswapError
from tokenswap.io import gguf_export
from tokenswap.io.gguf_export import llama_cpp_pre, permute_rope


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def tensor(reader: gguf.GGUFReader, name: str) -> np.ndarray:
    t = next(t for t in reader.tensors if t.name == name)
    data = np.asarray(t.data)
    if t.tensor_type == gguf.GGMLQuantizationType.Q8_0:
        data = gguf.quants.dequantize(data, t.tensor_type)
    return data.astype(np.float32).reshape(tuple(int(x) for x in reversed(t.shape)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(out), "--type", "f32"]) == 0
    return out


def test_f32_tensors_are_the_model_weights_under_llama_cpp_names(exported, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    state = model.state_dict()
    reader = gguf.GGUFReader(exported)
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names  # tied: llama.cpp reuses token_embd
    assert len(names) == 2 + 9 * 2  # embeddings, final norm, 9 per block
    np.testing.assert_array_equal(tensor(reader, "token_embd.weight"),
                                  state["model.embed_tokens.weight"].numpy())
    np.testing.assert_array_equal(tensor(reader, "blk.1.ffn_down.weight"),
                                  state["model.layers.1.mlp.down_proj.weight"].numpy())
    q = state["model.layers.0.self_attn.q_proj.weight"].numpy()
    k = state["model.layers.0.self_attn.k_proj.weight"].numpy()
    np.testing.assert_array_equal(tensor(reader, "blk.0.attn_q.weight"), permute_rope(q, 4))
    np.testing.assert_array_equal(tensor(reader, "blk.0.attn_k.weight"), permute_rope(k, 2))
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "llama.block_count") == 2
    assert field(reader, "llama.attention.head_count_kv") == 2
    assert field(reader, "llama.rope.dimension_count") == 8
    assert field(reader, "llama.vocab_size") == state["model.embed_tokens.weight"].shape[0]


@pytest.mark.parametrize("kind", ["qwen2", "qwen3"])
def test_qwen_models_are_written_unpermuted_with_their_biases_and_norms(tmp_path, kind):
    tok = train_byte_level_bpe(GERMAN + ENGLISH, 400, split=QWEN2_SPLIT)
    model = tiny_qwen(kind, len(tok))
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    out = tmp_path / "m.gguf"
    assert main(["export", "--model", str(tmp_path / "m"), "--out", str(out), "--type", "f32"]) == 0
    reader = gguf.GGUFReader(out)
    state = model.state_dict()
    assert field(reader, "general.architecture") == kind
    assert field(reader, f"{kind}.block_count") == 2
    if kind == "qwen3":
        assert field(reader, f"{kind}.attention.key_length") == 32  # not hidden / heads
    assert field(reader, "tokenizer.ggml.pre") == "qwen2"
    np.testing.assert_array_equal(tensor(reader, "blk.0.attn_q.weight"),
                                  state["model.layers.0.self_attn.q_proj.weight"].numpy())
    extra = {"qwen2": ("blk.1.attn_k.bias", "model.layers.1.self_attn.k_proj.bias"),
             "qwen3": ("blk.1.attn_k_norm.weight", "model.layers.1.self_attn.k_norm.weight")}
    gname, key = extra[kind]
    np.testing.assert_array_equal(tensor(reader, gname), state[key].numpy())
    names = {t.name for t in reader.tensors}
    assert len(names) == 2 + (12 if kind == "qwen2" else 11) * 2


def test_rope_base_is_the_configs(tmp_path, source_tokenizer):
    model = tiny_llama(len(source_tokenizer))
    model.config.rope_parameters = {"rope_type": "default", "rope_theta": 100000.0}
    model.save_pretrained(tmp_path / "m")
    source_tokenizer.save_pretrained(tmp_path / "m")
    out = tmp_path / "m.gguf"
    assert main(["export", "--model", str(tmp_path / "m"), "--out", str(out)]) == 0
    assert field(gguf.GGUFReader(out), "llama.rope.freq_base") == 100000.0


def test_vocabulary_merges_and_special_ids(exported, source_tokenizer):
    reader = gguf.GGUFReader(exported)
    spec = json.loads(source_tokenizer.backend_tokenizer.to_str())
    vocab = source_tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True)
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert tokens == [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    types = field(reader, "tokenizer.ggml.token_type")
    assert types[:3] == [gguf.TokenType.CONTROL] * 3
    assert set(types[3:]) == {gguf.TokenType.NORMAL}
    merges = field(reader, "tokenizer.ggml.merges")
    assert merges == [" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]]
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert field(reader, "tokenizer.ggml.bos_token_id") == 1
    assert field(reader, "tokenizer.ggml.eos_token_id") == 2
    assert field(reader, "tokenizer.ggml.padding_token_id") == 2
    assert field(reader, "tokenizer.ggml.unknown_token_id") == 0
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    assert field(reader, "tokenizer.chat_template") == CHATML


def test_rows_beyond_the_tokenizer_are_unused_pads(source_tokenizer):
    vocab = gguf_export.gguf_vocab(source_tokenizer, len(source_tokenizer) + 2)
    assert vocab.tokens[-2:] == [f"[PAD{len(source_tokenizer)}]", f"[PAD{len(source_tokenizer) + 1}]"]
    assert vocab.types[-2:] == [gguf.TokenType.UNUSED] * 2


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_f16_and_q8_0_round_trip_close(tmp_path, tiny_untied_model_dir, kind):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "m.gguf"
    assert main(["export", "--model", str(tiny_untied_model_dir), "--out", str(out),
                 "--type", kind]) == 0
    reader = gguf.GGUFReader(out)
    want = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[kind]
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["output.weight"] == want and types["blk.0.ffn_up.weight"] == want
    assert types["output_norm.weight"] == gguf.GGMLQuantizationType.F32
    state = AutoModelForCausalLM.from_pretrained(tiny_untied_model_dir).state_dict()
    w = state["lm_head.weight"].numpy()
    tol = 1e-3 if kind == "f16" else 1e-2 * np.abs(w).max()
    np.testing.assert_allclose(tensor(reader, "output.weight"), w, atol=tol)


def rope_hf(x: torch.Tensor, pos: int, base: float = 10000.0) -> torch.Tensor:
    """transformers' Llama rope on one head: pairs (j, j + d/2) (rotate_half)."""
    d = x.shape[-1]
    theta = pos * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    cos, sin = torch.cat([theta.cos()] * 2), torch.cat([theta.sin()] * 2)
    rot = torch.cat([-x[d // 2:], x[: d // 2]])
    return x * cos + rot * sin


def rope_llama_cpp(x: torch.Tensor, pos: int, base: float = 10000.0) -> torch.Tensor:
    """llama.cpp's normal rope (LLAMA_ROPE_TYPE_NORM) on one head: pairs (2j, 2j + 1)."""
    d = x.shape[-1]
    theta = pos * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    a, b = x[0::2], x[1::2]
    out = torch.empty_like(x)
    out[0::2] = a * theta.cos() - b * theta.sin()
    out[1::2] = a * theta.sin() + b * theta.cos()
    return out


def test_permuted_q_and_k_give_llama_cpp_the_same_attention_scores():
    torch.manual_seed(0)
    n_head, d, hidden = 3, 8, 12
    wq, wk = torch.randn(n_head * d, hidden, dtype=torch.float64), torch.randn(n_head * d, hidden,
                                                                              dtype=torch.float64)
    x, y = torch.randn(hidden, dtype=torch.float64), torch.randn(hidden, dtype=torch.float64)
    pq, pk = (torch.from_numpy(permute_rope(w.numpy(), n_head)) for w in (wq, wk))
    for h in range(n_head):
        rows = slice(h * d, (h + 1) * d)
        hf = rope_hf((wq @ x)[rows], 5) @ rope_hf((wk @ y)[rows], 2)
        cpp = rope_llama_cpp((pq @ x)[rows], 5) @ rope_llama_cpp((pk @ y)[rows], 2)
        assert math.isclose(hf.item(), cpp.item(), rel_tol=1e-9, abs_tol=1e-9)
    unpermuted = rope_llama_cpp((wq @ x)[:d], 5) @ rope_llama_cpp((wk @ y)[:d], 2)
    assert not math.isclose(unpermuted.item(), (rope_hf((wq @ x)[:d], 5)
                                                @ rope_hf((wk @ y)[:d], 2)).item(), rel_tol=1e-6)


def test_pre_tokenizers_llama_cpp_knows_and_does_not(source_tokenizer, sentencepiece_tokenizer,
                                                     wordpiece_tokenizer):
    spec = json.loads(source_tokenizer.backend_tokenizer.to_str())
    assert llama_cpp_pre(spec) == "gpt-2"
    smollm = dict(spec, pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, spec["pre_tokenizer"]]})
    assert llama_cpp_pre(smollm) == "smollm"
    for split, name in ((LLAMA3_SPLIT, "llama-bpe"), (QWEN2_SPLIT, "qwen2")):
        trained = train_byte_level_bpe(ENGLISH, 300, split=split)
        assert llama_cpp_pre(json.loads(trained.backend_tokenizer.to_str())) == name
    nfc = train_byte_level_bpe(ENGLISH, 300, split=QWEN2_SPLIT, normalizer=normalizers.NFC())
    assert llama_cpp_pre(json.loads(nfc.backend_tokenizer.to_str())) == "qwen2"  # as Qwen2's
    nfd = train_byte_level_bpe(ENGLISH, 300, split=QWEN2_SPLIT, normalizer=normalizers.NFD())
    with pytest.raises(TokenswapError, match="normalizer"):
        llama_cpp_pre(json.loads(nfd.backend_tokenizer.to_str()))
    prefixed = dict(spec, pre_tokenizer=dict(spec["pre_tokenizer"], add_prefix_space=True))
    with pytest.raises(TokenswapError, match="no pre-tokenizer equal"):
        llama_cpp_pre(prefixed)
    for tok, match in ((sentencepiece_tokenizer, "byte fallback"),
                       (wordpiece_tokenizer, "WordPiece")):
        with pytest.raises(TokenswapError, match=match):
            llama_cpp_pre(json.loads(tok.backend_tokenizer.to_str()))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 3, err
    return err


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, tiny_model_dir, tiny_gpt2_dir,
                                                  sentencepiece_tokenizer, capsys):
    out = tmp_path / "m.gguf"
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(out),
                 "--type", "q4"]) == 2
    assert "q4" in one_error_line(capsys)
    assert main(["export", "--model", str(tiny_gpt2_dir), "--out", str(out)]) == 2
    assert "writes llama, qwen2, qwen3 models" in one_error_line(capsys)
    no_tok = tmp_path / "no-tokenizer"
    no_tok.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tok / name).write_bytes((tiny_model_dir / name).read_bytes())
    assert main(["export", "--model", str(no_tok), "--out", str(out)]) == 2
    assert "tokenizer" in one_error_line(capsys)
    sp = tmp_path / "sp"
    tiny_llama(len(sentencepiece_tokenizer)).save_pretrained(sp)
    sentencepiece_tokenizer.save_pretrained(sp)
    assert main(["export", "--model", str(sp), "--out", str(out)]) == 2
    assert "byte fallback" in one_error_line(capsys)
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(tmp_path / "m.bin")]) == 2
    assert ".gguf" in one_error_line(capsys)
    assert main(["transfer", "--model", str(tiny_model_dir), "--tokenizer", "bytes", "--out",
                 str(tmp_path / "bytes")]) == 0
    capsys.readouterr()
    assert main(["export", "--model", str(tmp_path / "bytes"), "--out", str(out)]) == 2
    assert "without merges" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bytes", "no-tokenizer", "sp"]


def test_existing_output_is_kept_without_overwrite_and_on_failure(tmp_path, tiny_model_dir,
                                                                  monkeypatch, capsys):
    out = tmp_path / "m.gguf"
    out.write_bytes(b"old")
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(out)]) == 2
    assert "already exists" in one_error_line(capsys)

    def broken(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", broken)
    with pytest.raises(OSError):
        gguf_export.export_gguf(_bundle(tiny_model_dir), out, overwrite=True)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]
    monkeypatch.undo()
    gguf_export.export_gguf(_bundle(tiny_model_dir), out, overwrite=True)
    assert field(gguf.GGUFReader(out), "general.architecture") == "llama"


def _bundle(path):
    from tokenswap.io.models import load_model

    return load_model(str(path))
