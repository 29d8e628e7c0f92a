"""A progress bar that counts iterations, not optimizer steps."""

from __future__ import annotations

from lightning.pytorch.callbacks import TQDMProgressBar


class IterationProgressBar(TQDMProgressBar):
    """Lightning sizes the bar by `max_steps`, which counts optimizer steps (a GAN iteration
    makes two or three); this one sizes it by the task's `max_iterations`."""

    @property
    def total_train_batches(self) -> int | float:
        module = self.trainer.lightning_module
        max_iterations = getattr(module.hparams, "max_iterations", None)
        if max_iterations is not None:
            remaining = max(max_iterations - int(module.iteration), 0)
            return min(self.trainer.num_training_batches, remaining)
        return super().total_train_batches
