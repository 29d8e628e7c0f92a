"""`i2i compare` (`make compare`): every system on the embedded demo data, one seed, one budget of
training images, one table: system, problem, parameters, training images/s and the task's
validation metrics, so that the systems can be read side by side.

    i2i compare                                   # every demo config that ships, 4 kimg each
    i2i compare --configs demo pix2pix_demo --kimg 2 --out runs/compare

Each system trains from scratch with `seed_everything: 0` until it has seen `--kimg` thousand
training images, then its sampling network (G_ema for CoModGAN) is validated on the same fixed
validation images (and masks) as during training. The table goes to stdout and, with the raw
numbers, to `<out>/compare.json` and `<out>/compare.md`.

Deep image prior (`dip`) has no training: it optimises each evaluation image on its own
(`--dip-iterations`, `--dip-channels`), on the validation images and masks of another row's
config (`--dip-data`, the CoModGAN demo's), scored by the same metrics. Per-image optimisation is
slow on a CPU, so it completes only the first `--dip-images` of them; the table's last column says
how many images each row was scored on.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# The embedded-data config of each system, in the order of the table (missing ones are skipped).
DEMO_CONFIGS = (
    "demo",
    "demo_edges",
    "demo_labels",
    "pix2pix_demo",
    "cyclegan_demo",
    "glcic_demo",
    "vae_demo",
    "dip",
)
DIP = "dip"  # not a config: the no-training row (see the module doc)


class TrainingClock(Callback):
    """Wall time spent in training batches only (not setup, validation or checkpoints)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start


def count_parameters(task: L.LightningModule) -> tuple[int, int]:
    """(parameters of the network that samples, parameters of every trained network)."""
    sampler = getattr(task, "sampling_network", None)
    sampling = sum(p.numel() for p in sampler.parameters()) if sampler is not None else 0
    names = getattr(task, "trained_networks", None)
    if names:
        trained = sum(p.numel() for n in names for p in getattr(task, n).parameters())
    else:
        trained = sum(p.numel() for p in task.parameters() if p.requires_grad)
    return sampling, trained


def _validate(task: L.LightningModule, datamodule, val_batches: int) -> dict[str, float]:
    """The task's validation metrics on the first `val_batches` fixed validation batches."""
    validator = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=val_batches,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = validator.validate(task, datamodule=datamodule, verbose=False)[0]
    return {k: float(v) for k, v in metrics.items()}


def _val_images(datamodule, val_batches: int) -> int | None:
    size = len(getattr(datamodule, "val_dataset", None) or ())
    return min(size, val_batches * datamodule.val_batch_size) if size else None


def run_system(config: Path, kimg: float, root: Path, val_batches: int) -> dict:
    """Train one demo config for `kimg` thousand images and validate it."""
    from i2i.cli import run_cli

    cli = run_cli(
        [
            "fit",
            "--config",
            str(config),
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--trainer.limit_val_batches=0",
            "--trainer.callbacks+=i2i.compare.TrainingClock",
            "--checkpoint.monitor=null",
            "--samples.every_n_iterations=0",
            "--model.init_args.max_iterations=null",
            f"--model.init_args.max_kimg={kimg}",
            "--trainer.max_time=null",  # one budget in images for every system (demo.yaml has one)
            "--overwrite",
        ],
    )
    task, datamodule = cli.model, cli.datamodule
    clock = next(cb for cb in cli.trainer.callbacks if isinstance(cb, TrainingClock))
    metrics = _validate(task, datamodule, val_batches)
    sampling, trained = count_parameters(task)
    images = int(task.images_seen)
    return {
        "config": config.stem,
        "system": type(task).__name__,
        "problem": getattr(task, "evaluation", "?"),
        "parameters_sampling": sampling,
        "parameters_trained": trained,
        "iterations": int(task.iteration),
        "images": images,
        "train_seconds": round(clock.seconds, 2),
        "images_per_second": round(images / clock.seconds, 1) if clock.seconds else None,
        "val_images": _val_images(datamodule, val_batches),
        "metrics": metrics,
    }


def run_dip(data_config: Path, images: int, iterations: int, channels: int) -> dict:
    """Deep image prior on the first `images` validation images (and masks) of `data_config`."""
    import yaml

    from i2i.tasks.dip import DeepImagePriorTask

    data = yaml.safe_load(data_config.read_text())["data"]
    module, name = data["class_path"].rsplit(".", 1)
    init_args = dict(data.get("init_args") or {})
    init_args["val_batch_size"] = min(images, init_args.get("val_batch_size", images))
    init_args["num_workers"] = 0  # loading is nothing next to the optimisation
    datamodule = getattr(importlib.import_module(module), name)(**init_args)
    task = DeepImagePriorTask(iterations=iterations, network={"channels": channels})
    if datamodule.val_masks() is None:
        raise ValueError(f"--dip-data {data_config.stem}: its data has no masks (not inpainting)")
    val_batches = math.ceil(images / datamodule.val_batch_size)
    start = time.perf_counter()
    metrics = _validate(task, datamodule, val_batches)
    seconds = time.perf_counter() - start
    sampling, _ = count_parameters(task)
    scored = _val_images(datamodule, val_batches)
    return {
        "config": DIP,
        "system": type(task).__name__,
        "problem": task.evaluation,
        "parameters_sampling": sampling,
        "parameters_trained": 0,  # a fresh network per image, fitted to that image alone
        "iterations": iterations,  # per image
        "images": 0,
        "train_seconds": 0.0,
        "images_per_second": None,
        # Wall time of its validation (data, optimisation, metrics) per image.
        "seconds_per_image": round(seconds / scored, 2) if scored else None,
        "data": data_config.stem,
        "val_images": scored,
        "metrics": metrics,
    }


def table(rows: list[dict]) -> str:
    """A markdown table of the runs."""
    lines = [
        "| config | system | problem | params (sampling / trained) | kimg | train img/s | "
        "validation | val images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        metrics = ", ".join(
            f"{k.split('/', 1)[-1]} {v:.3f}" for k, v in sorted(r["metrics"].items())
        )
        if r["config"] == DIP:  # no training: its optimisation per image instead
            kimg = f"0 ({r['iterations']} it/image)"
            speed = f"- ({r['seconds_per_image']} s/image)"
        else:
            kimg, speed = f"{r['images'] / 1000:.1f}", r["images_per_second"]
        lines.append(
            f"| {r['config']} | {r['system']} | {r['problem']} | "
            f"{r['parameters_sampling'] / 1e6:.2f} M / {r['parameters_trained'] / 1e6:.2f} M | "
            f"{kimg} | {speed} | {metrics} | {r.get('val_images')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="i2i compare",
        description="Train every system on the embedded demo data with one seed and one budget, "
        "and print one table.",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help=f"config names in configs/ (default: those of {', '.join(DEMO_CONFIGS)} that exist)",
    )
    parser.add_argument("--kimg", type=float, default=4.0, help="training images per system, x1000")
    parser.add_argument("--val-batches", type=int, default=8, help="validation batches per system")
    parser.add_argument("--out", default=None, help="folder for compare.json / compare.md")
    parser.add_argument(
        "--dip-data", default="demo", help="deep image prior: the config whose validation images "
        "and masks it completes (default: demo, the same as vae_demo's)",
    )  # fmt: skip
    parser.add_argument("--dip-images", type=int, default=8, help="deep image prior: images")
    parser.add_argument("--dip-iterations", type=int, default=300, help="per image")
    parser.add_argument("--dip-channels", type=int, default=64, help="the hourglass's width "
                        "(the paper's: 128, about 4x slower on a CPU)")  # fmt: skip
    args = parser.parse_args(argv)
    # run_cli gets its own arguments while sys.argv holds `compare ...`: intended here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    configs = {p.stem for p in REPO_CONFIGS.glob("*.yaml")}
    names = args.configs or [n for n in DEMO_CONFIGS if n in configs or n == DIP]
    missing = [n for n in names if n not in configs and n != DIP]
    if DIP in names and args.dip_data not in configs:
        missing.append(args.dip_data)
    if missing:
        available = sorted([*configs, DIP])
        parser.error(f"no config {missing} in {REPO_CONFIGS}; available: {available}")
    if min(args.dip_images, args.dip_iterations, args.dip_channels) < 1:
        parser.error("--dip-images, --dip-iterations and --dip-channels must be >= 1")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="i2i-compare-"))
    rows = []
    for name in names:
        if name == DIP:
            what = f"{args.dip_images} images of {args.dip_data}, {args.dip_iterations} it each"
            print(f"i2i compare: deep image prior on {what} ...", flush=True)
            data = REPO_CONFIGS / f"{args.dip_data}.yaml"
            rows.append(run_dip(data, args.dip_images, args.dip_iterations, args.dip_channels))
            continue
        print(f"i2i compare: training {name} for {args.kimg:g} kimg ...", flush=True)
        rows.append(
            run_system(REPO_CONFIGS / f"{name}.yaml", args.kimg, out / name, args.val_batches)
        )
    markdown = table(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(rows, indent=2))
    (out / "compare.md").write_text(markdown + "\n")
    print("\n" + markdown + f"\n\ni2i compare: written to {out}/compare.json and compare.md")
    return 0
