"""Write a transformers model (Llama, Qwen2, Qwen3) and its byte-level BPE tokenizer as a GGUF
file for llama.cpp.

Written with the ``gguf`` package's ``GGUFWriter`` (the library llama.cpp's own converter uses),
not by running ``convert_hf_to_gguf.py``: that script identifies a tokenizer's pre-tokenizer by
hashing the ids a fixed test string gets, a table that cannot know a vocabulary trained
minutes ago. Here the pre-tokenizer is identified from its *definition* in ``tokenizer.json``
(:func:`llama_cpp_pre`), which is what a transferred model keeps from its source.

What is written:

- ``general.architecture`` (``llama``, ``qwen2`` or ``qwen3``: :data:`ARCHITECTURES`) and the
  hyper-parameters llama.cpp reads (blocks, widths, heads, rope base and dimension, RMS-norm
  epsilon, context length);
- tensors under llama.cpp's names (``gguf.get_tensor_name_map``). For ``llama``, Q and K rows
  are permuted from transformers' rotate-half rope layout to llama.cpp's interleaved one
  (:func:`permute_rope`); Qwen's NEOX rope is transformers' layout already. A tied model writes
  no ``output.weight`` (llama.cpp then uses ``token_embd``);
- ``--type``: ``f32`` everything float32; ``f16`` / ``q8_0`` the 2-D weight matrices in that
  type and norms in float32, as llama.cpp's converter does;
- the vocabulary: every id's token string (byte-level form, as in ``tokenizer.json``), its type
  (normal, control for special added tokens, user-defined for other added tokens, unused for
  embedding rows beyond the tokenizer), the BPE merges, ``tokenizer.ggml.model = gpt2`` and the
  pre-tokenizer name; bos/eos/unk/pad ids, whether a bos is added, the chat template.

Left out: other architectures (GPT-2, Gemma, sliding-window attention, ...),
Unigram/SentencePiece tokenizers (llama.cpp's ``llama`` and ``t5`` vocabularies), BPEs without
merges (the byte tokenizer of ``--tokenizer bytes``: gguf-py writes no empty array, and
llama.cpp refuses a gpt2 vocabulary with no merge list), rope scaling, biases the architecture
has no tensor for (Llama's attention/MLP biases, output biases): each is refused with one line
(:class:`~tokenswap.errors.TokenswapError`) rather than written wrong.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tokenswap.errors import TokenswapError

if TYPE_CHECKING:
    from tokenswap.io.models import ModelBundle


class GGUFType(str, Enum):
    """Tensor type of the exported weight matrices."""

    f32 = "f32"
    f16 = "f16"
    q8_0 = "q8_0"


_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
_BYTES_ONLY = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}
_CONTRACTIONS = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
_TAIL = "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"


def _split_then_bytes(regex: str) -> dict[str, Any]:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        _BYTES_ONLY]}


# llama.cpp pre-tokenizer name -> the tokenizer.json pre_tokenizer it implements (trim_offsets
# only moves offsets, never ids, so it is not compared). The regexes are llama.cpp's
# LLAMA_VOCAB_PRE_TYPE_GPT2, _SMOLLM, _LLAMA3 and _QWEN2 (src/llama-vocab.cpp, which quotes the
# tokenizer.json regex each was written from): GPT-2's split; the same after splitting every
# digit on its own; Llama 3's split (numbers in runs of up to 3 digits); Qwen2's (every digit on
# its own).
KNOWN_PRE_TOKENIZERS: dict[str, dict[str, Any]] = {
    "gpt-2": _BYTE_LEVEL,
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]},
    "llama-bpe": _split_then_bytes(_CONTRACTIONS + "\\p{N}{1,3}" + _TAIL),
    "qwen2": _split_then_bytes(_CONTRACTIONS + "\\p{N}" + _TAIL),
}
# Normalizers llama.cpp does not apply but every GGUF of such a tokenizer is written without
# (llama.cpp's converter drops them): Qwen2's NFC. Text already in NFC (nearly all text)
# tokenizes the same; text that is not is tokenized as given by llama.cpp, as for any Qwen2 GGUF.
IGNORED_NORMALIZERS = ({"type": "NFC"},)


def _strip(node: Any) -> Any:
    """A pre_tokenizer definition without the keys that do not change ids."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "trim_offsets"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def llama_cpp_pre(spec: dict[str, Any]) -> str:
    """The llama.cpp pre-tokenizer name for a ``tokenizer.json`` (parsed), or one line saying
    why llama.cpp would tokenize it differently.

    >>> llama_cpp_pre({"model": {"type": "BPE"}, "normalizer": None, "pre_tokenizer":
    ...     {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
    ...      "use_regex": True}})
    'gpt-2'
    """
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise TokenswapError(
            f"cannot export a {model.get('type')} tokenizer: tokenswap export writes byte-level "
            "BPE vocabularies (llama.cpp's gpt2 type); train one with `tokenswap tokenizer train "
            "--kind bpe`")
    if model.get("byte_fallback") or model.get("continuing_subword_prefix") or \
            model.get("end_of_word_suffix"):
        raise TokenswapError(
            "cannot export this BPE: byte fallback or subword prefixes/suffixes are not "
            "byte-level BPE, which is what llama.cpp's gpt2 vocabulary implements")
    if spec.get("normalizer") is not None and spec["normalizer"] not in IGNORED_NORMALIZERS:
        raise TokenswapError(
            f"cannot export: the tokenizer has a normalizer ({spec['normalizer'].get('type')}) "
            "that llama.cpp's byte-level BPE pre-tokenizers do not apply")
    pre = _strip(spec.get("pre_tokenizer"))
    for name, known in KNOWN_PRE_TOKENIZERS.items():
        if pre == known:
            return name
    raise TokenswapError(
        f"cannot export: llama.cpp implements no pre-tokenizer equal to this tokenizer's "
        f"{json.dumps(pre, separators=(',', ':'))[:160]}; known: "
        f"{', '.join(KNOWN_PRE_TOKENIZERS)} (keep the source's pre-tokenizer when training)")


@dataclass
class GGUFVocab:
    """What ``tokenizer.ggml.*`` holds: one token string and type per embedding row."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special: dict[str, int]
    add_bos: bool
    chat_template: str | None


def gguf_vocab(tokenizer, n_rows: int) -> GGUFVocab:
    """The llama.cpp vocabulary of a fast byte-level BPE ``tokenizer`` for ``n_rows`` embedding
    rows (rows beyond the tokenizer become unused ``[PADn]`` tokens)."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TokenswapError("cannot export: the model's tokenizer is not a fast tokenizer "
                             "(no tokenizer.json)")
    spec = json.loads(backend.to_str())
    pre = llama_cpp_pre(spec)
    alphabet = set(_byte_level_alphabet())
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items()}
    by_id = {i: t for t, i in backend.get_vocab(with_added_tokens=True).items()}
    if len(by_id) > n_rows or (by_id and max(by_id) >= n_rows):
        raise TokenswapError(f"cannot export: the tokenizer has ids up to {max(by_id)} but the "
                             f"model only {n_rows} embedding rows")
    tokens, types = [], []
    T = gguf.TokenType
    for i in range(n_rows):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(T.UNUSED)
        elif i in added:
            tokens.append(text)
            types.append(T.CONTROL if added[i].special else T.USER_DEFINED)
        else:
            if not set(text) <= alphabet:
                raise TokenswapError(f"cannot export: token {i} {text!r} is not in byte-level "
                                     "form, which llama.cpp's gpt2 vocabulary needs")
            tokens.append(text)
            types.append(T.NORMAL)
    merges = []
    for m in spec["model"].get("merges", []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if " " in a or " " in b:
            raise TokenswapError(f"cannot export: merge {a!r} + {b!r} holds a space, which "
                                 "GGUF's merge list cannot represent")
        merges.append(f"{a} {b}")
    if not merges:
        raise TokenswapError(
            "cannot export a BPE without merges (e.g. --tokenizer bytes): llama.cpp's gpt2 "
            "vocabulary needs a merge list and GGUF cannot store an empty one")
    special = {role: getattr(tokenizer, f"{role}_token_id") for role in ("bos", "eos", "unk", "pad")}
    special = {k: int(v) for k, v in special.items() if v is not None}
    add_bos = bool(tokenizer("a", add_special_tokens=True)["input_ids"][:1]
                   == [special.get("bos", -1)])
    return GGUFVocab(tokens=tokens, types=[int(t) for t in types], merges=merges, pre=pre,
                     special=special, add_bos=add_bos,
                     chat_template=getattr(tokenizer, "chat_template", None) or None)


def _byte_level_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes (``bytes_to_unicode``)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a Q or K projection ``(n_head * head_dim, hidden)`` from transformers'
    rotate-half rope layout (pairs ``(j, j + head_dim/2)``) to llama.cpp's interleaved one
    (pairs ``(2j, 2j + 1)``), per head.

    >>> permute_rope(np.arange(4.0).reshape(4, 1), 1)[:, 0].tolist()
    [0.0, 2.0, 1.0, 3.0]
    """
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_theta(config) -> float:
    """The rope base of a transformers config: ``rope_parameters`` (transformers 5) or
    ``rope_theta`` (4.x); refused when it uses rope scaling, which is not written yet."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    legacy = getattr(config, "rope_scaling", None) or {}
    kind = params.get("rope_type", legacy.get("rope_type", legacy.get("type", "default")))
    if kind not in ("default", None):
        raise TokenswapError(f"cannot export: rope scaling {kind!r} is not written yet")
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        raise TokenswapError("cannot export: the model config names no rope base (rope_theta)")
    return float(theta)


@dataclass(frozen=True)
class Architecture:
    """How a transformers ``model_type`` is written for llama.cpp."""

    gguf_arch: str  # gguf.MODEL_ARCH member: the tensor names and ``general.architecture``
    permute_qk: bool  # llama.cpp's rope is interleaved (llama) rather than rotate-half (NEOX)
    refused_flags: tuple[str, ...]  # config flags that add tensors or behaviour not written


# transformers model_type -> llama.cpp architecture. Qwen2 always has Q/K/V biases (its
# architecture in llama.cpp reads them); Qwen3 has Q/K RMS norms instead (the tensor map names
# them). Both use NEOX rope, transformers' own layout, so nothing is permuted.
ARCHITECTURES: dict[str, Architecture] = {
    "llama": Architecture("LLAMA", True, ("attention_bias", "mlp_bias")),
    "qwen2": Architecture("QWEN2", False, ("use_sliding_window",)),
    "qwen3": Architecture("QWEN3", False, ("attention_bias", "use_sliding_window")),
}


def architecture(config) -> Architecture:
    """The :class:`Architecture` of a transformers config, or one line saying why not."""
    kind = getattr(config, "model_type", None)
    if kind not in ARCHITECTURES:
        raise TokenswapError(f"cannot export a {kind!r} model: tokenswap export writes "
                             f"{', '.join(ARCHITECTURES)} models (SmolLM2, Llama 2/3, Qwen2/2.5, "
                             "Qwen3 and their like)")
    arch = ARCHITECTURES[kind]
    rope_theta(config)
    head_dim = getattr(config, "head_dim", None)
    if kind == "qwen2" and head_dim and head_dim * config.num_attention_heads != config.hidden_size:
        raise TokenswapError("cannot export: llama.cpp's qwen2 needs heads of hidden size / "
                             f"heads, this model's are {head_dim} wide")
    for flag in arch.refused_flags:
        if getattr(config, flag, False):
            raise TokenswapError(f"cannot export: {kind} models with {flag} are not written yet")
    return arch


def export_gguf(bundle: ModelBundle, out: str | os.PathLike, *, type: GGUFType = GGUFType.f16,
                overwrite: bool = False, name: str | None = None) -> Path:
    """Write ``bundle`` (a Llama model and its fast BPE tokenizer) to the GGUF file ``out``,
    atomically (a temporary sibling renamed into place; an existing ``out`` is kept until the
    new file is complete). Returns ``out``."""
    import gguf
    import torch

    from tokenswap.io.save import atomic_file, check_output_file

    type = GGUFType(type)
    check_output_file(out, overwrite=overwrite)
    model = bundle.model
    config = model.config
    arch = architecture(config)
    model_arch = getattr(gguf.MODEL_ARCH, arch.gguf_arch)
    if bundle.output_bias() is not None:
        raise TokenswapError("cannot export: the model has an output bias, which tokenswap "
                             "export does not write")
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("rotary_emb.inv_freq")}
    tied = bundle.tied
    if tied:
        state.pop("lm_head.weight", None)
    n_rows = state["model.embed_tokens.weight"].shape[0]
    vocab = gguf_vocab(bundle.tokenizer, n_rows)

    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    names = gguf.get_tensor_name_map(model_arch, config.num_hidden_layers)
    tensors: list[tuple[str, np.ndarray, gguf.GGMLQuantizationType | None]] = []
    for key, value in state.items():
        gname = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if gname is None:
            raise TokenswapError(f"cannot export: tensor {key} has no llama.cpp name")
        w = value.detach().to(torch.float32).cpu().numpy()
        if arch.permute_qk and key.endswith(("q_proj.weight", "q_proj.bias")):
            w = permute_rope(w, n_head)
        elif arch.permute_qk and key.endswith(("k_proj.weight", "k_proj.bias")):
            w = permute_rope(w, n_kv)
        if not np.isfinite(w).all():
            raise TokenswapError(f"cannot export: tensor {key} holds NaN or infinite values")
        tensors.append((gname, *_encode(w, type)))

    with atomic_file(out, overwrite=overwrite) as tmp:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[model_arch])
        writer.add_name(name or Path(out).stem)
        writer.add_context_length(int(config.max_position_embeddings))
        writer.add_embedding_length(int(config.hidden_size))
        writer.add_block_count(int(config.num_hidden_layers))
        writer.add_feed_forward_length(int(config.intermediate_size))
        writer.add_head_count(int(n_head))
        writer.add_head_count_kv(int(n_kv))
        writer.add_rope_dimension_count(int(head_dim))
        if head_dim != config.hidden_size // n_head:
            writer.add_key_length(int(head_dim))
            writer.add_value_length(int(head_dim))
        writer.add_rope_freq_base(rope_theta(config))
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_vocab_size(n_rows)
        writer.add_file_type({GGUFType.f32: gguf.LlamaFileType.ALL_F32,
                              GGUFType.f16: gguf.LlamaFileType.MOSTLY_F16,
                              GGUFType.q8_0: gguf.LlamaFileType.MOSTLY_Q8_0}[type])
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(vocab.pre)
        writer.add_token_list(vocab.tokens)
        writer.add_token_types(vocab.types)
        writer.add_token_merges(vocab.merges)
        for role, tid in vocab.special.items():
            getattr(writer, f"add_{role}_token_id")(tid)
        writer.add_add_bos_token(vocab.add_bos)
        writer.add_add_eos_token(False)
        if vocab.chat_template:
            writer.add_chat_template(vocab.chat_template)
        for gname, data, raw_dtype in tensors:
            writer.add_tensor(gname, data, raw_dtype=raw_dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(out)


def _encode(w: np.ndarray, type: GGUFType):
    """``(data, raw_dtype)`` for ``GGUFWriter.add_tensor``: 1-D tensors stay float32."""
    import gguf

    if w.ndim == 1 or type is GGUFType.f32:
        return w.astype(np.float32), None
    if type is GGUFType.f16:
        return w.astype(np.float16), None
    Q8 = gguf.GGMLQuantizationType.Q8_0
    if w.shape[-1] % gguf.GGML_QUANT_SIZES[Q8][0]:
        return w.astype(np.float16), None  # rows that do not split into 32-blocks
    return gguf.quants.quantize(w, Q8), Q8


__all__ = ["ARCHITECTURES", "Architecture", "GGUFType", "GGUFVocab", "KNOWN_PRE_TOKENIZERS",
           "architecture", "export_gguf", "gguf_vocab", "llama_cpp_pre", "permute_rope"]
