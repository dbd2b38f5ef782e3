"""Run llama.cpp's own tools on an exported GGUF: the checks and benchmarks of ``tokenswap
export`` (ids, greedy text, perplexity, speed) go through real llama.cpp binaries, never a
reimplementation.

The binaries come from ``scripts/build_llamacpp.sh`` (llama.cpp as vendored by PyPI's
llama-cpp-python sdist; ``scripts/install.sh`` runs it), found in ``$TOKENSWAP_LLAMACPP/build/bin``
(default ``~/.cache/tokenswap/llama.cpp``). Each call is one subprocess; its peak resident
memory is sampled (:class:`Run`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenswap.errors import TokenswapError

TOOLS = ("llama-tokenize", "llama-perplexity", "llama-completion", "llama-bench",
         "llama-batched-bench")


def bin_dir() -> Path:
    root = Path(os.environ.get("TOKENSWAP_LLAMACPP",
                               Path.home() / ".cache" / "tokenswap" / "llama.cpp"))
    return root / "build" / "bin"


def tool(name: str) -> Path:
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        raise TokenswapError(f"llama.cpp's {name} is not built ({path}); run "
                             "`bash scripts/build_llamacpp.sh`")
    return path


@dataclass
class Run:
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float


def run(name: str, *args: str, threads: int = 1, timeout: float = 1800) -> Run:
    """Run llama.cpp tool ``name`` with ``args``; its wall time and peak resident memory."""
    import psutil

    cmd = [str(tool(name)), *args]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        peak = [0]

        def sample() -> None:
            try:
                p = psutil.Process(proc.pid)
                while proc.poll() is None:
                    peak[0] = max(peak[0], p.memory_info().rss)
                    time.sleep(0.02)
            except psutil.Error:
                pass

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            code = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        seconds = time.perf_counter() - start
        sampler.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{name} exited with {code}: {tail}")
    return Run(stdout=stdout, stderr=stderr, seconds=seconds, peak_rss_mb=peak[0] / 2**20)


def tokenize(gguf: str | os.PathLike, text: str) -> list[int]:
    """llama.cpp's token ids for ``text`` (no bos added, special-token text not parsed)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        r = run("llama-tokenize", "-m", str(gguf), "-f", f.name, "--ids", "--no-bos",
                "--no-parse-special", "--log-disable")
    return json.loads(r.stdout.strip().splitlines()[-1])


def complete(gguf: str | os.PathLike, prompt: str, n: int, *, threads: int = 1
             ) -> tuple[str, Run]:
    """Greedy continuation of ``prompt`` by ``n`` tokens (fewer at an end-of-generation
    token): the continuation's text, and the run. llama-completion prints the text, then
    ``" [end of text]\n"`` if an end-of-generation token stopped it, then ``"\n\n"``."""
    r = run("llama-completion", "-m", str(gguf), "-p", prompt, "-n", str(n), "--temp", "0",
            "--top-k", "1", "--no-display-prompt", "-no-cnv", "--no-escape", "-t",
            str(threads), "-c", "2048", "--seed", "0", threads=threads)
    if not r.stdout.endswith("\n\n"):
        raise RuntimeError("llama-completion's output does not end as expected")
    return r.stdout[:-2].removesuffix(" [end of text]\n"), r


def perplexity(gguf: str | os.PathLike, text: str, *, ctx: int, stride: int,
               chunks: int, threads: int = 1) -> tuple[float, Run]:
    """llama-perplexity's strided mode on ``text``: windows of ``ctx`` tokens at ``0, stride,
    ...``; window ``i`` scores tokens ``[i * stride + ctx - stride, i * stride + ctx)``. Returns
    the perplexity (e ** mean nats) over the ``chunks`` windows."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        r = run("llama-perplexity", "-m", str(gguf), "-f", f.name, "-c", str(ctx),
                "-b", str(ctx), "--ppl-stride", str(stride), "--chunks", str(chunks),
                "-t", str(threads), threads=threads)
    found = re.findall(r"\[(\d+)\]([0-9.]+),", r.stdout + r.stderr)
    if not found or int(found[-1][0]) != chunks:
        raise RuntimeError(f"llama-perplexity printed no result for {chunks} chunks")
    return float(found[-1][1]), r


def bench(gguf: str | os.PathLike, *, prompt: int, generate: int, threads: int = 1,
          repetitions: int = 3) -> dict[str, float]:
    """llama-bench's tokens per second: ``pp`` (a prompt of ``prompt`` tokens, one batch) and
    ``tg`` (``generate`` tokens, batch 1), means over ``repetitions``."""
    r = run("llama-bench", "-m", str(gguf), "-p", str(prompt), "-n", str(generate), "-t",
            str(threads), "-r", str(repetitions), "-o", "json", threads=threads)
    rows = json.loads(r.stdout)
    out = {}
    for row in rows:
        kind = "pp" if row["n_prompt"] else "tg"
        out[kind] = float(row["avg_ts"])
    out["peak_rss_mb"] = r.peak_rss_mb
    return out


def batched_generation(gguf: str | os.PathLike, *, prompt: int, generate: int,
                       sequences: Sequence[int], threads: int = 1) -> dict[int, dict[str, float]]:
    """llama-batched-bench: for each count ``b`` in ``sequences``, ``b`` sequences with a prompt
    of ``prompt`` tokens each, then ``generate`` tokens per sequence decoded together (one
    token of every sequence per step). Per ``b``: ``tg`` tokens/s of the generation phase over
    all sequences, ``pp`` tokens/s of the prompts, and the peak resident memory of the run."""
    need = max(sequences) * (prompt + generate)
    r = run("llama-batched-bench", "-m", str(gguf), "-c", str(need), "-b", "2048", "-ub", "512",
            "-npp", str(prompt), "-ntg", str(generate),
            "-npl", ",".join(str(b) for b in sequences), "-t", str(threads),
            "--output-format", "jsonl", threads=threads)
    out = {}
    for line in (r.stdout + "\n" + r.stderr).splitlines():
        if line.startswith("{") and '"speed_tg"' in line:
            row = json.loads(line)
            out[int(row["pl"])] = {"tg": float(row["speed_tg"]), "pp": float(row["speed_pp"]),
                                   "peak_rss_mb": r.peak_rss_mb}
    if sorted(out) != sorted(set(sequences)):
        raise RuntimeError(f"llama-batched-bench printed results for {sorted(out)}, "
                           f"not {sorted(set(sequences))}")
    return out


__all__ = ["TOOLS", "Run", "batched_generation", "bench", "bin_dir", "complete", "perplexity",
           "run", "tokenize", "tool"]
