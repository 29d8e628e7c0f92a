"""Checks at datamodule setup, so that bad files stop a run before training, not hours into it.

What is cheap is checked for EVERY file: image sizes come from the file headers (PIL reads only
the header on open; EXIF orientation is read from the header too, since a rotated photo has its
sides swapped), read by a thread pool. Label maps must be decoded to know their values, so each
is read once and its size and distinct values are cached in a small JSON per folder, keyed by
the file's path, size and mtime: the second run reads no label map again.

The cache lives in ``$I2I_CACHE_DIR/label_stats``, else ``$XDG_CACHE_HOME/i2i/label_stats``,
else ``~/.cache/i2i/label_stats``. ``I2I_SKIP_SCAN=1`` turns the setup scan off (the same
problems are then found when a bad sample is drawn, as before).

Problems are collected in `Findings` and reported together in one error: per kind, the
first files with their value or size, the count, and the fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
from PIL import Image

from i2i.io import atomic_write

log = logging.getLogger(__name__)

SHOW = 10  # files named per kind of problem; the rest are counted
PROGRESS_EVERY_S = 10.0  # a log line this often while a long scan runs
_ORIENTATION = 0x0112
_SWAPPING = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees
_CACHE_VERSION = 1

T = TypeVar("T")
R = TypeVar("R")


def scan_enabled() -> bool:
    """False when the environment variable I2I_SKIP_SCAN is set to 1/true/yes."""
    return os.environ.get("I2I_SKIP_SCAN", "").strip().lower() not in ("1", "true", "yes")


# --------------------------------------------------------------------------------------------
# Headers


def header_size(path: str | Path, exif: bool = True) -> tuple[int, int]:
    """(H, W) of an image from its header alone, as `i2i.data.datasets.load_image` will
    see it.

    Args:
        path: the image file.
        exif: an EXIF orientation that rotates by 90 degrees swaps the sides; False: as stored.

    Raises:
        OSError: (or SyntaxError, ...: what PIL raises) an unreadable header.
    """
    with Image.open(path) as img:
        w, h = img.size
        if exif and _orientation(img) in _SWAPPING:
            return w, h
        return h, w


def _orientation(img: Image.Image) -> int:
    # The EXIF block is in the header of JPEG/WebP/TIFF and in a PNG eXIf chunk before the image
    # data; img.getexif() on a PNG without it would decode the whole file, so read info only.
    raw = img.info.get("exif")
    if not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(_ORIENTATION, 1))
    except Exception:  # a broken EXIF block: exif_transpose ignores it as well
        return 1


def parallel_map(
    fn: Callable[[T], R], items: Sequence[T], what: str = "files", threads: int | None = None
) -> list[R | Exception]:
    """[fn(item) or the exception it raised] in order, on a thread pool (header reads wait on
    the disk, not the CPU); a progress line is logged every PROGRESS_EVERY_S seconds.

    Args:
        fn: the function; its exceptions are returned, not raised.
        items: what to apply it to.
        what: the items in words, for the progress line.
        threads: the pool's size; None: min(32, 4 x the CPU count).
    """

    def safe(item: T) -> R | Exception:
        try:
            return fn(item)
        except Exception as e:  # reported per file by the caller
            return e

    n = len(items)
    threads = threads or min(32, 4 * (os.cpu_count() or 1))
    out: list[R | Exception] = []
    start = last = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for k, result in enumerate(pool.map(safe, items, chunksize=64), 1):
            out.append(result)
            now = time.monotonic()
            if now - last > PROGRESS_EVERY_S:
                last = now
                log.info("checking %s: %d / %d (%.0f s)", what, k, n, now - start)
    if n and time.monotonic() - start > PROGRESS_EVERY_S:
        log.info("checked %d %s in %.0f s", n, what, time.monotonic() - start)
    return out


# --------------------------------------------------------------------------------------------
# Label map statistics, cached


class LabelStats(NamedTuple):
    """What the setup check needs of a label map: its size and its distinct raw values."""

    height: int
    width: int
    values: tuple[int, ...]


def cache_root() -> Path:
    """The folder of the label-statistics cache (see the module doc for the lookup order)."""
    if env := os.environ.get("I2I_CACHE_DIR"):
        return Path(env) / "label_stats"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "i2i" / "label_stats"


def _cache_file(folder: Path) -> Path:
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:24]
    return cache_root() / f"{folder.name}-{key}.json"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def label_stats(
    paths: Sequence[Path], read: Callable[[Path], np.ndarray]
) -> list[LabelStats | Exception]:
    """Size and distinct values of each label map (or the exception reading it raised).

    Results are cached per parent folder in a JSON keyed by file name, size and mtime; a changed
    file is read again. A cache that cannot be written (read-only home) only costs speed.

    Args:
        paths: the label maps.
        read: path -> the map's raw values (H, W) (e.g. `read_label_map`).

    Returns:
        One entry per path, in order: its stats, or the exception reading it raised.
    """
    paths = [Path(p) for p in paths]
    by_folder: dict[Path, list[int]] = {}
    for i, p in enumerate(paths):
        by_folder.setdefault(p.parent, []).append(i)
    out: list[LabelStats | Exception | None] = [None] * len(paths)
    todo: list[int] = []
    caches: dict[Path, dict[str, Any]] = {}
    stamps: list[list[int] | None] = [None] * len(paths)
    for folder, idx in by_folder.items():
        entries = _load_cache(_cache_file(folder))
        caches[folder] = entries
        for i in idx:
            try:
                stamps[i] = _stamp(paths[i])
            except OSError as e:
                out[i] = e
                continue
            hit = entries.get(paths[i].name)
            if hit is not None and hit[:2] == stamps[i]:
                out[i] = LabelStats(hit[2], hit[3], tuple(hit[4]))
            else:
                todo.append(i)

    def measure(i: int) -> LabelStats:
        arr = read(paths[i])
        return LabelStats(int(arr.shape[0]), int(arr.shape[1]), tuple(np.unique(arr).tolist()))

    if todo:
        log.info(
            "reading %d label map(s) once for their values (cached in %s)", len(todo), cache_root()
        )
    changed: set[Path] = set()
    for i, result in zip(todo, parallel_map(measure, todo, "label maps"), strict=True):
        out[i] = result
        if isinstance(result, LabelStats):
            caches[paths[i].parent][paths[i].name] = [*stamps[i], *result[:2], list(result[2])]
            changed.add(paths[i].parent)
    for folder in changed:
        _save_cache(_cache_file(folder), caches[folder])
    return out  # type: ignore[return-value]


def _load_cache(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    entries = data.get("files")
    return entries if isinstance(entries, dict) else {}


def _save_cache(file: Path, entries: dict[str, Any]) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": _CACHE_VERSION, "files": entries})
        atomic_write(file, lambda tmp: tmp.write_text(text))  # concurrent runs: never half a file
    except OSError as e:
        log.warning(
            "could not write the label-statistics cache %s (%s); the next run will "
            "read the label maps again",
            file,
            e,
        )


# --------------------------------------------------------------------------------------------
# Reporting


class Findings:
    """Problems found at setup, grouped by kind, raised together as one ValueError."""

    def __init__(self) -> None:
        self.items: dict[str, list[tuple[str, str]]] = {}  # kind -> [(file, detail)]
        self.titles: dict[str, str] = {}
        self.fixes: dict[str, str] = {}
        self.corrupt_only = True
        self.extra: dict[str, Any] = {}  # running summaries, e.g. the resolution all fit

    def add(self, kind: str, title: str, fix: str, file: str | Path, detail: str = "") -> None:
        """Record one problem.

        Args:
            kind: the problem's key ("small", "corrupt", ...); problems are grouped by it.
            title: describes the kind ("image(s) smaller than ..."); the first one is kept.
            fix: what to do; the last one is kept.
            file: the file with the problem.
            detail: the file's value or size; "" for none.
        """
        self.items.setdefault(kind, []).append((str(file), detail))
        self.titles.setdefault(kind, title)
        self.fixes[kind] = fix
        if kind != "corrupt":
            self.corrupt_only = False

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return sum(len(v) for v in self.items.values())

    def message(self, where: str) -> str:
        """The report: one line per kind with its count, the first files and the fix.

        Args:
            where: the dataset, named in the first line.
        """
        lines = [f"{where}: {len(self)} problem(s) found while checking the files at setup:"]
        for kind, found in self.items.items():
            shown = ", ".join(f"{f} ({d})" if d else f for f, d in found[:SHOW])
            more = f" ... and {len(found) - SHOW} more" if len(found) > SHOW else ""
            lines.append(f"- {len(found)} {self.titles[kind]}: {shown}{more}. {self.fixes[kind]}")
        return "\n".join(lines)
