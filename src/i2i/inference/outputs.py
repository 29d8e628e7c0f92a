"""The files `i2i inpaint`, `i2i translate` and `i2i predict` write: their names, an atomic PNG
writer, and the check that refuses a run which would replace an input or write a file twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from i2i.io import atomic_write


def output_paths(out: Path, name: str, num_samples: int, panel: bool) -> list[Path]:
    """The files written for one input.

    Args:
        out: the output folder.
        name: the input's name: its path relative to its folder, without extension.
        num_samples: outputs per input; above 1 each file ends in `_k`, k the sample.
        panel: whether a side-by-side `_panel.png` is written too (listed last).
    """
    if num_samples == 1:
        paths = [out / f"{name}.png"]
    else:
        paths = [out / f"{name}_{k}.png" for k in range(num_samples)]
    return [*paths, out / f"{name}_panel.png"] if panel else paths


def save_png(path: Path, image: np.ndarray) -> None:
    """Write a PNG atomically: a file with the output's name is always complete (Ctrl-C, a full
    disk). Its folder is created.

    Args:
        path: the file to write.
        image: (H, W, 3) uint8.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary is hidden and has no image suffix: never listed as an input.
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def check_outputs(
    out: Path, inputs: list[tuple[Path, str]], sources: list[Path], planned: list[list[Path]]
) -> None:
    """Refuse a run that would lose an input or write one output twice.

    Args:
        out: the output folder.
        inputs: the (file, name) pairs of `collect`.
        sources: the paths given for the inputs (files or folders) and the mask files.
        planned: the outputs of each input (`output_paths`), in the inputs' order.

    Raises:
        ValueError: --out is a file or inside an input folder, an output would replace an input,
            or two inputs would write the same output.
    """
    here = out.resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder (it is created if missing)")
    for source in sources:
        where = source.resolve()
        if source.is_dir() and (here == where or where in here.parents):
            raise ValueError(
                f"--out {out} is {'inside ' if here != where else ''}the input folder {source}: "
                "the outputs would mix with the inputs (and replace those of the same name); "
                "choose an --out outside it"
            )
    protected = {f.resolve() for f, _ in inputs} | {s.resolve() for s in sources}
    writers: dict[Path, list[Path]] = {}
    for (file, _), paths in zip(inputs, planned, strict=True):
        for path in paths:
            if path.resolve() in protected:
                raise ValueError(
                    f"the output {path} would replace the input {path.resolve()}: choose "
                    "another --out"
                )
            writers.setdefault(path, []).append(file)
    clashes = [(path, files) for path, files in writers.items() if len(files) > 1]
    if clashes:
        listed = "; ".join(
            f"{' and '.join(map(str, files))} -> {path}" for path, files in clashes[:5]
        ) + (f"; and {len(clashes) - 5} more" if len(clashes) > 5 else "")
        raise ValueError(
            f"{len(clashes)} output(s) would be written by several inputs: {listed}. Nothing "
            "was written: rename one of each (x.jpg and x.png), or run them with different --out"
        )
