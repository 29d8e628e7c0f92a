"""Image files on disk: which files of a folder are images (walked recursively, hidden files
skipped), and how a folder is split into training and validation parts, either by its own
train/val sub-folders or by a seeded share of its files.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from i2i.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VAL_DIR_NAMES = ("val", "valid", "validation", "test")


def walk_files(root: str | Path, extensions: Sequence[str]) -> list[Path]:
    """Files under `root` at any depth whose extension (any case) is in `extensions`, sorted.

    Hidden files and folders (names starting with '.', e.g. macOS '._x.jpg' resource forks)
    are skipped; symlinked folders are not entered. A sub-folder that cannot be read (no
    permission, I/O error) is skipped with a warning naming it, never silently.

    Args:
        root: the folder to walk.
        extensions: lower-case extensions with their dot, e.g. (".png", ".jpg").

    Raises:
        OSError: `root` itself cannot be read.
    """
    root = Path(root)

    def unreadable(err: OSError) -> None:
        if Path(err.filename or "") == root:
            raise err  # the folder itself: the caller's error says what to do
        msg = (
            f"Cannot read folder {err.filename} ({err.strerror or err}); its files are left out. "
            "Fix its permissions (e.g. chmod -R a+rX) or move it out of the dataset folder."
        )
        warnings.warn(msg, stacklevel=4)
        log.warning(msg)

    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                path = Path(dirpath, name)
                if path.is_file():
                    found.append(path)
    return sorted(found)


def list_images(root: str | Path) -> list[Path]:
    """All images under `root` at any depth, sorted; extensions are matched case-insensitively.

    Hidden files and folders (names starting with '.', e.g. macOS '._x.jpg' resource forks,
    which are not images) are ignored; an unreadable sub-folder is skipped with a warning.

    Args:
        root: the folder to list.

    Raises:
        FileNotFoundError: the folder does not exist or holds no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Image folder {root} does not exist; place your images (jpg/png/webp) under {root}, "
            "any sub-folder depth"
        )
    files = walk_files(root, IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(
            f"Image folder {root} has no images; accepted extensions (any case, any sub-folder "
            f"depth): {', '.join(IMAGE_EXTENSIONS)}"
        )
    return files


def split_files(
    files: Sequence[Path],
    val_fraction: float = 0.05,
    seed: int = 0,
    where: str | Path = "the dataset folder",
    item: str = "image",
    separate: str = "",
) -> tuple[list[Path], list[Path]]:
    """Split `files` into (train, val) by a seeded permutation; each part keeps sorted order.

    The input is sorted first, so the split depends only on the set of files and the seed.
    With val_fraction > 0 and at least 2 files, both parts are non-empty; otherwise ValueError
    naming `where` (the folder), the count of `item`s and how to give a separate validation
    set (`separate`; default: train/ and val/ sub-folders of `where`).

    Args:
        files: the files to split.
        val_fraction: the share held out for validation, in [0, 1); rounded, at least one
            file and at most all but one.
        seed: seeds the permutation.
        where: the folder the files come from, named in errors.
        item: what a file is ("image", "pair"), named in errors.
        separate: how to give a separate validation set, for the error; "" for train/ and val/
            sub-folders of `where`.

    Returns:
        (train files, validation files), each sorted.

    Raises:
        DataError: val_fraction outside [0, 1), fewer than two files, or val_fraction 0.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    files = sorted(Path(f) for f in files)
    n = len(files)
    if n < 2 or val_fraction == 0:
        separate = separate or f"a val/ folder ({where}/train/ and {where}/val/)"
        if n >= 2:
            why = f"val_fraction={val_fraction} holds out none of them. Set val_fraction > 0"
        else:
            why = f"validation needs at least two (one held out, one to train on). Add {item}s"
        raise DataError(
            f"{where} has {n} {item}(s) and no separate validation set: {why}, or give {separate}."
        )
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    val_idx = set(perm[:n_val])
    train = [f for i, f in enumerate(files) if i not in val_idx]
    val = [f for i, f in enumerate(files) if i in val_idx]
    return train, val


def split_image_folder(
    root: str | Path, val_fraction: float, seed: int, max_val: int | None = None
) -> tuple[list[Path], list[Path]]:
    """The project's one train / val split of an image folder: `train/` + `val/` sub-folders
    (see `find_split_folders`) when present, otherwise a seeded split of every image under
    `root` (`split_files`).

    Args:
        root: the image folder.
        val_fraction: the share held out when there are no split folders.
        seed: seeds that split.
        max_val: at most this many validation files (the first ones); None: all.

    Returns:
        (train files, validation files).
    """
    root = Path(root)
    folders = find_split_folders(root)
    if folders is not None:
        train, val = list_images(folders[0]), list_images(folders[1])
    else:
        train, val = split_files(list_images(root), val_fraction, seed, root)
    return train, val[:max_val] if max_val is not None else val


def find_split_folders(root: str | Path) -> tuple[Path, Path] | None:
    """(root/train, root/<val>) when both exist, <val> being val, valid, validation or test
    (first match, names compared case-insensitively); otherwise None.

    Args:
        root: the dataset folder; None is returned when it is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    dirs = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir()}
    if "train" not in dirs:
        return None
    for name in VAL_DIR_NAMES:
        if name in dirs:
            return dirs["train"], dirs[name]
    return None
