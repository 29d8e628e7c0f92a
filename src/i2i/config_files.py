"""The shipped YAML configs: where they live, how a bare name finds one, and how a file names
the fragments it builds on (`base:`).

A config may start with

    base: [trainer/gpu8_ddp.yaml, logging/wandb.yaml]   # or one path as a string

Each base (a path relative to the file that names it, which may have bases of its own) is merged
in order, then the file's own keys over them, as several `--config` are. The merge is of plain
data, before jsonargparse sees it:

- mappings merge key by key, at every depth;
- a list or a scalar replaces the value below it (lists are never concatenated);
- a `class_path` block whose class differs from the one below it replaces that block whole: a
  new class never inherits the old class's `init_args`. A block without `class_path` merges
  into the one below (it changes a few `init_args` of the class the base chose).

The configs ship inside the package (`i2i/configs`); in a checkout `configs/` points there, so
`--config configs/demo.yaml` and `--config demo` read the same file.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from i2i.errors import ConfigFileError

#: The key that lists a config's bases.
BASE_KEY = "base"
#: The shipped configs: experiments at the top, fragments in the folders below.
PACKAGED_CONFIGS = Path(str(files("i2i") / "configs"))

Loader = Callable[[str], Any]


def config_names() -> list[str]:
    """The experiments that ship: the names `--config NAME` accepts."""
    return sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))


def packaged_config(name: str) -> Path | None:
    """The shipped config a bare name means (`demo` -> .../i2i/configs/demo.yaml), else None.
    A name with a folder or a suffix is a path, never a bare name."""
    if not name or "/" in name or "\\" in name or name.endswith((".yaml", ".yml", ".json")):
        return None
    path = PACKAGED_CONFIGS / f"{name}.yaml"
    return path if path.is_file() else None


def config_path(name_or_path: str | Path) -> Path:
    """A config file from a path, or from the bare name of a shipped config."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = packaged_config(str(name_or_path))
    if packaged is not None:
        return packaged
    raise FileNotFoundError(
        f"no config {name_or_path}: give a YAML file or one of {', '.join(config_names())}"
    )


def resolve_config_arguments(argv: list[str]) -> list[str]:
    """The command line with each `--config NAME` of a shipped config turned into its path; a
    file that exists under that name wins, and anything else is left to jsonargparse."""
    resolved = list(argv)
    for i, arg in enumerate(resolved):
        if arg.startswith("--config="):
            prefix, value = "--config=", arg[len("--config=") :]
        elif arg == "--config" and i + 1 < len(resolved):
            prefix, value, i = "", resolved[i + 1], i + 1
        else:
            continue
        packaged = None if Path(value).exists() else packaged_config(value)
        if packaged is not None:
            resolved[i] = prefix + str(packaged)
    return resolved


def merge(below: Any, above: Any) -> Any:
    """`above` over `below` by the rules in the module docstring."""
    if not (isinstance(below, dict) and isinstance(above, dict)):
        return above
    if "class_path" in above and below.get("class_path") not in (None, above["class_path"]):
        return above
    merged = dict(below)
    for key, value in above.items():
        merged[key] = merge(below[key], value) if key in below else value
    if "class_path" in merged:  # first, as written by hand: the saved config reads the same
        merged = {"class_path": merged.pop("class_path"), **merged}
    return merged


def with_bases(config: Any, folder: Path, loader: Loader, seen: tuple[Path, ...] = ()) -> Any:
    """`config` (read from a file in `folder`) merged over its bases, without the `base` key."""
    if not isinstance(config, dict) or BASE_KEY not in config:
        return config
    bases = config[BASE_KEY]
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else list(bases or []):
        path = (folder / base).resolve()
        if path in seen:
            chain = " -> ".join(p.name for p in (*seen, path))
            raise ConfigFileError(f"configs name each other as bases: {chain}")
        if not path.is_file():
            raise ConfigFileError(f"base {base!r} of a config in {folder}: no file {path}")
        loaded = loader(path.read_text())
        merged = merge(merged, with_bases(loaded, path.parent, loader, (*seen, path)))
    return merge(merged, {k: v for k, v in config.items() if k != BASE_KEY})


def load_config(name_or_path: str | Path, loader: Loader = yaml.safe_load) -> dict:
    """A config file (or a shipped config's name) as plain data, its bases merged in."""
    path = config_path(name_or_path).resolve()
    config = loader(path.read_text()) or {}
    return with_bases(config, path.parent, loader, (path,))
