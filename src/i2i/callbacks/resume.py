"""Checkpoints that are never half-written, and a stop on Ctrl-C or SIGTERM that leaves one."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes beside the target and renames: a crash mid-write leaves the previous file intact.

    (Lightning's own save goes through a temporary file in the system temp folder, which is not
    an atomic rename when that folder is on another filesystem.)
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class GracefulShutdown(Callback):
    """On SIGINT (Ctrl-C) or SIGTERM (SLURM, Kubernetes), finish the current iteration, write
    `last.ckpt` and stop, so that `i2i fit ... --ckpt_path last` continues exactly. A second
    signal falls through to the default behaviour (an immediate stop).

    It also installs AtomicCheckpointIO for every checkpoint the trainer writes.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._requested = False
        self._previous: dict[int, Any] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def _handler(self, signum, frame) -> None:
        log.warning(
            "Received signal %s: stopping after this iteration and saving last.ckpt", signum
        )
        self._requested = True
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._requested = False
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                pass

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Any rank's signal stops all of them, at the same iteration.
        if not trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            return
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            print(f"\nInterrupted: saved {path}. Resume with --ckpt_path last", flush=True)
        trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for sig, previous in self._previous.items():
            try:
                signal.signal(sig, previous)
            except (ValueError, TypeError):
                pass
        self._previous.clear()


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where `--ckpt_path last` looks: the ModelCheckpoint folder's last.ckpt."""
    callback = trainer.checkpoint_callback
    dirpath = getattr(callback, "dirpath", None) or Path(trainer.default_root_dir) / "checkpoints"
    name = ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION
    return Path(dirpath) / name


class LastAndBestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `last.ckpt` is really the last state.

    Lightning 2.6 writes last.ckpt only together with a new top-k checkpoint, so a run whose final
    validation is not its best would `--ckpt_path last` into the past. This one also writes it
    after every validation and at the end of training.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_written_step = -1

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step

    def _refresh_last(self, trainer: L.Trainer) -> None:
        if (
            self.save_last
            and not self._should_skip_saving_checkpoint(trainer)
            and self._last_written_step != trainer.global_step
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self._refresh_last(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._refresh_last(trainer)
