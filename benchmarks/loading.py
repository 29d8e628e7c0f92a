"""Loading benchmark: training samples per second from LitData shards against the folder loader,
on the same images, with 1 and 2 loader workers, in one run.

    python -m benchmarks.loading [--images 2000] [--resolution 256] [--samples 512]

It writes `--images` JPEGs (smooth scenes with texture, 320x256 to 512x384, so that every sample
is decoded, resized and cropped) into a temporary folder, shards them with `i2i data optimize`'s
function, then times the training stream of `InpaintingDataModule` and of `ShardDataModule` (the
same config) through a DataLoader: the first batch (worker start-up) is left out, then
`--samples` samples are timed, twice per loader in two rounds (folder, shards, folder, shards;
the better of each two is kept); with `--compression zstd` a third loader reads the same
images from zstd shards (whole-chunk frames, inflated once into LitData's cache; the first,
untimed batch pays for inflating the first chunk) and a last table gives the bytes on disk.
Two modes: the training stream as `i2i fit` reads it (decode,
crop, flip, the official free-form mask) and decode + crop alone (no mask drawing); a last row
times reading the files' bytes alone (no decoding) in one process. Both read
from the page cache of a local disk: the shards' gain here is fewer file opens; on a network
file system or a bucket, where each open costs a round trip, it is the point of shards.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from benchmarks.common import print_table
from i2i.data.shard_optimize import optimize_shards
from i2i.data.shards import ShardDataModule, instantiate_datamodule
from i2i.data.stream import StreamDataModule, ignore_stop_signals


def write_images(folder: Path, n: int, seed: int = 0) -> None:
    """n JPEG scenes: a two-colour gradient, a few discs and fine noise (quality 90)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = [(256, 320), (384, 512), (320, 320)]  # (H, W)
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        a, b = rng.uniform(0, 255, (2, 3))
        img = a + (b - a) * (y / h)[..., None]
        for _ in range(3):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(10, h / 3)
            img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 8, img.shape)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


def samples_per_second(dm: StreamDataModule, workers: int, samples: int, masks: bool) -> float:
    stream = dm.train_stream()
    if not masks:
        stream.masks = None
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        worker_init_fn=ignore_stop_signals if workers else None,
    )
    batches = iter(loader)
    next(batches)  # worker start-up and first chunks: not timed
    start, seen = time.perf_counter(), 0
    while seen < samples:
        seen += len(next(batches)["index"])
    rate = seen / (time.perf_counter() - start)
    del batches  # ends the workers
    return rate


def bytes_per_second(dm: StreamDataModule, samples: int) -> float:
    """Samples per second of reading the files' bytes alone, in one process: the folder opens
    and reads each file, the shards read each record from its chunk (no decoding)."""
    files = dm.train_dataset.files
    n = min(samples, len(files))
    read = files.record if isinstance(dm, ShardDataModule) else lambda j: files[j].read_bytes()
    start = time.perf_counter()
    for j in range(n):
        read(j)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--samples", type=int, default=512, help="timed samples per row")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--compression", default=None, help="also time shards written with it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_images(root / "images", args.images)
        print(f"wrote {args.images} JPEGs in {time.perf_counter() - start:.1f} s", flush=True)
        section = {
            "class_path": "i2i.data.inpainting.InpaintingDataModule",
            "init_args": {
                "data_dir": str(root / "images"),
                "resolution": args.resolution,
                "batch_size": args.batch_size,
                "num_workers": 0,
                "val_fraction": 0.05,
            },
        }
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump({"data": section}))
        start = time.perf_counter()
        optimize_shards(config, root / "shards", num_workers=2)
        print(f"optimize (2 workers): {time.perf_counter() - start:.1f} s", flush=True)
        loaders = {
            "folder": instantiate_datamodule(section),
            "shards": ShardDataModule(str(root / "shards"), section),
        }
        if args.compression:
            start = time.perf_counter()
            optimize_shards(config, root / "zstd", num_workers=2, compression=args.compression)
            print(f"optimize {args.compression}: {time.perf_counter() - start:.1f} s", flush=True)
            loaders[args.compression] = ShardDataModule(
                str(root / "zstd"), section, cache_dir=str(root / "cache")
            )
        for dm in loaders.values():
            dm.batches_per_step = 1
            dm.setup("fit")
        # two rounds over the loaders, the better of each loader's two kept: a load that
        # drifts during the run (the CPU is shared) favours none
        order = [*loaders, *loaders]
        rows = []
        for masks in (True, False):
            mode = "decode, crop, flip, mask" if masks else "decode, crop, flip"
            for workers in args.workers:
                rates = dict.fromkeys(loaders, 0.0)
                for name in order:
                    rate = samples_per_second(loaders[name], workers, args.samples, masks)
                    rates[name] = max(rates[name], rate)
                rows.append(rate_row(mode, workers, rates, ".1f"))
                print(rows[-1], flush=True)
        rates = dict.fromkeys(loaders, 0.0)
        for name in order:
            rates[name] = max(rates[name], bytes_per_second(loaders[name], 10 * args.samples))
        rows.append(rate_row("the files' bytes only (1 process)", 0, rates, ".0f"))
        title = (
            f"{args.images} JPEGs at {args.resolution} px, batch {args.batch_size}, "
            f"{args.samples} timed samples per row"
        )
        print_table(rows, title)
        sizes = {"folder": folder_bytes(root / "images"), "shards": folder_bytes(root / "shards")}
        if args.compression:
            sizes[args.compression] = folder_bytes(root / "zstd")
        print_table(
            [
                {
                    "data": k,
                    "MB on disk": f"{v / 1e6:.1f}",
                    "/ folder": f"{v / sizes['folder']:.3f}",
                }
                for k, v in sizes.items()
            ],
            "bytes on disk (shards: chunks, index and manifest files)",
        )


def rate_row(mode: str, workers: int, rates: dict[str, float], fmt: str) -> dict[str, str]:
    row = {"stream": mode, "workers": str(workers)}
    for name, rate in rates.items():
        row[f"{name} samples/s"] = format(rate, fmt)
    for name in list(rates)[1:]:
        row[f"{name} / folder"] = f"{rates[name] / rates['folder']:.2f}x"
    return row


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


if __name__ == "__main__":
    main()
