"""Deep image prior inpainting (Ulyanov et al., CVPR 2018): per-image optimisation, no dataset.

An hourglass network (`i2i.networks.HourglassNetwork`) maps a fixed random code to an image and is
fitted with Adam (lr 0.01) to the KNOWN pixels only (masked MSE), with the code perturbed by fresh
Gaussian noise at every step (input-noise regularisation). Its structure fills the hole. The
result keeps every known pixel unchanged.

    from i2i.dip import deep_image_prior
    result = deep_image_prior(image, mask, iterations=3000)      # (3, H, W) in [-1, 1], 1 = known

    i2i dip --image photo.png --mask mask.png --mask-polarity white_is_hole --out result.png
    i2i dip --image photos/ --mask masks/ --mask-polarity white_is_known --out results/

Images of any size: the network runs on the image padded (reflection) to a multiple of 32, or on
a downscaled copy with `--max-side` (faster; the completion is upsampled into the hole only).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from i2i.images import to_uint8
from i2i.networks.hourglass import HourglassNetwork


@dataclass
class DIPResult:
    image: torch.Tensor  # (3, H, W) in [-1, 1]: the completion, known pixels unchanged
    raw: torch.Tensor  # (3, H, W): the network's output everywhere
    losses: list[float] = field(default_factory=list)  # masked MSE per iteration
    iterations: int = 0  # iterations run (fewer when stopped early)
    interrupted: bool = False  # stopped by `should_stop` before `iterations`


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (bottom, right) to sides divisible by `multiple` and at least 2 x multiple (the
    deepest level's 3x3 reflection padding needs 2 pixels)."""
    h, w = x.shape[-2:]
    ph = max(-(-h // multiple) * multiple, 2 * multiple) - h
    pw = max(-(-w // multiple) * multiple, 2 * multiple) - w
    if ph == 0 and pw == 0:
        return x, (0, 0)
    # Reflection needs pad < side; replicate covers tiny images.
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x[None], (0, pw, 0, ph), mode=mode)[0], (ph, pw)


def deep_image_prior(
    image: torch.Tensor,  # (3, H, W) in [-1, 1]
    mask: torch.Tensor,  # (1, H, W), 1 = known, 0 = hole
    iterations: int = 3000,
    lr: float = 0.01,
    code_channels: int = 32,
    input_noise_std: float = 1 / 30,  # the paper's regularisation of the code at every step
    network: dict | None = None,  # HourglassNetwork arguments (channels, skip_channels, levels)
    max_side: int | None = None,  # run on a copy whose longer side is at most this
    seed: int = 0,
    device: str | torch.device = "cpu",
    # Called after every iteration with (iteration, masked MSE, a function that returns the
    # current output (3, H, W)): progress bars and snapshots.
    callback: Callable[[int, float, Callable[[], torch.Tensor]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,  # checked every iteration (Ctrl-C)
) -> DIPResult:
    """Inpaint one image by deep image prior; deterministic for a seed on a given device."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W) in [-1, 1], got {tuple(image.shape)}")
    if mask.shape != (1, *image.shape[1:]):
        raise ValueError(
            f"mask must be (1, H, W) = (1, {image.shape[1]}, {image.shape[2]}), "
            f"got {tuple(mask.shape)}"
        )
    if float(mask.min()) == 1.0:
        raise ValueError("the mask has no hole (all pixels known): nothing to inpaint")
    if float(mask.max()) == 0.0:
        raise ValueError("the mask has no known pixel: deep image prior needs some to fit")
    device = torch.device(device)
    full_h, full_w = image.shape[1:]
    work_img, work_mask = image.float(), mask.float()
    scale = 1.0
    if max_side is not None and max(full_h, full_w) > max_side:
        scale = max_side / max(full_h, full_w)
        size = (max(1, round(full_h * scale)), max(1, round(full_w * scale)))
        work_img = F.interpolate(work_img[None], size, mode="area")[0]
        work_mask = (F.interpolate(work_mask[None], size, mode="area")[0] > 0.999).float()
    net_args = {"in_channels": code_channels, **(network or {})}
    multiple = 2 ** net_args.get("levels", 5)
    padded_img, (ph, pw) = _pad_to(work_img, multiple)
    padded_mask = F.pad(work_mask, (0, pw, 0, ph))  # padding is not known: outside the loss
    h, w = padded_img.shape[1:]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        net = HourglassNetwork(**net_args).to(device)
        gen = torch.Generator(device=device).manual_seed(seed)
        code = torch.rand(1, code_channels, h, w, generator=gen, device=device) * 0.1
        target, weight = padded_img[None].to(device), padded_mask[None].to(device)
        known = weight.sum() * 3
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        losses: list[float] = []
        done, interrupted = 0, False

        @torch.no_grad()
        def current() -> torch.Tensor:
            return net(code)[0, :, : h - ph, : w - pw].float().cpu()

        for _ in range(iterations):
            if should_stop is not None and should_stop():
                interrupted = True
                break
            noisy = code + input_noise_std * torch.randn(code.shape, generator=gen, device=device)
            out = net(noisy)
            loss = ((out - target).square() * weight).sum() / known
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            done += 1
            if callback is not None:
                callback(done, losses[-1], current)
        raw = current()
    if scale != 1.0:
        raw = F.interpolate(raw[None], (full_h, full_w), mode="bicubic", align_corners=False)[0]
        raw = raw.clamp(-1, 1)
    m = mask.float().cpu()
    completed = raw * (1 - m) + image.float().cpu() * m
    return DIPResult(completed, raw, losses, done, interrupted)


# ---- files ----------------------------------------------------------------------------------


def _load_rgb(path: Path) -> np.ndarray:
    from i2i.data.datasets import load_image

    return np.asarray(load_image(path), dtype=np.uint8)


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1


def complete_file(
    image_path: Path,
    mask_path: Path,
    out_path: Path,
    polarity: str,
    snapshot_every: int = 0,
    progress: bool = True,
    **kwargs,
) -> DIPResult:
    """Inpaint one file; write the completion (PNG) at the input's full size. Known pixels are
    the input's bytes, bit for bit (the network's output is used in the hole only)."""
    from tqdm import tqdm

    from i2i.data.masks import load_mask

    rgb = _load_rgb(image_path)
    mask = load_mask(mask_path, (rgb.shape[0], rgb.shape[1]), polarity=polarity)
    hole_ratio = 1 - float(mask.mean())
    if hole_ratio == 0:
        raise ValueError(
            f"{mask_path} has no hole with --mask-polarity {polarity}: nothing to inpaint "
            "(is the polarity right?)"
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    iterations = kwargs.get("iterations", 3000)
    bar = tqdm(total=iterations, desc=image_path.name, disable=not progress, leave=False)
    stop = {"now": False}

    def on_signal(signum, frame):  # Ctrl-C: finish this step, write the current result
        stop["now"] = True
        signal.signal(signum, signal.default_int_handler)

    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:  # started to ignore it (`i2i dip ... &` in a script)
        signal.signal(signal.SIGINT, on_signal)

    def report(it: int, loss: float, current: Callable[[], torch.Tensor]) -> None:
        bar.update(1)
        if it % 10 == 0:
            bar.set_postfix(masked_mse=f"{loss:.4f}", refresh=False)
        if snapshot_every and it % snapshot_every == 0:
            _write(out_path.with_name(f"{out_path.stem}_iter{it:06d}.png"), rgb, mask, current())

    try:
        result = deep_image_prior(
            _to_tensor(rgb), mask, callback=report, should_stop=lambda: stop["now"], **kwargs
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    _write(out_path, rgb, mask, result.raw)
    return result


def _write(path: Path, rgb: np.ndarray, mask: torch.Tensor, raw: torch.Tensor) -> None:
    out = rgb.copy()
    hole = mask[0].numpy() < 0.5
    out[hole] = to_uint8(raw)[hole]
    Image.fromarray(out).save(path)


def _pairs(image: Path, mask: Path, out: Path) -> list[tuple[Path, Path, Path]]:
    """(image, mask, output) triples: one file, or folders matched by file stem."""
    from i2i.data.folders import list_images

    if image.is_file():
        if not mask.is_file():
            raise FileNotFoundError(f"--mask {mask} is not a file (the image is a file)")
        target = out if out.suffix.lower() == ".png" else out / f"{image.stem}.png"
        return [(image, mask, target)]
    if not mask.is_dir():
        raise FileNotFoundError(f"--mask {mask} must be a folder when --image is a folder")
    masks = {p.stem: p for p in list_images(mask)}
    triples, missing = [], []
    for path in list_images(image):
        rel = path.relative_to(image)
        if path.stem in masks:
            triples.append((path, masks[path.stem], out / rel.with_suffix(".png")))
        else:
            missing.append(str(rel))
    if missing:
        raise FileNotFoundError(
            f"no mask in {mask} named like {len(missing)} image(s) of {image}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} (masks are matched "
            "by file name without extension)"
        )
    return triples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="i2i dip",
        description="Inpaint images by deep image prior: no training data, one optimisation per "
        "image. Known pixels are returned unchanged.",
    )
    parser.add_argument("--image", required=True, type=Path, help="an image file or a folder")
    parser.add_argument("--mask", required=True, type=Path, help="a mask file or a folder")
    parser.add_argument(
        "--mask-polarity",
        required=True,
        choices=("white_is_hole", "white_is_known"),
        help="what white means in the mask files",
    )
    parser.add_argument("--out", required=True, type=Path, help="a .png file or a folder")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snapshot-every", type=int, default=0, help="also write every k steps")
    parser.add_argument("--max-side", type=int, default=None, help="work on a smaller copy")
    parser.add_argument("--channels", type=int, default=128, help="the hourglass's width")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)
    try:
        triples = _pairs(args.image, args.mask, args.out)
    except FileNotFoundError as e:
        print(f"i2i dip: error: {e}", file=sys.stderr)
        return 1
    existing = [str(t) for _, _, t in triples if t.exists()]
    if existing and not args.overwrite:
        print(
            f"i2i dip: error: {len(existing)} output(s) exist already ({existing[0]}...); "
            "pass --overwrite to replace them",
            file=sys.stderr,
        )
        return 1
    for image, mask, target in triples:
        try:
            result = complete_file(
                image,
                mask,
                target,
                args.mask_polarity,
                snapshot_every=args.snapshot_every,
                iterations=args.iterations,
                lr=args.lr,
                seed=args.seed,
                max_side=args.max_side,
                network={"channels": args.channels},
                device=args.device,
            )
        except ValueError as e:
            print(f"i2i dip: error: {image}: {e}", file=sys.stderr)
            return 1
        loss = f"{result.losses[-1]:.4f}" if result.losses else "-"
        print(f"i2i dip: {target} ({result.iterations} iterations, masked MSE {loss})", flush=True)
        if result.interrupted:
            print(f"i2i dip: interrupted; wrote the current result to {target}", flush=True)
            return 130
    return 0
