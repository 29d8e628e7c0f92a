"""What every evaluation protocol shares: the options it reads, the scoring networks, the interface.

A protocol is what a task measures: which batch keys it reads, which metrics it keeps, how it
buckets. The task names its protocol class (`evaluation_protocol`, a class attribute of the
problem mixins in `i2i.tasks`); `i2i.callbacks.evaluation.GANMetrics` decides when it runs and
where its numbers go:

    protocol = task.evaluation_protocol(options, networks)
    protocol.start(trainer, task, "test")   # fresh metrics on the task's device
    protocol.update(batch, outputs)         # each batch (DistributedSampler's repeats left out)
    results = protocol.compute()            # every rank: the metrics sync across processes
    protocol.buckets, protocol.describe(results)   # the rest of the test JSON

`stage` is "val" (the cheap scores logged during fit) or "test" (the whole protocol).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn

from i2i.data.image_options import flat_settings
from i2i.metrics.ids import InceptionDiscriminativeScore
from i2i.metrics.image import build_lpips

STAGES = ("val", "test")


@dataclass(frozen=True)
class EvaluationOptions:
    """The `metrics:` options of a config that say what to measure (GANMetrics' arguments, where
    each is documented and has its default); each protocol reads the ones it uses."""

    buckets: str
    official_num_pairs: int | None
    perceptual_distance: bool
    diversity: str
    diversity_pairs: int
    fid_reference: str
    fid_train_samples: int | None
    fid_stats_dir: str | None
    cache_fid_stats: bool
    segmenter: nn.Module | None
    semantic_classes: str | None
    real: bool


class ScoringNetworks:
    """The frozen networks that score, built when first needed and shared.

    The feature network of every P-IDS / U-IDS / FID metric and LPIPS' AlexNet. Each is built
    when first needed (a run that never evaluates needs no weights) and then shared by every
    protocol of the run.

    Args:
        feature: Inception pool3 (2048), or any module that maps images to (N, D) features.
        weights_path: the Inception weights file; None looks in the torch hub cache.
        check_hash: check the Inception weights' SHA-256.
    """

    def __init__(
        self,
        feature: int | nn.Module,  # Inception pool3 (2048), or any (N, D) module
        weights_path: str | None,  # the Inception weights file; None: torch hub cache
        check_hash: bool,  # check the Inception weights' SHA-256
    ):
        self.feature, self.weights_path, self.check_hash = feature, weights_path, check_hash
        self.extractor: nn.Module | None = None
        self.perceptual: nn.Module | None = None

    @property
    def inception(self) -> bool:
        """Whether the features are the paper's Inception pool3 (images quantised to uint8)."""
        return isinstance(self.feature, int)

    def ids(self, device: torch.device) -> InceptionDiscriminativeScore:
        """A new P-IDS / U-IDS / FID metric on the shared feature network.

        Args:
            device: where the metric (and the feature network) runs.

        Returns:
            An `InceptionDiscriminativeScore` with `compute_fid=True`.
        """
        if self.extractor is None:
            if self.inception:
                metric = InceptionDiscriminativeScore(
                    self.feature,
                    compute_fid=True,
                    weights_path=self.weights_path,
                    check_hash=self.check_hash,
                )
                self.extractor = metric.feature_extractor
                return metric.to(device)
            self.extractor = self.feature
        metric = InceptionDiscriminativeScore(self.extractor, compute_fid=True)
        metric.inception_protocol = self.inception
        return metric.to(device)

    def lpips(self, device: torch.device, instead: str) -> nn.Module:
        """LPIPS (AlexNet) per sample, built once.

        Args:
            device: where it runs (the first call's device is kept).
            instead: what the missing-weights error suggests doing without LPIPS.

        Returns:
            A module (a, b) in [-1, 1] -> (N,) distances; see `i2i.metrics.image.build_lpips`.
        """
        if self.perceptual is None:
            self.perceptual = build_lpips(instead).to(device)
        return self.perceptual


class EvaluationProtocol:
    """The interface; see the module docstring.

    Args:
        options: what to measure (the `metrics:` options of the config).
        networks: the scoring networks, shared by every protocol of the run.
    """

    name: ClassVar[str]  # the problem's name in results and tables: "inpainting", ...

    def __init__(self, options: EvaluationOptions, networks: ScoringNetworks):
        self.options, self.networks = options, networks
        self.buckets: dict[str, dict[str, Any]] = {}  # the test JSON's per-bucket scores

    def start(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        """Fresh metrics for one evaluation of `task` in `stage`.

        A subclass builds its metrics on `self.device` (the task's) after calling this.

        Args:
            trainer: the running trainer (its datamodule, world size and strategy are read).
            task: the task being evaluated.
            stage: `"val"` (the cheap scores logged during fit) or `"test"` (the whole protocol;
                `check_options` runs first).

        Raises:
            ValueError: an unknown `stage`, or options this protocol cannot measure.
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.trainer, self.task, self.stage, self.device = trainer, task, stage, task.device
        self.buckets = {}
        if stage == "test":
            self.check_options()

    def check_options(self) -> None:
        """Refuse what this protocol cannot measure (only labels -> photo scores real photos)."""
        if self.options.real:
            raise ValueError(real_refused(f"{type(self.task).__name__} is not"))

    def update(self, batch: dict, outputs: dict) -> None:
        """One batch and the task's step outputs.

        Args:
            batch: the batch dict (`i2i.data.batch` keys: IMAGE, MASK, INDEX, ...), on the device.
            outputs: the task's step outputs: OUTPUT (N, C, H, W) in [-1, 1], and OUTPUT_A for
                two-way tasks.
        """
        raise NotImplementedError

    def compute(self) -> dict[str, Any]:
        """The results, over every process; the floats among them are logged as `stage/name`."""
        raise NotImplementedError

    def describe(self, results: dict[str, Any]) -> dict[str, Any]:
        """The test JSON's "protocol": what the numbers mean and how they were made.

        Args:
            results: what `compute` returned (some descriptions quote its counts).

        Returns:
            A JSON-serialisable dict.
        """
        raise NotImplementedError

    def sum_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Adds a tensor up over the processes (the identity in one)."""
        trainer, device = self.trainer, self.device
        if trainer.world_size <= 1:
            return lambda t: t
        return lambda t: trainer.strategy.reduce(t.to(device), reduce_op="sum").cpu()

    def run_header(self) -> dict[str, Any]:
        """Which model, checkpoint and iteration were scored."""
        return {
            "task": type(self.task).__name__,
            "checkpoint": getattr(self.trainer, "ckpt_path", None),
            "iteration": int(getattr(self.task, "iteration", 0)),
        }


def real_refused(why: str) -> str:
    """The message that refuses `i2i test --real` where it cannot apply.

    Args:
        why: the reason, completing the sentence after the colon.

    Returns:
        The error message.
    """
    return (
        "--real scores the real photos with metrics.segmenter, for labels -> photo: "
        + why
        + " (configs/cityscapes.yaml, cocostuff.yaml and ade20k.yaml name theirs)"
    )


def data_protocol(dm: L.LightningDataModule) -> dict:
    """The datamodule's plain settings and class, for the protocol of a JSON result.

    Args:
        dm: the datamodule; its `hparams` of plain types are kept.

    Returns:
        A dict of those settings plus "class".
    """
    plain = str | int | float | bool | list | tuple | None
    data = {k: v for k, v in flat_settings(dm).items() if isinstance(v, plain)}
    data["class"] = type(dm).__name__
    return data
