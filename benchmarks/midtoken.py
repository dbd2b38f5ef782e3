"""Benchmark (issue 24): prompts that end mid-token - byte-level completion against token-level
decoding, token healing and genlm-bytes, on the same prompts.

Model: the packaged SmolLM2-135M-Instruct, fp32, one torch thread. Domains:

* ``code``: Python from Debian packages the model has seen far less often than the standard
  library: ``python3-lazr.restfulclient``, ``python3-lazr.uri``, ``python3-wadllib``,
  ``python3-software-properties``, ``python3-cupshelpers`` (their sources under
  ``/usr/lib/python3/dist-packages``). Task: complete the line (greedy; stop at the newline,
  at most ``--line-bytes`` bytes);
* ``de``: German prose, the held-out man pages of ``benchmarks/common.py`` rendered by groff.
  Task: the next ``--prose-bytes`` bytes (greedy).

Prompts. A document is cut at a seeded random byte inside a line (not at its end, not inside a
UTF-8 character, at least 16 bytes into the document); the prompt is up to ``--context`` bytes
before the cut, its start moved forward to the next line (code) or word (prose). Each cut is
classed by the canonical SmolLM2 tokenization of its whole document: ``mid-token`` (the cut
falls strictly inside a token), ``space`` (the byte before the cut is a space: with this
tokenizer the space starts the next word's token, so these are mid-token cuts of a special
kind) or ``boundary`` (a token boundary). The same number of prompts per class; prompts are
processed round-robin over domains and classes, so a run stopped by its budget stays balanced.

Rows (same prompts):

* ``token``: the prompt tokenized as is after the document-start token, greedy decoding
  (one forward pass per token on a key/value cache, the loop ``generate`` runs);
* ``healing (transformers)``: ``model.generate(..., token_healing=True, tokenizer=tok)``;
  exceptions are counted as misses (``errors``), and so is a result that does not continue the
  prompt (``prompt altered``): transformers strips the prompt at both ends, re-tokenizes it
  without the document-start token, and regenerates the last token with a soft bias (+10 on
  the logits of its extensions), so the output continues the stripped prompt; it counts as
  a continuation only if it starts with the stripped prompt followed by the stripped trailing
  whitespace;
* ``healing (back-off)``: the standard one-token back-off as a reference: the prompt's
  canonical tokens without the last one, the first generated token constrained to tokens whose
  bytes start with the removed token's bytes, then greedy;
* ``bytes``: ``tokenswap.bytes`` greedy generation (``ByteLM.condition``: all but the prompt's
  last two words as canonical tokens, a token tree over the rest; ``--prune``, ``--max-nodes``
  as ``tokenswap bytes generate``);
* ``genlm-bytes``: ``genlm.bytes.ByteBeamState`` (beam ``--genlm-beam``, adaptive healing on,
  its defaults otherwise) over the same SmolLM2 (its HF copy in ``~/.cache/tokenswap``), run in
  its own virtualenv ``benchmarks/.genlm-venv`` created on the first run, in a subprocess
  (``benchmarks/peers/_genlm_driver.py``) on the first ``--genlm-prompts`` prompts per domain.

Metrics: ``exact``: the completion equals the document's; ``edit sim``: 1 - Levenshtein
distance / the longer length, on bytes; ``bits/byte``: -log2 P(true continuation | cut prompt)
per byte of the continuation: for ``bytes`` from ``ByteLM.prefix_logprob`` (exact over every
tokenization of the tail and the continuation, up to the pruning bound), for ``token`` the
probability that the model fed the naive prompt tokens continues with text starting with the
true bytes (a ``ByteLM`` whose context is those tokens, same pruning), for ``genlm-bytes`` its
beam's next-byte probabilities; the healing rows have none (``-``); ``ms/byte``: wall and CPU
time of the row's whole call (prompt included) over the bytes it generated (sums over prompts).

Run::

    apt-get install python3-lazr.restfulclient python3-lazr.uri python3-wadllib \\
        python3-software-properties python3-cupshelpers manpages-de
    python benchmarks/midtoken.py [--prompts 300] [--cpu-minutes 30] [--genlm-prompts 30]

The committed results ran the two domains as two processes on a shared machine, then merged::

    python benchmarks/midtoken.py --domains code --prompts 300 --cpu-minutes 14 \
        --wall-minutes 68 --genlm-prompts 10 --genlm-cpu-minutes 6 --genlm-wall-minutes 70
    (the same with --domains de)
    python benchmarks/midtoken.py --domains code de --report-only

Writes benchmarks/results/midtoken.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import random
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import (
    CACHE,
    RESULTS,
    corpus_split,
    cut_class,
    machine,
    markdown_table,
    token_ends,
    write_results,
)

from tokenswap.bytes.exact import ByteLM
from tokenswap.bytes.generate import generate
from tokenswap.io.models import load_model
from tokenswap.scoring.bpb import document_start_id
from tokenswap.vocab.bytes import ByteVocab

BENCH = Path(__file__).resolve().parent
CLASSES = ("mid-token", "space", "boundary")
ROWS = ("token", "healing (transformers)", "healing (back-off)", "bytes", "genlm-bytes")
CODE = [f"/usr/lib/python3/dist-packages/{d}"
        for d in ("lazr", "wadllib", "softwareproperties", "cupshelpers")]
LOG2 = math.log(2.0)
NEVER = 10**12
GENLM_VENV = BENCH / ".genlm-venv"
GENLM_PACKAGES = ["genlm-bytes==0.2.0"]
TORCH_PIN = "torch==2.13.0"


# ------------------------------------------------------------------ prompts

def documents(domain: str, heldout_bytes: int) -> list[bytes]:
    if domain == "code":
        from tokenswap.io.corpus import read_corpus

        missing = [d for d in CODE if not Path(d).is_dir()]
        if missing:
            raise SystemExit(f"missing {missing}: apt-get install python3-lazr.restfulclient "
                             "python3-lazr.uri python3-wadllib python3-software-properties "
                             "python3-cupshelpers")
        docs = [d.text for d in read_corpus([f"{d}/**/*.py" for d in CODE])]
    else:
        _, docs = corpus_split(domain, 1_000_000, heldout_bytes)
    return [t.encode() for t in docs if len(t.encode()) > 256]


def sample_prompts(domain: str, docs: list[bytes], tokenizer, vocab: ByteVocab, per_class: int,
                   args, rng: random.Random) -> list[dict]:
    """``per_class`` prompts of each class (see the module docstring)."""
    code = domain == "code"
    bounds: dict[int, set[int]] = {}
    buckets: dict[str, list[dict]] = {c: [] for c in CLASSES}
    seen = set()
    for _ in range(500_000):
        if all(len(b) >= per_class for b in buckets.values()):
            break
        d = rng.choices(range(len(docs)), weights=[len(x) for x in docs])[0]
        data = docs[d]
        cut = rng.randrange(16, len(data) - 1)
        if (d, cut) in seen or 0x80 <= data[cut] < 0xC0 or data[cut] in b"\r\n":
            continue
        line_start = data.rfind(b"\n", 0, cut) + 1
        if cut == line_start or not data[line_start:cut].strip():
            continue  # at a line's start or inside its indentation: nothing to complete from
        if code:
            end = data.find(b"\n", cut)
            end = len(data) if end < 0 else end
            target = data[cut:min(end, cut + args.line_bytes)]
        else:
            target = data[cut:cut + args.prose_bytes]
            if len(target) < args.prose_bytes:
                continue
        start = max(0, cut - args.context)
        if start > 0:
            nxt = data.find(b"\n" if code else b" ", start)
            start = nxt + 1 if 0 <= nxt < cut else start
        while start < cut and (0x80 <= data[start] < 0xC0 or data[start] in b" \t\r\n"
                               and not code):
            start += 1
        if cut - start < 32:
            continue
        if d not in bounds:
            bounds[d] = token_ends(tokenizer, vocab, data)
        kind = cut_class(data, cut, bounds[d])
        if len(buckets[kind]) >= per_class:
            continue
        seen.add((d, cut))
        buckets[kind].append({"domain": domain, "doc": d, "cut": cut, "class": kind,
                              "prompt": data[start:cut], "target": target,
                              "max_bytes": args.line_bytes if code else args.prose_bytes,
                              "stop": "\n" if code else None})
    return [p for group in zip(*buckets.values(), strict=False) for p in group]


# ------------------------------------------------------------------ metrics

def clip(out: bytes, p: dict) -> bytes:
    """The completion as the task reads it: up to the newline (code), at most max_bytes."""
    if p["stop"]:
        cut = out.find(p["stop"].encode())
        out = out if cut < 0 else out[:cut]
    return out[:p["max_bytes"]]


def edit_similarity(a: bytes, b: bytes) -> float:
    """1 - Levenshtein(a, b) / max(len); 1.0 for two empty strings."""
    if not a and not b:
        return 1.0
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


class Clock:
    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


# ------------------------------------------------------------------ token-level rows

class TokenRows:
    """Greedy token decoding, transformers' token healing and the one-token back-off."""

    def __init__(self, model, tokenizer) -> None:
        from tokenswap.bytes.cover import CoverIndex

        self.model, self.tok = model, tokenizer
        self.vocab = ByteVocab.from_tokenizer(tokenizer)
        self.index = CoverIndex(self.vocab.token_bytes, model.get_output_embeddings().weight.shape[0])
        self.bos = document_start_id(tokenizer)

    def canonical_head(self, prompt: bytes) -> tuple[list[int], bytes]:
        """The tokens and bytes ``ByteLM.condition`` reads as context (all but the last two
        words, as the tokenizer splits them)."""
        if not hasattr(self, "_heads"):
            self._heads = ByteLM(self.model, self.tok)
        return self._heads._canonical_head(prompt, 2)

    def ids(self, prompt: bytes) -> list[int]:
        return self.tok(prompt.decode(), add_special_tokens=False).input_ids

    def greedy(self, ids: list[int], p: dict, first: torch.Tensor | None = None) -> bytes:
        """Greedy tokens after ``ids`` until the output holds the stop string or max_bytes;
        ``first``: the token ids the first step may choose from. Returns the emitted bytes."""
        from transformers import DynamicCache

        from tokenswap.kv_cache import cache_kwarg, returned_cache

        cache, out = DynamicCache(), bytearray()
        inputs = torch.tensor([ids])
        stop = p["stop"].encode() if p["stop"] else None
        for step in range(p["max_bytes"] + 8):
            res = self.model(input_ids=inputs, use_cache=True, **cache_kwarg(self.model, cache))
            cache, logits = returned_cache(res), res.logits[0, -1]
            if step == 0 and first is not None:
                token = int(first[torch.argmax(logits[first])])
            else:
                token = int(torch.argmax(logits))
            data = self.vocab.token_bytes[token] if token < len(self.vocab.token_bytes) else None
            if not data:  # end of text
                break
            out += data
            if len(out) >= p["max_bytes"] or (stop and stop in out):
                break
            inputs = torch.tensor([[token]])
        return bytes(out)

    def token(self, p: dict) -> bytes:
        return self.greedy([self.bos, *self.ids(p["prompt"])], p)

    def backoff(self, p: dict) -> bytes:
        ids = self.ids(p["prompt"])
        removed = self.vocab.token_bytes[ids[-1]] or b""
        lo, hi = self.index.prefix_range(removed)
        out = self.greedy([self.bos, *ids[:-1]], p, first=self.index.order[lo:hi])
        return out[len(removed):] if out.startswith(removed) else out

    def transformers(self, p: dict) -> bytes | None:
        """transformers' token healing; ``None`` when the result does not continue the prompt."""
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        vocab, prompt = self.vocab, p["prompt"]
        stripped = prompt.strip()
        trail = prompt[len(prompt.rstrip()):]

        class Enough(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                text = b"".join(vocab.token_bytes[t] or b"" for t in input_ids[0].tolist())
                tail = text[len(stripped) + len(trail):]
                done = len(tail) >= p["max_bytes"] or bool(p["stop"]) and p["stop"].encode() in tail
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool)

        ids = [self.bos, *self.ids(prompt)]
        inputs = torch.tensor([ids])
        config = GenerationConfig(token_healing=True, do_sample=False,
                                  max_new_tokens=p["max_bytes"] + 8,
                                  pad_token_id=self.tok.eos_token_id)
        seq = self.model.generate(inputs, attention_mask=torch.ones_like(inputs),
                                  generation_config=config, tokenizer=self.tok,
                                  stopping_criteria=StoppingCriteriaList([Enough()]))
        text = b"".join(vocab.token_bytes[t] or b"" for t in seq[0].tolist())
        # transformers strips the prompt at both ends before healing: the output continues the
        # stripped prompt; it counts as a continuation of the prompt only if it then repeats
        # the stripped trailing whitespace
        if not text.startswith(stripped) or not text[len(stripped):].startswith(trail):
            return None
        return text[len(stripped) + len(trail):]


# ------------------------------------------------------------------ the main process

def run_in_process(bundle, prompts: list[dict], args, budget_s: float, wall_s: float,
                   progress: Progress) -> float:
    """Fill each prompt's rows; stop starting prompts once ``budget_s`` CPU seconds (this
    sitting's and those ``progress`` recorded) or ``wall_s`` wall seconds of this sitting are
    used. Returns the CPU seconds of all sittings."""
    rows = TokenRows(bundle.model, bundle.tokenizer)
    lm = ByteLM(bundle.model, bundle.tokenizer, prune=args.prune, max_nodes=args.max_nodes,
                compact_at=NEVER)
    cond = ByteLM(bundle.model, bundle.tokenizer, prune=args.prune, max_nodes=args.max_nodes,
                  compact_at=NEVER)
    start, wall0 = time.process_time(), time.perf_counter()
    spent = progress.restore(prompts)
    done = 0
    for k, p in enumerate(prompts):
        if p["rows"]:
            continue
        if (spent + time.process_time() - start > budget_s
                or time.perf_counter() - wall0 > wall_s):
            print(f"budget reached after {k} prompts", flush=True)
            break
        res = p["rows"]
        target, n = p["target"], max(1, len(p["target"]))

        with Clock() as c:
            out = rows.token(p)
        cond.context = [rows.bos, *rows.ids(p["prompt"])]
        cond.reset()
        bits = -cond.prefix_logprob(target) / LOG2 if target else 0.0
        res["token"] = row(p, out, c, bits / n)

        try:
            with Clock() as c:
                out = rows.transformers(p)
            res["healing (transformers)"] = row(p, out, c, None)
        except Exception as err:  # noqa: BLE001 - counted, the benchmark goes on
            res["healing (transformers)"] = {"error": f"{type(err).__name__}: {err}"[:200],
                                             "exact": False, "edit_sim": 0.0}

        with Clock() as c:
            out = rows.backoff(p)
        res["healing (back-off)"] = row(p, out, c, None)

        with Clock() as c:
            lm.condition(p["prompt"])
            gen = generate(lm, p["prompt"], max_bytes=p["max_bytes"], stop=p["stop"])
        whole = p["prompt"] + target
        bits = -(lm.prefix_logprob(whole) - lm.prefix_logprob(p["prompt"])) / LOG2
        res["bytes"] = row(p, gen.output, c, bits / n)
        res["bytes"]["dropped"] = math.exp(d) if (d := lm.dropped_logmass(whole)) > -math.inf else 0.0
        done += 1
        progress.save(prompts, spent + time.process_time() - start)
        print(f"[{k + 1}/{len(prompts)} {p['domain']} {p['class']}] {target!r} | token "
              f"{res['token']['output']!r} | back-off {res['healing (back-off)']['output']!r} | "
              f"bytes {res['bytes']['output']!r} | {time.process_time() - start:.0f} s CPU",
              flush=True)
    return spent + time.process_time() - start


SAMPLING = ("prompts", "domains", "context", "line_bytes", "prose_bytes", "prune", "max_nodes",
            "heldout_bytes", "seed")


class Progress:
    """The in-process rows of finished prompts, rewritten (atomically) after every prompt, so a
    run that is stopped or killed resumes where it was: the same prompts (sampling is seeded),
    the finished ones not rerun, the CPU budget counting what earlier sittings spent. Kept
    beside the results (``results/midtoken-progress-DOMAINS.json``, committed), so a run too
    long for one sitting goes on from another machine. A file from a run with other sampling
    or row options is not used (``--fresh`` ignores any)."""

    def __init__(self, args) -> None:
        self.path = RESULTS / f"midtoken-progress-{'-'.join(args.domains)}.json"
        self.options = {k: getattr(args, k) for k in SAMPLING}
        self.fresh = args.fresh

    def restore(self, prompts: list[dict]) -> float:
        if self.fresh or not self.path.is_file():
            return 0.0
        saved = json.loads(self.path.read_text(), object_hook=_from_json)
        if saved["options"] != self.options:
            print(f"{self.path.name} is from other options; starting afresh", flush=True)
            return 0.0
        rows = {tuple(r["key"]): r["rows"] for r in saved["prompts"]}
        for p in prompts:
            p["rows"] = dict(rows.get(prompt_key(p), {}))
        print(f"resuming: {len(rows)} prompts done, {saved['cpu'] / 60:.1f} CPU min spent",
              flush=True)
        return saved["cpu"]

    def save(self, prompts: list[dict], cpu: float) -> None:
        done = [{"key": list(prompt_key(p)), "rows": p["rows"]} for p in prompts if p["rows"]]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"options": self.options, "cpu": cpu, "prompts": done},
                                  default=_to_json) + "\n")
        tmp.replace(self.path)


def _to_json(value):
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    raise TypeError(type(value).__name__)


def _from_json(obj: dict):
    return bytes.fromhex(obj["hex"]) if obj.keys() == {"hex"} else obj


def prompt_key(p: dict) -> tuple:
    return p["domain"], p["doc"], p["cut"]


def row(p: dict, out: bytes | None, clock: Clock | None, bits: float | None) -> dict:
    if out is None:
        return {"output": None, "prompt_altered": True, "exact": False, "edit_sim": 0.0,
                "bytes": 0, "wall": clock.wall, "cpu": clock.cpu, "bits_per_byte": None}
    out = clip(out, p)
    return {"output": out, "exact": out == p["target"],
            "edit_sim": edit_similarity(out, p["target"]), "bytes": len(out),
            "wall": clock.wall if clock else None, "cpu": clock.cpu if clock else None,
            "bits_per_byte": bits}


# ------------------------------------------------------------------ genlm-bytes

def ensure_genlm_venv() -> dict:
    """``benchmarks/.genlm-venv`` with torch (pinned, CPU) and genlm-bytes; created once (under
    a file lock: the two domains run as two processes and would install into it together)."""
    import fcntl

    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "genlm-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install_genlm_venv()


def _install_genlm_venv() -> dict:
    log = CACHE / "genlm-venv-install.log"
    marker = GENLM_VENV / ".tokenswap-installed"
    python = GENLM_VENV / "bin" / "python"
    if marker.is_file() and python.is_file():
        return {"created": False, "ok": True, "log": str(log)}
    CACHE.mkdir(parents=True, exist_ok=True)
    constraints = CACHE / "genlm-constraints.txt"
    constraints.write_text(TORCH_PIN + "\n")
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    steps = ([] if python.is_file() else [[sys.executable, "-m", "venv", str(GENLM_VENV)]]) + [
        pip + [TORCH_PIN], pip + ["-c", str(constraints), *GENLM_PACKAGES]]
    start = time.perf_counter()
    with log.open("a") as fh:
        for cmd in steps:
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            if subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT):
                return {"created": True, "ok": False, "log": str(log),
                        "problem": f"`{' '.join(cmd[-3:])}` failed (see {log})"}
    marker.write_text(time.strftime("%Y-%m-%d %H:%M:%S") + "\n")
    return {"created": True, "ok": True, "log": str(log), "seconds": time.perf_counter() - start}


def start_genlm(prompts: list[dict], model_dir: Path, heads: TokenRows, args) -> dict:
    """Start genlm-bytes on ``prompts`` in its own venv (a subprocess, while this process
    runs the other rows); :func:`finish_genlm` collects."""
    install = ensure_genlm_venv()
    if not install["ok"]:
        return {"install": install, "error": install["problem"]}
    work = CACHE / f"midtoken-genlm-{'-'.join(args.domains)}"
    work.mkdir(parents=True, exist_ok=True)
    inp, outp, log = work / "prompts.jsonl", work / "results.jsonl", work / "driver.log"
    lines = []
    for p in prompts:
        head_ids, head = heads.canonical_head(p["prompt"])
        lines.append(json.dumps({"prompt": p["prompt"].hex(), "target": p["target"].hex(),
                                 "head": head.hex(), "head_ids": head_ids,
                                 "max_bytes": p["max_bytes"], "stop": p["stop"]}) + "\n")
    inp.write_text("".join(lines))
    outp.unlink(missing_ok=True)
    cmd = [str(GENLM_VENV / "bin" / "python"), str(BENCH / "peers" / "_genlm_driver.py"),
           "--model", str(model_dir), "--prompts", str(inp), "--out", str(outp),
           "--beam", str(args.genlm_beam), "--cpu-seconds", str(args.genlm_cpu_minutes * 60)]
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    fh = log.open("w")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    return {"install": install, "proc": proc, "log": log, "out": outp, "prompts": prompts,
            "started": time.perf_counter()}


def finish_genlm(job: dict, wall_limit_s: float) -> dict:
    """Wait for the genlm-bytes subprocess (killed after ``wall_limit_s`` from its start) and
    fill ``p['rows']['genlm-bytes']`` of the prompts it finished."""
    if "proc" not in job:
        return job
    proc = job.pop("proc")
    try:
        proc.wait(timeout=max(1.0, wall_limit_s - (time.perf_counter() - job["started"])))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        job["killed_after_wall_s"] = wall_limit_s
    outp, log, prompts = job.pop("out"), job.pop("log"), job.pop("prompts")
    results = [json.loads(x) for x in outp.read_text().splitlines()] if outp.is_file() else []
    for p, r in zip(prompts, results, strict=False):
        if "error" in r:
            p["rows"]["genlm-bytes"] = {"error": r["error"], "exact": False, "edit_sim": 0.0}
            continue
        out = bytes.fromhex(r["output"])
        clock = Clock()
        clock.wall, clock.cpu = r["wall"], r["cpu"]
        n = max(1, len(p["target"]))
        p["rows"]["genlm-bytes"] = row(p, out, clock, r["bits"] / n if r["bits"] is not None
                                       else None)
    text = log.read_text(errors="replace").splitlines()
    job.update(returncode=proc.returncode, prompts_done=len(results),
               seconds=time.perf_counter() - job.pop("started"),
               log_tail=[x for x in text if not x.startswith(" ")][-5:],
               load=next((json.loads(x[6:]) for x in text if x.startswith("LOAD: ")), None))
    return job


# ------------------------------------------------------------------ summary

def summarise(prompts: list[dict]) -> list[dict]:
    out = []
    for domain in dict.fromkeys(p["domain"] for p in prompts):
        for kind in (*CLASSES, "all"):
            group = [p for p in prompts if p["domain"] == domain and kind in (p["class"], "all")]
            for name in ROWS:
                res = [p["rows"][name] for p in group if name in p.get("rows", {})]
                if not res:
                    continue
                ok = [r for r in res if "error" not in r]
                timed = [r for r in ok if r.get("wall") is not None]
                gen = sum(r["bytes"] for r in timed)
                bits = [r["bits_per_byte"] for r in ok if r.get("bits_per_byte") is not None]
                out.append({
                    "domain": domain, "class": kind, "row": name, "prompts": len(res),
                    "errors": len(res) - len(ok),
                    "prompt_altered": sum(bool(r.get("prompt_altered")) for r in ok),
                    "exact": sum(r["exact"] for r in res) / len(res),
                    "edit_sim": sum(r["edit_sim"] for r in res) / len(res),
                    "bits_per_byte": sum(bits) / len(bits) if bits else None,
                    "bytes_generated": gen,
                    "ms_per_byte_wall": 1000 * sum(r["wall"] for r in timed) / gen if gen else None,
                    "ms_per_byte_cpu": 1000 * sum(r["cpu"] for r in timed) / gen if gen else None})
    return out


def ratios(summary: list[dict]) -> list[dict]:
    """The issue's goals per domain: bytes vs healing on mid-token, vs token elsewhere."""
    by = {(s["domain"], s["class"], s["row"]): s for s in summary}
    out = []
    for domain in dict.fromkeys(s["domain"] for s in summary):
        b = lambda k, r="bytes", d=domain: by.get((d, k, r))  # noqa: E731
        mid, heal, tok = b("mid-token"), b("mid-token", "healing (back-off)"), b("mid-token", "token")
        hf = b("mid-token", "healing (transformers)")
        bound, bound_tok = b("boundary"), b("boundary", "token")
        every, every_tok = b("all"), b("all", "token")
        if not (mid and heal and bound and every):
            continue
        div = lambda x, y: x / y if y else None  # noqa: E731
        out.append({
            "domain": domain,
            "mid_exact_vs_backoff": div(mid["exact"], heal["exact"]),
            "mid_exact_vs_transformers": div(mid["exact"], hf["exact"]) if hf else None,
            "mid_exact_vs_token": div(mid["exact"], tok["exact"]),
            "boundary_exact_minus_token": bound["exact"] - bound_tok["exact"],
            "time_per_byte_vs_token_wall": div(every["ms_per_byte_wall"],
                                               every_tok["ms_per_byte_wall"]),
            "time_per_byte_vs_token_cpu": div(every["ms_per_byte_cpu"], every_tok["ms_per_byte_cpu"])})
    return out


def fmt(v, digits=3):
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(summary, goals, payload) -> str:
    head = ["domain", "class", "row", "prompts", "exact", "edit sim", "bits/byte",
            "ms/byte wall", "ms/byte CPU", "errors / prompt altered"]
    table = [[s["domain"], s["class"], s["row"], s["prompts"], fmt(s["exact"]),
              fmt(s["edit_sim"]), fmt(s["bits_per_byte"]), fmt(s["ms_per_byte_wall"], 1),
              fmt(s["ms_per_byte_cpu"], 1),
              f"{s['errors']} / {s['prompt_altered']}" if s["errors"] or s["prompt_altered"]
              else ""] for s in summary]
    goal_rows = [[g["domain"], fmt(g["mid_exact_vs_backoff"], 2),
                  fmt(g["mid_exact_vs_transformers"], 2), fmt(g["mid_exact_vs_token"], 2),
                  fmt(g["boundary_exact_minus_token"], 3),
                  fmt(g["time_per_byte_vs_token_wall"], 2), fmt(g["time_per_byte_vs_token_cpu"], 2)]
                 for g in goals]
    lines = ["## Prompts that end mid-token (SmolLM2-135M, greedy)", "",
             markdown_table(head, table), "",
             "## Goals (issue 24)", "",
             markdown_table(["domain", "mid-token exact: bytes / back-off healing (goal >= 1.18)",
                             "bytes / transformers healing", "bytes / token",
                             "boundary exact: bytes - token (goal >= 0)",
                             "time/byte: bytes / token, wall (goal <= 2)", "same, CPU"],
                            goal_rows), ""]
    if payload.get("genlm_subset"):
        lines += ["## Only the prompts genlm-bytes ran on (all classes)", "",
                  markdown_table(head[:9], [[s["domain"], s["class"], s["row"], s["prompts"],
                                             fmt(s["exact"]), fmt(s["edit_sim"]),
                                             fmt(s["bits_per_byte"]),
                                             fmt(s["ms_per_byte_wall"], 1),
                                             fmt(s["ms_per_byte_cpu"], 1)]
                                            for s in payload["genlm_subset"]]), ""]
    if payload.get("examples"):
        lines += ["## Examples", "", markdown_table(
            ["prompt", "its last tokens", "true", "token", "healing (back-off)", "bytes",
             "bits: token", "bits: bytes"],
            [[repr(e["prompt"]), " ".join(e["prompt_last_tokens"]), repr(e["target"]),
              repr(e["token"]), repr(e["healing (back-off)"]), repr(e["bytes"]),
              fmt(e["token_bits"], 2), fmt(e["bytes_bits"], 2)] for e in payload["examples"]]),
            ""]
    g = payload.get("genlm") or {}
    for name, job in ({"": g} if "install" in g else g).items():
        if job:
            lines.append(f"genlm-bytes {name}: {job.get('prompts_done', 0)} prompts"
                         + (f", error: {job['error']}" if job.get("error") else "")
                         + (f", killed after {job['killed_after_wall_s'] / 60:.0f} min wall"
                            if job.get("killed_after_wall_s") else "")
                         + (f", load {job['load']}" if job.get("load") else "") + ".")
    lines.append(f"Run: `{payload['command']}`, {payload['cpu_minutes']:.1f} CPU min in this "
                 f"process (+ genlm-bytes' subprocess), {payload['wall_minutes']:.1f} min wall, "
                 f"torch threads {payload['machine']['threads']}.")
    return "\n".join(lines)


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(dict.fromkeys(s["domain"] for s in summary))
    fig, axes = plt.subplots(1, len(domains), figsize=(6 * len(domains), 4), squeeze=False)
    for ax, domain in zip(axes[0], domains, strict=True):
        for i, name in enumerate(ROWS):
            vals = [next((s["exact"] for s in summary if s["domain"] == domain
                          and s["class"] == c and s["row"] == name), 0.0) for c in CLASSES]
            ax.bar([x + i * 0.16 for x in range(len(CLASSES))], vals, 0.16, label=name)
        ax.set_xticks([x + 0.32 for x in range(len(CLASSES))], CLASSES)
        ax.set_title(f"{domain}: exact match by where the prompt ends")
        ax.set_ylabel("exact match")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=300, help="prompts per domain")
    parser.add_argument("--domains", nargs="+", default=["code", "de"])
    parser.add_argument("--context", type=int, default=256, help="max prompt bytes")
    parser.add_argument("--line-bytes", type=int, default=48, help="code: at most this much")
    parser.add_argument("--prose-bytes", type=int, default=32)
    parser.add_argument("--prune", type=float, default=1e-3)
    parser.add_argument("--max-nodes", type=int, default=64)
    parser.add_argument("--cpu-minutes", type=float, default=30,
                        help="CPU budget of the in-process rows; prompts left are not run")
    parser.add_argument("--wall-minutes", type=float, default=1e9,
                        help="wall-clock budget of the in-process rows (a shared machine)")
    parser.add_argument("--genlm-prompts", type=int, default=30,
                        help="prompts per domain for genlm-bytes (0: skip)")
    parser.add_argument("--genlm-beam", type=int, default=5)
    parser.add_argument("--genlm-cpu-minutes", type=float, default=10,
                        help="genlm-bytes starts no prompt after this much CPU time")
    parser.add_argument("--genlm-wall-minutes", type=float, default=90,
                        help="genlm-bytes is killed after this long")
    parser.add_argument("--heldout-bytes", type=int, default=400_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the progress an earlier, stopped run of the same options "
                             "saved (by default it resumes)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the results from the last run's raw file (.cache)")
    args = parser.parse_args()
    if args.report_only:
        payload, done = merge([pickle.loads((CACHE / f"midtoken-raw-{d}.pkl").read_bytes())
                               for d in args.domains])
        if "examples" not in payload:
            torch.set_num_threads(args.threads)
            torch.set_grad_enabled(False)
            payload["examples"] = examples(load_model("default"), args)
        return report(payload, done)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    wall0 = time.perf_counter()

    bundle = load_model("default")
    vocab = ByteVocab.from_tokenizer(bundle.tokenizer)
    per_class = math.ceil(args.prompts / len(CLASSES))
    rng = random.Random(args.seed)
    by_domain = {d: sample_prompts(d, documents(d, args.heldout_bytes), bundle.tokenizer, vocab,
                                   per_class, args, rng) for d in args.domains}
    prompts = [p for group in zip(*by_domain.values(), strict=False) for p in group]
    for p in prompts:
        p["rows"] = {}
    job = None
    if args.genlm_prompts:
        picked = [p for d in args.domains
                  for p in [q for q in prompts if q["domain"] == d][:args.genlm_prompts]]
        picked = [p for group in zip(*[[q for q in picked if q["domain"] == d]
                                       for d in args.domains], strict=False) for p in group]
        model_dir = next((Path.home() / ".cache/tokenswap/gguf").glob("SmolLM2-135M-Instruct*"))
        job = start_genlm(picked, model_dir, TokenRows(bundle.model, bundle.tokenizer), args)
    cpu = run_in_process(bundle, prompts, args, args.cpu_minutes * 60, args.wall_minutes * 60,
                         Progress(args))
    payload = {"machine": machine(), "args": vars(args), "model": bundle.spec,
               "command": " ".join(["python benchmarks/midtoken.py", *sys.argv[1:]]),
               "prompts_sampled": len(prompts)}
    if job is not None:
        payload["genlm"] = finish_genlm(job, args.genlm_wall_minutes * 60)
    done = [p for p in prompts if p["rows"]]
    payload["prompts_run"] = len(done)
    payload["cpu_minutes"] = cpu / 60
    payload["wall_minutes"] = (time.perf_counter() - wall0) / 60
    payload["examples"] = examples(bundle, args)
    (CACHE / f"midtoken-raw-{'-'.join(args.domains)}.pkl").write_bytes(
        pickle.dumps((payload, done)))
    return report(payload, done)


EXAMPLES = [(b"import numpy as n", b"p"),
            (b"    def __init__(self, root, service, versi", b"on=None):")]


def examples(bundle, args) -> list[dict]:
    """Greedy completions (to the end of the line, at most 16 bytes) of prompts that end where
    the canonical tokenization puts a token the continuation would not start with, and the
    true continuation's bits under token-level decoding and byte level."""
    rows = TokenRows(bundle.model, bundle.tokenizer)
    lm = ByteLM(bundle.model, bundle.tokenizer, prune=args.prune, max_nodes=args.max_nodes)
    cond = ByteLM(bundle.model, bundle.tokenizer, prune=args.prune, max_nodes=args.max_nodes)
    out = []
    for prompt, target in EXAMPLES:
        p = {"prompt": prompt, "target": target, "max_bytes": 16, "stop": "\n"}
        ids = rows.ids(prompt)
        cond.context = [rows.bos, *ids]
        cond.reset()
        lm.condition(prompt)
        gen = generate(lm, prompt, max_bytes=16, stop="\n")
        out.append({
            "prompt": prompt.decode(), "target": target.decode(),
            "prompt_last_tokens": [bundle.tokenizer.convert_ids_to_tokens(i) for i in ids[-3:]],
            "token": clip(rows.token(p), p).decode(errors="replace"),
            "healing (back-off)": clip(rows.backoff(p), p).decode(errors="replace"),
            "bytes": clip(gen.output, p).decode(errors="replace"),
            "token_bits": -cond.prefix_logprob(target) / LOG2,
            "bytes_bits": -(lm.prefix_logprob(prompt + target) - lm.prefix_logprob(prompt)) / LOG2})
    return out


def merge(parts: list[tuple[dict, list[dict]]]) -> tuple[dict, list[dict]]:
    """One run from runs over different domains (``--domains code`` and ``--domains de`` run
    as two processes on a shared machine: the CPU figures are per process either way)."""
    if len(parts) == 1:
        return parts[0]
    payload = dict(parts[0][0])
    payload["command"] = " && ".join(p["command"] for p, _ in parts)
    for key in ("cpu_minutes", "prompts_sampled", "prompts_run"):
        payload[key] = sum(p[key] for p, _ in parts)
    payload["wall_minutes"] = max(p["wall_minutes"] for p, _ in parts)
    payload["genlm"] = {" ".join(p["args"]["domains"]): p.get("genlm") for p, _ in parts}
    payload["examples"] = next((p["examples"] for p, _ in parts if "examples" in p), None)
    done = [q for _, d in parts for q in d]
    return payload, done


def report(payload: dict, done: list[dict]) -> int:
    """Summary, tables, plot and files from the raw per-prompt results."""
    summary = summarise(done)
    goals = ratios(summary)
    payload.update(summary=summary, goals=goals,
                   prompts=[{**{k: v for k, v in p.items() if k not in ("prompt", "target", "rows")},
                             "prompt": p["prompt"].decode(errors="replace"),
                             "target": p["target"].decode(errors="replace"),
                             "rows": {n: {k: (v.decode(errors="replace") if isinstance(v, bytes)
                                              else v) for k, v in r.items()}
                                      for n, r in p["rows"].items()}} for p in done])
    subset = [p for p in done if "genlm-bytes" in p["rows"]]
    payload["genlm_subset"] = [s for s in summarise(subset) if s["class"] == "all"]
    text = markdown(summary, goals, payload)
    write_results("midtoken", payload, text)
    plot(summary, RESULTS / "midtoken.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
