"""The `i2i` command: Lightning CLI over the GAN tasks and datamodules.

    i2i fit --config configs/demo.yaml
    i2i fit --config configs/demo.yaml --ckpt_path last        # resume exactly
    i2i validate|test|predict --config ... --ckpt_path PATH
    i2i fit --config configs/demo.yaml --print_config           # the full resolved config

Every run gets a checkpoint callback (last + best, written atomically, in
<trainer.default_root_dir>/checkpoints), a sample-grid callback and a graceful stop on Ctrl-C or
SIGTERM, and the metrics callback (P-IDS / U-IDS / FID; the full protocol under `i2i test`).
Weights & Biases runs offline unless W&B is configured (WANDB_API_KEY or WANDB_MODE).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.cli import LightningCLI

from i2i.callbacks import GracefulShutdown, IterationProgressBar, LastAndBestCheckpoint, SampleGrid
from i2i.callbacks.evaluation import GANMetrics
from i2i.tasks import GANTask


def configure_wandb_environment() -> None:
    """Never let W&B prompt or wait on the network: offline unless the user configured it."""
    if not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")


def _checkpoint_dir(default_root_dir: str | None) -> str:
    return str(Path(default_root_dir or ".") / "checkpoints")


class I2ICLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(LastAndBestCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{step}",
                "checkpoint.save_top_k": 1,
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        # `--ckpt_path last` finds last.ckpt only if the folder is the same in every run.
        parser.link_arguments(
            "trainer.default_root_dir", "checkpoint.dirpath", compute_fn=_checkpoint_dir
        )
        parser.add_lightning_class_args(SampleGrid, "samples")
        parser.add_lightning_class_args(GracefulShutdown, "shutdown")
        parser.add_lightning_class_args(GANMetrics, "metrics")

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.callbacks:
            if type(callback) is TQDMProgressBar:  # Lightning's default bar: count iterations
                callback.__class__ = IterationProgressBar
        return trainer

    def after_fit(self) -> None:
        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        lines = ["", "i2i: training finished"]
        ckpt = trainer.checkpoint_callback
        if ckpt is not None:
            lines.append(
                f"  checkpoints : {ckpt.dirpath} (last: {ckpt.last_model_path or '-'}, "
                f"best: {ckpt.best_model_path or '-'})"
            )
        for cb in trainer.callbacks:
            if isinstance(cb, SampleGrid) and cb.last_path is not None:
                lines.append(f"  sample grid : {cb.last_path}")
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                run_dir = Path(logger.experiment.dir).parent
                mode = os.environ.get("WANDB_MODE", "online")
                hint = (
                    f" (offline: upload with `wandb sync {run_dir}`)" if mode == "offline" else ""
                )
                lines.append(f"  W&B run     : {run_dir}{hint}")
            elif getattr(logger, "log_dir", None):
                lines.append(f"  logs        : {logger.log_dir}")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if metrics:
            lines.append("  validation  : " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        print("\n".join(lines), flush=True)


def main(args: list[str] | None = None) -> I2ICLI:
    configure_wandb_environment()
    # Noise a user cannot act on: torch's LeafSpec notice, Lightning noting that G_ema is in eval
    # mode (on purpose; Lightning keeps submodule modes), and jsonargparse deprecations raised
    # inside Lightning's CLI.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    return I2ICLI(
        GANTask,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


if __name__ == "__main__":
    main()
