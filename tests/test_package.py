"""The package's shape: light imports, no import cycles between modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tokenswap

SRC = Path(tokenswap.__file__).parent


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_leaf_modules_do_not_load_transformers():
    for module in ("tokenswap", "tokenswap.vocab.bytes", "tokenswap.config", "tokenswap.errors",
                   "tokenswap.tuning.config"):
        loaded = _loaded_after(f"import {module}")
        assert "transformers" not in loaded, module
    assert "torch" not in _loaded_after("import tokenswap")


def test_command_options_load_no_torch():
    """The CLI reads every command's Config for --help: those modules must stay light."""
    from tokenswap.commands import COMMANDS

    modules = sorted({f"tokenswap.commands.{m}" for m in COMMANDS.values()})
    loaded = _loaded_after("; ".join(f"import {m}" for m in modules))
    assert "torch" not in loaded and "transformers" not in loaded


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """tokenswap modules ``path`` imports, at the top or inside functions (a lazy import is
    still a dependency), except under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                found |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - sub.level + 1]
                                    + ([base] if base else []))
                found.add(base)
                found |= {f"{base}.{a.name}" for a in sub.names}
    return {m for m in found if m.startswith("tokenswap")}


def test_no_import_cycles():
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for dep in _imports(path, name):
            while dep and dep not in modules:  # `from pkg import name` names an attribute
                dep = dep.rsplit(".", 1)[0] if "." in dep else ""
            if dep and dep != name:
                deps.add(dep)
        graph[name] = deps

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                # a package importing its own submodules (registration) is not a cycle
                if not all(b.startswith(a + ".") or a.startswith(b + ".")
                           for a, b in zip(cycle, cycle[1:], strict=False)):
                    raise AssertionError("import cycle: " + " -> ".join(cycle))
            elif dep in graph and state.get(dep) is None:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if state.get(name) is None:
            visit(name)


def test_api_names_are_not_shadowed_by_subpackages():
    """``import tokenswap.x.y`` sets ``tokenswap.x`` to the subpackage: no public function may
    share a subpackage's name (``tokenswap.evaluate`` was once shadowed that way)."""
    code = ("import tokenswap, tokenswap.scoring.bpb, tokenswap.commands.eval; "
            "print(callable(tokenswap.evaluate), callable(tokenswap.transfer))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
    subpackages = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    subpackages |= {p.stem for p in SRC.glob("*.py")}
    assert not set(tokenswap._EXPORTS) & subpackages
