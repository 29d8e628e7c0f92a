"""MkDocs hook: a page line `<!-- options i2i.tasks.InpaintingTask -->` becomes the table of that
class's options, read from its code when the site is built, so the configuration reference
cannot fall behind it.

The options are what the Lightning CLI accepts under `init_args`: the constructor's arguments
over the class's MRO (a mixin's `*args, **kwargs` pass the rest on; the first class that names
an argument gives it), or a dataclass's fields. Each row's meaning is the comment written beside
the argument in the code (the house style: one argument a line, its comment beside it), or else
its entry in the constructor's or the class's `Args:` docstring section.
"""

from __future__ import annotations

import ast
import functools
import html
import inspect
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import griffe

# The checkout's own code, read without importing it, as mkdocstrings reads it (`paths: [src]`
# in mkdocs.yml).
SOURCE = Path(__file__).resolve().parents[2] / "src"

MARKER = re.compile(r"^<!-- options ([\w.]+) -->$", re.MULTILINE)


@dataclass
class Option:
    name: str
    annotation: str
    default: str  # "" when the option is required
    meaning: str
    owner: str  # the class that declares it (its name)
    scope: griffe.Class = field(repr=False)  # that class: names in its annotation resolve there


@functools.cache
def package() -> griffe.Module:
    return griffe.load("i2i", search_paths=[str(SOURCE)], resolve_aliases=False)


def resolve(path: str) -> griffe.Class:
    """The class `path` names (`i2i.tasks.InpaintingTask`, re-exports followed)."""
    found = package()[path.removeprefix("i2i.")]
    return found.final_target if found.is_alias else found


@functools.cache
def parsed(filepath: Path) -> tuple[ast.Module, dict[int, str]]:
    source = filepath.read_text()
    return ast.parse(source), comments_by_line(source)


def comments_by_line(source: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string.lstrip("#").strip()
    return found


def docstring_args(docstring: str | None) -> dict[str, str]:
    """`name: text` entries of a Google-style `Args:` section (continuation lines joined)."""
    if not docstring:
        return {}
    args: dict[str, str] = {}
    lines = inspect.cleandoc(docstring).splitlines()
    inside, current, indent = False, None, None
    for line in lines:
        if line.strip() == "Args:":
            inside, current, indent = True, None, None
            continue
        if not inside:
            continue
        if line.strip() and not line.startswith(" "):
            break  # the next section
        stripped = line.strip()
        width = len(line) - len(line.lstrip())
        entry = re.match(r"^\**(\w+)(?: \(.*?\))?: ?(.*)$", stripped)
        if entry and (indent is None or width <= indent):
            indent, current = width, entry.group(1)
            args[current] = entry.group(2)
        elif current and stripped:
            args[current] += " " + stripped
    return args


def class_node(cls: griffe.Class) -> tuple[ast.ClassDef, dict[int, str]]:
    tree, comments = parsed(Path(cls.filepath))
    node = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef) and n.name == cls.name and cls.lineno <= n.lineno
    )
    return node, comments


def comment_for(lines: range, comments: dict[int, str], after: int, before: int) -> str:
    """An argument's comment: the one on its own lines, continued by the comment-only lines
    below it (up to line `before`, the next argument); an argument with none on its own lines
    takes the comment-only lines just above it (down to line `after`, the previous one)."""
    own = [comments[n] for n in lines if n in comments]
    if own:
        n = lines.stop
        while n < before and n in comments:
            own.append(comments[n])
            n += 1
        return " ".join(own)
    above, n = [], lines.start - 1
    while n > after and n in comments:
        above.insert(0, comments[n])
        n -= 1
    return " ".join(above)


def bounds(spans: list[range], i: int, first: int, last: int, comments: dict[int, str]):
    """comment_for's arguments for item i of `spans`: the comment-only lines between two items
    continue the item above when the item below has its own comment, else they belong below."""
    below = spans[i + 1] if i + 1 < len(spans) else None
    before = below.start if below is not None else last
    if below is not None and not any(n in comments for n in below):
        before = spans[i].stop  # the lines in between are the next item's
    after = spans[i - 1].stop - 1 if i > 0 else first
    return spans[i], comments, after, before


def named_in_body(name: str, init: ast.FunctionDef, comments: dict[int, str]) -> str:
    """A comment block in the constructor's body that starts with `name:` (an argument passed
    on through `*args, **kwargs` is often documented there)."""
    for n in range(init.lineno, init.end_lineno + 1):
        if comments.get(n, "").startswith(f"{name}: "):
            parts = [comments[n][len(name) + 2 :]]
            while n + 1 in comments:
                n += 1
                parts.append(comments[n])
            return " ".join(parts)
    return ""


def is_dataclass(cls: griffe.Class) -> bool:
    return any(d.callable_path == "dataclasses.dataclass" for d in cls.decorators)


def declared_options(cls: griffe.Class) -> tuple[list[Option], bool]:
    """The options `cls` itself declares, and whether it passes others on (`**kwargs`)."""
    node, comments = class_node(cls)
    docs = docstring_args(cls.docstring.value if cls.docstring else None)
    init = next(
        (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None
    )
    options: list[Option] = []
    if init is None:  # a dataclass: its annotated fields
        fields = [n for n in node.body if isinstance(n, ast.AnnAssign)]
        spans = [range(f.lineno, f.end_lineno + 1) for f in fields]
        for i, field in enumerate(fields):
            meaning = comment_for(*bounds(spans, i, node.lineno, node.end_lineno + 1, comments))
            name = ast.unparse(field.target)
            default = ast.unparse(field.value) if field.value is not None else ""
            meaning = meaning or docs.get(name, "")
            annotation = ast.unparse(field.annotation)
            options.append(Option(name, annotation, default, meaning, cls.name, cls))
        return options, False
    docs = {**docs, **docstring_args(ast.get_docstring(init))}
    arguments = init.args
    positional = arguments.posonlyargs + arguments.args
    defaults = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    pairs = list(zip(positional, defaults, strict=True)) + list(
        zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
    )
    pairs = [(a, d) for a, d in pairs if a.arg not in ("self", "cls")]
    rest = arguments.kwarg or arguments.vararg
    last = rest.lineno if rest is not None and rest.lineno > init.lineno else init.body[0].lineno
    spans = [
        range(a.lineno, (d.end_lineno if d is not None else a.end_lineno) + 1) for a, d in pairs
    ]
    for i, (arg, default) in enumerate(pairs):
        meaning = comment_for(*bounds(spans, i, init.lineno, last, comments))
        meaning = re.sub(rf"^{arg.arg}: ", "", meaning) or named_in_body(arg.arg, init, comments)
        annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
        options.append(
            Option(
                arg.arg,
                annotation,
                ast.unparse(default) if default is not None else "",
                meaning or docs.get(arg.arg, ""),
                cls.name,
                cls,
            )
        )
    return options, arguments.kwarg is not None or arguments.vararg is not None


def set_by_the_class(cls: griffe.Class) -> set[str]:
    """The keywords the constructor gives `super().__init__` itself: not options of `cls`."""
    node, _ = class_node(cls)
    init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    fixed = set()
    for call in ast.walk(init):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "__init__"
            and isinstance(call.func.value, ast.Call)
            and getattr(call.func.value.func, "id", None) == "super"
        ):
            fixed |= {k.arg for k in call.keywords if k.arg is not None}
    return fixed


def options_of(cls: griffe.Class) -> list[Option]:
    """Every option of `cls`: its own, then, while a class passes the rest on, its bases'
    (less those a constructor sets itself), as the Lightning CLI's parser resolves them."""
    seen: dict[str, Option] = {}
    if is_dataclass(cls):
        return declared_options(cls)[0]
    fixed: set[str] = set()
    for klass in [cls, *cls.mro()]:
        if "__init__" not in klass.members:
            continue
        own, passes_on = declared_options(klass)
        for option in own:
            if option.name not in fixed:
                seen.setdefault(option.name, option)
        if not passes_on:
            break
        fixed |= set_by_the_class(klass)
    return list(seen.values())


def cell(text: str) -> str:
    """Text for a Markdown table cell: a pipe would end the cell, a newline the row."""
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: str) -> str:
    """Code in a table cell, as HTML: in a Markdown code span an escaped pipe keeps its
    backslash."""
    return f"<code>{html.escape(text).replace('|', '&#124;')}</code>" if text else ""


def option_group(option: Option) -> griffe.Class | None:
    """The dataclass of i2i an option is typed with (a group of options, written under the
    option's name in YAML), or None."""
    names = [part.strip() for part in option.annotation.split("|") if part.strip() != "None"]
    if len(names) != 1 or not re.fullmatch(r"[\w.]+", names[0]):
        return None
    try:
        target = option.scope.resolve(names[0])
    except griffe.NameResolutionError:
        return None
    if not target.startswith("i2i."):
        return None
    group = resolve(target)  # a class, or an alias of a type (an attribute)
    return group if isinstance(group, griffe.Class) and is_dataclass(group) else None


def table(path: str, shown: set[str] | None = None) -> str:
    """The Markdown table of the options of the class `path` names, then the table of each
    group of options (a dataclass) it takes, once per page (`shown`: the groups already shown)."""
    shown = set() if shown is None else shown
    cls = resolve(path)
    rows = ["| option | type | default | meaning |", "|---|---|---|---|"]
    groups = []
    for option in options_of(cls):
        declared = option.owner != cls.name and not option.owner.startswith("_")
        owner = f" *({option.owner})*" if declared else ""
        default = code(option.default) if option.default else "required"
        rows.append(
            f"| `{option.name}` | {code(option.annotation)} | {default} | "
            f"{cell(html.escape(option.meaning, quote=False))}{owner} |"
        )
        group = option_group(option)
        if group is not None and group.path not in shown:
            shown.add(group.path)
            groups.append((option.name, group))
    text = f"`{path}`\n\n" + "\n".join(rows) + "\n"
    for name, group in groups:
        text += f"\nThe options of `{name}`, written under `{name}:`:\n\n" + table(
            group.path, shown
        )
    return text


def on_page_markdown(markdown: str, **_) -> str:
    shown: set[str] = set()
    return MARKER.sub(lambda m: table(m.group(1), shown), markdown)
