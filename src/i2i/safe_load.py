"""Files from strangers are data, never code: what i2i lets a loaded file name, in one place.

- Checkpoints (`.ckpt`) load with `torch.load(weights_only=True)` and `CHECKPOINT_GLOBALS`: a
  pickle that names anything else (`os.system`, a class of another package) is refused by name
  before it runs. `--trust-checkpoint` unpickles a file in full, with a warning.
- Model cards, the model config recorded in a checkpoint and ONNX metadata name classes by
  import path: only classes of the packages in `CLASS_PACKAGES` that are `nn.Module`s (tasks,
  networks), checked before anything is imported or called (`check_class_path`).
- Shard folders describe their datasets in JSON: only the classes of `SHARD_CLASSES` are built,
  and a pickle is never read (`i2i.data.shards`).

A leaf module (torch is imported where a file is loaded: the file commands parse their
arguments first), so every loader (the CLI, inference, data) may use it.
"""

from __future__ import annotations

import collections
import importlib
import pathlib
import pickle
import re
import sys
from pathlib import Path
from typing import IO, Any

from i2i.errors import RefusedFileError

TRUST_FLAG = "--trust-checkpoint"
TRUST_HELP = (
    "a .ckpt: unpickle it in full even if it refers to code (refused by default: a checkpoint "
    "from a stranger can run code when loaded)"
)

# What i2i's and Lightning's checkpoints hold beyond plain containers, numbers and strings:
# tensors and their storages (torch's own weights-only set), ordered dicts (state dicts) and,
# in hyperparameters given as paths, pathlib paths (a path's constructor runs no code).
CHECKPOINT_GLOBALS: list[Any] = [
    collections.OrderedDict,
    pathlib.PosixPath,
    pathlib.PurePosixPath,
]

# Import paths a model card, a recorded model config or ONNX metadata may name: nn.Module
# classes (tasks and networks) of these packages.
CLASS_PACKAGES = ("i2i",)

# The classes a shard folder's datasets.json may build (folder datasets whose file list comes
# from the shards) and the value types their settings hold.
SHARD_CLASSES = frozenset(
    {
        "i2i.data.datasets.ImageFolderDataset",
        "i2i.data.paired.SideBySideDataset",
        "i2i.data.paired.TwoFolderDataset",
        "i2i.data.paired.CannyEdgesDataset",
        "i2i.data.labels.PairedLabelDataset",
        "i2i.data.labels.LabelFolderDataset",
        "i2i.data.labels.CocoStuffDataset",
        "i2i.data.labels.CityscapesDataset",
        "i2i.data.labels.ADE20KDataset",
        "i2i.data.unpaired.DomainFolder",
        "i2i.data.labels.LabelRecord",
        "i2i.data.label_specs.LabelSpec",
    }
)

_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_trusted = False  # set by --trust-checkpoint (trust_checkpoints)
_warned: set[str] = set()


def trust_checkpoints(trust: bool) -> None:
    """`--trust-checkpoint`: unpickle checkpoints in full in this process (with a warning)."""
    global _trusted
    _trusted = bool(trust)


def _torch_load(file: Path | IO[bytes], weights_only: bool, mmap: bool) -> Any:
    import torch

    if isinstance(file, Path) and mmap:
        try:
            return torch.load(file, map_location="cpu", mmap=True, weights_only=weights_only)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
        # The legacy (non-zip) format cannot be memory-mapped: read it.
    if not isinstance(file, Path):
        file.seek(0)
    return torch.load(file, map_location="cpu", weights_only=weights_only)


def _refused_globals(file: Path | IO[bytes], error: Exception) -> list[str]:
    """The globals of a checkpoint that weights-only loading refuses ([] if none: the file is
    damaged instead). Reads the pickle's opcodes, runs nothing."""
    import torch

    allowed = {f"{g.__module__}.{g.__qualname__}" for g in CHECKPOINT_GLOBALS}
    try:
        if not isinstance(file, Path):
            file.seek(0)
        names = torch.serialization.get_unsafe_globals_in_checkpoint(file)
    except Exception:  # the legacy format, or a damaged archive: the error names the first one
        names = re.findall(r"GLOBAL (\S+?)[ ,]", str(error))
    return [n for n in dict.fromkeys(names) if n not in allowed]


def refusal(path: str | Path, names: list[str]) -> str:
    listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (
        f"{path} refers to {listed}, which i2i checkpoints never hold; refused without running "
        f"it (a checkpoint is a pickle, and a pickle can run code). If you trust whoever made "
        f"the file, pass {TRUST_FLAG} to unpickle it in full"
    )


def load_checkpoint(
    path: str | Path | IO[bytes],
    *,
    trust: bool | None = None,
    mmap: bool = False,
    name: str | None = None,  # how messages name a file object (a remote file read whole)
) -> Any:
    """A checkpoint's contents on the CPU: weights-only with `CHECKPOINT_GLOBALS`, or in full
    when trusted (`trust`, default: `--trust-checkpoint` given). RefusedFileError for a file
    that names anything else; a damaged file raises torch's error."""
    file = path if hasattr(path, "read") else Path(path)  # type: ignore[arg-type]
    name = name or str(file)
    if _trusted if trust is None else trust:
        if name not in _warned:
            _warned.add(name)
            print(
                f"i2i: warning: {TRUST_FLAG}: unpickling {name} in full; it can run any code "
                "it names (use this only for files whose source you trust)",
                file=sys.stderr,
                flush=True,
            )
        return _torch_load(file, False, mmap)
    import torch

    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            return _torch_load(file, True, mmap)
    except pickle.UnpicklingError as e:
        names = _refused_globals(file, e)
        if not names:
            raise
        raise RefusedFileError(refusal(name, names)) from None


# ---- a damaged checkpoint: which ones beside it load ---------------------------------------


def iteration_of(checkpoint: Any) -> str:
    state = checkpoint.get("state_dict", {}) if isinstance(checkpoint, dict) else {}
    return f"iteration {int(state['iteration'])}" if "iteration" in state else "loads"


def loadable_beside(path: Path) -> list[str]:
    """The other checkpoints in `path`'s folder that load, as "FILE (iteration N)"."""
    found = []
    for other in sorted(path.parent.glob("*.ckpt")):
        if other.resolve() == path.resolve():
            continue
        try:
            found.append(f"{other} ({iteration_of(load_checkpoint(other, mmap=True))})")
        except Exception:
            continue
    return found


def damaged(path: Path, error: BaseException) -> str:
    """The first line of a damaged checkpoint's message: the file and torch's reason."""
    text = str(error).strip()
    reason = text.splitlines()[0].split(". ")[0] if text else type(error).__name__
    return (
        f"the checkpoint {path} is damaged and cannot be loaded (truncated or not a "
        f"checkpoint: {reason[:160]})"
    )


# ---- class paths named by files ------------------------------------------------------------


def _check_name(class_path: Any, where: str | Path) -> str:
    name = str(class_path)
    if not (
        isinstance(class_path, str)
        and _IMPORT_PATH.fullmatch(name)
        and name.split(".", 1)[0] in CLASS_PACKAGES
    ):
        raise RefusedFileError(
            f"{where} names the class {name!r}; a model file may name only network and task "
            f"classes of {', '.join(CLASS_PACKAGES)} (e.g. i2i.tasks.InpaintingTask): refused "
            "before importing or calling anything. Write the file with i2i (save_model, i2i "
            "convert)"
        )
    return name


def check_class_names(tree: Any, where: str | Path) -> None:
    """Every class path in a {class_path, init_args} tree names an allowed package: checked
    for the whole tree before any of it is imported."""
    if isinstance(tree, dict):
        if "class_path" in tree:
            _check_name(tree["class_path"], where)
        for value in tree.values():
            check_class_names(value, where)
    elif isinstance(tree, list):
        for value in tree:
            check_class_names(value, where)


def check_class_path(class_path: Any, where: str | Path) -> type:
    """The class a file names, if it is an nn.Module of an allowed package: the name is checked
    before its module is imported, the object before it is called."""
    import torch

    name = _check_name(class_path, where)
    module, _, attr = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise RefusedFileError(
            f"{where} names {name!r}, which this i2i does not have ({e}); update i2i"
        ) from e
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise RefusedFileError(
            f"{where} names {name!r}, which is not a network or task class (an nn.Module); "
            "refused before calling it"
        )
    return cls


def shard_class(class_path: Any, where: str | Path) -> type:
    """A class a shard folder's datasets.json may build (`SHARD_CLASSES`), before importing."""
    if class_path not in SHARD_CLASSES:
        raise RefusedFileError(
            f"{where} names the class {class_path!r}, which is not one of i2i's folder datasets "
            "(shards may build only those); refused before importing anything. Write the shards "
            "with `i2i data optimize`"
        )
    module, _, attr = str(class_path).rpartition(".")
    return getattr(importlib.import_module(module), attr)
