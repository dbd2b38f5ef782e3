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
``eos``, as :mod:`tokenswap.scoring.bpb` scores) and emits tokens; each text token appends
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
``prune=r`` a new path reaching byte ``p`` is *deferred* - kept, but not scored - when its
probability is below ``r`` times ``P(output starts with text[:p])``, the mass it competes
with. A position inside a long, likely token then costs no forward pass: the paths that end
there (the token split in two) hold a tiny share, so greedy generation needs about one pass
per token, not per byte. A deferred path is scored as soon as it holds ``r`` of the mass of a
later query - when the text goes on in a way the scored paths cannot follow, their mass goes
and the deferred paths' share grows - and its descendants up to that point are created then;
so no path is lost while it matters. Beyond ``max_nodes`` paths per position the least likely
are dropped for good. The probability of every dropped and still-deferred path is added up:
all sequences through such a path together have at most that probability, so
:meth:`ByteLM.dropped_logmass` is a certified bound - ``P_true(starts with s)`` lies in
``[P, P + dropped]``.

Prompts
-------
Reading a long prompt as a tree costs a forward pass per byte. :meth:`ByteLM.condition` reads
the prompt's head as its canonical tokens in one pass (the context) and leaves only the last
``tail_words`` words to the tree, as the papers do: probabilities are then
conditioned on the head's canonical tokenization (the tokenization the model was trained on),
and remain exact over all tokenizations of the tail and of everything after it - which is
where a prompt that ends mid-token needs them. Queries still take the whole text.

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
from tokenswap.kv_cache import cache_kwarg, returned_cache
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
    deferred: bool = False  # kept but not scored yet (too little of the prefix mass; see prune)


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
            from tokenswap.scoring.bpb import document_start_id

            context = [document_start_id(tokenizer)]
        if not context:
            raise TokenswapError("context must hold at least one token (e.g. the bos token)")
        self.context = [int(t) for t in context]
        self.base_context = list(self.context)
        self.head = b""  # bytes the context's tokens after base_context emit (condition())
        self.tokenizer = tokenizer
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

    def condition(self, prompt: bytes | str, *, tail_words: int = 2) -> bytes:
        """Read ``prompt`` up to the start of its last ``tail_words`` words as context.

        "Words" are the pre-tokenizer's pieces, which BPE never merges across (for tokenizers
        without a pre-tokenizer: tokens that start with a space). The head's canonical tokens
        follow the base context in one forward pass; later queries must start with the head
        (they may end anywhere after it) and are conditioned on its canonical tokenization.
        Two words by default, because a pre-tokenizer may move the last word's leading
        whitespace once more text follows (GPT-2's ``\\s+(?!\\S)``). The cut is checked: the
        head tokenized alone gives the same tokens; else an earlier word boundary is tried,
        and ``b""`` (no head) is the last resort. Returns the head; ``condition(b"")`` undoes.
        """
        prompt = prompt.encode("utf-8") if isinstance(prompt, str) else bytes(prompt)
        if tail_words < 1:
            raise TokenswapError(f"tail_words must be >= 1 (got {tail_words})")
        head_ids, head = self._canonical_head(prompt, tail_words)
        self.context = self.base_context + head_ids
        self.head = head
        self.reset()
        return head

    def _canonical_head(self, prompt: bytes, tail_words: int) -> tuple[list[int], bytes]:
        text = prompt.decode("utf-8", errors="ignore")  # a cut inside a character: drop it
        while text and not prompt.startswith(text.encode("utf-8")):
            text = text[:-1]
        if not text:
            return [], b""
        ids, starts = self._word_starts(text)
        candidates = starts[: len(starts) - tail_words + 1] if len(starts) >= tail_words else []
        for j in reversed(candidates[-4:]):
            if j == 0:
                break
            head = self.vocab.decode_bytes(ids[:j])
            if not prompt.startswith(head) or not _valid_utf8(head) or any(
                    self.vocab.token_bytes[t] is None for t in ids[:j]):
                continue
            if self.tokenizer(head.decode("utf-8"), add_special_tokens=False).input_ids == ids[:j]:
                return list(ids[:j]), head
        return [], b""

    def _word_starts(self, text: str) -> tuple[list[int], list[int]]:
        """Canonical ids of ``text`` and the token indices where a new word starts."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:
            enc = backend.encode(text, add_special_tokens=False)
            ids, words = list(enc.ids), list(enc.word_ids)
            starts = [j for j in range(1, len(ids)) if words[j] != words[j - 1]]
            if starts:
                return ids, [0, *starts]
        else:
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
        # no pre-tokenizer (one "word"): a token that starts with a space starts a word
        return ids, [0, *(j for j in range(1, len(ids))
                          if (self.vocab.token_bytes[ids[j]] or b"").startswith(b" "))]

    def _tail(self, text: bytes) -> bytes:
        text = bytes(text)
        if not text.startswith(self.head):
            raise TokenswapError(
                f"the model is conditioned on a prompt; queries must start with it "
                f"(got {text[:40]!r}..., prompt head {self.head[:40]!r}...)")
        return text[len(self.head):]

    def prefix_logprob(self, prefix: bytes) -> float:
        """``log P(the output text starts with prefix)``; ``0.0`` for ``b""``."""
        prefix = self._tail(prefix)
        n = len(prefix)
        if n == 0:
            return 0.0
        self._ensure(prefix[:-1])
        self._revive(prefix, upto=n - 1)
        return self._prefix_mass(prefix)

    def _prefix_mass(self, prefix: bytes) -> float:
        """``log P(starts with prefix)`` from the nodes before ``len(prefix)`` (all scored)."""
        n = len(prefix)
        terms = []
        for i in range(max(0, n - self.longest), n):
            for index, nodes in self._groups(i):
                lo, hi = index.prefix_range(prefix[i:])
                if hi > lo:
                    terms += [node.logprob + float(range_logsumexp(node.sorted_lp, lo, hi))
                              for node in nodes]
        return _logaddexp(terms)

    def next_byte_logprobs(self, prefix: bytes, *, normalize: bool = True,
                           complete: bool = True) -> torch.Tensor:
        """``(257,)`` log-probabilities of the next byte after ``prefix``; index 256 = end.

        With ``normalize=False`` the joint values ``log P(prefix + b)`` and
        ``log P(text == prefix)`` are returned; their ``logsumexp`` is ``prefix_logprob``.
        With pruning, a byte only deferred paths lead to would get probability 0; by default
        (``complete``) those paths are scored first, so every possible byte is possible.
        ``complete=False`` (generation) skips that: the bytes it leaves at 0 hold at most
        :meth:`dropped_logmass` together, and inside a likely token it saves a forward pass.
        """
        prefix = self._tail(prefix)
        n = len(prefix)
        self._ensure(prefix)
        self._revive(prefix, upto=n)
        out = self._next_bytes(prefix)
        if complete and self.prune and bool(torch.isinf(out).any()) and self._complete(prefix):
            out = self._next_bytes(prefix)
        if normalize:
            total = torch.logsumexp(out, 0)
            if not torch.isfinite(total):
                raise TokenswapError(f"the model gives the prefix {prefix[-20:]!r} probability 0")
            out = out - total
        return out

    def _next_bytes(self, prefix: bytes) -> torch.Tensor:
        """Unnormalised ``(257,)`` ``log P(prefix + b)`` and ``log P(text == prefix)``."""
        n = len(prefix)
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
        return out

    def next_byte_distribution(self, prefix: bytes) -> torch.Tensor:
        """``(257,)`` probabilities of the next byte after ``prefix`` (index 256 = end); sum 1."""
        return self.next_byte_logprobs(prefix).exp()

    def logprob(self, text: bytes, *, end_of_text: bool = False) -> float:
        """``log P(text)``: with ``end_of_text`` the text then its end, summed over all its
        tokenizations; without, ``log P(output starts with text)``."""
        if not end_of_text:
            return self.prefix_logprob(text)
        text = self._tail(text)
        self._ensure(text)
        self._revive(text, upto=len(text))
        return _logaddexp([node.logprob + node.end_lp for node in self._at(len(text))])

    def tokenizations_logprob(self, text: bytes) -> float:
        """``log sum over token sequences T emitting exactly text of P(T | context)``."""
        text = self._tail(text)
        self._ensure(text)
        self._revive(text, upto=len(text))
        return _logaddexp([node.logprob for node in self._at(len(text))])

    def dropped_logmass(self, prefix: bytes | None = None) -> float:
        """log of the total probability of paths dropped or still deferred at positions
        ``< len(prefix)`` (all positions when ``None``) that the text could still go through:
        the most any result for ``prefix`` can be short by."""
        text = self._text if prefix is None else self._tail(prefix)
        limit = len(text) + 1 if prefix is None else len(text)
        deferred = [node.logprob for q in range(max(0, len(text) - self.longest), limit)
                    for node in self._at(q) if node.deferred and self._viable(node, text)]
        return _logaddexp([v for p, v in self._dropped.items() if p < limit] + deferred)

    def paths_at(self, position: int) -> list[list[int]]:
        """Token ids of every (kept) path reaching byte ``position`` of the current string
        (counted from the start of the text, head included; paths start after the head)."""
        return [[self._cache_tokens[c] for c in node.path[self.context_len:]]
                for node in self._at(position - len(self.head))]

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
            out = self.model(input_ids=ids, use_cache=True, **cache_kwarg(self.model, self._cache))
        self.forward_passes += 1
        self.tokens_scored += len(self.context)
        self._cache = returned_cache(out)
        self._cache_tokens = list(self.context)
        self._compacted = False
        self._in_order = True  # cache entries of scored nodes follow their byte positions
        self._next_compact = self.compact_at
        root = _Node(token=self.context[-1], pos=0, logprob=0.0,
                     path=list(range(len(self.context))),
                     first=self.vocab.strip_leading_space and not self.head)
        self._fill(root, out.logits[0, -1])
        self._nodes: list[_Node] = []
        self._by_pos: dict[int, list[_Node]] = {0: [root]}
        self._dropped: dict[int, float] = {}
        self._text = b""
        if self.silent_ids and not self.head:  # a first token that is only a space: no text yet
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
        if position > 0 or not self.silent_ids or self.head:
            first = position == 0 and not self.head
            return [(self.first_index if first else self.index, live)]
        return [(self.first_index, [n for n in live if n.first]),
                (self.index, [n for n in live if not n.first])]

    def _fill(self, node: _Node, logits: torch.Tensor) -> None:
        logprobs = torch.log_softmax(logits.to(self.accumulate), -1).cpu()
        node.sorted_lp = logprobs[(self.first_index if node.first else self.index).order]
        node.end_lp = float(torch.logsumexp(logprobs[self.index.end_ids], 0)) if len(
            self.index.end_ids) else -math.inf

    def _fill_many(self, nodes: list[_Node], logits: torch.Tensor) -> None:
        """:meth:`_fill` for the ``(k, V)`` logits of ``k`` nodes at once."""
        logprobs = torch.log_softmax(logits.to(self.accumulate), -1).cpu()  # (k, V)
        ends = torch.logsumexp(logprobs[:, self.index.end_ids], -1).tolist() if len(
            self.index.end_ids) else [-math.inf] * len(nodes)
        for r, node in enumerate(nodes):
            index = self.first_index if node.first else self.index
            node.sorted_lp = logprobs[r, index.order]
            node.end_lp = ends[r]

    def _rewind(self, keep: int) -> None:
        """Drop every node past byte ``keep``; reset when a kept node was already freed."""
        kept = [node for node in self._nodes if node.pos <= keep]
        scored = [node for node in kept if not node.deferred]
        if self._compacted or not self._in_order or any(
                node.sorted_lp is None for node in scored) or any(
                node.sorted_lp is None for node in self._at(0)):
            self.reset()
            return
        self._nodes = kept
        surplus = self._cache.get_seq_length() - (self.context_len + len(scored))
        if surplus > 0:  # transformers 5 crops by a negative count of tokens to remove
            self._cache.crop(-surplus)
            del self._cache_tokens[self.context_len + len(scored):]
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
        self._revive(text, upto=p - 1)  # deferred paths that now matter become parents
        born: list[_Node] = []
        for i in range(max(0, p - self.longest), p):
            for index, parents in self._groups(i):
                lo, hi = index.exact_range(text[i:])
                for k in range(lo, hi):
                    token = int(index.order[k])
                    born += [_Node(token=token, pos=p, path=node.path,
                                   logprob=node.logprob + float(node.sorted_lp[k]))
                             for node in parents]
        born = self._prune(born, text)
        self._text = text
        self._score_all([node for node in born if not node.deferred])
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
        recent = len(self._text) - self.longest
        live = [node for node in self._nodes if node.sorted_lp is not None or (
            node.deferred and node.pos >= recent)]
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

    def _prune(self, born: list[_Node], text: bytes) -> list[_Node]:
        p = len(text)
        if self.prune is None:
            if len(born) > self.max_nodes:
                raise TokenswapError(
                    f"{len(born)} token paths reach byte {p}, more than max_nodes="
                    f"{self.max_nodes}; pass prune (e.g. 1e-6) or a larger max_nodes"
                )
            return born
        born = sorted(born, key=lambda node: -node.logprob)
        keep = born[: self.max_nodes]
        if len(keep) < len(born):
            self._dropped[p] = _logaddexp([node.logprob for node in born[len(keep):]])
        if keep and self.prune > 0:
            # the share of the mass of "starts with text" flowing through each path
            floor = self._prefix_mass(text) + math.log(self.prune)
            for node in keep:
                node.deferred = node.logprob < floor
        return keep

    def _viable(self, node: _Node, text: bytes) -> bool:
        """Can the path ``node`` still be part of a cover of ``text`` (or an extension)?"""
        if node.pos >= len(text):
            return True
        index = self.first_index if node.first else self.index
        lo, hi = index.prefix_range(text[node.pos:])
        return hi > lo

    def _revive(self, text: bytes, upto: int) -> None:
        """Score the deferred paths at positions ``<= upto`` that now hold at least ``prune``
        of ``P(starts with text)``, creating their descendants up to ``upto``."""
        if not self.prune or not text:
            return
        log_r = math.log(self.prune)
        while True:
            floor = self._prefix_mass(text) + log_r
            wake = [node for q in range(max(0, len(text) - self.longest), upto + 1)
                    for node in self._at(q)
                    if node.deferred and node.logprob >= floor and self._viable(node, text)]
            if not wake:
                return
            self._wake(wake, text, upto)

    def _complete(self, text: bytes) -> bool:
        """Score deferred paths, most likely first, until a scored path ends at ``len(text)``
        (its next token may start with any byte, so no possible byte keeps probability 0)."""
        n, woke = len(text), False
        while not any(not node.deferred and node.sorted_lp is not None for node in self._at(n)):
            # a path ending at n gives every first byte at once; else the best earlier one,
            # whose children at n come next
            waiting = [node for node in self._at(n) if node.deferred] or [
                node for q in range(max(0, n - self.longest), n) for node in self._at(q)
                if node.deferred and self._viable(node, text)]
            if not waiting:
                break
            self._wake([max(waiting, key=lambda node: node.logprob)], text, n)
            woke = True
        return woke

    def _wake(self, nodes: list[_Node], text: bytes, upto: int) -> None:
        """Score deferred ``nodes`` and add their children up to ``upto`` (deferred)."""
        for node in nodes:
            node.deferred = False
        self._score_all(nodes)
        self._in_order = False  # cache entries no longer follow byte positions
        for node in nodes:
            index = self.first_index if node.first else self.index
            for p in range(node.pos + 1, min(upto, node.pos + self.longest) + 1):
                lo, hi = index.exact_range(text[node.pos:p])
                children = [_Node(token=int(index.order[k]), pos=p, path=node.path,
                                  logprob=node.logprob + float(node.sorted_lp[k]), deferred=True)
                            for k in range(lo, hi)]
                self._nodes.extend(children)
                self._by_pos.setdefault(p, []).extend(children)

    def _score_all(self, nodes: list[_Node]) -> None:
        for start in range(0, len(nodes), self.batch_size):
            self._score(nodes[start:start + self.batch_size])

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
                             attention_mask=mask.to(self.device), use_cache=True,
                             **cache_kwarg(self.model, self._cache))
        self._cache = returned_cache(out)
        self._cache_tokens += [node.token for node in nodes]
        self.forward_passes += 1
        self.tokens_scored += k
        self._fill_many(nodes, out.logits[0])


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


__all__ = ["END", "ByteLM"]
