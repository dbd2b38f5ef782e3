"""Typed configs: dataclasses whose fields carry their help text, read from any source.

Every workflow (``tokenswap transfer``, ``tune``, ...), every init method's options and every
trainer describe their options as a dataclass built with :func:`option`::

    @dataclass
    class FocusOptions:
        focus_temperature: float = option(0.03, "Softmax temperature of the similarities.")

The same class is then the Python keyword arguments, the generated command-line options (help,
choices of enums, ``--config FILE.yaml``), the ``-O key=value`` options of init methods and what
a checkpoint records. :func:`from_dict` builds one from a mapping of strings or values (YAML, the
command line, JSON) with one-line errors; :func:`to_dict` turns it back into plain values.

Leaves of the package import this module, so it must not import torch or transformers.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, fields, is_dataclass
from pathlib import Path
from typing import Any

from tokenswap.errors import TokenswapError, did_you_mean


def option(default: Any = MISSING, help: str = "", *, short: str | None = None,
           default_factory: Any = MISSING, cli: bool = True, why: str = "",
           flag: str | None = None, argument: bool = False, required: bool = False,
           metavar: str | None = None) -> Any:
    """A dataclass field with its one-line ``help``.

    Command line: the option is ``--field-name`` unless ``flag`` names it (``"--json"``);
    ``short`` adds a one-letter alias (``"-o"``); ``argument=True`` makes it positional;
    ``cli=False`` keeps it out (Python-only values); ``required=True`` makes an option that
    Python may leave at its default required on the command line. ``why`` says how a default was chosen
    (shown by ``tokenswap methods``; cite a results file rather than copy a number).
    """
    metadata = {"help": help, "short": short, "cli": cli, "why": why, "flag": flag,
                "argument": argument, "required": required, "metavar": metavar}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    if default is MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(f: Field) -> str:
    return str(f.metadata.get("help", ""))


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (``from __future__ import annotations`` safe).

    Each is resolved in the module that declares it, so fields inherited from a base class in
    another module resolve too.
    """
    return typing.get_type_hints(cls)


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``int | None`` -> ``(int, True)``; ``int`` -> ``(int, False)``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(tp)):
            return args[0], True
    return tp, False


def type_name(tp: Any) -> str:
    base, optional = unwrap_optional(tp)
    if isinstance(base, type) and issubclass(base, enum.Enum):
        name = "|".join(str(m.value) for m in base)
    elif typing.get_origin(base) in (list, tuple):
        inner = typing.get_args(base)[0] if typing.get_args(base) else str
        name = f"list[{type_name(inner)}]"
    else:
        name = getattr(base, "__name__", str(base))
    return f"{name} | None" if optional else name


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_value(raw: Any, tp: Any, what: str) -> Any:
    """``raw`` (a string from the command line or -O, or a YAML/JSON value) as type ``tp``.

    Raises :class:`TokenswapError` naming ``what`` when it does not fit.
    """
    base, optional = unwrap_optional(tp)
    if raw is None or (optional and isinstance(raw, str) and raw.lower() in ("none", "null")):
        if optional or base is Any:
            return None
        raise TokenswapError(f"{what} needs a value of type {type_name(tp)}")
    if base is Any:
        return raw
    if isinstance(base, type) and issubclass(base, enum.Enum):
        if isinstance(raw, base):
            return raw
        choices = [str(m.value) for m in base]
        if str(raw) not in choices:
            raise TokenswapError(f"{what} must be one of {', '.join(choices)} (got {raw!r})"
                                 f"{did_you_mean(str(raw), choices)}")
        return base(str(raw))
    origin = typing.get_origin(base)
    if origin in (list, tuple) or base in (list, tuple):
        inner = typing.get_args(base)[0] if typing.get_args(base) else str
        items = raw.split(",") if isinstance(raw, str) else list(raw) \
            if isinstance(raw, (list, tuple)) else [raw]
        values = [parse_value(item.strip() if isinstance(item, str) else item, inner, what)
                  for item in items if not (isinstance(item, str) and not item.strip())]
        return tuple(values) if origin is tuple or base is tuple else values
    if base is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise TokenswapError(f"{what} must be true or false (got {raw!r})")
    if base is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise TokenswapError(f"{what} must be an integer (got {raw!r})")
        try:
            return int(raw) if not isinstance(raw, str) else int(raw.replace("_", ""))
        except ValueError:
            raise TokenswapError(f"{what} must be an integer (got {raw!r})") from None
    if base is float:
        if isinstance(raw, bool):
            raise TokenswapError(f"{what} must be a number (got {raw!r})")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise TokenswapError(f"{what} must be a number (got {raw!r})") from None
    if base is Path:
        return raw if isinstance(raw, Path) else Path(str(raw))
    if base is str:
        if isinstance(raw, (dict, list)):
            raise TokenswapError(f"{what} must be a string (got {raw!r})")
        return str(raw)
    if is_dataclass(base):
        if isinstance(raw, base):
            return raw
        if not isinstance(raw, Mapping):
            raise TokenswapError(f"{what} must be a mapping of {base.__name__} fields")
        return from_dict(base, raw, what=what)
    if origin is dict or base is dict:
        if not isinstance(raw, Mapping):
            raise TokenswapError(f"{what} must be a mapping (got {raw!r})")
        return dict(raw)
    return raw


def from_dict(cls: type, data: Mapping[str, Any], *, what: str = "option") -> Any:
    """An instance of dataclass ``cls`` from ``data``, every value parsed to its field's type.

    Unknown keys get one line with a did-you-mean; missing required fields too. ``what``
    names the kind of option in messages (``"focus option"``, ``"--config key"``).
    """
    types_ = field_types(cls)
    known = [f.name for f in fields(cls) if f.init]
    values = {}
    for key, raw in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise TokenswapError(f"unknown {what} {key!r}{did_you_mean(name, known)}; "
                                 f"known: {', '.join(known)}")
        values[name] = parse_value(raw, types_[name], f"{what} {name}")
    for f in fields(cls):
        if f.init and f.name not in values and f.default is MISSING \
                and f.default_factory is MISSING:
            raise TokenswapError(f"{what} {f.name} is required")
    return cls(**values)


def build(cls: type, what: str = "option", **values: Any) -> Any:
    """``cls(**values)`` for Python callers, with the command line's checks and flattening.

    Unknown names get one line with a did-you-mean; strings for enum or path fields are
    converted; other values (loaded models, tokenizers, lists of texts) pass as they are.
    Names of fields of a nested dataclass field (a trainer's options inside a command's
    config) may be given flat: ``build(TuneCommand, steps=10)`` fills ``training.steps``.
    """
    types_ = field_types(cls)
    own = {f.name: f for f in fields(cls) if f.init}
    nested = {name: unwrap_optional(types_[name])[0] for name in own
              if is_dataclass(unwrap_optional(types_[name])[0])}
    nested_names = {name: {f.name for f in fields(kind) if f.init} for name, kind in nested.items()}
    kwargs: dict[str, Any] = {}
    inner: dict[str, dict[str, Any]] = {name: {} for name in nested}
    for key, value in values.items():
        if key in own:
            kwargs[key] = _convert(value, types_[key], f"{what} {key}")
            continue
        home = [name for name, names in nested_names.items() if key in names]
        if not home:
            known = sorted([*own, *(n for names in nested_names.values() for n in names)])
            raise TokenswapError(f"unknown {what} {key!r}{did_you_mean(key, known)}")
        inner[home[0]][key] = value
    for name, given in inner.items():
        if given:
            if name in kwargs:
                raise TokenswapError(f"{what}: pass {name} or its fields, not both")
            kwargs[name] = build(nested[name], what, **given)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise TokenswapError(f"{what}: {err}") from None


def _convert(value: Any, tp: Any, what: str) -> Any:
    base, _ = unwrap_optional(tp)
    if isinstance(value, str) and (base is Path or (isinstance(base, type)
                                                    and issubclass(base, enum.Enum))):
        return parse_value(value, tp, what)
    return value


def to_dict(obj: Any) -> Any:
    """Plain JSON/YAML values of a config: enums as their values, paths as strings."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def describe(cls: type) -> list[dict[str, Any]]:
    """One row per field: name, type, default, help and how the default was chosen."""
    types_ = field_types(cls)
    rows = []
    for f in fields(cls):
        if f.default is not MISSING:
            default = to_dict(f.default)
        elif f.default_factory is not MISSING:
            default = to_dict(f.default_factory())
        else:
            default = None
        rows.append({"name": f.name, "type": type_name(types_[f.name]), "default": default,
                     "help": help_of(f), "why": str(f.metadata.get("why", ""))})
    return rows


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (or JSON) file given as ``--config``; one-line errors."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise TokenswapError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise TokenswapError(f"config file {path} is not valid YAML{where}; fix it or pass the "
                             "options on the command line") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TokenswapError(f"config file {path} must hold a mapping of option names to values")
    return {str(k): v for k, v in data.items()}


__all__ = ["build", "describe", "field_types", "from_dict", "help_of", "option", "parse_value",
           "read_config_file", "to_dict", "type_name", "unwrap_optional"]
