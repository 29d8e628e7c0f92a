"""Elastic resume: a resumed run continues the training stream at the sample it stopped at, with
any number of processes and any batch size.

The stream is addressed by global sample position (see `i2i.data.stream`): a run that
starts at position M gives process r of W, at its local step j, the positions
M + (j*W + r)*b ... M + (j*W + r + 1)*b - 1, b being its loader batch (batches_per_step x
batch_size). So the checkpoint records how many positions the run has consumed (all processes,
every batch of every step) and the shape that consumed them; a resumed run starts there whatever
its own shape, and every sample comes once per epoch as in an unbroken run. The record is the
datamodule's state in the checkpoint: Lightning saves `state_dict()` and restores it before the
loaders are built.

The streaming shards (`i2i.data.shards`) order each epoch by the first run's shape, its
`layout`, which the record keeps: each process of that shape reads its own chunks; a resumed
run of another shape reads the same positions, so the same samples, but its processes no longer
each keep to their own chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from i2i.errors import DataError


@dataclass(frozen=True)
class Shape:
    """How a run consumes the stream."""

    world_size: int  # processes, all nodes' devices
    batch_size: int  # samples per batch and process, per use (the datamodule's batch_size)
    batches_per_step: int  # batches one training step takes (CoModGAN: 2, G and D)

    @property
    def loader_batch(self) -> int:
        """Samples per loader batch and process."""
        return self.batch_size * self.batches_per_step

    @property
    def per_iteration(self) -> int:
        """Stream positions one training iteration consumes, all processes together."""
        return self.world_size * self.loader_batch

    @property
    def global_batch(self) -> int:
        """Samples per batch, all processes together."""
        return self.world_size * self.batch_size


@dataclass(frozen=True)
class StreamState:
    """Where the training stream stands: what a checkpoint records (see the module doc)."""

    samples: int  # stream positions consumed by the run so far, all processes
    iteration: int  # the task's iteration at `samples`
    shape: Shape  # the shape that consumes the stream from there
    layout: tuple[int, int]  # (processes, loader batch) of the run's first shape: the shards' order

    def at(self, iteration: int) -> int:
        """Stream positions consumed at an iteration (one loader batch per process per step).

        Args:
            iteration: the task's iteration, at or after this record's.
        """
        return self.samples + (iteration - self.iteration) * self.shape.per_iteration

    def to_dict(self) -> dict[str, Any]:
        """The record as a checkpoint stores it (plain ints and a list), read by `from_dict`."""
        return {
            "samples_consumed": self.samples,
            "iteration": self.iteration,
            "world_size": self.shape.world_size,
            "batch_size": self.shape.batch_size,
            "batches_per_step": self.shape.batches_per_step,
            "layout": list(self.layout),
        }

    @classmethod
    def from_dict(cls, state: Any, where: str) -> StreamState:
        """The record of a checkpoint, checked: a damaged or foreign record is an error that
        says so, not a silently wrong stream.

        Args:
            state: what `to_dict` wrote (anything else is refused).
            where: the checkpoint, named in errors.

        Raises:
            DataError: a missing or non-integer field, a count under its least value, or a
                layout that is not two integers >= 1.
        """
        keys = ("samples_consumed", "iteration", "world_size", "batch_size", "batches_per_step")
        values = state if isinstance(state, dict) else {}
        layout = values.get("layout")
        for key in keys:
            value = values.get(key)
            least = 0 if key in ("samples_consumed", "iteration") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise DataError(
                    f"{where}: its training-stream record has {key}={value!r}, not an integer "
                    f">= {least}; the checkpoint is damaged or was not written by i2i. Resume "
                    "from another checkpoint, or start afresh"
                )
        if not (
            isinstance(layout, list | tuple)
            and len(layout) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in layout)
        ):
            raise DataError(
                f"{where}: its training-stream record has layout={layout!r}, not two integers "
                ">= 1 (processes, loader batch); the checkpoint is damaged or was not written "
                "by i2i. Resume from another checkpoint, or start afresh"
            )
        shape = Shape(values["world_size"], values["batch_size"], values["batches_per_step"])
        return cls(values["samples_consumed"], values["iteration"], shape, tuple(layout))


def describe_change(old: Shape, new: Shape) -> str:
    """'processes 2 -> 1, batch per process 8 -> 4 (global batch 16 -> 4)': what differs.

    Args:
        old: the shape the run had.
        new: the shape it resumes with.

    Returns:
        The differences, comma-separated; "" when none.
    """
    parts = []
    if old.world_size != new.world_size:
        parts.append(f"processes {old.world_size} -> {new.world_size}")
    if old.batch_size != new.batch_size:
        parts.append(f"batch per process {old.batch_size} -> {new.batch_size}")
    if old.batches_per_step != new.batches_per_step:
        parts.append(f"batches per step {old.batches_per_step} -> {new.batches_per_step}")
    text = ", ".join(parts)
    if old.global_batch != new.global_batch:
        text += f" (global batch {old.global_batch} -> {new.global_batch})"
    return text
