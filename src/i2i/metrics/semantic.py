"""Semantic consistency of labels -> photo outputs: how well a segmentation network recovers the
input label map from the generated photo (mIoU and pixel accuracy, as pix2pixHD, SPADE and their
successors report them).

`SemanticConsistency` segments each image, resizes the logits (bilinear) to the label map's size,
takes the argmax and accumulates a confusion matrix, rows = true class, columns = prediction
(torchmetrics' `MulticlassConfusionMatrix`, whose state it is). The matrix is the metric's only
state, summed across processes, so DDP gives the 1-process result.

Class sets: the label batches hold the dataset's class ids (`i2i.data.label_specs`); a class set
maps them onto the segmenter's classes, the rest to the ignore label:

| class set    | dataset ids              | segmenter classes                | ignored          |
|--------------|--------------------------|----------------------------------|------------------|
| "cityscapes" | 35 raw label ids         | 19 train ids (cityscapesScripts) | the other 16 ids |
| "coco_stuff" | 0..181, 182 = unlabeled  | 182 (0..181)                     | 182 (file's 255) |
| "ade20k"     | 0 = other, 1..150        | 150 (id - 1)                     | 0                |
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from i2i.data.label_specs import ade20k_spec, cityscapes_spec, coco_stuff_spec

IGNORE = 255

# Cityscapes raw label id -> train id (cityscapesScripts' labels.py): the 19 evaluated classes.
CITYSCAPES_TRAIN_IDS = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}


@dataclass(frozen=True)
class ClassSet:
    """How the dataset's class ids map onto the segmenter's classes."""

    name: str
    class_names: tuple[str, ...]  # the segmenter's classes
    mapping: tuple[int, ...]  # dataset class id -> segmenter class, or IGNORE
    description: str

    @property
    def num_classes(self) -> int:
        """The number of the segmenter's classes."""
        return len(self.class_names)


def class_set(name: str) -> ClassSet:
    """A named class set (see the module docstring).

    Args:
        name: `"cityscapes"`, `"coco_stuff"` or `"ade20k"`.

    Returns:
        The class set: the segmenter's class names and the dataset id -> class mapping.

    Raises:
        ValueError: an unknown name.
    """
    if name == "cityscapes":
        ids = sorted(CITYSCAPES_TRAIN_IDS, key=CITYSCAPES_TRAIN_IDS.get)
        names = cityscapes_spec().class_names
        return ClassSet(
            "cityscapes",
            tuple(names[i] for i in ids),
            tuple(CITYSCAPES_TRAIN_IDS.get(i, IGNORE) for i in range(35)),
            "Cityscapes' 19 train ids from the 35 label ids (cityscapesScripts labels.py); the "
            "other label ids ignored",
        )
    if name == "coco_stuff":
        names = coco_stuff_spec().class_names
        return ClassSet(
            "coco_stuff",
            names[:182],
            tuple(range(182)) + (IGNORE,),
            "COCO-Stuff's 182 classes (label PNG values 0..181); unlabeled (255) ignored",
        )
    if name == "ade20k":
        names = ade20k_spec().class_names
        return ClassSet(
            "ade20k",
            names[1:],
            (IGNORE,) + tuple(range(150)),
            "ADE20K SceneParsing's 150 classes (annotation value - 1); 0 (other) ignored",
        )
    raise ValueError(
        f"unknown class set {name!r}: choose 'cityscapes', 'coco_stuff' or 'ade20k', or none "
        "(the label ids are the segmenter's classes)"
    )


def scores_from_confusion(conf: torch.Tensor) -> dict[str, torch.Tensor]:
    """The scores of a confusion matrix.

    mIoU over the classes present in the labels or the predictions (union > 0), pixel accuracy,
    mean class accuracy (over the classes present in the labels) and per-class IoU (NaN where the
    class occurs in neither).

    Args:
        conf: (C, C) counts, rows = true class, columns = prediction.

    Returns:
        {"miou", "pixel_accuracy", "mean_accuracy"}: float64 scalars in [0, 1] (NaN when nothing
        was counted), and "per_class_iou" (C,).
    """
    conf = conf.double()
    tp = conf.diag()
    truth, predicted = conf.sum(1), conf.sum(0)
    union = truth + predicted - tp
    nan = torch.full_like(tp, float("nan"))
    iou = torch.where(union > 0, tp / union.clamp_min(1), nan)
    accuracy = torch.where(truth > 0, tp / truth.clamp_min(1), nan)
    total = conf.sum()
    return {
        "miou": iou.nanmean() if bool((union > 0).any()) else torch.tensor(float("nan")),
        "pixel_accuracy": tp.sum() / total if total > 0 else torch.tensor(float("nan")),
        "mean_accuracy": accuracy.nanmean()
        if bool((truth > 0).any())
        else torch.tensor(float("nan")),
        "per_class_iou": iou,
    }


class SemanticConsistency(MulticlassConfusionMatrix):
    """mIoU / pixel accuracy of a segmenter's predictions on images against label maps.

    `update(images, label)`: images (N, 3, H, W) in [-1, 1] (segmented by `segmenter`; without a
    segmenter, `images` are already logits (N, num_classes, h, w) or predictions (N, H, W));
    label (N, H, W) integer class ids of the dataset, mapped by `class_map` when given.
    `compute()`: `miou`, `pixel_accuracy`, `mean_accuracy`, `per_class_iou` (num_classes,).
    The counts are the confusion matrix's state `confmat` (rows = label, columns = prediction).

    Args:
        num_classes: the segmenter's classes.
        segmenter: images in [-1, 1] -> (N, num_classes, h, w) logits; None when `update`
            receives logits or predictions.
        ignore_index: (mapped) label value left out of every count; None counts every value.
        class_map: dataset class id -> segmenter class or `ignore_index`; None when the dataset's
            ids are the segmenter's classes.
        class_names: names for the per-class table; None uses the ids.
        **kwargs: torchmetrics `Metric` options.

    Raises:
        ValueError: `num_classes` < 1, `class_names` of the wrong length, or a `class_map` value
            outside the classes.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        num_classes: int,  # the segmenter's classes
        segmenter: nn.Module | None = None,  # images in [-1, 1] -> (N, num_classes, h, w) logits
        ignore_index: int | None = IGNORE,  # (mapped) label value left out of every count
        class_map: Sequence[int] | None = None,  # dataset class id -> segmenter class / ignore
        class_names: Sequence[str] | None = None,  # for the per-class table; default: the ids
        **kwargs: Any,
    ):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        # Labels are checked by `map_labels` and predictions are an argmax over num_classes, so
        # torchmetrics' checks (a pass over every pixel, and num_classes >= 2) are left out.
        super().__init__(int(num_classes), ignore_index=ignore_index, validate_args=False, **kwargs)
        self.class_names = tuple(class_names) if class_names is not None else None
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class_names for {num_classes} classes")
        self.segmenter = segmenter.eval().requires_grad_(False) if segmenter is not None else None
        self.class_map: torch.Tensor | None
        self.register_buffer(
            "class_map",
            torch.tensor(list(class_map), dtype=torch.long) if class_map is not None else None,
            persistent=False,
        )
        if self.class_map is not None:
            bad = self.class_map[
                (self.class_map >= self.num_classes) & (self.class_map != ignore_index)
            ]
            if bad.numel():
                raise ValueError(
                    f"class_map sends ids to {sorted(set(bad.tolist()))}, outside the segmenter's "
                    f"0..{num_classes - 1} and not the ignore label {ignore_index}"
                )

    @classmethod
    def for_class_set(
        cls, name: str, segmenter: nn.Module | None = None, **kwargs: Any
    ) -> SemanticConsistency:
        """The metric for a named class set (see `class_set`).

        Args:
            name: `"cityscapes"`, `"coco_stuff"` or `"ade20k"`.
            segmenter: the segmenter, or None (see the class).
            **kwargs: torchmetrics `Metric` options.

        Returns:
            The metric, with the set's class count, mapping and names.
        """
        spec = class_set(name)
        return cls(spec.num_classes, segmenter, IGNORE, spec.mapping, spec.class_names, **kwargs)

    def map_labels(self, label: torch.Tensor) -> torch.Tensor:
        """The dataset's ids -> the segmenter's classes (or the ignore label), checked.

        Args:
            label: integer class ids of the dataset, any shape.

        Returns:
            int64 labels of the same shape.

        Raises:
            ValueError: a value outside the class map (or, without one, outside the classes and not
                the ignore label).
        """
        label = label.long()
        if self.class_map is not None:
            size = self.class_map.numel()
            bad = label[(label < 0) | (label >= size)]
            if bad.numel():
                raise ValueError(
                    f"label value(s) {sorted(set(bad.unique()[:10].tolist()))} outside the class "
                    f"map's 0..{size - 1}: the class set does not match the dataset's labels"
                )
            return self.class_map.to(label.device)[label]
        bad = label[((label < 0) | (label >= self.num_classes)) & (label != self.ignore_index)]
        if bad.numel():
            raise ValueError(
                f"label value(s) {sorted(set(bad.unique()[:10].tolist()))} outside the segmenter's "
                f"0..{self.num_classes - 1} classes: give a class set (class_map) or ignore_index"
            )
        return label

    @torch.no_grad()
    def predict(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(N, H, W) class predictions at `size`: segmenter, bilinear resize of logits, argmax.

        Args:
            images: (N, 3, H, W) in [-1, 1] with a segmenter; without one, logits
                (N, num_classes, h, w) or predictions (N, H, W).
            size: the label map's (H, W).

        Returns:
            int64 (N, H, W) class indices.

        Raises:
            ValueError: predictions of another size, or logits of the wrong shape.
        """
        if self.segmenter is not None:
            images = self.segmenter(images.float())
        if images.ndim == 3:  # already predictions
            if tuple(images.shape[-2:]) != tuple(size):
                raise ValueError(
                    f"predictions of size {tuple(images.shape[-2:])}, labels {tuple(size)}"
                )
            return images.long()
        if images.ndim != 4 or images.shape[1] != self.num_classes:
            raise ValueError(
                f"expected logits (N, {self.num_classes}, h, w), got {tuple(images.shape)}"
            )
        if tuple(images.shape[-2:]) != tuple(size):
            images = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False)
        return images.argmax(1)

    def update(self, images: torch.Tensor, label: torch.Tensor) -> None:
        """Add a batch to the confusion matrix: `update(images, label)` (see the class)."""
        if label.ndim == 4 and label.shape[1] == 1:
            label = label[:, 0]
        if label.ndim != 3:
            raise ValueError(f"label maps must be (N, H, W), got {tuple(label.shape)}")
        target = self.map_labels(label)
        pred = self.predict(images, tuple(label.shape[-2:])).to(target.device)
        super().update(pred, target)

    def compute(self) -> dict[str, torch.Tensor]:
        """The scores of the summed confusion matrix (see `scores_from_confusion`)."""
        return scores_from_confusion(self.confmat)

    def protocol(self) -> dict[str, Any]:
        """What the numbers mean, for the JSON of `i2i test`."""
        segmenter = self.segmenter
        described = segmenter.protocol() if hasattr(segmenter, "protocol") else {}
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "prediction": "segmenter logits resized to the label map's size (bilinear, "
            "align_corners=False), then argmax",
            "miou": "mean IoU over the classes present in the labels or predictions, from one "
            "confusion matrix over the whole evaluation set (summed across processes)",
            "pixel_accuracy": "correct / all non-ignored pixels",
            "segmenter": described or (type(segmenter).__name__ if segmenter is not None else None),
            "multi_scale": described.get("multi_scale", getattr(segmenter, "multi_scale", None)),
            "segmenter_state_sha256": state_sha256(segmenter) if segmenter is not None else None,
        }


def state_sha256(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes, values).

    Which weights scored, whatever file they came from.

    Args:
        module: the network.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
