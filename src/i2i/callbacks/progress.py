"""A progress bar that counts iterations, not optimizer steps."""

from __future__ import annotations

import math

from lightning.pytorch.callbacks import TQDMProgressBar


class IterationProgressBar(TQDMProgressBar):
    """Lightning sizes the bar by `max_steps`, assuming one optimizer step per batch; a GAN
    iteration makes one per network, so the bar would end at 50%. This one divides by them."""

    @property
    def total_train_batches(self) -> int | float:
        trainer = self.trainer
        if trainer.max_epochs == -1 and trainer.max_steps and trainer.max_steps > 0:
            steps_per_batch = max(len(trainer.optimizers), 1)
            remaining = math.ceil((trainer.max_steps - trainer.global_step) / steps_per_batch)
            return min(trainer.num_training_batches, remaining)
        return super().total_train_batches
