"""`i2i compare` (`make compare`): every system on the embedded demo data, one seed, one budget of
training images, one table: system, problem, parameters, training images/s and the task's
validation metrics, so that the systems can be read side by side.

    i2i compare                                   # every demo config that ships, 4 kimg each
    i2i compare --configs demo pix2pix_demo --kimg 2 --out runs/compare

Each system trains from scratch with `seed_everything: 0` until it has seen `--kimg` thousand
training images, then its sampling network (G_ema for CoModGAN) is validated on the same fixed
validation images (and masks) as during training. The table goes to stdout and, with the raw
numbers, to `<out>/compare.json` and `<out>/compare.md`.
"""

from __future__ import annotations

import argparse
import json
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
    "dip_demo",
)


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
            "--overwrite",
        ],
    )
    task, datamodule = cli.model, cli.datamodule
    clock = next(cb for cb in cli.trainer.callbacks if isinstance(cb, TrainingClock))
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
        "metrics": {k: float(v) for k, v in metrics.items()},
    }


def table(rows: list[dict]) -> str:
    """A markdown table of the runs."""
    lines = [
        "| config | system | problem | params (sampling / trained) | kimg | train img/s | "
        "validation |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        metrics = ", ".join(
            f"{k.split('/', 1)[-1]} {v:.3f}" for k, v in sorted(r["metrics"].items())
        )
        lines.append(
            f"| {r['config']} | {r['system']} | {r['problem']} | "
            f"{r['parameters_sampling'] / 1e6:.2f} M / {r['parameters_trained'] / 1e6:.2f} M | "
            f"{r['images'] / 1000:.1f} | {r['images_per_second']} | {metrics} |"
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
    args = parser.parse_args(argv)
    # run_cli gets its own arguments while sys.argv holds `compare ...`: intended here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    names = args.configs or [n for n in DEMO_CONFIGS if (REPO_CONFIGS / f"{n}.yaml").is_file()]
    missing = [n for n in names if not (REPO_CONFIGS / f"{n}.yaml").is_file()]
    if missing:
        available = sorted(p.stem for p in REPO_CONFIGS.glob("*.yaml"))
        parser.error(f"no config {missing} in {REPO_CONFIGS}; available: {available}")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="i2i-compare-"))
    rows = []
    for name in names:
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
