"""Semantic consistency of labels -> photo under `i2i test`: `miou`, `pixel_accuracy` and per-class
IoU of the segmenter's predictions on the outputs against the input label maps
(`i2i.metrics.SemanticConsistency`, classes mapped by `semantic_classes`); with `real` (`i2i test
--real`) the real photos too (`real_miou`, the ceiling). Without a segmenter it measures nothing.
Paired translation runs it beside its own scores.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L

from i2i.data import batch as B
from i2i.metrics.protocols.base import EvaluationProtocol, real_refused
from i2i.metrics.semantic import SemanticConsistency, class_set


class SemanticConsistencyProtocol(EvaluationProtocol):
    """See the module docstring. Test only: validation during fit does not segment."""

    name = "semantic"

    def start(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        """The mIoU metrics, "" for the outputs and "real_" for the photos.

        The segmenter's weights are loaded here, so that a missing file stops the run before any
        image is generated. Without a segmenter there are no metrics.

        Args:
            trainer: the running trainer.
            task: the task being evaluated (its `num_classes` is the fallback class count).
            stage: `"val"` or `"test"`.
        """
        super().start(trainer, task, stage)
        self.metrics: dict[str, SemanticConsistency] = {}
        self.size: list[int] | None = None
        segmenter, options = self.options.segmenter, self.options
        if segmenter is None:
            return
        load = getattr(segmenter, "load_weights", None)
        if callable(load):
            load()
        for prefix in ("", "real_") if options.real else ("",):
            if options.semantic_classes is not None:
                metric = SemanticConsistency.for_class_set(options.semantic_classes, segmenter)
            else:
                classes = getattr(segmenter, "num_classes", None)
                metric = SemanticConsistency(classes or task.num_classes, segmenter)
            self.metrics[prefix] = metric.to(self.device)

    def check_options(self) -> None:
        """Refuse `--real` without a segmenter."""
        if self.options.real and self.options.segmenter is None:
            raise ValueError(real_refused("set metrics.segmenter"))

    def update(self, batch: dict, outputs: dict) -> None:
        """Segment the batch's outputs (and real photos with `--real`) against its label maps."""
        if not self.metrics:
            return
        if B.LABEL not in batch:
            raise ValueError(
                "metrics.segmenter is set, but the test batches hold no label maps ('label'): "
                "semantic consistency needs a labels -> photo datamodule (label ids, not colour "
                "label images); remove metrics.segmenter for this data"
            )
        label = batch[B.LABEL]
        self.size = list(label.shape[-2:])
        self.metrics[""].update(outputs[B.OUTPUT], label)
        if "real_" in self.metrics:
            self.metrics["real_"].update(batch[B.IMAGE].float(), label)

    def compute(self) -> dict[str, Any]:
        """miou, pixel_accuracy, mean_accuracy and per-class IoU by class name (None where the
        class is in neither labels nor predictions), over every process's images."""
        out: dict[str, Any] = {}
        for prefix, metric in self.metrics.items():
            # Every rank computes (a rank without images still takes part in the sync).
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*before the ``update`` method.*")
                scores = metric.compute()
            if scores["pixel_accuracy"].isnan():  # no labelled pixel on any rank
                continue
            names = metric.class_names or [str(i) for i in range(metric.num_classes)]
            for key in ("miou", "pixel_accuracy", "mean_accuracy"):
                out[prefix + key] = float(scores[key])
            out[prefix + "per_class_iou"] = {
                name: None if value != value else value  # NaN is not JSON
                for name, value in zip(names, scores["per_class_iou"].tolist(), strict=True)
            }
        return out

    def describe(self, results: dict[str, Any]) -> dict[str, Any] | None:
        """The evaluation size, labels, class set and the segmenter's protocol; None without a
        segmenter.

        Args:
            results: what `compute` returned (unused: the description does not depend on it).
        """
        if not self.metrics:
            return None
        metric = self.metrics[""]
        names = self.options.semantic_classes
        return {
            "evaluation_size": self.size,
            "labels": "the batches' label maps at the evaluation size, as the datamodule gives "
            "them (label files resized with nearest interpolation: class ids are never "
            "interpolated)",
            "class_set": class_set(names).description
            if names
            else "the dataset's label ids are the segmenter's classes",
            "class_names": list(metric.class_names or range(metric.num_classes)),
            **metric.protocol(),
            "real": "real_*: the real validation photos through the same segmenter (the ceiling)"
            if self.options.real
            else None,
        }
