"""Deep image prior beside the classical fills on real photos with their paired masks.

    python -m benchmarks.real_inpainting [--data ../shared/data] [--images N] [--iterations K]
        [--max-side S] [--channels C] [--out runs/real_inpainting]

The selection is fixed: per group (places, faces), the mask files of its two 256 px sources
(below), each sorted by file name, taken in turn (first of the first source, first of the second,
second of the first, ...), the first `--images` of them. Places come from Places365 val only (the
MANIFEST's held-out split); the faces' split is unknown, which matters little here: none of these
methods is trained.

Each mask is read with its source's polarity (the MANIFEST's note per row: MI-GAN white = known,
FcF white = hole) into the project's convention, 1 = known, and its hole ratio is checked against
the "measured hole" that the MANIFEST gives for the file: a wrong polarity stops the run. The
pairs go to `<out>/work/images` and `<out>/work/masks` (white = hole), at most `--max-side`
pixels a side, and the user's commands run on them as subprocesses: `i2i dip` and
`i2i inpaint classical:NAME` for harmonic, biharmonic, telea and navier_stokes. Each output is
scored against the real image with `hole_scores` (L1, SSIM, edge F1 in the hole) and LPIPS where
its weights are in the torch hub cache ("weights absent" otherwise), and in two parts of the
hole: textured and smooth pixels (`textured_region`). Writes `<out>/table.md`,
`<out>/scores.json` and `<out>/sheet.png` (rows: masked input, each fill, DIP, real).

The photos are research-only: everything derived from them stays in `--out`, outside the
repository.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CLASSICAL = ("harmonic", "biharmonic", "telea", "navier_stokes")
METHODS = (*CLASSICAL, "dip")
# Textured: the real image's grey level (mean of RGB, in [-1, 1]) has a standard deviation above
# TEXTURE_STD over the WINDOW x WINDOW pixels around the pixel (about 13 of 255 grey levels).
WINDOW, TEXTURE_STD = 7, 0.1
# The MANIFEST rounds its hole ratios to 0.1%; more than this apart is another mask or polarity.
HOLE_TOLERANCE = 0.01


@dataclass(frozen=True)
class Source:
    group: str  # "places" or "faces"
    folder: str  # under --data, with images/ and masks/
    short: str  # in the pair's name
    polarity: str  # what white is in its mask files: the MANIFEST's note for the source
    mask_suffix: str = ""  # a mask's stem is its image's stem and this
    # Masks whose image is another's (FcF ships six masks for one face): mask stem -> image stem.
    shared_image: tuple[tuple[str, str], ...] = ()


SOURCES = (
    Source("places", "places/migan_places256", "migan", "white_is_known"),
    Source("places", "places/fcf_places256", "fcf", "white_is_hole", "_mask"),
    Source("faces", "faces/migan_ffhq256", "migan", "white_is_known"),
    Source(
        "faces",
        "faces/fcf_celebahq256",
        "fcf",
        "white_is_hole",
        "_mask",
        tuple((f"face{c}", "facea") for c in "bcdef"),
    ),
)
GROUPS = ("places", "faces")


@dataclass(frozen=True)
class Pair:
    name: str  # group_source_maskstem: the file name in the work folder
    group: str
    image: Path
    mask: Path
    polarity: str


def pairs(data: Path, per_group: int) -> list[Pair]:
    """The fixed selection: per group, its sources' masks in turn, the first `per_group`."""
    chosen = []
    for group in GROUPS:
        lists = []
        for src in (s for s in SOURCES if s.group == group):
            folder = data / src.folder
            if not folder.is_dir():
                continue
            shared = dict(src.shared_image)
            found = []
            for mask in sorted((folder / "masks").iterdir()):
                stem = mask.stem.removesuffix(src.mask_suffix)
                stem = shared.get(stem, stem)
                image = next(iter(sorted((folder / "images").glob(f"{stem}.*"))), None)
                if image is not None:
                    name = f"{group}_{src.short}_{mask.stem}"
                    found.append(Pair(name, group, image, mask, src.polarity))
            lists.append(found)
        taken = [p for row in _interleave(lists) for p in row][:per_group]
        chosen += taken
    return chosen


def _interleave(lists: list[list[Pair]]) -> list[list[Pair]]:
    depth = max((len(x) for x in lists), default=0)
    return [[x[i] for x in lists if i < len(x)] for i in range(depth)]


def known_of(path: Path, polarity: str) -> np.ndarray:
    """A mask file as (H, W) bool, True = known, by its source's polarity (the project's reader:
    any mode, grey > 127 is white, an alpha-only drawing read from its alpha)."""
    from i2i.data.masks import load_known

    return load_known(path, polarity=polarity)


def manifest_holes(data: Path) -> dict[str, float]:
    """The MANIFEST's measured hole ratio per file (path under --data -> ratio in [0, 1])."""
    manifest = data / "MANIFEST.md"
    if not manifest.is_file():
        return {}
    pattern = re.compile(r"^\| `([^`]+)` \|.*?measured hole = ([\d.]+)%", re.M)
    return {m[1]: float(m[2]) / 100 for m in pattern.finditer(manifest.read_text())}


def check_hole(pair: Pair, known: np.ndarray, data: Path, holes: dict[str, float]) -> float | None:
    """The MANIFEST's hole ratio for the mask (None: not listed); stops on a disagreement."""
    key = pair.mask.relative_to(data).as_posix() if pair.mask.is_relative_to(data) else None
    expected = holes.get(key) if key else None
    measured = 1 - float(known.mean())
    if expected is not None and abs(measured - expected) > HOLE_TOLERANCE:
        raise SystemExit(
            f"{pair.mask}: hole {measured:.1%} read as {pair.polarity}, the MANIFEST says "
            f"{expected:.1%}: is the polarity in SOURCES right?"
        )
    return expected


def prepare(pair: Pair, known: np.ndarray, max_side: int | None, work: Path) -> None:
    """The image (RGB) and its mask (white = hole) in the work folder, at most max_side a side:
    the image by area averaging, the mask as the known share of each new pixel above 0.5."""
    from i2i.data.datasets import load_image

    image = load_image(pair.image)  # as the commands read it: upright, RGB, alpha dropped
    mask = Image.fromarray((known * 255).astype(np.uint8))
    if image.size != mask.size:
        raise SystemExit(f"{pair.mask} is {mask.size}, its image {pair.image} {image.size}")
    w, h = image.size
    if max_side is not None and max(w, h) > max_side:
        size = (max(1, round(w * max_side / max(w, h))), max(1, round(h * max_side / max(w, h))))
        image = image.resize(size, Image.Resampling.BOX)
        known_small = np.asarray(mask.resize(size, Image.Resampling.BOX)) > 127
        mask = Image.fromarray((known_small * 255).astype(np.uint8))
    image.save(work / "images" / f"{pair.name}.png")
    Image.fromarray(255 - np.asarray(mask)).save(work / "masks" / f"{pair.name}.png")


def run_subprocess(argv: list[str]) -> None:
    """`i2i ARGV` as a user runs it: a fresh process (its startup counts in the seconds)."""
    subprocess.run([sys.executable, "-m", "i2i", *argv], check=True)


def run_methods(
    work: Path,
    outputs: Path,
    args: argparse.Namespace,
    run_command: Callable[[list[str]], None] = run_subprocess,  # tests: in this process
) -> dict[str, float]:
    """The user's commands on the work folder; wall seconds per method."""
    common = ["--image", str(work / "images"), "--mask", str(work / "masks")]
    common += ["--mask-polarity", "white_is_hole", "--overwrite"]
    # The MI-GAN masks hide up to 91%: above `i2i inpaint`'s guard against inverted masks.
    commands = {m: ["inpaint", f"classical:{m}", *common, "--allow-large-holes"] for m in CLASSICAL}
    commands["dip"] = ["dip", *common, "--iterations", str(args.iterations)]
    commands["dip"] += ["--channels", str(args.channels), "--seed", "0", "--device", "cpu"]
    seconds = {}
    for name, command in commands.items():
        argv = [*command, "--out", str(outputs / name)]
        print("$ i2i", " ".join(argv), flush=True)
        start = time.perf_counter()
        run_command(argv)
        seconds[name] = time.perf_counter() - start
    return seconds


# ---- scoring ---------------------------------------------------------------------------------


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1


def textured_region(real: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) bool: where the real image's local grey-level standard deviation (WINDOW x
    WINDOW, the image's border pixels over the window's part inside) exceeds TEXTURE_STD."""
    grey = real.float().mean(1, keepdim=True)
    pool = lambda x: F.avg_pool2d(x, WINDOW, 1, WINDOW // 2, count_include_pad=False)  # noqa: E731
    var = pool(grey.square()) - pool(grey).square()
    return var.clamp_min(0).sqrt() > TEXTURE_STD


def region_scores(fake: torch.Tensor, real: torch.Tensor, known: torch.Tensor) -> dict[str, float]:
    """`hole_scores` in the whole hole and in its textured and smooth parts (a part with no pixel:
    NaN, left out of the means)."""
    from i2i.tasks.inpainting import hole_scores

    hole = known < 0.5
    textured = textured_region(real)
    out: dict[str, float] = {}
    for suffix, region in (
        ("", hole),
        ("_textured", hole & textured),
        ("_smooth", hole & ~textured),
    ):
        empty = not bool(region.any())
        # hole_scores scores where its mask is 0: the region is passed as the "hole".
        scores = hole_scores(fake, real, (~region).float())
        for key, value in scores.items():
            out[key + suffix] = math.nan if empty else float(value[0])
    out["textured_share"] = float((hole & textured).sum() / hole.sum().clamp_min(1))
    return out


def lpips_model():
    """LPIPS (AlexNet) where its weights are in the torch hub cache, else None."""
    from i2i.compare import paper_metric_files
    from i2i.metrics.image import build_lpips

    return build_lpips() if paper_metric_files()["lpips"].is_file() else None


def score_all(work: Path, outputs: Path, names: list[str]) -> dict[str, dict[str, dict]]:
    """{method: {image name: scores}}, each output read back as saved (8-bit PNG)."""
    lpips = lpips_model()
    results: dict[str, dict[str, dict]] = {m: {} for m in METHODS}
    for name in names:
        real8 = np.asarray(Image.open(work / "images" / f"{name}.png").convert("RGB"))
        known = np.asarray(Image.open(work / "masks" / f"{name}.png").convert("L")) <= 127
        real, known_t = to_tensor(real8), torch.from_numpy(known)[None, None]
        for method in METHODS:
            out8 = np.asarray(Image.open(outputs / method / f"{name}.png").convert("RGB"))
            fake = to_tensor(out8)
            scores = region_scores(fake, real, known_t)
            scores["known_unchanged"] = bool((out8[known] == real8[known]).all())
            if lpips is not None:
                with torch.no_grad():
                    scores["lpips"] = float(lpips(fake, real)[0])
            results[method][name] = scores
    return results


def means(results: dict[str, dict[str, dict]], names: list[str]) -> dict[str, dict[str, float]]:
    """Per method, the mean of each score over `names` (NaN entries left out)."""
    out = {}
    for method, per_image in results.items():
        keys = [k for k in next(iter(per_image.values())) if k != "known_unchanged"]
        out[method] = {
            k: float(np.nanmean([per_image[n][k] for n in names]))
            if any(not math.isnan(per_image[n][k]) for n in names)
            else math.nan
            for k in keys
        }
    return out


# ---- report ----------------------------------------------------------------------------------

COLUMNS = (  # (key, header, format)
    ("l1_hole", "L1 hole ↓", "{:.3f}"),
    ("ssim_hole", "SSIM hole ↑", "{:.3f}"),
    ("edge_f1_hole", "edge F1 hole ↑", "{:.3f}"),
    ("lpips", "LPIPS ↓", "{:.3f}"),
    ("l1_hole_textured", "L1 textured ↓", "{:.3f}"),
    ("ssim_hole_textured", "SSIM textured ↑", "{:.3f}"),
    ("edge_f1_hole_textured", "edge F1 textured ↑", "{:.3f}"),
    ("l1_hole_smooth", "L1 smooth ↓", "{:.3f}"),
    ("ssim_hole_smooth", "SSIM smooth ↑", "{:.3f}"),
)
ABSENT = "weights absent ¹"


def table(
    groups: dict[str, dict[str, dict[str, float]]],
    counts: dict[str, int],
    seconds: dict[str, float],
    lpips_present: bool,
) -> str:
    """The markdown table: per group (all, places, faces), a row per method."""
    head = ["images", "method", *(c[1] for c in COLUMNS), "s/image"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group, per_method in groups.items():
        for method in METHODS:
            m = per_method[method]
            cells = []
            for key, _, fmt in COLUMNS:
                if key == "lpips" and not lpips_present:
                    cells.append(ABSENT)
                else:
                    value = m.get(key, math.nan)
                    cells.append("-" if math.isnan(value) else fmt.format(value))
            per_image = seconds[method] / max(counts["all"], 1)
            label = f"{group} ({counts[group]})"
            lines.append(f"| {label} | {method} | " + " | ".join(cells) + f" | {per_image:.1f} |")
    if not lpips_present:
        from i2i.compare import paper_metric_files

        lines.append(
            f"\n¹ not computed: place {paper_metric_files()['lpips']} (LPIPS, AlexNet) "
            "there (`i2i-weights` does, where there is network)."
        )
    return "\n".join(lines)


def verdict(per_method: dict[str, dict[str, float]]) -> str:
    """One line: does DIP beat every classical fill on the textured hole pixels?"""
    dip = per_method["dip"]
    parts = []
    for key, better in (
        ("l1_hole_textured", min),
        ("ssim_hole_textured", max),
        ("edge_f1_hole_textured", max),
    ):
        best = better(CLASSICAL, key=lambda m: per_method[m][key])
        value = per_method[best][key]
        wins = better(dip[key], value) == dip[key] and dip[key] != value
        winner = "DIP" if wins else best
        parts.append(f"{key} DIP {dip[key]:.3f}, best fill {best} {value:.3f}: {winner} better")
    share = dip["textured_share"]
    return f"Textured hole pixels (all images; {share:.0%} of the hole): " + "; ".join(parts)


def sheet(work: Path, outputs: Path, names: list[str], path: Path, tile: int = 160) -> None:
    """Rows: masked input, each classical fill, DIP, real; a column per image."""
    from i2i.inference.panels import overlay

    rows = ["input", *CLASSICAL, "dip", "real"]
    label_w, pad = 96, 2
    canvas = Image.new(
        "RGB", (label_w + len(names) * (tile + pad), len(rows) * (tile + pad)), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        draw.text((4, r * (tile + pad) + tile // 2), row, fill="black")
        for c, name in enumerate(names):
            real = np.asarray(Image.open(work / "images" / f"{name}.png").convert("RGB"))
            known = np.asarray(Image.open(work / "masks" / f"{name}.png").convert("L")) <= 127
            if row == "input":
                rgb = overlay(real, known)
            elif row == "real":
                rgb = real
            else:
                rgb = np.asarray(Image.open(outputs / row / f"{name}.png").convert("RGB"))
            picture = Image.fromarray(rgb)
            scale = tile / max(picture.size)  # up or down: every image fills its tile
            size = (round(picture.width * scale), round(picture.height * scale))
            picture = picture.resize(size, Image.Resampling.LANCZOS)
            canvas.paste(picture, (label_w + c * (tile + pad), r * (tile + pad)))
    canvas.save(path)


def main(
    argv: list[str] | None = None, run_command: Callable[[list[str]], None] = run_subprocess
) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.real_inpainting", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--images", type=int, default=3, help="pairs per group (places, faces)")
    parser.add_argument("--iterations", type=int, default=300, help="DIP's, per image")
    parser.add_argument("--max-side", type=int, default=128, help="work size (0: as they come)")
    parser.add_argument("--channels", type=int, default=64, help="DIP's hourglass width")
    parser.add_argument("--sheet-images", type=int, default=4, help="columns of sheet.png")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the commands")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "real_inpainting")
    args = parser.parse_args(argv)
    data = args.data.resolve()
    # The commands inherit it. On a 2-core machine with anything else running, DIP with 2 torch
    # threads ran 70x slower per iteration than with 1 (4.2 s against 0.06 s at 64 px).
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)  # and the scoring here
    chosen = pairs(data, args.images)
    if not chosen:
        print(
            f"no image/mask pairs under {data} (the sources: "
            f"{', '.join(s.folder for s in SOURCES)})",
            file=sys.stderr,
        )
        return 1
    work, outputs = args.out / "work", args.out / "outputs"
    for folder in (work / "images", work / "masks"):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):  # a previous, larger selection
            old.unlink()
    holes = manifest_holes(data)
    images = []
    for pair in chosen:
        known = known_of(pair.mask, pair.polarity)
        expected = check_hole(pair, known, data, holes)
        prepare(pair, known, args.max_side or None, work)
        images.append(
            {
                "name": pair.name,
                "group": pair.group,
                "image": str(pair.image),
                "mask": str(pair.mask),
                "polarity": pair.polarity,
                "hole": 1 - float(known.mean()),
                "manifest_hole": expected,
            }
        )
    seconds = run_methods(work, outputs, args, run_command)
    names = [p.name for p in chosen]
    results = score_all(work, outputs, names)
    lpips_present = "lpips" in results["dip"][names[0]]
    by_group = {"all": names, **{g: [p.name for p in chosen if p.group == g] for g in GROUPS}}
    by_group = {g: n for g, n in by_group.items() if n}
    groups = {g: means(results, n) for g, n in by_group.items()}
    counts = {g: len(n) for g, n in by_group.items()}
    text = table(groups, counts, seconds, lpips_present)
    line = verdict(groups["all"])
    unchanged = all(s["known_unchanged"] for r in results.values() for s in r.values())
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    command = "python -m benchmarks.real_inpainting " + " ".join(argv or sys.argv[1:])
    report = (
        f"`{command.strip()}`\n\n{text}\n\n{line}\n\nTextured: local grey-level std over "
        f"{WINDOW}x{WINDOW} px above {TEXTURE_STD} (images in [-1, 1]).\n"
    )
    print(report, flush=True)
    if not unchanged:
        print("WARNING: some output changed known pixels (scores.json: known_unchanged)")
    (args.out / "table.md").write_text(report)
    payload = {
        "settings": settings,
        "images": images,
        "seconds": seconds,
        "means": groups,
        "known_unchanged": unchanged,
        "scores": results,
    }
    (args.out / "scores.json").write_text(json.dumps(payload, indent=1, allow_nan=True))
    sheet(work, outputs, sheet_names(chosen, args.sheet_images), args.out / "sheet.png")
    print(f"wrote {args.out / 'table.md'}, {args.out / 'scores.json'}, {args.out / 'sheet.png'}")
    return 0 if unchanged else 1


def sheet_names(chosen: list[Pair], count: int) -> list[str]:
    """Places and faces in turn, the first `count`: the sheet shows both groups."""
    per_group = [[p for p in chosen if p.group == g] for g in GROUPS]
    return [p.name for row in _interleave(per_group) for p in row][:count]


if __name__ == "__main__":
    sys.exit(main())
