"""Errors a user can fix.

Every expected failure (a missing file, a corrupt model, an empty corpus, an output directory
that already exists) raises :class:`TokenswapError` with one line that says what is wrong and
what to do. The CLI prints that line and exits with code 2, without a traceback; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TokenswapError(Exception):
    """An error caused by the user's input, with a one-line, actionable message."""

    exit_code = 2


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """``" (did you mean 'mean'?)"`` for the closest choice, or ``""`` when nothing is close.

    >>> did_you_mean("maen", ["mean", "random"])
    " (did you mean 'mean'?)"
    """
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
