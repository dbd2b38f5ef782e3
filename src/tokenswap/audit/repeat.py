"""Verification prompts: how likely a model is to repeat a token it is shown.

The verification step of Land & Bartolo, "Fishing for Magikarp" (arXiv 2405.05417): a
well-trained token is easy to repeat, an under-trained one is not. Each template asks the model
to repeat a string; the candidate is inserted as its own token id (never re-tokenized), the
assistant's answer is opened up to the point where the token should come next, and the
probability of the token id at that position is read. The score of a token is the maximum over
the templates. Models with a chat template get the prompt through it; others get a plain
``Question:/Answer:`` frame (with the tokenizer's BOS, if it adds one).

All sequences of one template have the same length (only the inserted id differs), so they are
batched without padding: one forward pass per ``batch_size`` candidates and template, after the
shared prefix's key/value cache is computed once per template.

Left out: generating the full answer (the paper also checks greedy decoding; the next-token
probability is the cheaper, graded version of the same test).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from tokenswap.kv_cache import cache_kwarg, returned_cache

# (user message with {token}, start of the assistant's answer: the token should come next)
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("Please repeat the string '{token}' back to me, and nothing else.",
     "Of course! Here is the repeated string: '"),
    ('Can you repeat the following text exactly? "{token}"', 'Sure: "'),
    # ends without a quote: a token that starts with a space reads naturally after the colon
    ("Say this after me:{token}", "Say this after me:"),
)
_SENTINEL = "\u2063TOKEN\u2063"  # invisible separator: never part of a real prompt


def _frame(tokenizer, user: str, answer: str) -> tuple[list[int], list[int]]:
    """Ids before and after the inserted token for one template."""
    message = user.format(token=_SENTINEL)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": message}],
                                             tokenize=False, add_generation_prompt=True)
        left, right = (text + answer).split(_SENTINEL)
        add_special = False  # the template wrote its own special tokens as text
    else:
        left, right = f"Question: {message}\nAnswer: {answer}".split(_SENTINEL)
        add_special = True
    before = tokenizer(left, add_special_tokens=add_special)["input_ids"]
    after = tokenizer(right, add_special_tokens=False)["input_ids"]
    if add_special and before and tokenizer.eos_token_id is not None and \
            before[-1] == tokenizer.eos_token_id:
        before = before[:-1]  # a post-processor that appends EOS would end the prompt early
    return before, after


def _prefix_cache(model, pre: torch.Tensor):
    """The key/value cache of the shared prompt prefix (1, L), or None if the model has none."""
    try:
        out = model(input_ids=pre[None], use_cache=True)
    except (TypeError, ValueError):
        return None
    cache = returned_cache(out)
    return cache if hasattr(cache, "batch_repeat_interleave") else None


@torch.no_grad()
def repeat_probabilities(model, tokenizer, token_ids: Sequence[int], *, batch_size: int = 16,
                         templates: Sequence[tuple[str, str]] = TEMPLATES,
                         progress: bool = False) -> np.ndarray:
    """(N,) the highest probability, over ``templates``, that ``model`` repeats each token.

    The prompt prefix before the token is the same for every candidate of a template: its
    key/value cache is computed once and repeated over the batch, so each forward pass only
    runs the token and the rest of the prompt.
    """
    device = next(model.parameters()).device
    ids = torch.as_tensor(list(token_ids), dtype=torch.long)
    best = torch.zeros(len(ids))
    frames = [_frame(tokenizer, user, answer) for user, answer in templates]
    total = len(frames) * ((len(ids) + batch_size - 1) // batch_size)
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("repeat prompts", total=total)
    try:
        for before, after in frames:
            pre = torch.tensor(before, dtype=torch.long, device=device)  # (L,)
            post = torch.tensor(after, dtype=torch.long, device=device)  # (R,)
            cache = _prefix_cache(model, pre) if len(pre) else None
            for start in range(0, len(ids), batch_size):
                chunk = ids[start:start + batch_size]  # (B,)
                b = len(chunk)
                tail = torch.cat([chunk[:, None].to(device), post.expand(b, -1)], 1)  # (B, 1+R)
                if cache is not None:
                    past = copy.deepcopy(cache)
                    past.batch_repeat_interleave(b)
                    mask = torch.ones(b, len(pre) + tail.shape[1], dtype=torch.long, device=device)
                    logits = model(input_ids=tail, attention_mask=mask, use_cache=True,
                                   **cache_kwarg(model, past)).logits[:, -1].float()  # (B, V)
                else:
                    batch = torch.cat([pre.expand(b, -1), tail], 1)  # (B, L+1+R)
                    logits = model(input_ids=batch).logits[:, -1].float()  # (B, V)
                probs = torch.softmax(logits, -1).cpu()
                p = probs[torch.arange(b), chunk]  # (B,)
                best[start:start + b] = torch.maximum(best[start:start + b], p)
                if bar is not None:
                    bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    return best.numpy()


__all__ = ["TEMPLATES", "repeat_probabilities"]
