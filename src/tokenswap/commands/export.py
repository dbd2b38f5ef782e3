"""``tokenswap export``: a model directory (transferred or tuned) as one GGUF file for llama.cpp.

The writer is :func:`tokenswap.io.gguf_export.export_gguf`; here the model is loaded, the output
checked before the (slow) load, and the result summarised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tokenswap.config import option
from tokenswap.io.gguf_export import GGUFType


@dataclass
class Config:
    out: Path | None = option(None, "Output .gguf file.", short="-o", required=True)
    model: str = option("default", "Model to export: HF dir (e.g. from `tokenswap transfer`), "
                                   ".gguf file or 'default'; in Python also a loaded "
                                   "ModelBundle.", short="-m")
    type: GGUFType = option(GGUFType.f16, "Type of the weight matrices (norms stay f32).")
    overwrite: bool = option(False, "Replace an existing --out.")


@dataclass
class ExportResult:
    out: Path
    type: str
    bytes: int
    tensors: int
    vocab_size: int
    pre_tokenizer: str
    seconds: float


def run(cfg: Config) -> ExportResult:
    import gguf

    from tokenswap.errors import TokenswapError
    from tokenswap.io.gguf_export import export_gguf
    from tokenswap.io.models import as_bundle
    from tokenswap.io.save import check_output_file

    if cfg.out is None:
        raise TokenswapError("--out is required")
    if cfg.out.suffix != ".gguf":
        raise TokenswapError(f"--out {cfg.out}: give a file name ending in .gguf")
    check_output_file(cfg.out, overwrite=cfg.overwrite)
    start = time.perf_counter()
    bundle = as_bundle(cfg.model)
    out = export_gguf(bundle, cfg.out, type=cfg.type, overwrite=cfg.overwrite)
    reader = gguf.GGUFReader(out)
    pre = reader.fields["tokenizer.ggml.pre"].contents()
    n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    return ExportResult(out=out, type=GGUFType(cfg.type).value, bytes=out.stat().st_size,
                        tensors=len(reader.tensors), vocab_size=n_vocab, pre_tokenizer=pre,
                        seconds=time.perf_counter() - start)


def show(result: ExportResult, cfg: Config, console) -> None:
    console.print(f"wrote {result.out} ({result.type}, {result.bytes / 2**20:.1f} MiB, "
                  f"{result.tensors} tensors, {result.vocab_size:,} tokens, pre-tokenizer "
                  f"{result.pre_tokenizer!r}) in {result.seconds:.1f} s")
