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
from collections.abc import Callable, Sequence
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


ATTEMPTS = 3


def run(name: str, *args: str, threads: int = 1, timeout: float = 1800,
        finished: Callable[[Run], bool] | None = None) -> Run:
    """Run llama.cpp tool ``name`` with ``args``; its wall time and peak resident memory.

    The tools print results through llama.cpp's asynchronous logger, which loses what is still
    queued when the program exits (llama.cpp issue 22142: its last lines, now and then, with
    exit code 0). scripts/build_llamacpp.sh patches the logger to flush at exit; for tools
    built elsewhere (``$TOKENSWAP_LLAMACPP``), ``finished`` (does the output hold everything it
    should?) repeats a truncated run, up to :data:`ATTEMPTS` runs in all."""
    for _ in range(ATTEMPTS):
        r = _run_once(name, *args, threads=threads, timeout=timeout)
        if finished is None or finished(r):
            return r
    raise RuntimeError(f"{name}'s output was cut short in {ATTEMPTS} runs (llama.cpp's "
                       "logger loses its last lines at exit)")


def _run_once(name: str, *args: str, threads: int, timeout: float) -> Run:
    import psutil

    cmd = [str(tool(name)), *args]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    # the tools print the bytes tokens decode to, which need not be UTF-8 (a byte-level BPE's
    # byte tokens): undecodable bytes are kept as surrogates, so ``.encode("utf-8",
    # "surrogateescape")`` gives the exact bytes back
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="surrogateescape") as out, \
            tempfile.TemporaryFile("w+", encoding="utf-8", errors="surrogateescape") as err:
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
        tail = " | ".join((stderr.strip() or stdout.strip()).splitlines()[-3:])
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
    token): the continuation's text (bytes that are not UTF-8 as surrogates: see :func:`run`),
    and the run. llama-completion prints the text, then
    ``" [end of text]\n"`` if an end-of-generation token stopped it, then ``"\n\n"``."""
    r = run("llama-completion", "-m", str(gguf), "-p", prompt, "-n", str(n), "--temp", "0",
            "--top-k", "1", "--no-display-prompt", "-no-cnv", "--no-escape", "-t",
            str(threads), "-c", "2048", "--seed", "0", threads=threads,
            finished=lambda r: r.stdout.endswith("\n\n"))
    return r.stdout[:-2].removesuffix(" [end of text]\n"), r


def perplexity(gguf: str | os.PathLike, text: str, *, ctx: int, stride: int,
               chunks: int, threads: int = 1) -> tuple[float, int, Run]:
    """llama-perplexity's strided mode on ``text``. llama.cpp widens the context to ``ctx +
    stride / 2`` and rounds it up (to a multiple of 256 in this version): windows of that many
    tokens, ``window``, start at ``0, stride, ...``; window ``i`` scores its last ``stride``
    tokens, ``[i * stride + window - stride, i * stride + window)``. Returns the perplexity (e **
    mean nats) over the ``chunks`` windows, ``window`` (read from llama.cpp's log) and the run;
    one line if the text has fewer than ``chunks`` windows."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        r = run("llama-perplexity", "-m", str(gguf), "-f", f.name, "-c", str(ctx),
                "-b", str(ctx), "--ppl-stride", str(stride), "--chunks", str(chunks),
                "-t", str(threads), threads=threads,
                finished=lambda r: bool(_ppl_chunks(r)) and
                int(_ppl_chunks(r)[-1][0]) == _ppl_plan(r)[0])
    planned, window = _ppl_plan(r)
    if planned != chunks:
        raise TokenswapError(f"the text holds {planned} windows of {window} tokens every "
                             f"{stride}, not {chunks}: give more text or fewer chunks")
    return float(_ppl_chunks(r)[-1][1]), window, r


def _ppl_plan(r: Run) -> tuple[int, int]:
    """(chunks, window) llama-perplexity announces: ``computing over 8 chunks, n_ctx=256``."""
    found = re.search(r"computing over (\d+) chunks, n_ctx=(\d+)", r.stdout + r.stderr)
    return (int(found[1]), int(found[2])) if found else (-1, -1)


def _ppl_chunks(r: Run) -> list[tuple[str, str]]:
    """``(chunk, running perplexity)`` as llama-perplexity prints them: ``[1]8.1234,[2]...``."""
    return re.findall(r"\[(\d+)\]([0-9.]+),", r.stdout + r.stderr)


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
            "--output-format", "jsonl", threads=threads,
            finished=lambda r: sorted(_batched_rows(r)) == sorted(set(sequences)))
    return {b: {"tg": float(row["speed_tg"]), "pp": float(row["speed_pp"]),
                "peak_rss_mb": r.peak_rss_mb} for b, row in _batched_rows(r).items()}


def _batched_rows(r: Run) -> dict[int, dict]:
    """llama-batched-bench's jsonl result rows by sequence count."""
    rows = [json.loads(x) for x in (r.stdout + "\n" + r.stderr).splitlines()
            if x.startswith("{") and '"speed_tg"' in x]
    return {int(row["pl"]): row for row in rows}


__all__ = ["TOOLS", "Run", "batched_generation", "bench", "bin_dir", "complete", "perplexity",
           "run", "tokenize", "tool"]
