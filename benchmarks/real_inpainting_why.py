"""Why deep image prior does or does not beat the classical fills on textured hole pixels: a few
settings on a few of the images of a `benchmarks.real_inpainting` run.

    python -m benchmarks.real_inpainting_why [--run runs/real_inpainting] [--images 2]
        [--iterations K] [--channels C]

It reads the run's work folder (the same photos and masks, at the same size) and:
- depth: scores every method of the run on the textured hole pixels near the hole's border
  (within BAND px of a known pixel) and deeper inside, from the run's own outputs (no new run):
  a large hole is mostly "deep", where nothing near is known;
- iterations: one `i2i dip` of 2K iterations with a snapshot every K/2, on the first `--images`
  (places and faces in turn): the scores at K/2, K, 3K/2 and 2K;
- width: `i2i dip --channels C` (the paper's 128 by default) at K iterations on the same images.
Writes `<run>/why/why.md` and `why.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import distance_transform_edt

from benchmarks import real_inpainting as ri

BAND = 8  # px at the work size: "near the border" of the hole


def load(folder: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(folder / f"{name}.png").convert("RGB"))


def textured_scores(
    fake8: np.ndarray, real8: np.ndarray, known: np.ndarray, depth: str | None = None
) -> dict[str, float]:
    """L1, SSIM and edge F1 on the textured hole pixels, all of them or those within BAND px of
    a known pixel ("near") or farther ("deep"); NaN where there is no such pixel."""
    from i2i.tasks.inpainting import hole_scores

    fake, real = ri.to_tensor(fake8), ri.to_tensor(real8)
    hole = torch.from_numpy(~known)[None, None]
    region = hole & ri.textured_region(real)
    if depth is not None:
        near = torch.from_numpy(distance_transform_edt(~known) <= BAND)[None, None]
        region &= near if depth == "near" else ~near
    if not bool(region.any()):
        return {"l1": math.nan, "ssim": math.nan, "edge_f1": math.nan, "pixels": 0}
    s = hole_scores(fake, real, (~region).float())
    return {
        "l1": float(s["l1_hole"][0]),
        "ssim": float(s["ssim_hole"][0]),
        "edge_f1": float(s["edge_f1_hole"][0]),
        "pixels": int(region.sum()),
    }


def mean_of(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = ("l1", "ssim", "edge_f1")
    out = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    out["pixels"] = int(sum(r["pixels"] for r in rows))
    return out


def depth_rows(run: Path, names: list[str]) -> dict[str, dict[str, dict]]:
    """{method: {"near" | "deep": mean textured scores}} over `names`, from the run's outputs."""
    work, outputs = run / "work", run / "outputs"
    rows: dict[str, dict[str, dict]] = {}
    for method in ri.METHODS:
        rows[method] = {}
        for depth in ("near", "deep"):
            per_image = []
            for name in names:
                known = np.asarray(Image.open(work / "masks" / f"{name}.png").convert("L")) <= 127
                fake, real = load(outputs / method, name), load(work / "images", name)
                per_image.append(textured_scores(fake, real, known, depth))
            rows[method][depth] = mean_of(per_image)
    return rows


def dip_settings(
    run: Path, names: list[str], iterations: int, base_channels: int, channels: int
) -> dict[str, dict]:
    """DIP at K/2..2K iterations (one run, snapshots) and at `channels` wide: textured scores."""
    why = run / "why"
    for sub in ("images", "masks"):
        (why / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(run / "work" / sub / f"{name}.png", why / sub / f"{name}.png")
    half = max(1, iterations // 2)
    common = ["--image", str(why / "images"), "--mask", str(why / "masks")]
    common += ["--mask-polarity", "white_is_hole", "--overwrite", "--seed", "0", "--device", "cpu"]
    runs = {
        "long": [
            "--iterations",
            str(4 * half),
            "--snapshot-every",
            str(half),
            "--channels",
            str(base_channels),
        ],
        "wide": ["--iterations", str(iterations), "--channels", str(channels)],
    }
    seconds = {}
    for label, extra in runs.items():
        argv = ["dip", *common, *extra, "--out", str(why / label)]
        print("$ i2i", " ".join(argv), flush=True)
        start = time.perf_counter()
        ri.run_subprocess(argv)
        seconds[label] = time.perf_counter() - start
    settings = {}
    for k in range(1, 5):
        label = f"{k * half} iterations, {base_channels} channels"
        settings[label] = [why / "long" / f"{n}_iter{k * half:06d}.png" for n in names]
    label = f"wide: {iterations} iterations, {channels} channels"
    settings[label] = [why / "wide" / f"{n}.png" for n in names]
    out = {}
    for label, files in settings.items():
        per_image = []
        for name, path in zip(names, files, strict=True):
            known = np.asarray(Image.open(why / "masks" / f"{name}.png").convert("L")) <= 127
            fake = np.asarray(Image.open(path).convert("RGB"))
            per_image.append(textured_scores(fake, load(why / "images", name), known))
        out[label] = mean_of(per_image)
    out["seconds"] = seconds
    return out


def markdown(depth: dict, settings: dict, names: list[str]) -> str:
    lines = [
        f"Textured hole pixels near the border (<= {BAND} px from a known pixel) and deeper, "
        "all images of the run:",
        "",
        "| method | near: pixels | L1 ↓ | SSIM ↑ | edge F1 ↑ "
        "| deep: pixels | L1 ↓ | SSIM ↑ | edge F1 ↑ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, parts in depth.items():
        cells = []
        for part in ("near", "deep"):
            p = parts[part]
            cells += [str(p["pixels"]), f"{p['l1']:.3f}", f"{p['ssim']:.3f}", f"{p['edge_f1']:.3f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if settings:
        lines += [
            "",
            f"DIP settings on {', '.join(names)} (textured hole pixels):",
            "",
            "| setting | L1 ↓ | SSIM ↑ | edge F1 ↑ |",
            "|---|---|---|---|",
        ]
        for label, s in settings.items():
            if label != "seconds":
                lines.append(f"| {label} | {s['l1']:.3f} | {s['ssim']:.3f} | {s['edge_f1']:.3f} |")
        lines.append(f"\nseconds: {settings['seconds']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.real_inpainting_why", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--run", type=Path, default=ri.REPO / "runs" / "real_inpainting")
    parser.add_argument("--images", type=int, default=2, help="images for the DIP settings")
    parser.add_argument("--iterations", type=int, default=None, help="K (default: the run's)")
    parser.add_argument("--channels", type=int, default=128, help="the wide run's width")
    parser.add_argument("--depth-only", action="store_true", help="no new DIP run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of `i2i dip`")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # see benchmarks.real_inpainting
    torch.set_num_threads(args.threads)
    payload = json.loads((args.run / "scores.json").read_text())
    names = [i["name"] for i in payload["images"]]
    groups = [[n for n in names if n.startswith(g + "_")] for g in ri.GROUPS]
    chosen = [n for row in zip(*groups, strict=False) for n in row][: args.images]
    depth = depth_rows(args.run, names)
    settings = {}
    if not args.depth_only:
        k = args.iterations or payload["settings"]["iterations"]
        base = payload["settings"]["channels"]
        settings = dip_settings(args.run, chosen, k, base, args.channels)
    text = markdown(depth, settings, chosen)
    print(text)
    (args.run / "why").mkdir(exist_ok=True)
    (args.run / "why" / "why.md").write_text(text + "\n")
    payload = {"depth": depth, "settings": settings, "images": chosen}
    (args.run / "why" / "why.json").write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
