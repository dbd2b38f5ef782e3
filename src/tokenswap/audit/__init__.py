"""Audit tokenizers: what a tokenizer does to a corpus, and which of its tokens are broken.

Modules: :mod:`~tokenswap.audit.metrics` (a registry of per-corpus tokenizer metrics),
:mod:`~tokenswap.audit.parity` (token-count parity across languages on parallel text),
:mod:`~tokenswap.audit.reachability` (unreachable and undecodable tokens),
:mod:`~tokenswap.audit.report` (JSON and a self-contained HTML report).
The metric/parity/report audit runs through :func:`tokenswap.api.audit` (``tokenswap audit``).
Submodules are imported on use; this package imports nothing heavy.
"""
