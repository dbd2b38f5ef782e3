"""Exact byte-level probabilities from a tokenized causal language model.

A tokenized model defines a distribution over token sequences; decoding a sequence gives
bytes. :class:`ByteLM` turns it into a model over bytes: ``P(output starts with s)``, the
distribution of the next byte after any prefix (mid-token, trailing space, half a UTF-8
character: anything), and whole-string probabilities. It follows Phan et al., "Understanding
and Mitigating Tokenization Bias in Language Models" (arXiv 2406.16829) and "Exact Byte-Level
Probabilities from Tokenized Language Models for FIM-Tasks and Model Ensembles" (ICLR 2025,
arXiv 2410.09303), implemented from the papers.

What is computed
----------------
The model starts from ``context`` (token ids, default the document-start token: ``bos``, else
``eos``, as :mod:`tokenswap.evaluate.bpb` scores) and emits tokens; each text token appends
its canonical bytes (:class:`~tokenswap.vocab.bytes.ByteVocab`), and a token that emits no text
(``eos`` and every other special token, or a padded output row) ends the text. Then

    P(starts with s) = sum over cover encodings t1..tk of P(t1..tk | context),

where t1..t(k-1) emit exactly ``s[:i]`` for some ``i < len(s)`` and ``tk`` emits bytes that
start with ``s[i:]``. Every token sequence whose text starts with ``s`` has exactly one such
first-k-token prefix, so this is the model's true byte-level marginal: the sum is over ALL
token sequences, canonical or not. We do *not* adopt the papers' assumption that encodings
the tokenizer would never produce have probability zero: a trained model gives them little
mass but not zero, a random or freshly transferred model gives them a lot, and only the full
sum makes the identities below hold exactly for any model, which is what the tests check
against brute-force enumeration.

- ``next_byte_logprobs(s)`` gives ``log P(s + b) - log P(s)`` for the 256 bytes and, at index
  256, ``log P(text == s) - log P(s)`` (end of text); the 257 probabilities sum to one because
  "starts with s" splits exactly into "next byte is b" and "ends here".
- ``logprob(s, end_of_text=True)`` is ``sum over tokenizations T of s of P(T) P(end | T)``;
  ``tokenizations_logprob(s)`` is ``sum over T of P(T)``; both are >= the canonical
  tokenization's probability. ``logprob(s)`` (no end) is ``P(starts with s)``, the product of
  next-byte probabilities, which is what bits per byte use.

How
---
Every token path that emits a prefix of ``s`` is a node of one token tree, keyed by the byte
position ``i`` it reaches. Positions are processed left to right (dynamic programming over
byte positions): the nodes reaching position ``p`` are the children, by a token emitting
exactly ``s[i:p]``, of nodes at ``i < p``; all of them are scored in ONE batched forward pass
whose attention mask lets each node see only its own ancestors (tree attention), on top of a
single key/value cache that holds every node scored so far - a path that extends an
already-scored path costs one token. The next-token log-probabilities of each node are kept
in the byte-sorted order of :class:`~tokenswap.bytes.cover.CoverIndex`, so the mass of "all
tokens starting with ``s[i:]``" is a ``logsumexp`` over one contiguous slice.

Cost and pruning
----------------
The number of tokenizations of a prefix grows exponentially with its length, and the exact
sum needs every one of them. With ``prune=None`` (default) nothing is dropped, and a position
with more than ``max_nodes`` paths raises :class:`~tokenswap.errors.TokenswapError`. With
``prune=r`` a new path is dropped when its probability is below ``r`` times that of the best
path reaching the same position, and at most ``max_nodes`` paths per position are kept. The
probability of every dropped path is added up: all sequences through a dropped path together
have at most that probability, so :meth:`ByteLM.dropped_logmass` is a certified bound -
``P_true(starts with s)`` lies in ``[P, P + dropped]``.

Tokenizers whose decoder drops the first token's leading space (SentencePiece with a
prepended ``'▁'``) follow :meth:`ByteVocab.decode_bytes`: the first text token is looked up by
its bytes without that space, and a first token that is only a space emits nothing (a second
path at byte 0).

Out of scope: special tokens inside the text (the text is bytes; special tokens only end it);
batching several unrelated prefixes at once; the papers' restriction to the tokenizer's valid
encodings (pruning plays its role here, with a bound instead of an assumption); sliding-window
attention layers (Gemma 3, Mistral): the tree cache keeps every entry and the tree mask lets
each path see its whole history, so paths longer than the window are scored as if the window
were unlimited.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from tokenswap.bytes.cover import CoverIndex, grouped_logsumexp, range_logsumexp
from tokenswap.errors import TokenswapError
from tokenswap.vocab.bytes import ByteVocab

END = 256  # index of end-of-text in a next-byte distribution


@dataclass
class _Node:
    """One token path: the context, then tokens emitting ``text[:pos]``."""

    token: int
    pos: int  # byte position reached
    logprob: float  # log P(path | context)
    path: list[int] = field(default_factory=list)  # cache indices of its tokens, itself last
    sorted_lp: torch.Tensor | None = None  # (V_t,) next-token log-probs in CoverIndex order
    end_lp: float = -math.inf  # log P(next token ends the text)
    first: bool = False  # no text token yet: the next token is the first (its space dropped)


def _logaddexp(values: Sequence[float]) -> float:
    if not values:
        return -math.inf
    peak = max(values)
    if peak == -math.inf:
        return -math.inf
    return peak + math.log(sum(math.exp(v - peak) for v in values))


class ByteLM:
    """A causal LM with its tokenizer, seen as a model over bytes (see module docstring).

    ``model``: a transformers causal LM that accepts ``position_ids`` and a 4-D additive
    ``attention_mask`` with a ``DynamicCache`` (Llama, GPT-2, Qwen, Gemma, ... in transformers
    >= 4.50). ``accumulate``: dtype of log-softmax and every sum (float64 by default; the
    model itself runs in its own dtype). ``batch_size``: paths per forward pass.

    The object keeps the token tree of the last string it was asked about and extends it when
    the next query extends that string (generation); a query that does not extend it rewinds
    the tree to the common prefix. When the key/value cache holds more than ``compact_at``
    entries and at least an eighth of them are on no live path (no token can extend them or
    any descendant), it is compacted to the live paths and their ancestors (the next check
    waits until the cache has doubled, so copying stays amortised O(1) per entry); a later
    rewind then starts afresh.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        device: str | torch.device | None = None,
        *,
        context: Sequence[int] | None = None,
        accumulate: torch.dtype = torch.float64,
        prune: float | None = None,
        max_nodes: int = 4096,
        batch_size: int = 64,
        compact_at: int = 2048,
        name: str | None = None,
    ) -> None:
        self.vocab = ByteVocab.from_tokenizer(tokenizer)
        if prune is not None and not 0.0 <= prune < 1.0:
            raise TokenswapError(f"prune must be in [0, 1) (got {prune})")
        if device is not None:
            model.to(device)
        self.model = model.eval()
        self.device = next(model.parameters()).device
        out = model.get_output_embeddings()
        rows = out.weight.shape[0] if out is not None else model.config.vocab_size
        self.index = CoverIndex(self.vocab.token_bytes, rows)
        # the decoder drops the first text token's leading space (SentencePiece with a
        # prepended '▁', WordPiece): the first token is looked up in its own index, and a first
        # token that is only a space ("silent") emits nothing and leads to another position-0 path
        self.first_index = self.index
        self.silent_ids: list[int] = []
        if self.vocab.strip_leading_space:
            first = [d[1:] if d and d.startswith(b" ") else d for d in self.vocab.token_bytes]
            self.silent_ids = [t for t, d in enumerate(self.vocab.token_bytes)
                               if d == b" "]
            self.first_index = CoverIndex(first, rows)
        if context is None:
            from tokenswap.evaluate.bpb import document_start_id

            context = [document_start_id(tokenizer)]
        if not context:
            raise TokenswapError("context must hold at least one token (e.g. the bos token)")
        self.context = [int(t) for t in context]
        self.accumulate = accumulate
        self.prune = prune
        self.max_nodes = int(max_nodes)
        self.batch_size = int(batch_size)
        self.compact_at = int(compact_at)
        self.name = name or getattr(model, "name_or_path", None) or type(model).__name__
        self.longest = int(self.index.byte_matrix.shape[1]) - 1
        self.forward_passes = 0
        self.tokens_scored = 0
        self.reset()

    # ------------------------------------------------------------------ public API

    def prefix_logprob(self, prefix: bytes) -> float:
        """``log P(the output text starts with prefix)``; ``0.0`` for ``b""``."""
        prefix = bytes(prefix)
        n = len(prefix)
        if n == 0:
            return 0.0
        self._ensure(prefix[:-1])
        terms = []
        for i in range(max(0, n - self.longest), n):
            for index, nodes in self._groups(i):
                lo, hi = index.prefix_range(prefix[i:])
                if hi > lo:
                    terms += [node.logprob + float(range_logsumexp(node.sorted_lp, lo, hi))
                              for node in nodes]
        return _logaddexp(terms)

    def next_byte_logprobs(self, prefix: bytes, *, normalize: bool = True) -> torch.Tensor:
        """``(257,)`` log-probabilities of the next byte after ``prefix``; index 256 = end.

        With ``normalize=False`` the joint values ``log P(prefix + b)`` and
        ``log P(text == prefix)`` are returned; their ``logsumexp`` is ``prefix_logprob``.
        """
        prefix = bytes(prefix)
        n = len(prefix)
        self._ensure(prefix)
        values, groups = [], []
        for i in range(max(0, n - self.longest), n):
            for index, nodes in self._groups(i):
                lo, hi = index.prefix_range(prefix[i:])
                if hi <= lo:
                    continue
                column = index.byte_matrix[lo:hi, n - i].long()
                straddle = column >= 0  # tokens emitting exactly prefix[i:] reach position n
                if not bool(straddle.any()):
                    continue
                for node in nodes:
                    values.append(node.sorted_lp[lo:hi][straddle] + node.logprob)
                    groups.append(column[straddle])
        ends = []
        for index, nodes in self._groups(n):
            first = index.byte_matrix[:, 0].long()
            for node in nodes:
                values.append(node.sorted_lp + node.logprob)
                groups.append(first)
                ends.append(node.logprob + node.end_lp)
        out = torch.full((257,), -torch.inf, dtype=self.accumulate)
        if values:
            out[:256] = grouped_logsumexp(torch.cat(values), torch.cat(groups), 256)
        out[END] = _logaddexp(ends)
        if normalize:
            total = torch.logsumexp(out, 0)
            if not torch.isfinite(total):
                raise TokenswapError(f"the model gives the prefix {prefix[-20:]!r} probability 0")
            out = out - total
        return out

    def next_byte_distribution(self, prefix: bytes) -> torch.Tensor:
        """``(257,)`` probabilities of the next byte after ``prefix`` (index 256 = end); sum 1."""
        return self.next_byte_logprobs(prefix).exp()

    def logprob(self, text: bytes, *, end_of_text: bool = False) -> float:
        """``log P(text)``: with ``end_of_text`` the text then its end, summed over all its
        tokenizations; without, ``log P(output starts with text)``."""
        text = bytes(text)
        if not end_of_text:
            return self.prefix_logprob(text)
        self._ensure(text)
        return _logaddexp([node.logprob + node.end_lp for node in self._at(len(text))])

    def tokenizations_logprob(self, text: bytes) -> float:
        """``log sum over token sequences T emitting exactly text of P(T | context)``."""
        text = bytes(text)
        self._ensure(text)
        return _logaddexp([node.logprob for node in self._at(len(text))])

    def dropped_logmass(self, prefix: bytes | None = None) -> float:
        """log of the total probability of paths pruned at positions ``< len(prefix)`` (all
        positions when ``None``): the most any result for ``prefix`` can be short by."""
        limit = len(self._text) + 1 if prefix is None else len(prefix)
        return _logaddexp([v for p, v in self._dropped.items() if p < limit])

    def paths_at(self, position: int) -> list[list[int]]:
        """Token ids of every (kept) path reaching byte ``position`` of the current string."""
        return [[self._cache_tokens[c] for c in node.path[self.context_len:]]
                for node in self._at(position)]

    @property
    def cache_len(self) -> int:
        """Entries (token paths' tokens) in the key/value cache."""
        return len(self._cache_tokens)

    @property
    def context_len(self) -> int:
        return len(self.context)

    def reset(self) -> None:
        """Forget the token tree; score the context again (one forward pass)."""
        self._cache = DynamicCache()
        ids = torch.tensor([self.context], device=self.device)
        with torch.no_grad():
            out = self.model(input_ids=ids, past_key_values=self._cache, use_cache=True)
        self.forward_passes += 1
        self.tokens_scored += len(self.context)
        self._cache = out.past_key_values
        self._cache_tokens = list(self.context)
        self._compacted = False
        self._next_compact = self.compact_at
        root = _Node(token=self.context[-1], pos=0, logprob=0.0,
                     path=list(range(len(self.context))), first=self.vocab.strip_leading_space)
        self._fill(root, out.logits[0, -1])
        self._nodes: list[_Node] = []
        self._by_pos: dict[int, list[_Node]] = {0: [root]}
        self._dropped: dict[int, float] = {}
        self._text = b""
        if self.silent_ids:  # a first token that is only a space: text still empty
            full = torch.log_softmax(out.logits[0, -1].to(self.accumulate), -1).cpu()
            silent = [_Node(token=t, pos=0, logprob=float(full[t]), path=root.path)
                      for t in self.silent_ids]
            self._score(silent)
            self._nodes.extend(silent)
            self._by_pos[0] += silent

    # ------------------------------------------------------------------ the token tree

    def _at(self, position: int) -> list[_Node]:
        return self._by_pos.get(position, [])

    def _groups(self, position: int) -> list[tuple[CoverIndex, list[_Node]]]:
        """The live nodes at ``position`` by the index their next token is looked up in."""
        live = [node for node in self._at(position) if node.sorted_lp is not None]
        if position > 0 or not self.silent_ids:
            return [(self.first_index if position == 0 else self.index, live)]
        return [(self.first_index, [n for n in live if n.first]),
                (self.index, [n for n in live if not n.first])]

    def _fill(self, node: _Node, logits: torch.Tensor) -> None:
        logprobs = torch.log_softmax(logits.to(self.accumulate), -1).cpu()
        node.sorted_lp = logprobs[(self.first_index if node.first else self.index).order]
        node.end_lp = float(torch.logsumexp(logprobs[self.index.end_ids], 0)) if len(
            self.index.end_ids) else -math.inf

    def _rewind(self, keep: int) -> None:
        """Drop every node past byte ``keep``; reset when a kept node was already freed."""
        kept = [node for node in self._nodes if node.pos <= keep]
        if self._compacted or any(node.sorted_lp is None for node in kept) or any(
                node.sorted_lp is None for node in self._at(0)):
            self.reset()
            return
        self._nodes = kept
        surplus = self._cache.get_seq_length() - (self.context_len + len(kept))
        if surplus > 0:  # transformers 5 crops by a negative count of tokens to remove
            self._cache.crop(-surplus)
            del self._cache_tokens[self.context_len + len(kept):]
        self._by_pos = {p: nodes for p, nodes in self._by_pos.items() if p <= keep}
        self._dropped = {p: v for p, v in self._dropped.items() if p <= keep}
        self._text = self._text[:keep]

    def _ensure(self, text: bytes) -> None:
        """Create and score every path that emits a prefix of ``text`` (positions 0..len)."""
        common = 0
        limit = min(len(text), len(self._text))
        while common < limit and text[common] == self._text[common]:
            common += 1
        if common < len(self._text):
            self._rewind(common)
        for p in range(len(self._text) + 1, len(text) + 1):
            self._extend(text[:p])

    def _extend(self, text: bytes) -> None:
        """Add the nodes reaching ``len(text)``, given every node before it."""
        p = len(text)
        born: list[_Node] = []
        for i in range(max(0, p - self.longest), p):
            for index, parents in self._groups(i):
                lo, hi = index.exact_range(text[i:])
                for k in range(lo, hi):
                    token = int(index.order[k])
                    born += [_Node(token=token, pos=p, path=node.path,
                                   logprob=node.logprob + float(node.sorted_lp[k]))
                             for node in parents]
        born = self._prune(born, p)
        self._text = text
        for start in range(0, len(born), self.batch_size):
            self._score(born[start:start + self.batch_size])
        self._nodes.extend(born)
        self._by_pos[p] = born
        # a node no token can extend past `text` is dead for every extension of `text`
        for i in range(max(0, p - self.longest), p):
            for index, nodes in self._groups(i):
                lo, hi = index.prefix_range(text[i:])
                if hi <= lo:
                    for node in nodes:
                        node.sorted_lp = None
        if self.cache_len >= self._next_compact:
            self._compact()

    def _compact(self, force: bool = False) -> None:
        """Keep only the cache entries on the paths of live nodes (and the context)."""
        live = [node for node in self._nodes if node.sorted_lp is not None]
        live += [node for node in self._at(0) if node.sorted_lp is not None and node not in live]
        needed = set(range(self.context_len))
        for node in live:
            needed.update(node.path)
        dead = self.cache_len - len(needed)
        if not dead or (not force and 8 * dead < self.cache_len):  # under 1/8 dead: not worth it
            self._next_compact = 2 * self.cache_len
            return
        keep = sorted(needed)
        where = {old: new for new, old in enumerate(keep)}
        index = torch.tensor(keep, device=self.device)
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(-2, index)
            layer.values = layer.values.index_select(-2, index)
        self._cache_tokens = [self._cache_tokens[c] for c in keep]
        for node in live:
            node.path = [where[c] for c in node.path]
        alive = {id(node) for node in live}
        self._nodes = [node for node in self._nodes if id(node) in alive]
        self._by_pos = {p: kept for p, nodes in self._by_pos.items()
                        if (kept := [node for node in nodes if id(node) in alive])}
        self._compacted = True
        self._next_compact = max(self.compact_at, 2 * self.cache_len)

    def _prune(self, born: list[_Node], p: int) -> list[_Node]:
        if self.prune is None:
            if len(born) > self.max_nodes:
                raise TokenswapError(
                    f"{len(born)} token paths reach byte {p}, more than max_nodes="
                    f"{self.max_nodes}; pass prune (e.g. 1e-6) or a larger max_nodes"
                )
            return born
        born = sorted(born, key=lambda node: -node.logprob)
        keep = born[: self.max_nodes]
        if keep and self.prune > 0:
            floor = keep[0].logprob + math.log(self.prune)
            keep = [node for node in keep if node.logprob >= floor]
        if len(keep) < len(born):
            self._dropped[p] = _logaddexp([node.logprob for node in born[len(keep):]])
        return keep

    def _score(self, nodes: list[_Node]) -> None:
        """One forward pass over ``nodes``, each attending to its own ancestors only."""
        past = self._cache.get_seq_length()
        k = len(nodes)
        dtype = next(self.model.parameters()).dtype
        mask = torch.full((1, 1, k, past + k), torch.finfo(dtype).min, dtype=dtype)
        positions = []
        for r, node in enumerate(nodes):
            node.path = [*node.path, past + r]
            mask[0, 0, r, node.path] = 0.0
            positions.append(len(node.path) - 1)
        ids = torch.tensor([[node.token for node in nodes]], device=self.device)
        with torch.no_grad():
            out = self.model(input_ids=ids, position_ids=torch.tensor([positions], device=self.device),
                             attention_mask=mask.to(self.device), past_key_values=self._cache,
                             use_cache=True)
        self._cache = out.past_key_values
        self._cache_tokens += [node.token for node in nodes]
        self.forward_passes += 1
        self.tokens_scored += k
        for r, node in enumerate(nodes):
            self._fill(node, out.logits[0, r])


__all__ = ["END", "ByteLM"]
