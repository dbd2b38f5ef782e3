"""Under-trained ("glitch") tokens: find them from the tokenizer and the weights, then verify.

Follows Land & Bartolo, "Fishing for Magikarp: Automatically Detecting Under-trained Tokens in
Large Language Models" (EMNLP 2024, arXiv 2405.05417), in three stages:

1. Tokenizer analysis (:mod:`tokenswap.audit.reachability`): special tokens, undecodable
   tokens (bytes that are not UTF-8 alone) and unreachable tokens (encoding the token's own
   text never produces it). Unreachable tokens never occur in training text, so they are
   *known unused*: they serve as the reference below instead of a hand-made list.
2. Weight indicators. The unembedding matrix ``U`` (V, H) minus its first principal direction
   (a component every row shares) is compared with the mean of the known-unused rows: a high
   cosine similarity means a row that looks like an unused token's (:class:`UnusedDirection`).
   For untied models the input-embedding norm is the primary indicator (under-trained rows
   keep their small initial norm); tied models only have the cosine.
3. Verification (:mod:`tokenswap.audit.repeat`): the model is asked, with a few prompt
   templates, to repeat the candidate token; the score is the highest probability it gives
   the token across templates. Candidates below ``threshold`` are confirmed under-trained.
   Only the ``max_verify`` strongest candidates are verified (each costs a forward pass per
   template on a CPU).

When the tokenizer has no unreachable tokens (SmolLM2 has none), the reference falls back to
tokens made only of control bytes, then to the lowest-norm rows (:func:`reference_ids`); the
reference tokens are listed apart, not as candidates. Left out: the paper's manual review of
candidates and its per-model hand lists of unused tokens.
"""

from __future__ import annotations

import codecs
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from tokenswap.audit.reachability import Reachability, check_reachability
from tokenswap.errors import TokenswapError
from tokenswap.vocab.bytes import ByteVocab

FALLBACK_REFERENCE = 16  # lowest-norm rows used as reference when no token is unreachable


@dataclass
class UnusedDirection:
    """The direction of known-unused tokens in an embedding space (paper, section 3.2).

    ``component`` (H,) is the matrix's first principal direction (uncentered: the shared
    offset of all rows), removed before comparing; ``reference`` (H,) is the mean of the
    reference rows after removal.
    """

    component: torch.Tensor  # (H,)
    reference: torch.Tensor  # (H,)

    @classmethod
    def fit(cls, matrix: torch.Tensor, reference_ids) -> UnusedDirection:
        """``matrix`` (V, H); ``reference_ids`` rows known to be unused (at least one)."""
        ids = torch.as_tensor(np.asarray(reference_ids, dtype=np.int64))
        if ids.numel() == 0:
            raise TokenswapError("no reference tokens to compare with")
        m = matrix.detach().double()
        gram = m.T @ m  # (H, H)
        _, vecs = torch.linalg.eigh(gram)
        component = vecs[:, -1]  # (H,)
        removed = m[ids] - (m[ids] @ component)[:, None] * component[None, :]
        return cls(component=component, reference=removed.mean(0))

    def similarity(self, matrix: torch.Tensor) -> torch.Tensor:
        """(V,) cosine similarity of each row (first direction removed) to the reference."""
        m = matrix.detach().double()
        removed = m - (m @ self.component)[:, None] * self.component[None, :]
        sim = torch.nn.functional.cosine_similarity(removed, self.reference[None, :], dim=1)
        return sim.float()


@dataclass
class Candidate:
    id: int
    token: str  # the vocabulary string
    text: str  # what it decodes to (repr for undecodable bytes)
    similarity: float  # cosine to the unused-token mean (higher = more suspicious)
    norm: float  # input-embedding L2 norm (lower = more suspicious)
    score: float  # the indicator used for ranking (higher = more suspicious)
    probability: float | None = None  # max P(token) over repeat prompts; None = not verified
    confirmed: bool | None = None  # probability < threshold


@dataclass
class GlitchResult:
    """What :func:`find_glitch_tokens` found; ``candidates`` are strongest first."""

    model: str
    vocab_size: int
    tied: bool
    indicator: str  # "similarity" (tied) or "norm" (untied)
    reference_kind: str  # "unreachable", "control" or "lowest-norm" (see reference_ids)
    reference_size: int
    special: int
    undecodable: int
    unreachable: list[dict]
    reference: list[dict]  # the known-unused tokens the similarity is measured against
    candidates: list[Candidate]
    threshold: float
    verified: int
    confirmed: int
    controls: list[Candidate] = field(default_factory=list)  # random ordinary tokens, verified
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self, rows: int = 50) -> str:
        lines = [
            f"# Under-trained tokens of {self.model}",
            "",
            f"{self.vocab_size:,} tokens ({'tied' if self.tied else 'untied'} embeddings): "
            f"{self.special} special, {self.undecodable} undecodable, {len(self.unreachable)} "
            f"unreachable. Indicator: {self.indicator}; reference: {self.reference_size} "
            f"{self.reference_kind} tokens. Verified {self.verified}; confirmed (max repeat "
            f"probability < {self.threshold:g}): {self.confirmed}.",
            "",
            "| rank | id | token | similarity | norm | max P(repeat) | confirmed |",
            "|---|---|---|---|---|---|---|",
        ]
        for rank, c in enumerate(self.candidates[:rows], 1):
            prob = "-" if c.probability is None else f"{c.probability:.3g}"
            conf = "-" if c.confirmed is None else ("yes" if c.confirmed else "no")
            lines.append(f"| {rank} | {c.id} | `{_md(c.token)}` | {c.similarity:.3f} | "
                         f"{c.norm:.3f} | {prob} | {conf} |")
        return "\n".join(lines) + "\n"


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("`", "'").replace("\n", "\\n")


def _text(data: bytes | None) -> str:
    if data is None:
        return ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return repr(data)


def impossible_in_text(data: bytes) -> bool:
    """True when ``data`` cannot occur anywhere inside valid UTF-8 text (bytes C0, C1, F5-FF,
    a continuation byte after more than three others, a broken sequence).

    >>> impossible_in_text(b"\\xe4\\xb8"), impossible_in_text(b"\\xff"), impossible_in_text(b"\\xb8a")
    (False, True, False)
    """
    i = 0
    while i < len(data) and i < 3 and 0x80 <= data[i] <= 0xBF:
        i += 1  # the tail of a character that started before the token
    if i == len(data):
        return False
    if 0x80 <= data[i] <= 0xBF:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data[i:], final=False)
    except UnicodeDecodeError:
        return True
    return False


def _control_only(data: bytes) -> bool:
    return bool(data) and all((b < 0x20 and b not in (0x09, 0x0A, 0x0D)) or b == 0x7F for b in data)


def reference_ids(tokenizer, matrix: torch.Tensor,
                  reach: Reachability | None = None) -> tuple[np.ndarray, str]:
    """``(ids, kind)``: tokens of ``tokenizer`` known to be unused, found automatically.

    In order of preference: ``"unreachable"`` - tokens the tokenizer never produces (decodable
    unreachable tokens) plus tokens whose bytes cannot occur in UTF-8 text; else
    ``"control"`` - tokens made only of C0 control bytes other than tab, newline and carriage
    return (and DEL), which a byte-level vocabulary keeps but text almost never holds; else the
    :data:`FALLBACK_REFERENCE` lowest-norm rows of ``matrix`` (``"lowest-norm"``).
    """
    reach = reach if reach is not None else check_reachability(tokenizer)
    vocab = ByteVocab.from_tokenizer(tokenizer)
    n = min(len(vocab), matrix.shape[0])
    data = vocab.token_bytes[:n]
    impossible = np.array([d is not None and impossible_in_text(d) for d in data], dtype=bool)
    unused = (reach.unreachable[:n] & ~reach.undecodable[:n] & ~reach.special[:n]) | impossible
    if unused.any():
        return np.flatnonzero(unused), "unreachable"
    control = np.array([d is not None and _control_only(d) for d in data], dtype=bool)
    if control.any():
        return np.flatnonzero(control), "control"
    norms = matrix.detach().float()[:n].norm(dim=1).numpy()
    ordinary = np.flatnonzero(~reach.special[:n])
    return ordinary[np.argsort(norms[ordinary])[:FALLBACK_REFERENCE]], "lowest-norm"


def indicator_scores(bundle, reach: Reachability | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, np.ndarray, str]:
    """``(score, similarity, norm, indicator name, reference ids, reference kind)``, each (V,).

    ``score`` is higher for more suspicious tokens: the similarity for tied models, the
    negated input norm standardised for untied ones.
    """
    n = len(bundle.tokenizer)
    inp = bundle.input_embeddings().detach().float()[:n]  # (V, H)
    out = bundle.output_embeddings()
    unemb = inp if out is None else out.detach().float()[:n]  # (V, H)
    reach = reach if reach is not None else check_reachability(bundle.tokenizer)
    ref, kind = reference_ids(bundle.tokenizer, inp, reach)
    sim = UnusedDirection.fit(unemb, ref).similarity(unemb).numpy()
    norm = inp.norm(dim=1).numpy()
    if bundle.tied:
        return sim, sim, norm, "similarity", ref, kind
    z = -(norm - norm.mean()) / (norm.std() or 1.0)
    return z, sim, norm, "norm", ref, kind


def find_glitch_tokens(bundle, *, max_verify: int = 200, threshold: float = 0.01,
                       batch_size: int = 16, controls: int = 0, seed: int = 0,
                       only_ids: np.ndarray | None = None,
                       progress: bool = False) -> GlitchResult:
    """Rank every ordinary, reachable token by the weight indicator; verify the top ones.

    ``max_verify`` candidates (strongest first) are verified with repeat prompts; 0 skips
    verification. ``controls`` random reachable tokens from the weaker half are verified as
    well, to show what the repeat probability of ordinary tokens looks like. ``only_ids``
    restricts the candidates (e.g. to a transferred model's new tokens).
    """
    from tokenswap.audit.repeat import repeat_probabilities

    if max_verify < 0 or not 0 < threshold < 1:
        raise TokenswapError("max_verify must be >= 0 and threshold between 0 and 1")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    tok = bundle.tokenizer
    vocab = ByteVocab.from_tokenizer(tok)
    reach = check_reachability(tok)
    seconds["tokenizer"] = time.perf_counter() - start
    start = time.perf_counter()
    score, sim, norm, indicator, ref, kind = indicator_scores(bundle, reach)
    seconds["indicators"] = time.perf_counter() - start

    n = len(score)
    eligible = ~reach.special[:n] & ~reach.unreachable[:n] & ~reach.undecodable[:n]
    eligible[ref] = False
    if only_ids is not None:
        mask = np.zeros(n, dtype=bool)
        mask[np.asarray(only_ids, dtype=np.int64)] = True
        eligible &= mask
    order = np.flatnonzero(eligible)
    order = order[np.argsort(-score[order], kind="stable")]

    def candidate(t: int) -> Candidate:
        return Candidate(id=int(t), token=tok.convert_ids_to_tokens(int(t)),
                         text=_text(vocab.token_bytes[t]), similarity=float(sim[t]),
                         norm=float(norm[t]), score=float(score[t]))

    shown = max(max_verify, 50)
    candidates = [candidate(t) for t in order[:shown]]
    rng = np.random.default_rng(seed)
    weak = order[len(order) // 2:]
    control = [candidate(t) for t in rng.choice(weak, size=min(controls, len(weak)), replace=False)]

    start = time.perf_counter()
    to_verify = candidates[:max_verify] + control
    if to_verify:
        probs = repeat_probabilities(bundle.model, tok, [c.id for c in to_verify],
                                     batch_size=batch_size, progress=progress)
        for c, p in zip(to_verify, probs, strict=True):
            c.probability = float(p)
            c.confirmed = bool(p < threshold)
    seconds["verify"] = time.perf_counter() - start

    def listed(ids) -> list[dict]:
        return [{"id": int(t), "token": tok.convert_ids_to_tokens(int(t)),
                 "text": _text(vocab.token_bytes[t]), "similarity": float(sim[t]),
                 "norm": float(norm[t])} for t in ids]

    unreachable = listed(np.flatnonzero(reach.unreachable[:n]))
    verified = candidates[:max_verify]
    return GlitchResult(
        model=bundle.name, vocab_size=n, tied=bundle.tied, indicator=indicator,
        reference_kind=kind, reference_size=len(ref), special=int(reach.special.sum()),
        undecodable=int(reach.undecodable.sum()), unreachable=unreachable,
        reference=listed(ref), candidates=candidates, threshold=threshold, verified=len(verified),
        confirmed=sum(bool(c.confirmed) for c in verified), controls=control, seconds=seconds)


def undertrained_new_tokens(source_matrix: torch.Tensor, source_tokenizer, new_matrix: torch.Tensor,
                            new_ids, target_tokenizer, *, top: int = 20) -> list[dict]:
    """New tokens of a transferred model whose embeddings look like the source's unused ones.

    The unused direction is fitted on the source matrix (V_s, H) with the source tokenizer's
    unreachable tokens as reference; a new token (a row of ``new_matrix`` (V_t, H) listed in
    ``new_ids``) looks under-trained when its similarity reaches the median similarity of
    those reference tokens themselves. Returns up to ``top`` of them, most similar first.
    """
    ref, kind = reference_ids(source_tokenizer, source_matrix)
    direction = UnusedDirection.fit(source_matrix, ref)
    threshold = float(direction.similarity(source_matrix)[torch.as_tensor(ref)].median())
    sim = direction.similarity(new_matrix).numpy()
    ids = np.asarray(new_ids, dtype=np.int64)
    ids = ids[sim[ids] >= threshold]
    ids = ids[np.argsort(-sim[ids], kind="stable")][:top]
    vocab = ByteVocab.from_tokenizer(target_tokenizer)
    return [{"id": int(t), "token": target_tokenizer.convert_ids_to_tokens(int(t)),
             "text": _text(vocab.token_bytes[t]), "similarity": float(sim[t]),
             "threshold": threshold, "reference": kind} for t in ids]


__all__ = ["Candidate", "GlitchResult", "UnusedDirection", "find_glitch_tokens",
           "indicator_scores", "reference_ids", "undertrained_new_tokens"]
