"""Byte-level generation and scoring with anything that gives next-byte distributions.

Works with a :class:`~tokenswap.bytes.exact.ByteLM` or a
:class:`~tokenswap.bytes.ensemble.ByteEnsemble`: both implement :class:`NextByteModel`. The
prompt may end anywhere - in the middle of a token, after a trailing space, inside a UTF-8
character - because every step asks for the exact distribution of the next byte given all
bytes so far; nothing is re-tokenized.

Generation stops at end of text (index 256 of the distribution), after ``max_bytes`` bytes, or
when the output contains a stop string (the stop string is cut off). Output is bytes; the
:attr:`Generation.text` view decodes it with ``errors="replace"`` for display only.

Scoring: :func:`score` is the chain rule over bytes, ``bits = -sum_k log2 P(byte_k | bytes <
k)`` (plus the end-of-text byte when asked). For a single :class:`ByteLM` it is computed as
differences of ``log P(output starts with text[:k])``, which telescope to
``-log2 P(output starts with text)``: equal to the chain rule when nothing is pruned, and with
pruning a certified lower bound on the probability (upper bound on the bits), which the
renormalised per-byte distributions would not be.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from tokenswap.bytes.exact import END
from tokenswap.errors import TokenswapError

LOG2 = math.log(2.0)


class NextByteModel(Protocol):
    def next_byte_logprobs(self, prefix: bytes, *, complete: bool = True) -> torch.Tensor:
        """(257,) normalised log-probabilities of the next byte; index 256 = end of text.
        ``complete=False`` may leave bytes that pruned paths alone lead to at 0 (cheaper)."""
        ...


@dataclass
class Generation:
    """Bytes generated after a prompt, why generation stopped, and their log-probability."""

    prompt: bytes
    output: bytes
    stop_reason: str  # "end_of_text" | "stop" | "max_bytes"
    logprob: float  # natural log, of the sampled bytes under the untempered distributions

    @property
    def text(self) -> str:
        """The output decoded as UTF-8 with replacement characters (for display only)."""
        return self.output.decode("utf-8", errors="replace")


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def generate(
    model: NextByteModel,
    prompt: bytes | str,
    *,
    max_bytes: int = 64,
    stop: bytes | str | Sequence[bytes | str] | None = None,
    greedy: bool = True,
    temperature: float = 1.0,
    seed: int | None = None,
) -> Generation:
    """Generate bytes after ``prompt``: greedy (argmax) or sampled at ``temperature``."""
    if max_bytes < 0:
        raise TokenswapError(f"max_bytes must be >= 0 (got {max_bytes})")
    if not greedy and temperature <= 0:
        raise TokenswapError(f"temperature must be > 0 when sampling (got {temperature})")
    prompt = _as_bytes(prompt)
    stops = [] if stop is None else [stop] if isinstance(stop, (bytes, str)) else list(stop)
    stops = [_as_bytes(s) for s in stops if s]
    rng = torch.Generator().manual_seed(seed if seed is not None else 0)
    out = bytearray()
    total = 0.0
    reason = "max_bytes"
    while len(out) < max_bytes:
        # generation picks among likely bytes: paths deferred by pruning stay unscored
        logprobs = model.next_byte_logprobs(prompt + bytes(out), complete=False)
        if greedy:
            choice = int(torch.argmax(logprobs))
        else:
            probs = torch.softmax(logprobs.double() / temperature, 0)
            choice = int(torch.multinomial(probs, 1, generator=rng))
        total += float(logprobs[choice])
        if choice == END:
            reason = "end_of_text"
            break
        out.append(choice)
        hit = [s for s in stops if s in out]
        if hit:
            cut = min(out.find(s) for s in hit)
            del out[cut:]
            reason = "stop"
            break
    return Generation(prompt=prompt, output=bytes(out), stop_reason=reason, logprob=total)


@dataclass
class ByteScore:
    """Bits of a text under a next-byte model (base 2), total and per byte."""

    bytes: int
    bits: float
    per_byte: list[float] = field(default_factory=list)  # bits of each byte (+ end, if scored)
    end_of_text: bool = False

    @property
    def bits_per_byte(self) -> float:
        return self.bits / self.bytes if self.bytes else math.nan

    def to_dict(self, per_byte: bool = False) -> dict:
        out = {"bytes": self.bytes, "bits": self.bits, "bits_per_byte": self.bits_per_byte,
               "end_of_text": self.end_of_text}
        if per_byte:
            out["per_byte"] = self.per_byte
        return out


def score(model: NextByteModel, text: bytes | str, *, end_of_text: bool = False,
          progress: Callable[[int, int], None] | None = None) -> ByteScore:
    """Bits of ``text`` by the chain rule over bytes (``bytes`` counts the text only).

    ``progress(done, total)`` is called after every byte position.
    """
    data = _as_bytes(text)
    total = len(data) + end_of_text
    bits = []
    if hasattr(model, "prefix_logprob"):  # a ByteLM: differences of log P(prefix)
        prev = 0.0
        for k in range(1, len(data) + 1):
            cur = model.prefix_logprob(data[:k])
            bits.append((prev - cur) / LOG2)
            prev = cur
            if progress is not None:
                progress(k, total)
        if end_of_text:
            bits.append((prev - model.logprob(data, end_of_text=True)) / LOG2)
    else:
        for k in range(total):
            target = data[k] if k < len(data) else END
            logprob = float(model.next_byte_logprobs(data[:k])[target])
            bits.append(-logprob / LOG2)
            if progress is not None:
                progress(k + 1, total)
    return ByteScore(bytes=len(data), bits=sum(bits), per_byte=bits, end_of_text=end_of_text)


__all__ = ["ByteScore", "Generation", "NextByteModel", "generate", "score"]
