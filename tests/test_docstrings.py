"""The API pages (docs/api/*.md, mkdocstrings, Google style) show every public name's docstring.

Walks the source of each package with `ast` (no imports, so it is fast and sees exactly what the
pages render) and asserts that every public class, function and public method has a docstring,
and that every one taking arguments documents them in an `Args:` section. A class's constructor
arguments may be documented in the class docstring or in `__init__`'s; a public class that takes
its constructor from a private base of its module documents them itself (the page does not show
the private base).
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "i2i"

PACKAGES = ("networks", "tasks", "metrics", "inference", "data")

# Methods that only implement a hook whose arguments Lightning or torchmetrics documents: a
# one-line docstring saying what this class does there is enough, and an Args: section would
# repeat the base class. They still need that docstring. Not `forward`: each network's inputs
# are its own, so its Args: give their shapes and ranges.
HOOKS = frozenset(
    {
        "training_step",
        "validation_step",
        "test_step",
        "predict_step",
        "configure_optimizers",
        "setup",
        "teardown",
        "prepare_data",
        "state_dict",
        "load_state_dict",
        "on_save_checkpoint",
        "on_load_checkpoint",
        "update",
        "compute",
        # EvaluationProtocol's own hooks, their arguments documented once in the base class.
        "start",
        "describe",
    }
)


def _is_public(name: str) -> bool:
    return not name.startswith("_")


def _params(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = node.args
    names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
    names += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
    return [n for n in names if n not in ("self", "cls")]


def _has_args(doc: str | None) -> bool:
    return doc is not None and any(line.strip() == "Args:" for line in doc.splitlines())


def _init(node: ast.ClassDef) -> ast.FunctionDef | None:
    return next(
        (f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None
    )


def _inherited_init(node: ast.ClassDef, classes: dict[str, ast.ClassDef]):
    """(the class of this module whose `__init__` `node` uses, that `__init__`): along the first
    base while it is a class of the same module; None when the constructor comes from elsewhere."""
    while _init(node) is None:
        bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
        if not bases or bases[0] not in classes:
            return None
        node = classes[bases[0]]
    return node, _init(node)


def _offenders(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(SRC.parents[1])
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    found = []

    def check_function(node, qualname: str, hook: bool = False) -> None:
        doc = ast.get_docstring(node)
        if doc is None:
            found.append(f"{rel}:{node.lineno}:{qualname}: no docstring")
        elif _params(node) and not hook and not _has_args(doc):
            found.append(f"{rel}:{node.lineno}:{qualname}: no Args: section")

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_public(node.name):
            check_function(node, node.name)
        elif isinstance(node, ast.ClassDef) and _is_public(node.name):
            doc = ast.get_docstring(node)
            if doc is None:
                found.append(f"{rel}:{node.lineno}:{node.name}: no docstring")
            owner = _inherited_init(node, classes)
            if (
                owner is not None
                and owner[0] is not node
                and not _is_public(owner[0].name)
                and _params(owner[1])
                and not _has_args(doc)
            ):
                found.append(
                    f"{rel}:{node.lineno}:{node.name}: no Args: section for the constructor of "
                    f"{owner[0].name}"
                )
            for item in node.body:
                if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                qualname = f"{node.name}.{item.name}"
                if item.name == "__init__":
                    init_doc = ast.get_docstring(item)
                    if _params(item) and not (_has_args(doc) or _has_args(init_doc)):
                        found.append(f"{rel}:{item.lineno}:{qualname}: no Args: section")
                elif _is_public(item.name):
                    check_function(item, qualname, hook=item.name in HOOKS)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_public_names_have_docstrings_with_args(package: str) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no modules under {SRC / package}"
    offenders = [line for path in files for line in _offenders(path)]
    assert not offenders, f"{len(offenders)} public names lack docs:\n" + "\n".join(offenders)


def test_no_docstring_uses_a_sphinx_role() -> None:
    """mkdocstrings renders Google style: a Sphinx role (:func:`x`) shows up as its raw text."""
    import re

    role = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|obj|exc):`")
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node, clean=False) or ""
                if role.search(doc):
                    found.append(f"{path.relative_to(SRC)}:{getattr(node, 'name', '<module>')}")
    assert not found, "Sphinx roles in docstrings (write `name` instead): " + ", ".join(found)
