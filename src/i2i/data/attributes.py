"""Per-image binary attributes from CelebA's `list_attr_celeba.txt`, for attribute-conditioned
models (the variational inpainting paper's encoder / decoder attributes).

The file's format (CelebA's `Anno/list_attr_celeba.txt`):

    202599                                   line 1: the number of images
    5_o_Clock_Shadow Arched_Eyebrows ...     line 2: the attribute names (CelebA: 40)
    000001.jpg -1  1  1 -1 ...               then one row per image: its file name and one
                                             value per attribute, 1 (present) or -1 (absent)

In a batch (`i2i.data.batch.ATTRIBUTES`) an image's attributes are a float32 vector with 1 where
the file says 1 and 0 where it says -1, in the file's order or in the order of the names asked
for. Rows are matched to image files by file name without extension, so `000001.jpg` in the file
also labels a `000001.png` conversion, in any sub-folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from i2i.data import batch as B
from i2i.errors import DataError

ATTRIBUTES_FILE = "list_attr_celeba.txt"


@dataclass
class AttributeTable:
    """The parsed file: attribute names, and a {0, 1} row per image keyed by its file stem.

    Attributes:
        path: the file it was read from, named in errors.
        names: the attribute names, in the rows' order.
        rows: file stem -> (len(names),) float32, 1 = present, 0 = absent.
    """

    path: Path
    names: list[str]
    rows: dict[str, torch.Tensor]  # file stem -> (len(names),) float32 in {0, 1}

    def select(self, names: Sequence[str] | None) -> AttributeTable:
        """The table with only some attributes.

        Args:
            names: the attributes to keep, in that order (case-sensitive); None keeps every
                attribute.

        Raises:
            DataError: an unknown name, or an empty list.
        """
        if names is None:
            return self
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise DataError(
                f"{self.path}: no attribute {unknown} (names are case-sensitive); the file has "
                f"{len(self.names)}: {', '.join(self.names)}"
            )
        if not names:
            raise DataError(f"{self.path}: the list of attributes to use is empty")
        columns = torch.tensor([self.names.index(n) for n in names])
        rows = {k: v[columns] for k, v in self.rows.items()}
        return AttributeTable(self.path, list(names), rows)

    def for_files(self, files: Sequence[Path]) -> torch.Tensor:
        """Each file's row, matched by file name without extension.

        Args:
            files: image files, in the dataset's order.

        Returns:
            (len(files), len(names)) float32 in {0, 1}.

        Raises:
            DataError: files without a row (the first five are listed).
        """
        missing = [f for f in files if Path(f).stem not in self.rows]
        if missing:
            shown = ", ".join(str(f) for f in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DataError(
                f"{len(missing)} image(s) have no row in {self.path}: {shown}. Rows are matched "
                "by file name without extension (e.g. '000001.jpg' labels 000001.png): add "
                "their rows to the file or move the images out of the dataset folder"
            )
        if not files:
            return torch.zeros(0, len(self.names))
        return torch.stack([self.rows[Path(f).stem] for f in files])


def read_attributes(path: str | Path) -> AttributeTable:
    """Parse an attribute file (the module doc's format).

    Args:
        path: the `list_attr_celeba.txt` file.

    Raises:
        FileNotFoundError: no file at path.
        ValueError: a problem in the file, naming the line and what to fix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"attribute file {path} does not exist: place CelebA's {ATTRIBUTES_FILE} (from its "
            "Anno/ folder) there, or give its path (data attributes_file)"
        )
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    where = f"{path}, line"

    def fail(line: int, problem: str) -> ValueError:
        return ValueError(f"{where} {line}: {problem}")

    if len(lines) < 2:
        raise fail(
            len(lines) + 1,
            "the file ends before the attribute names; expected the number of images on line 1 "
            f"and the names on line 2 ({ATTRIBUTES_FILE}'s format)",
        )
    try:
        count = int(lines[0].strip())
    except ValueError:
        got = lines[0].strip()[:60]
        raise fail(
            1, f"expected the number of images, got {got!r}: is this {ATTRIBUTES_FILE}?"
        ) from None
    names = lines[1].split()
    if not names:
        raise fail(2, "expected the attribute names, the line is empty")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise fail(2, f"attribute names appear twice: {twice}; each name once")
    rows: dict[str, torch.Tensor] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue  # a trailing blank line
        values = fields[1:]
        if len(values) != len(names):
            raise fail(
                number,
                f"{fields[0]!r} has {len(values)} values, the header names {len(names)} "
                "attributes: give one value (1 or -1) per attribute name of line 2",
            )
        bad = [v for v in values if v not in ("1", "-1")]
        if bad:
            column = values.index(bad[0])
            raise fail(
                number,
                f"{fields[0]!r} has the value {bad[0]!r} for {names[column]}: every value must be "
                "1 (present) or -1 (absent)",
            )
        stem = Path(fields[0]).stem
        if stem in rows:
            raise fail(
                number, f"{fields[0]!r} already has a row (line {first_line[stem]}): one per image"
            )
        rows[stem] = torch.tensor([v == "1" for v in values], dtype=torch.float32)
        first_line[stem] = number
    if len(rows) != count:
        raise fail(
            1,
            f"the file says {count} images but has {len(rows)} rows: a truncated download? "
            "Fetch the file again, or correct line 1",
        )
    return AttributeTable(path, names, rows)


def find_attributes_file(data_dir: str | Path) -> Path:
    """`list_attr_celeba.txt` next to the images: in `data_dir`, its `Anno/` folder (CelebA's
    layout) or its parent (images in `celeba/img_align_celeba/`, the file in `celeba/`).

    Args:
        data_dir: the images' folder.

    Raises:
        FileNotFoundError: the file is in none of these places.
    """
    root = Path(data_dir)
    candidates = [root / name for name in (ATTRIBUTES_FILE, f"Anno/{ATTRIBUTES_FILE}")]
    candidates.append(root.parent / ATTRIBUTES_FILE)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"attributes: true needs CelebA's {ATTRIBUTES_FILE} next to the images; looked in "
        f"{', '.join(str(p) for p in candidates)}. Place it in {root} (from CelebA's Anno/ "
        "folder), give its path with attributes_file, or set attributes: false"
    )


class WithAttributes(Dataset):
    """A dataset of image files (`.files`) whose samples also carry their attributes; every
    file's row is looked up once, when this is built, so a missing row stops at setup.

    Args:
        dataset: a dataset with a `files` list; its other attributes are read through.
        table: the attributes (already `select`ed) to add as `attributes` (A,) float32.

    Raises:
        DataError: a dataset without files, or a file without a row.
    """

    def __init__(self, dataset: Dataset, table: AttributeTable):
        files = getattr(dataset, "files", None)
        if files is None:
            raise DataError(
                f"attributes need a dataset of image files, {type(dataset).__name__} has none "
                "(the embedded shapes have no attributes: give data_dir)"
            )
        self.dataset, self.names = dataset, table.names
        self.values = table.for_files(files)  # (N, A)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.dataset[i], B.ATTRIBUTES: self.values[i].clone()}

    def __getattr__(self, name: str) -> Any:
        # files, root, scan...: the wrapped dataset's (setup checks and protocols read them)
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
