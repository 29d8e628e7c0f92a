"""One picture of a folder of `i2i inpaint --panel` / `i2i translate --panel` outputs: the
panels stacked top to bottom, enlarged (nearest neighbour, so pixels stay visible) for a screen.

    python -m i2i.inference.sheet runs/demo/inpainted --out runs/demo/inpainted.png
    python -m i2i.inference.sheet runs/demo/inpainted --out runs/demo/inpainted.png \
        --classical runs/demo/classical --classical-name classical:biharmonic \
        --heldout runs/demo/heldout

`--classical DIR`: a folder of another method's outputs (`NAME.png`, e.g. `i2i inpaint
classical:biharmonic`), shown as one more column beside each panel `NAME_panel.png`.
`--heldout DIR` (its `images/` and `masks/`, white = hole, as `make try` writes them): prints the
hole L1 (images in [-1, 1]) and the edge F1 in the hole (`i2i.metrics.structure`) of the model's
outputs `NAME_K.png`, averaged over its samples, and of the classical ones, on the same scenes.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor
from torchvision.utils import make_grid, save_image

from i2i.io import atomic_write


def _read(path: Path, mode: str = "RGB") -> torch.Tensor:
    """(C, H, W) in [0, 1], decoded by PIL as i2i reads every image (torchvision's decoders are
    deprecated)."""
    with Image.open(path) as image:
        return pil_to_tensor(image.convert(mode)).float() / 255


def _with_column(panel: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The panel (3, h + 4, W) of `panel_image` (2 px white padding) with one more tile."""
    h = panel.shape[1] - 4
    w = round(image.shape[2] * h / image.shape[1])
    tile = torch.nn.functional.interpolate(image[None], size=(h, w), mode="bicubic")[0]
    out = torch.ones(3, panel.shape[1], panel.shape[2] + w + 2)
    out[:, :, : panel.shape[2]] = panel
    out[:, 2 : 2 + h, panel.shape[2] : panel.shape[2] + w] = tile.clamp(0, 1)
    return out


def contact_sheet(
    folder: Path, min_width: int = 768, classical: Path | None = None
) -> torch.Tensor:
    """The panels `*_panel.png` under a folder (sorted by path) in one column, enlarged.

    Args:
        folder: where the panels are (recursive).
        min_width: the sheet is scaled up by the smallest whole factor that makes it at least
            this many pixels wide (nearest neighbour; never scaled down).
        classical: a folder of another method's outputs: the image of each panel's name is
            added as one more column; None: none.

    Returns:
        (3, H, W) in [0, 1].

    Raises:
        FileNotFoundError: no panel under the folder, or a classical output missing.
    """
    paths = sorted(Path(folder).rglob("*_panel.png"))
    if not paths:
        raise FileNotFoundError(
            f"no *_panel.png under {folder}: write them with `i2i inpaint ... --panel`"
        )
    panels = [_read(p) for p in paths]
    if classical is not None:
        for i, path in enumerate(paths):
            name = path.relative_to(folder).as_posix()[: -len("_panel.png")] + ".png"
            other = Path(classical) / name
            if not other.is_file():
                raise FileNotFoundError(
                    f"no {other} for the panel {path}: write the classical fill of the same "
                    f"inputs into {classical} (`i2i inpaint classical:NAME ... --out {classical}`)"
                )
            panels[i] = _with_column(panels[i], _read(other))
    width = max(p.shape[-1] for p in panels)
    panels = [torch.nn.functional.pad(p, (0, width - p.shape[-1]), value=1.0) for p in panels]
    sheet = make_grid(panels, nrow=1, padding=4, pad_value=1.0)
    scale = max(1, math.ceil(min_width / sheet.shape[-1]))
    return torch.nn.functional.interpolate(sheet[None], scale_factor=scale, mode="nearest")[0]


def _as_tensor(path: Path) -> torch.Tensor:
    return _read(path)[None] * 2 - 1  # (1, 3, H, W) in [-1, 1]


def heldout_scores(heldout: Path, outputs: dict[str, list[Path]]) -> dict[str, float]:
    """Hole L1 and edge F1 in the hole of outputs against the held-out scenes.

    Args:
        heldout: a folder with images/NAME.png and masks/NAME.png (white = hole).
        outputs: scene name -> its output files; every file is scored, then all are averaged.

    Returns:
        {"hole_l1": mean L1 in the hole (images in [-1, 1]), "edge_f1": mean edge F1 in the
            hole, "outputs": how many files were scored}.
    """
    from i2i.losses import masked_l1
    from i2i.metrics.structure import edge_f1_in_region

    l1, f1 = [], []
    for name, files in sorted(outputs.items()):
        real = _as_tensor(Path(heldout) / "images" / f"{name}.png")
        hole = _read(Path(heldout) / "masks" / f"{name}.png", mode="L")
        known = (hole < 0.5).float()[None]
        for path in files:
            fake = _as_tensor(path)
            l1.append(float(masked_l1(fake, real, known, region="hole")))
            f1.append(float(edge_f1_in_region(fake, real, 1 - known)))
    return {"hole_l1": sum(l1) / len(l1), "edge_f1": sum(f1) / len(f1), "outputs": len(l1)}


def print_scores(folder: Path, heldout: Path, classical: Path | None, classical_name: str) -> None:
    """Print the model's scores (its samples `NAME_K.png`) and the classical fill's, on the
    same scenes.

    Args:
        folder: the model's outputs.
        heldout: the scenes' folder (see `heldout_scores`).
        classical: a folder of the classical fill's outputs `NAME.png`; None: not scored.
        classical_name: the classical fill's name in the printed table.

    Raises:
        FileNotFoundError: a scene without model outputs.
    """
    names = sorted(p.stem for p in (Path(heldout) / "images").glob("*.png"))
    model = {n: sorted(Path(folder).glob(f"{n}_[0-9]*.png")) for n in names}
    missing = [n for n, files in model.items() if not files]
    if missing:
        raise FileNotFoundError(f"no outputs {missing[0]}_K.png in {folder} for {heldout}")
    rows = [(f"model ({len(model[names[0]])} samples each)", heldout_scores(heldout, model))]
    if classical is not None:
        fills = {n: [Path(classical) / f"{n}.png"] for n in names}
        rows.append((classical_name, heldout_scores(heldout, fills)))
    print(
        f"scores on the {len(names)} held-out scenes (hole L1, images in [-1, 1]: lower is "
        "better; edge F1 in the hole, kornia Canny, 1 px: higher is better):"
    )
    for label, s in rows:
        print(f"  {label:<28} hole L1 {s['hole_l1']:.3f}   edge F1 {s['edge_f1']:.3f}")


def main(argv: list[str] | None = None) -> int:
    """`python -m i2i.inference.sheet`: write the contact sheet, and print the scores with
    --heldout.

    Args:
        argv: the command's arguments (None: `sys.argv[1:]`).

    Returns:
        The exit status: 0, or 1 after a one-line error.
    """
    parser = argparse.ArgumentParser(
        prog="python -m i2i.inference.sheet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="a folder of *_panel.png files")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument(
        "--classical",
        type=Path,
        default=None,
        help="a folder of another method's outputs NAME.png: one more column",
    )
    parser.add_argument("--classical-name", default="classical", help="its name in the scores")
    parser.add_argument(
        "--heldout",
        type=Path,
        default=None,
        help="the scenes' folder (images/, masks/ white = hole): print scores",
    )
    args = parser.parse_args(argv)
    if args.out.resolve() in {p.resolve() for p in Path(args.folder).rglob("*_panel.png")}:
        print(f"error: --out {args.out} is one of the panels: choose another name")
        return 1
    try:
        sheet = contact_sheet(args.folder, classical=args.classical)
        if args.heldout is not None:
            print_scores(args.folder, args.heldout, args.classical, args.classical_name)
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
