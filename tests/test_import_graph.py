"""The modules of i2i import one another without a cycle: data flows one way (style.md), so a
lower layer never imports a higher one, at the top of a file or inside a function.

The graph is read from the source with `ast` (nothing is imported): module -> the i2i modules it
imports anywhere in its body. `from i2i.x import y` counts as importing `i2i.x.y` when that is a
module, else `i2i.x`; importing `i2i.x.y` also runs `i2i.x/__init__.py`, but a package's
`__init__` re-exporting its modules is not a cycle of the code, so only the named module counts.

Last, what a fresh interpreter loads: a file command no Lightning CLI, the real datasets no demo
data.
"""

from __future__ import annotations

import ast
import functools
import graphlib
import json
import sys
from pathlib import Path

import pytest

from tests.clirun import run

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "i2i"

# Cycles that remain, each as the modules it runs through: the test fails if one of them is
# broken (remove it here) or if any other cycle appears. The list may only shrink.
ALLOWED_CYCLES: list[set[str]] = []


def module_names() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def is_import_by_name(node: ast.AST) -> bool:
    """`importlib.import_module("literal")` or `import_module("literal")`."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    first = node.args[0]
    return (
        name == "import_module" and isinstance(first, ast.Constant) and isinstance(first.value, str)
    )


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The i2i modules that module `name` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif is_import_by_name(node):  # importlib.import_module("i2i.x"): an import all the same
            targets = [node.args[0].value]
        else:
            continue
        for target in targets:
            if target in modules:
                found.add(target)
            elif target.rpartition(".")[0] in modules and isinstance(node, ast.ImportFrom):
                found.add(target.rpartition(".")[0])  # `from i2i.x import function`
    # `from i2i.x import module, function` names both i2i.x.module and i2i.x: the package
    # itself only counts when something that is not a module is taken from it.
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module in modules and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            if all(n in modules for n in names):
                found.discard(node.module)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


@functools.cache
def package_cycles() -> list[list[str]]:
    """The package's cycles, read once for the tests below (each read parses every file)."""
    return cycles(import_graph())


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle graphlib finds, one at a time: each found cycle's last edge is cut and the
    search repeated, so that all of them are listed, not only the first."""
    graph = {k: set(v) for k, v in graph.items()}
    found = []
    while True:
        try:
            tuple(graphlib.TopologicalSorter(graph).static_order())
            return found
        except graphlib.CycleError as e:
            cycle = e.args[1]  # [a, b, ..., a]: each imported by the next
            found.append(cycle[::-1])  # each importing the next
            graph[cycle[1]].discard(cycle[0])


def test_the_graph_sees_top_level_function_level_relative_and_by_name_imports(tmp_path):
    files = {
        "i2i": "__init__.py",
        "i2i.sub": "sub/__init__.py",
        "i2i.sub.leaf": "sub/leaf.py",
        "i2i.top": "top.py",
        "i2i.other": "other.py",
    }
    sources = {
        "i2i": "",
        "i2i.sub": "from .leaf import f\n",
        "i2i.sub.leaf": "def f():\n    from i2i import top\n",
        "i2i.top": "import i2i.sub.leaf\n",
        "i2i.other": "import importlib\nimportlib.import_module('i2i.sub')\n",
    }
    modules = {name: tmp_path / "i2i" / file for name, file in files.items()}
    for name, path in modules.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sources[name])
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert graph == {
        "i2i": set(),
        "i2i.sub": {"i2i.sub.leaf"},
        "i2i.sub.leaf": {"i2i.top"},
        "i2i.top": {"i2i.sub.leaf"},
        "i2i.other": {"i2i.sub"},
    }
    (cycle,) = cycles(graph)
    assert cycle in (
        ["i2i.sub.leaf", "i2i.top", "i2i.sub.leaf"],
        ["i2i.top", "i2i.sub.leaf", "i2i.top"],
    )
    graph["i2i.sub.leaf"] = set()
    assert cycles(graph) == []


def test_the_package_has_no_import_cycle_beyond_the_allowed_ones():
    found = package_cycles()
    unexpected = [c for c in found if set(c) not in ALLOWED_CYCLES]
    assert not unexpected, "import cycles:\n" + "\n".join(" -> ".join(c) for c in unexpected)
    gone = [c for c in ALLOWED_CYCLES if c not in [set(f) for f in found]]
    assert not gone, f"no longer cycles (remove them from ALLOWED_CYCLES): {gone}"


@pytest.mark.parametrize(
    "module",
    [
        "i2i.commands",
        "i2i.cli",
        "i2i.lightning_command",
        "i2i.io",
        "i2i.errors",
        "i2i.inference.model",
        "i2i.inference.export",
        "i2i.inference.onnx_backend",
    ],
)
def test_the_entry_point_and_the_model_file_modules_are_on_no_cycle(module):
    assert all(module not in cycle for cycle in package_cycles())


def test_every_user_error_type_is_defined_in_i2i_errors():
    """Issue 27: `i2i.errors` holds the user-facing error types, so a reader finds them in one
    place; a class deriving from one of them anywhere else is named here."""
    names = {"UserError"}
    errors = ast.parse((SRC / PACKAGE / "errors.py").read_text())
    for node in errors.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
    elsewhere = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        if path.name == "errors.py" and path.parent == SRC / PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {
                    b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
                }
                if bases & names:
                    elsewhere.append(f"{path.relative_to(SRC)}:{node.lineno}:{node.name}")
    assert elsewhere == [], elsewhere


# What a fresh interpreter loads (one process for both checks: each pays seconds of imports).
# The file command first: the datasets' imports below would load the Lightning CLI.
FRESH_IMPORTS = """
import json, sys
from i2i.commands import main
try:
    main(["inpaint", "--help"])
except SystemExit:
    pass
cli = ("i2i.cli", "i2i.lightning_command", "lightning.pytorch.cli")
loaded = {"file_command": [name for name in cli if name in sys.modules]}
import i2i.data.inpainting, i2i.data.stream, i2i.data.translation
import i2i.data.label_datamodules
import i2i.data.unpaired, i2i.data.labels, i2i.tasks, i2i.cli
loaded["real_datasets"] = "i2i.data.synthetic" in sys.modules
print(json.dumps(loaded))
"""


@pytest.fixture(scope="module")
def fresh_imports() -> tuple[dict, str]:
    result = run([sys.executable, "-c", FRESH_IMPORTS])
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout


def test_a_file_command_starts_without_lightnings_cli(fresh_imports):
    """`i2i.commands` dispatches a file command before the Lightning CLI is imported (seconds
    that `i2i inpaint` on one photo should not pay)."""
    loaded, printed = fresh_imports
    assert "usage:" in printed
    assert loaded["file_command"] == []


def test_real_datasets_do_not_import_the_demo_data(fresh_imports):
    loaded, _ = fresh_imports
    assert loaded["real_datasets"] is False, "i2i.data.synthetic imported"
