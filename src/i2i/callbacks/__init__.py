"""Callbacks: when to sample, save and stop. Tasks never import a logger library."""

from i2i.callbacks.prediction import PredictionWriter
from i2i.callbacks.progress import IterationProgressBar
from i2i.callbacks.resume import (
    AtomicCheckpointIO,
    GracefulShutdown,
    LastAndBestCheckpoint,
    RunRecord,
)
from i2i.callbacks.samples import SampleGrid

__all__ = [
    "AtomicCheckpointIO",
    "GracefulShutdown",
    "IterationProgressBar",
    "LastAndBestCheckpoint",
    "PredictionWriter",
    "RunRecord",
    "SampleGrid",
]
