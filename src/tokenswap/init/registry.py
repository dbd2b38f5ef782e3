"""The registry of embedding-initialisation methods.

A method is a typed function registered with :func:`register`::

    @register("mean", aliases=("fvt",), paper="Fine-Tuning Transformers: Vocabulary Transfer",
              url="https://arxiv.org/abs/2112.14569", summary="mean of the source pieces")
    def mean(source: torch.Tensor, pair: TokenPair, ctx: InitContext) -> Initialized: ...

A method with options declares them as a dataclass of :func:`tokenswap.config.option` fields,
``register(..., options=FocusOptions)``; :func:`resolve_options` builds an instance from a
mapping of names to strings or values (``-O focus_mix=0.25``) with one-line errors, and the
method reads it as ``ctx.options``. Methods without options have :class:`NoOptions`.

It receives one source matrix (V_s, H) - the input embeddings, or the output embeddings of an
untied model, or an output bias as (V_s, 1) - and returns the matrix for the target vocabulary
(V_t, H) with each row's provenance. The orchestration layer (:mod:`tokenswap.api`) calls it
once per matrix, so input and output embeddings are always handled separately, and tied
models call it once. Methods never load or save anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import numpy as np
import torch

from tokenswap.config import describe, from_dict
from tokenswap.errors import TokenswapError, did_you_mean
from tokenswap.vocab.pair import TokenPair

OptionsT = TypeVar("OptionsT")


@dataclass(frozen=True)
class NoOptions:
    """The options of a method that has none."""


@dataclass
class InitContext:
    """What a method may use besides the source matrix and the token pair."""

    seed: int = 0
    matrix: str = "input"  # "input", "output" or "bias": which matrix is being initialised
    corpus: list[str] | None = None  # target-language text, for methods that need it
    device: torch.device | str | None = None
    # The method's options dataclass (InitMethod.options), built by resolve_options; None: the
    # defaults. Methods read it with options_as.
    options: Any = None
    # What one transfer's calls (input, output, bias) share: trained auxiliary models, weights
    # that depend only on the pair. Keyed by method-specific names; never holds options.
    cache: dict[str, Any] = field(default_factory=dict)
    source_tokenizer: object | None = None  # the source model's tokenizer (transformers)
    target_tokenizer: object | None = None  # the target tokenizer (transformers)
    # Input embeddings of a donor model that was trained with the target tokenizer, one row per
    # target id, (V_t, H_donor); None when there is no donor (see `tokenswap transfer --donor`).
    donor: torch.Tensor | None = None
    source_corpus: list[str] | None = None  # text in the source model's language (WECHSEL)
    dictionary: list[tuple[str, str]] | None = None  # bilingual single-word pairs (WECHSEL)
    hypernet: object | None = None  # a loaded tokenswap.hypernet.Hypernet (method `hypernet`)
    # Every source matrix by name ("input", "output", "bias": None when absent), for methods
    # that predict all matrices of a model in one pass (hypernet).
    sources: dict[str, torch.Tensor | None] | None = None

    def options_as(self, cls: type[OptionsT]) -> OptionsT:
        """``self.options``, checked to be a ``cls``; ``cls()`` (the defaults) when None."""
        if self.options is None:
            return cls()
        if not isinstance(self.options, cls):
            raise TypeError(f"InitContext.options is a {type(self.options).__name__}, this method "
                            f"takes {cls.__name__}: build it with resolve_options(method, {{...}})")
        return self.options

    def generator(self) -> torch.Generator:
        """A generator seeded per matrix, so input and output draws differ but repeat."""
        offset = {"input": 0, "output": 1, "bias": 2}.get(self.matrix, 3)
        return torch.Generator(device="cpu").manual_seed(self.seed * 10 + offset)


@dataclass
class Initialized:
    """A target matrix (V_t, H) and, per row, a Provenance value (may differ from the pair's)."""

    matrix: torch.Tensor
    provenance: np.ndarray


InitFn = Callable[[torch.Tensor, TokenPair, InitContext], Initialized]


@dataclass(frozen=True)
class InitMethod:
    name: str
    fn: InitFn
    summary: str
    paper: str = ""
    url: str = ""
    aliases: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()  # inputs it cannot run without: keys of REQUIREMENTS
    accepts: tuple[str, ...] = ()  # inputs it uses when given (in order of preference)
    options: type = NoOptions  # dataclass of its options, fields made with config.option

    def describe_options(self) -> list[dict[str, Any]]:
        """One row per option: ``name``, ``type``, ``default``, ``help`` and ``why`` (how the
        default was chosen), for ``tokenswap methods``; empty for a method without options."""
        return describe(self.options)

    @property
    def needs_corpus(self) -> bool:
        return "corpus" in self.requires

    @property
    def needs_donor(self) -> bool:
        return "donor" in self.requires


# What a method may require, and the CLI flag that provides it.
REQUIREMENTS = {
    "corpus": "--corpus (target-language text)",
    "donor": "--donor (a model trained with the target tokenizer)",
    "source_corpus": "--source-corpus (text in the source model's language)",
    "dictionary": "--dictionary (a bilingual dictionary, e.g. freedict:deu-eng)",
    "hypernet": "--hypernet (a hypernet directory from `tokenswap hypernet train`; a model with "
                "a shipped hypernet needs none)",
}


_METHODS: dict[str, InitMethod] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, *, summary: str, paper: str = "", url: str = "",
             aliases: tuple[str, ...] = (), requires: tuple[str, ...] = (),
             accepts: tuple[str, ...] = (), options: type = NoOptions
             ) -> Callable[[InitFn], InitFn]:
    """Decorator: record ``fn`` as the init method ``name``.

    ``requires``: inputs the method cannot run without; ``accepts``: optional inputs it uses
    when given (``omp`` takes a donor, else a corpus; ``convex`` trains on a corpus if given).
    ``options``: the dataclass of its options; every field needs a default and a help text.
    """
    unknown = (set(requires) | set(accepts)) - set(REQUIREMENTS)
    if unknown:
        raise ValueError(f"init method {name!r}: unknown requirements {sorted(unknown)}")
    undocumented = [row["name"] for row in describe(options) if not row["help"]]
    if undocumented:
        raise ValueError(f"init method {name!r}: options without help text {undocumented}")
    options()  # every option has a default (a method runs on its defaults alone)

    def wrap(fn: InitFn) -> InitFn:
        if name in _METHODS or name in _ALIASES:
            raise ValueError(f"init method {name!r} registered twice")
        _METHODS[name] = InitMethod(name, fn, summary, paper, url, aliases, tuple(requires),
                                     tuple(accepts), options)
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return wrap


def get_method(name: str) -> InitMethod:
    """The method called ``name`` (or an alias), or a did-you-mean error."""
    key = _ALIASES.get(name, name)
    if key not in _METHODS:
        names = sorted([*_METHODS, *_ALIASES])
        raise TokenswapError(
            f"unknown init method {name!r}{did_you_mean(name, names)}; "
            f"`tokenswap methods` lists them ({', '.join(sorted(_METHODS))})"
        )
    return _METHODS[key]


def list_methods() -> list[InitMethod]:
    return [_METHODS[k] for k in sorted(_METHODS)]


def method_names() -> list[str]:
    return sorted([*_METHODS, *_ALIASES])


def resolve_options(method: InitMethod, given: Mapping[str, object] | object | None = None) -> Any:
    """The options of ``method`` from ``given``: an instance of ``method.options``, or names
    (``-`` or ``_``) to strings (``"0.5"``, ``"true"``, ``"none"``) or values; None: defaults.

    An unknown name is one line with a did-you-mean that also matches the part after the
    method prefix (``k`` -> ``omp_k``, ``focus_dim`` -> ``aux_dim``); a value that does not
    fit its field, or is out of range, is one line too. Both raise :class:`TokenswapError`.

    >>> resolve_options(get_method("multivariate"), {"multivariate_scale": "0.5"})
    MultivariateOptions(multivariate_scale=0.5)
    """
    cls = method.options
    if given is None:
        return cls()
    if isinstance(given, cls):
        return given
    if not isinstance(given, Mapping):
        raise TokenswapError(f"method {method.name!r} takes options as a mapping of names to "
                             f"values or a {cls.__name__}, not {type(given).__name__}")
    known = [f.name for f in fields(cls)]
    for key in given:
        name = str(key).replace("-", "_")
        if name in known:
            continue
        if not known:
            raise TokenswapError(f"method {method.name!r} takes no options (got {str(key)!r})")
        raise TokenswapError(f"unknown {method.name} option {str(key)!r}"
                             f"{_suggest(name, known)}; known: {', '.join(known)}")
    return from_dict(cls, given, what=f"{method.name} option")


def _suggest(name: str, known: list[str]) -> str:
    """A did-you-mean: the option whose name after its prefix is ``name``'s (``k`` -> ``omp_k``,
    ``focus_dim`` -> ``aux_dim``), else the closest name."""
    tail = name.split("_", 1)[-1]
    for option_name in known:
        if option_name.split("_", 1)[-1] in (name, tail):
            return f" (did you mean {option_name!r}?)"
    return did_you_mean(name, known)
