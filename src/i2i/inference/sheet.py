"""One picture of a folder of `i2i inpaint --panel` / `i2i translate --panel` outputs: the
panels stacked top to bottom, enlarged (nearest neighbour, so pixels stay visible) for a screen.

    python -m i2i.inference.sheet runs/demo/inpainted --out runs/demo/inpainted.png
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image
from torchvision.utils import make_grid, save_image

from i2i.io import atomic_write


def contact_sheet(folder: Path, min_width: int = 768) -> torch.Tensor:
    """The panels `*_panel.png` under `folder` (sorted by path) in one column, scaled by a whole
    factor up to `min_width` pixels wide; (3, H, W) in [0, 1]."""
    paths = sorted(Path(folder).rglob("*_panel.png"))
    if not paths:
        raise FileNotFoundError(
            f"no *_panel.png under {folder}: write them with `i2i inpaint ... --panel`"
        )
    panels = [decode_image(str(p), mode=ImageReadMode.RGB).float() / 255 for p in paths]
    width = max(p.shape[-1] for p in panels)
    panels = [torch.nn.functional.pad(p, (0, width - p.shape[-1]), value=1.0) for p in panels]
    sheet = make_grid(panels, nrow=1, padding=4, pad_value=1.0)
    scale = max(1, math.ceil(min_width / sheet.shape[-1]))
    return torch.nn.functional.interpolate(sheet[None], scale_factor=scale, mode="nearest")[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m i2i.inference.sheet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder of *_panel.png files")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    if args.out.resolve() in {p.resolve() for p in Path(args.folder).rglob("*_panel.png")}:
        print(f"error: --out {args.out} is one of the panels: choose another name")
        return 1
    try:
        sheet = contact_sheet(args.folder)
    except FileNotFoundError as e:
        print(f"error: {e}")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # atomic: a file with the sheet's name is always whole
    atomic_write(args.out, lambda tmp: save_image(sheet, tmp, format="PNG"))
    with Image.open(args.out) as image:
        print(f"wrote {args.out} ({image.width}x{image.height})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
