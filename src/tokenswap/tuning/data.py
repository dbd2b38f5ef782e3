"""Sequence packing: documents become one token stream, cut into equal training sequences.

Every document is encoded exactly as :func:`tokenswap.scoring.bpb.bits_per_byte` encodes it
(``add_special_tokens=False``, ``split_special_tokens=True``) and preceded by the same
document-start token (``bos``, else ``eos``), so training sees text the way evaluation scores
it. The stream is cut into sequences of ``seq_len`` tokens; the last partial one is dropped.
Which sequences form step ``s``'s batch is a pure function of ``(seed, s)``: an endless
stream of seeded permutations, one per epoch (as in :mod:`tokenswap.hypernet.train`), so a
resumed run reads exactly the batches an uninterrupted run would.

>>> stream_blocks([[1, 5, 6], [1, 7]], 2).tolist()
[[1, 5], [6, 1]]

Left out: masking attention at document boundaries inside a sequence (a packed sequence
attends across the document-start token, the usual trade for no padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tokenswap.errors import TokenswapError
from tokenswap.scoring.bpb import _encode, document_start_id


def stream_blocks(sequences: Sequence[Sequence[int]], seq_len: int) -> torch.Tensor:
    """Concatenate token sequences and cut them into rows of ``seq_len``: (N, seq_len)."""
    flat = [t for seq in sequences for t in seq]
    n = len(flat) // seq_len
    return torch.tensor(flat[: n * seq_len], dtype=torch.long).reshape(n, seq_len)


def pack(tokenizer, texts: Sequence[str], seq_len: int) -> torch.Tensor:
    """Packed training sequences (N, seq_len) of ``texts`` under ``tokenizer``."""
    start = document_start_id(tokenizer)
    encoded = _encode(tokenizer, [t for t in texts if t])
    blocks = stream_blocks([[start, *ids] for ids in encoded], seq_len)
    if len(blocks) == 0:
        total = sum(len(ids) + 1 for ids in encoded)
        raise TokenswapError(f"the training text is {total:,} tokens, less than one sequence of "
                             f"--seq-len {seq_len}; add text or lower --seq-len")
    return blocks


def batch_indices(n: int, step: int, batch_size: int, seed: int) -> list[int]:
    """Rows of global batch ``step`` out of ``n``: seeded epoch permutations, end to end."""
    orders: dict[int, np.ndarray] = {}
    out = []
    for k in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(k, n)
        if epoch not in orders:
            orders[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(orders[epoch][pos]))
    return out


def rank_micro_batches(batch: list[int], rank: int, world: int, grad_accum: int
                       ) -> list[list[int]]:
    """This rank's share of a global batch, split into ``grad_accum`` micro-batches.

    >>> rank_micro_batches(list(range(8)), 1, 2, 2)
    [[1, 3], [5, 7]]
    """
    if len(batch) % (world * grad_accum):
        raise TokenswapError(f"batch_size {len(batch)} must be a multiple of ranks x grad_accum "
                             f"= {world} x {grad_accum}")
    mine = batch[rank::world]
    size = len(mine) // grad_accum
    return [mine[i * size:(i + 1) * size] for i in range(grad_accum)]
