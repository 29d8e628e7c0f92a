"""Training throughput on this machine: images/s and one iteration split into its parts.

    python -m benchmarks.training [--iterations 8] [--skip-256]

Two settings: the embedded demo (configs/demo.yaml) and the full-size CoModGAN at 256 with batch 4.
R1 runs every 2 iterations here so that it is measured; the "per iteration" column amortises it
over the configured interval (16 in the official recipe). "data" is the wait for the loader
between iterations; "other" is what the training step does outside the three phases (moving the
batch, the G_ema update, logging).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from unittest import mock

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from benchmarks.common import print_table
from i2i.cli import I2ICLI
from i2i.lightning_command import configure_wandb_environment
from i2i.tasks import ImageTask

PHASES = ("g_step", "d_step", "r1")


class IterationTimer(Callback):
    """Per-iteration wall time, phase times (the task fills `phase_seconds`) and the loader wait."""

    def __init__(self):
        self.records: list[dict[str, float]] = []
        self._end: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        pl_module.phase_seconds = defaultdict(float)
        self._start = time.perf_counter()
        # The gap since the last iteration ended: the loader's next batch (and Lightning's loop).
        self._data = self._start - self._end if self._end is not None else 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self._end = time.perf_counter()
        record = dict(pl_module.phase_seconds)
        record["total"] = self._end - self._start
        record["data"] = self._data
        self.records.append(record)


def run_fit(
    args: list[str], iterations: int, callbacks: list[Callback] = ()
) -> tuple[list[dict[str, float]], int]:
    """Fit a config for `iterations` with R1 every 2 and no logging, validation or checkpoints;
    the per-iteration records (the first, which pays for start-up, dropped) and the batch size."""
    # The benchmark's own flags are in sys.argv; LightningCLI, given `args`, warns about them.
    with mock.patch.object(sys, "argv", sys.argv[:1]):
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
    cli.trainer.callbacks.extend([*callbacks, timer])
    cli.trainer.fit(cli.model, cli.datamodule)
    return timer.records[1:], cli.datamodule.hparams.batch_size


def summarize(records: list[dict[str, float]], r1_interval: int = 16) -> dict[str, float]:
    """Median seconds of each part; R1 is amortised over `r1_interval` iterations."""

    def median(key: str, subset: list[dict[str, float]]) -> float:
        return statistics.median(r.get(key, 0.0) for r in subset) if subset else 0.0

    with_r1 = [r for r in records if "r1" in r]
    without_r1 = [r for r in records if "r1" not in r] or records
    out = {k: median(k, records) for k in ("g_step", "d_step", "data")}
    out["r1"] = median("r1", with_r1)
    # Outside the phases: what an iteration without R1 spends beyond its G and D steps.
    phases = median("g_step", without_r1) + median("d_step", without_r1)
    out["other"] = max(0.0, median("total", without_r1) - phases)
    out["iteration"] = out["g_step"] + out["d_step"] + out["r1"] / r1_interval + out["other"]
    out["measured"] = len(records)
    return out


def measure(name: str, args: list[str], iterations: int, r1_interval_official: int = 16) -> dict:
    records, batch = run_fit(args, iterations)
    s = summarize(records, r1_interval_official)
    it = s["iteration"] + s["data"]
    return {
        "setting": name,
        "batch (G and D each)": batch,
        "data s": f"{s['data']:.3f}",
        "G step s": f"{s['g_step']:.3f}",
        "D step s": f"{s['d_step']:.3f}",
        "R1 s (when run)": f"{s['r1']:.3f}",
        "other s": f"{s['other']:.3f}",
        "iteration s (R1 every 16)": f"{it:.3f}",
        "compute share": f"{(s['g_step'] + s['d_step'] + s['r1'] / 16) / it:.0%}",
        "images/s": f"{batch / it:.2f}",
        "measured iterations": s["measured"],
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
