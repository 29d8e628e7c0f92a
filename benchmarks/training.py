"""Training throughput on this machine: images/s and one iteration split into G, D and R1.

    python -m benchmarks.training [--iterations 8] [--skip-256]

Two settings: the embedded demo (configs/demo.yaml) and the full-size CoModGAN at 256 with batch 4.
R1 runs every 2 iterations here so that it is measured; the "per iteration" column amortises it
over the configured interval (16 in the official recipe).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from benchmarks.common import print_table
from i2i.cli import I2ICLI, configure_wandb_environment
from i2i.tasks import ImageTask


class IterationTimer(Callback):
    """Per-iteration wall time and phase times (the task fills `phase_seconds`)."""

    def __init__(self):
        self.records: list[dict[str, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        pl_module.phase_seconds = defaultdict(float)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        record = dict(pl_module.phase_seconds)
        record["total"] = time.perf_counter() - self._start
        self.records.append(record)


def measure(name: str, args: list[str], iterations: int, r1_interval_official: int = 16) -> dict:
    cli = I2ICLI(
        ImageTask,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        save_config_callback=None,
        args=[
            *args,
            f"--trainer.default_root_dir={tempfile.mkdtemp(prefix='i2i-bench-')}",
            "--trainer.logger=false",
            "--checkpoint.monitor=null",
            "--checkpoint.save_last=false",
            "--checkpoint.save_top_k=0",
            "--trainer.enable_progress_bar=false",
            "--trainer.limit_val_batches=0",
            f"--model.init_args.max_iterations={iterations}",
            "--model.init_args.r1_interval=2",
            "--samples.every_n_iterations=0",
        ],
    )
    timer = IterationTimer()
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, cli.datamodule)
    records = timer.records[1:]  # the first iteration pays for allocations and loader start-up
    batch = cli.datamodule.hparams.batch_size

    def median(key, subset):
        return statistics.median(r.get(key, 0.0) for r in subset) if subset else 0.0

    with_r1 = [r for r in records if "r1" in r]
    g, d = median("g_step", records), median("d_step", records)
    r1 = median("r1", with_r1)
    per_iteration = g + d + r1 / r1_interval_official
    return {
        "setting": name,
        "batch (G and D each)": batch,
        "G step s": f"{g:.3f}",
        "D step s": f"{d:.3f}",
        "R1 s (when run)": f"{r1:.3f}",
        "iteration s (R1 every 16)": f"{per_iteration:.3f}",
        "images/s": f"{batch / per_iteration:.2f}",
        "measured iterations": len(records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--skip-256", action="store_true", help="only the demo setting")
    args = parser.parse_args()
    configure_wandb_environment()
    torch.set_num_threads(2)
    rows = [
        measure(
            "demo (64 px, narrow)",
            ["--config", "configs/demo.yaml", "--data.init_args.num_workers=1"],
            args.iterations,
        )
    ]
    if not args.skip_256:
        rows.append(
            measure(
                "CoModGAN 256, full width",
                [
                    "--config",
                    "configs/celebahq256.yaml",
                    "--trainer.accelerator=cpu",
                    "--trainer.devices=1",
                    "--trainer.strategy=auto",
                    "--data.init_args.data_dir=null",
                    "--data.init_args.num_workers=1",
                    "--data.init_args.batch_size=4",
                    "--data.init_args.synthetic_length=64",
                ],
                max(3, args.iterations // 3),
            )
        )
    print_table(rows, "Training throughput (CPU, 2 threads; images/s counts the G batch)")


if __name__ == "__main__":
    main()
