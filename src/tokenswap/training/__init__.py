"""The training skeleton ``tokenswap tune`` and ``tokenswap hypernet train`` share.

A trainer describes its options as a subclass of :class:`~.config.TrainingConfig` and its work
as a :class:`~.loop.Task` (the step's forward and backward passes, an evaluation, what to
save); :func:`~.loop.run` does the rest, the same way for every trainer:

- :mod:`.budget`: steps, minutes on the wall or the CPU clock; only training steps count;
- :mod:`.schedule`: linear warm-up capped at a tenth of the run, cosine/linear/constant after;
- :mod:`.checkpoint`: weights, optimizer, every RNG state and the clocks, written whole;
  exact resume, refused with one line for a checkpoint of other seed, batch size, ...;
- :mod:`.log` (``log.jsonl``) and :mod:`.progress` (the rich progress bar);
- :mod:`.loop`: the loop itself, data parallel and FSDP ranks included.

This package module imports no torch; its modules other than ``config``, ``budget``,
``schedule``, ``log`` and ``progress`` do.
"""

from tokenswap.training.budget import Clock
from tokenswap.training.config import TrainingConfig
from tokenswap.training.schedule import Schedule

__all__ = ["Clock", "Schedule", "TrainingConfig"]
