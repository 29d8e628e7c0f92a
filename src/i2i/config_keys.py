"""i2i's argument parser (`I2IArgumentParser`): config files may name their bases
(`i2i.config_files`), and an unknown key gets a short error (the key, the close matches and the
keys accepted beside it) instead of jsonargparse's usage screen."""

from __future__ import annotations

import difflib
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from jsonargparse import get_loader
from lightning.pytorch.cli import LightningArgumentParser

from i2i.config_files import BASE_KEY, with_bases
from i2i.data.image_options import MOVED

# The inpainting datamodule's mask arguments before the mask sources (old name -> where it went).
_FILES = "(masks: {class_path: MaskFiles, init_args: {folder, polarity}})"
MOVED_MASK_KEYS = {
    "hole_range": "masks.init_args.hole_range (masks' class_path: RandomMaskGenerator)",
    "mask_variant": "masks.init_args.variant (masks' class_path: RandomMaskGenerator)",
    "mask_shape": "masks.class_path (free_form: RandomMaskGenerator, rectangle: "
    "RectangleMaskGenerator)",
    "rectangle_sides": "masks.init_args.sides (masks' class_path: RectangleMaskGenerator)",
    "rectangle_sides_at": "masks.init_args.sides_at (masks' class_path: RectangleMaskGenerator)",
    "mask_dir": f"masks.init_args.folder {_FILES}",
    "val_mask_dir": f"val_masks.init_args.folder {_FILES.replace('masks:', 'val_masks:')}",
    "mask_polarity": f"masks.init_args.polarity {_FILES}",
    "check_mask_polarity": f"masks.init_args.check_polarity {_FILES}",
    "mask_set": f"masks.init_args.mask_set {_FILES}",
}

# Keys that moved (old -> new): an old key fails with one line that names its new spelling.
MOVED_KEYS = {
    f"data.init_args.{old}": f"data.init_args.images.{new}" for old, new in MOVED.items()
} | {f"data.init_args.{old}": f"data.init_args.{new}" for old, new in MOVED_MASK_KEYS.items()}

# ---- short errors for unknown keys -----------------------------------------------------------


def _init_parameters(class_path: str) -> list[str]:
    """The constructor arguments a class accepts (following **kwargs up its bases)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(__import__(module_name, fromlist=[name]), name)
    except (ImportError, AttributeError):
        return []
    names: list[str] = []
    for klass in cls.__mro__ if isinstance(cls, type) else [cls]:
        init = getattr(klass, "__init__", None)
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys(n for n in names if n != "self"))


def _parser_keys(parser: Any) -> list[str]:
    """Every option key of a parser and of its subcommand parsers ("trainer.max_steps", ...)."""
    keys = []
    for action in getattr(parser, "_actions", []):
        choices = getattr(action, "choices", None)
        if (
            isinstance(choices, dict)
            and choices
            and all(hasattr(p, "_actions") for p in choices.values())
        ):
            for sub in choices.values():
                keys += _parser_keys(sub)
        elif action.dest and action.dest not in ("help", "config", "print_config"):
            keys.append(action.dest)
    return list(dict.fromkeys(keys))


def _unknown_key(message: str) -> tuple[str, str | None] | None:
    """(the unknown key's full path, the class that rejected it) from jsonargparse's message."""
    option = re.search(r"Option '([^']+)' is not accepted", message)
    if option:
        # `Parser key "model": ... class_path 'X': Parser key "generator": ... class_path 'Y'`
        path = []
        for key in re.findall(r'Parser key "([^"]+)"', message):
            path += [key, "init_args"]
        classes = re.findall(r"class_path '([^']+)'", message)
        return ".".join([*path, option.group(1)]), classes[-1] if classes else None
    flag = re.search(r"nrecognized arguments: --?([\w.\-]+)", message)
    if flag:
        return flag.group(1), None
    key = re.search(r"does not accept option '([^']+)'", message) or re.search(
        r"Key '([^']+)' is not expected", message
    )
    if key:
        return key.group(1), None
    return None


def describe_unknown_key(message: str, parser: Any) -> str | None:
    """A few lines: the unknown key, the close matches, and the keys accepted beside it."""
    found = _unknown_key(message)
    if found is None:
        return None
    key, class_path = found
    moved = MOVED_KEYS.get(key)
    if moved and (class_path is None or moved.split(".")[2] in _init_parameters(class_path)):
        return f"i2i: error: {key} moved: write {moved}"
    group, _, name = key.rpartition(".")
    if class_path:
        accepted = _init_parameters(class_path)
        where = f"{group} ({class_path})"
    else:
        # The first part of the key that names nothing: `chekpoint` in `chekpoint.monitor`.
        known = _parser_keys(parser)
        parts = key.split(".")
        depth = next(
            (
                i
                for i in range(len(parts))
                if not any(
                    k == ".".join(parts[: i + 1]) or k.startswith(".".join(parts[: i + 1]) + ".")
                    for k in known
                )
            ),
            len(parts) - 1,
        )
        group, name = ".".join(parts[:depth]), parts[depth]
        prefix = f"{group}." if group else ""
        keys = [k for k in known if k.startswith(prefix)]
        accepted = list(dict.fromkeys(k[len(prefix) :].split(".")[0] for k in keys))
        where = group or "the top level"
    close = difflib.get_close_matches(name, accepted, n=3, cutoff=0.6)
    lines = [f"i2i: error: unknown key {key!r}"]
    if close:
        lines.append(f"  did you mean: {', '.join(f'{group}.{c}' if group else c for c in close)}")
    if accepted:
        listed = textwrap.wrap(", ".join(accepted), 96)
        if len(listed) > 8:
            listed = [*listed[:8], "..."]
        lines.append(f"  accepted keys of {where}:")
        lines += [f"    {line}" for line in listed]
    lines.append("  (all options: i2i fit --help; the resolved config: i2i fit ... --print_config)")
    return "\n".join(lines)


class I2IArgumentParser(LightningArgumentParser):
    """Lightning's parser, with a config's `base:` merged in and a few lines instead of the
    usage screen for an unknown key."""

    def _load_config_parser_mode(self, content, path="", ext_vars=None, prev_cfg=None):
        # jsonargparse reads every config file through here, from the file's folder (it
        # changes into it), so relative bases resolve against the file that names them. The
        # bases are read with jsonargparse's own loader: a value means what it means on its own.
        loader = get_loader(self.parser_mode)
        try:
            config = loader(content)
        except Exception:  # jsonargparse's own message for a file it cannot read
            config = None
        if not (isinstance(config, dict) and BASE_KEY in config):
            return super()._load_config_parser_mode(content, path, ext_vars, prev_cfg)
        return self._apply_actions(with_bases(config, Path.cwd(), loader), prev_cfg=prev_cfg)

    def error(self, message: str, ex: Exception | None = None):
        if self.exit_on_error:
            short = describe_unknown_key(str(message), self)
            if short is None:  # another problem: jsonargparse's message without the usage screen
                lines = str(message).strip().splitlines()
                lines = [*lines[:12], "  ..."] if len(lines) > 12 else lines
                short = "i2i: error: " + "\n".join(lines) + "\n  (all options: i2i fit --help)"
            print(short, file=sys.stderr)
            sys.exit(2)
        return super().error(message, ex)
