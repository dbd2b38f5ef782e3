"""The ``tokenswap`` command line, generated from the commands' config dataclasses.

Each command in :data:`tokenswap.commands.COMMANDS` has a ``Config`` dataclass, ``run`` and
``show`` (:mod:`tokenswap.commands`). Here every config field becomes an option (help from the
field, choices from enums, ``--flag/--no-flag`` for booleans, repeatable options for lists,
``-O KEY=VALUE`` for mappings; nested dataclasses are flattened), every command takes
``--config FILE.yaml`` (values given on the command line win), and errors keep one contract:
expected errors (:class:`~tokenswap.errors.TokenswapError`) and usage errors print one line and
exit with 2, Ctrl-C exits with 130, nothing else is caught.
"""

from __future__ import annotations

import enum
import inspect
import os
import re
import sys
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tokenswap.commands import COMMANDS, GROUPS, load
from tokenswap.config import (
    field_types,
    help_of,
    parse_value,
    read_config_file,
    unwrap_optional,
)
from tokenswap.errors import TokenswapError, did_you_mean

console = Console()
err_console = Console(stderr=True)


# ----------------------------------------------------------------------------- config -> options


@dataclass
class Param:
    """One command-line option: a (possibly nested) config field."""

    path: tuple[str, ...]  # field names from the command's Config down to the leaf
    field: Field
    type: Any  # the resolved annotation

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def flag(self) -> str:
        """The option's name (``--greedy/--sample`` style names give the first)."""
        flag = self.field.metadata.get("flag") or "--" + self.name.replace("_", "-")
        return flag

    @property
    def required(self) -> bool:
        f = self.field
        return bool(f.metadata.get("required")) or (
            f.default is MISSING and f.default_factory is MISSING)

    def default(self) -> Any:
        if self.field.default is not MISSING:
            return self.field.default
        if self.field.default_factory is not MISSING:
            return self.field.default_factory()
        return None


def config_params(cls: type, path: tuple[str, ...] = ()) -> list[Param]:
    """Every command-line field of ``cls``; nested dataclass fields are flattened."""
    types = field_types(cls)
    out: list[Param] = []
    for f in fields(cls):
        if not f.init or not f.metadata.get("cli", True):
            continue
        base, _ = unwrap_optional(types[f.name])
        if is_dataclass(base):
            out += config_params(base, (*path, f.name))
        else:
            out.append(Param((*path, f.name), f, types[f.name]))
    names = [p.name for p in out]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise ValueError(f"{cls.__name__}: options {sorted(clash)} appear twice after flattening")
    return out


def _is_mapping(tp: Any) -> bool:
    base, _ = unwrap_optional(tp)
    return base is dict or getattr(base, "__origin__", None) is dict


def _is_list(tp: Any) -> bool:
    base, _ = unwrap_optional(tp)
    return base in (list, tuple) or getattr(base, "__origin__", None) in (list, tuple)


def _cli_annotation(p: Param) -> Any:
    """The type typer parses the option as (mappings arrive as KEY=VALUE strings)."""
    base, _ = unwrap_optional(p.type)
    if _is_mapping(p.type):
        return list[str] | None
    if _is_list(p.type):
        inner = base.__args__[0] if getattr(base, "__args__", None) else str
        return list[inner] | None
    if base in (bool,):
        return bool
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return str | None  # parsed by parse_value: one line with a did-you-mean
    return base | None


def _help(p: Param) -> str:
    text = help_of(p.field)
    if p.required:
        return f"{text} [required]"
    default = p.default()
    if default in (None, [], {}) or isinstance(default, bool) or p.required:
        return text
    shown = getattr(default, "value", default)
    return f"{text} [default: {shown}]"


_METAVARS = {str: "TEXT", int: "INTEGER", float: "NUMBER", Path: "PATH"}


def _metavar(p: Param) -> str | None:
    """What --help shows for the option's value: ``PATH``, ``[a|b]``, ``KEY=VALUE``; none for
    flags."""
    if p.field.metadata.get("metavar"):
        return p.field.metadata["metavar"]
    base, _ = unwrap_optional(p.type)
    if _is_mapping(p.type):
        return "KEY=VALUE"
    if _is_list(p.type):
        base = base.__args__[0] if getattr(base, "__args__", None) else str
    if base is bool:
        return ""
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return "[" + "|".join(str(m.value) for m in base) + "]"
    return _METAVARS.get(base, "VALUE")


def _parameter(p: Param) -> inspect.Parameter:
    decls = [p.flag]
    if p.field.metadata.get("short"):
        decls.append(p.field.metadata["short"])
    annotation = _cli_annotation(p)
    metavar = _metavar(p)
    text = _help(p)
    if _is_list(p.type) or _is_mapping(p.type):
        text = f"{text} Repeatable." if not p.field.metadata.get("argument") else text
    if p.field.metadata.get("argument"):
        info = typer.Argument(help=text, show_default=False,
                              metavar=p.name.upper().rstrip("S") if _is_list(p.type) else None)
        return inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Annotated[annotation, info])
    if annotation is bool:
        if "/" not in p.flag and p.default():  # on by default: only --no-x says something
            decls[0] = f"{p.flag}/--no-{p.flag[2:]}"
        default = bool(p.default())
    else:
        default = None
    info = typer.Option(*decls, help=text, show_default=False, metavar=metavar)
    return inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, info])


def _key_values(items: list[str], p: Param) -> dict[str, Any]:
    """``["a=1", "b=2"]`` -> ``{"a": "1", "b": "2"}``; repeated keys collect lists when the
    mapping's values are lists (``--sample de=a --sample de=b``)."""
    base, _ = unwrap_optional(p.type)
    args = getattr(base, "__args__", None) or (str, str)
    collect = _is_list(args[1])
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            shape = p.field.metadata.get("metavar") or "KEY=VALUE"
            raise TokenswapError(f"{p.flag} {item!r}: expected {shape}")
        key, value = key.strip(), value.strip()
        if collect:
            out.setdefault(key, []).append(value)
        else:
            out[key] = value
    return out


def build_config(cls: type, params: list[Param], values: dict[str, Any]) -> Any:
    """The command's config from flat option values (already merged), nested as declared."""
    def build(kind: type, path: tuple[str, ...]) -> Any:
        kwargs = {}
        types = field_types(kind)
        for f in fields(kind):
            if not f.init:
                continue
            base, _ = unwrap_optional(types[f.name])
            if is_dataclass(base) and f.metadata.get("cli", True):
                kwargs[f.name] = build(base, (*path, f.name))
            elif f.name in values and (*path, f.name) in by_path:
                kwargs[f.name] = values[f.name]
        try:
            return kind(**kwargs)
        except TypeError as err:  # a required field without a value
            raise TokenswapError(str(err)) from None

    by_path = {p.path for p in params}
    for p in params:
        if p.required and values.get(p.name) in (None, [], {}):
            raise TokenswapError(f"missing option {p.flag}; see --help")
    return build(cls, ())


def merge_values(params: list[Param], given: dict[str, Any], config_file: Path | None
                 ) -> dict[str, Any]:
    """Option values: the field defaults, then ``--config`` (YAML), then the command line."""
    by_name = {p.name: p for p in params}
    values: dict[str, Any] = {}
    if config_file is not None:
        data = read_config_file(config_file)
        flat: dict[str, Any] = {}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in by_name and isinstance(value, dict):  # a nested section
                flat.update({str(k).replace("-", "_"): v for k, v in value.items()})
            else:
                flat[name] = value
        for name, value in flat.items():
            if name not in by_name:
                raise TokenswapError(f"unknown key {name!r} in {config_file}"
                                     f"{did_you_mean(name, list(by_name))}; see --help")
            p = by_name[name]
            values[name] = parse_value(value, p.type, f"{name} in {config_file}")
    for name, value in given.items():
        p = by_name[name]
        if _is_mapping(p.type):
            value = {**values.get(name, {}), **_key_values(value, p)}
        values[name] = parse_value(value, p.type, p.flag)
    return values


def make_command(words: tuple[str, ...]):
    """The typer callback of one command, its signature generated from the config."""
    module = load(words)
    params = config_params(module.Config)

    def command(ctx: typer.Context, config: Path | None = None, **kwargs) -> None:
        given = {}
        for name, value in kwargs.items():
            source = ctx.get_parameter_source(name)  # typer bundles click: compare by name
            if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
                given[name] = value
        cfg = build_config(module.Config, params, merge_values(params, given, config))
        _quiet_libraries()
        try:
            result = module.run(cfg)
        except KeyboardInterrupt:
            raise Interrupted() from None
        if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
            module.show(result, cfg, console)

    config_param = inspect.Parameter(
        "config", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Path | None, typer.Option(
            "--config", metavar="PATH", help="YAML file of option values (names as in --help, with _ or -); "
                             "options given on the command line win.", show_default=False)])
    command.__signature__ = inspect.Signature([
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *[_parameter(p) for p in params], config_param])
    command.__doc__ = (module.__doc__ or "").strip()
    command.__name__ = "_".join(words)
    return command


def build_app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                      help="Give any pretrained language model a new tokenizer.")
    groups: dict[str, typer.Typer] = {}
    for words in COMMANDS:
        parent = app
        if len(words) > 1:
            if words[0] not in groups:
                groups[words[0]] = typer.Typer(no_args_is_help=True, help=GROUPS.get(words[0]))
                app.add_typer(groups[words[0]], name=words[0])
            parent = groups[words[0]]
        command = make_command(words)
        summary = command_summary(command.__doc__ or "")
        parent.command(words[-1], help=summary, short_help=summary)(command)
    return app


def command_summary(doc: str) -> str:
    """The first paragraph of a command module's docstring, without the command's name and
    reStructuredText roles: ``"``tokenswap eval``: score ..."`` -> ``"Score ..."``."""
    text = " ".join(doc.split("\n\n")[0].split())
    if text.startswith("``tokenswap") and "``: " in text:
        text = text.split("``: ", 1)[1]
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")
    return text[:1].upper() + text[1:]


# ----------------------------------------------------------------------------- entry point


def _usage_error_types() -> tuple[type, ...]:
    """click's exception classes as typer uses them (typer >= 0.29 bundles its own click)."""
    kinds: list[type] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = __import__(module, fromlist=["ClickException"])
        except ImportError:
            continue
        kinds.append(mod.ClickException)
    return tuple(kinds)


def _quiet_libraries() -> None:
    """transformers' info logging and tqdm bars off: our rich progress covers the long steps.
    Called when a command runs, so that --help does not import transformers."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


class Interrupted(Exception):
    """Ctrl-C inside a command (typer would turn it into a silent exit code)."""


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv``; returns the exit code."""
    import warnings

    # Deprecation notices of libraries are for their callers (us), not for the user's terminal.
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(?!tokenswap)")
    try:
        app = build_app()
        try:
            result = app(args=argv, standalone_mode=False, prog_name="tokenswap")
        except typer.Exit as done:  # --help and friends
            return done.exit_code
        return result if isinstance(result, int) else 0
    except TokenswapError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return err.exit_code
    except (Interrupted, KeyboardInterrupt, typer.Abort):
        err_console.print("interrupted; outputs are written only when complete", highlight=False)
        return 130
    except _usage_error_types() as err:
        if not err.format_message():  # a bare group: its help was printed
            return 2
        hint = ""
        usage_ctx = getattr(err, "ctx", None)
        if usage_ctx is not None:
            hint = f" (see {usage_ctx.command_path} --help)"
        err_console.print(f"[bold red]error:[/] {err.format_message()}{hint}", highlight=False,
                          soft_wrap=True)
        return 2
    except BrokenPipeError:  # `tokenswap methods | head`
        return 0


def __getattr__(name: str):
    if name == "app":  # the typer app, for typer.testing.CliRunner
        return build_app()
    raise AttributeError(f"module 'tokenswap.cli' has no attribute {name!r}")


_ENTRY_POINT = False  # set by run(): this process is the `tokenswap` command, not a caller


def exit_if_entry_point(code: int) -> None:
    """In the ``tokenswap`` command, print the interrupt line and exit at once, without
    unwinding or interpreter finalization (for a worker thread that cannot be stopped:
    :func:`tokenswap.vocab.train.interruptible`); called from Python (``main``), return."""
    if not _ENTRY_POINT:
        return
    err_console.print("interrupted; outputs are written only when complete", highlight=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run() -> None:
    # under `python -m tokenswap.cli` this module runs as __main__ (and may be imported as
    # tokenswap.cli too): the flag goes where the library looks, the module by that name
    sys.modules.setdefault("tokenswap.cli", sys.modules[__name__])._ENTRY_POINT = True
    sys.exit(main())


if __name__ == "__main__":
    run()
