"""Peer tools (other projects' tokenizer-transfer code), run in their own virtualenv.

The peers are never tokenswap dependencies: they live in ``benchmarks/.peers-venv``, created on
first use by :func:`ensure_venv`, and run as subprocesses by :func:`run_peer`, which enforces a
wall-clock budget and samples the peak resident memory of the whole process tree.

One module per peer (:mod:`peers.mergekit_tokensurgeon`, :mod:`peers.deepfocus`) says how to
call it and how to read what it wrote. Left out: anything about scoring; the orchestration in
``benchmarks/peers.py`` scores every produced model with tokenswap's ``bits_per_byte``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent.parent
VENV = BENCH / ".peers-venv"
CACHE = BENCH / ".cache"
TORCH_PIN = "torch==2.13.0"  # CPU build on local disk; a bare `torch` pulls a multi-GB CUDA build
PEER_PACKAGES = ["mergekit==0.1.5", "deepfocus==1.0.1"]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def venv_bin(name: str) -> Path:
    return VENV / "bin" / name


@dataclass
class InstallReport:
    created: bool
    seconds: float
    ok: bool
    log: str  # path of the pip log
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def ensure_venv(log_dir: Path = CACHE) -> InstallReport:
    """Create ``benchmarks/.peers-venv`` and install the peers once; later calls only check.

    torch is installed first, pinned, and every later resolution is constrained to the same
    release with a pip ``-c`` file, so no peer can swap in a CUDA build.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "peers-venv-install.log"
    marker = VENV / ".tokenswap-peers-installed"
    if marker.is_file() and venv_python().is_file():
        return InstallReport(created=False, seconds=0.0, ok=True, log=str(log))
    constraints = log_dir / "peers-constraints.txt"
    constraints.write_text(TORCH_PIN + "\n")
    start = time.perf_counter()
    steps = []
    if not venv_python().is_file():
        steps.append([sys.executable, "-m", "venv", str(VENV)])
    pip = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check"]
    steps.append(pip + [TORCH_PIN])
    steps.append(pip + ["-c", str(constraints), *PEER_PACKAGES])
    problems = []
    with log.open("a") as fh:
        for cmd in steps:
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
            if rc != 0:
                problems.append(f"`{' '.join(cmd[-3:])}` exited with {rc} (see {log})")
                break
    ok = not problems
    if ok:
        marker.write_text(time.strftime("%Y-%m-%d %H:%M:%S") + "\n")
    return InstallReport(created=True, seconds=time.perf_counter() - start, ok=ok, log=str(log),
                         problems=problems)


@dataclass
class PeerRun:
    """What one peer subprocess did: exit code, wall time, peak RSS of its process tree."""

    command: list[str]
    returncode: int | None
    seconds: float
    peak_mb: float
    timed_out: bool
    log: str
    tail: list[str]  # last lines of combined stdout/stderr

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def error_line(self) -> str:
        """The most telling line of the log: the last exception-looking line, else the last."""
        for line in reversed(self.tail):
            if re.search(r"(Error|Exception|error:|Killed|Traceback)", line):
                return line.strip()
        return self.tail[-1].strip() if self.tail else ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill_tree(proc: psutil.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the peer runs in its own session
    except (ProcessLookupError, PermissionError):
        pass


def run_peer(command: list[str], *, timeout: float, log: Path, env: dict | None = None,
             threads: int | None = None) -> PeerRun:
    """Run ``command`` with a wall-clock budget; sample the tree's RSS every 0.2 s.

    The child gets its own session so that a timeout kills it and every process it started
    (and nothing else). stdout and stderr go to ``log``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PYTHONPATH", None)  # keep tokenswap's src/ out of the peer venv
    full_env["PYTHONUNBUFFERED"] = "1"
    if threads:
        full_env.setdefault("OMP_NUM_THREADS", str(threads))
    start = time.perf_counter()
    peak, timed_out = 0, False
    with log.open("w") as fh:
        fh.write(f"$ {' '.join(command)}\n")
        fh.flush()
        popen = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=full_env,
                                 start_new_session=True)
        proc = psutil.Process(popen.pid)
        while popen.poll() is None:
            peak = max(peak, _tree_rss(proc))
            if time.perf_counter() - start > timeout:
                timed_out = True
                _kill_tree(proc)
                popen.wait()
                break
            time.sleep(0.2)
    seconds = time.perf_counter() - start
    text = log.read_text(errors="replace")
    # tqdm rewrites its line with \r: keep each bar's latest state as its own line
    lines = [seg for line in text.splitlines() for seg in line.split("\r")[-1:] if seg.strip()]
    return PeerRun(command=command, returncode=popen.returncode, seconds=seconds,
                   peak_mb=peak / 2**20, timed_out=timed_out, log=str(log), tail=lines[-40:])


_TQDM = re.compile(r"(?P<done>\d+)/(?P<total>\d+) \[(?P<elapsed>[\d:]+)<(?P<left>[\d:?]+)")


def _clock(text: str) -> float | None:
    if "?" in text:
        return None
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def bar_label(text: str) -> str:
    """``'Approximating tokens:   1%|▏   |'`` -> ``'Approximating tokens'``."""
    return re.sub(r"[:\s]*\d+%\|.*$", "", text).strip()[:80]


def projected_seconds(log: Path, wall: float) -> dict | None:
    """Projection for a killed run from the last tqdm bar in its log (``n/N [elapsed<left``).

    The bar that was running when the peer was killed is the last one in the log; its
    remaining-time estimate plus the wall time already spent is the projected total (earlier
    bars finished inside ``wall``; later stages after the bar are not counted).
    """
    text = log.read_text(errors="replace") if log.is_file() else ""
    matches = list(_TQDM.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    done, total = int(last["done"]), int(last["total"])
    elapsed, left = _clock(last["elapsed"]), _clock(last["left"])
    if left is None and elapsed is not None and done > 0:
        left = elapsed / done * (total - done)
    if left is None:
        return None
    line_start = text.rfind("\n", 0, last.start()) + 1
    label = bar_label(text[line_start:last.start()].split("\r")[-1])
    return {"bar": label, "done": done, "total": total, "bar_elapsed_s": elapsed,
            "bar_left_s": left, "projected_total_s": wall + left}
