"""Image-to-image translation: the problems' hooks (edges -> photo, labels -> photo), and the
CoModGAN tasks over them, as the paper did for edges2shoes and edges2handbags, and labels ->
photo with SPADE's label conventions.

The condition is the whole input (no mask, no compositing); a conditional discriminator sees
concat(condition, image). Several latents for one input give different outputs: the sample grid
shows `num_visual_samples` of them between the condition and the target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from i2i.data import batch as B
from i2i.losses import masked_l1
from i2i.metrics.image import psnr
from i2i.metrics.protocols import PairedTranslationProtocol
from i2i.tasks.comod import CoModGANTask


class Translation:
    """Problem mixin shared by the translation problems.

    No compositing, an L1 distance to the target, and a grid of condition | several samples |
    target.

    Args:
        *args (Any): the system's arguments.
        num_visual_samples: outputs per input in the sample grid (different latents).
        **kwargs (Any): the system's arguments.
    """

    evaluation_protocol = PairedTranslationProtocol

    def __init__(self, *args, num_visual_samples: int = 3, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_visual_samples = num_visual_samples

    def d_condition(self, batch: dict) -> torch.Tensor:
        """The discriminator's condition: the generator's.

        Args:
            batch: a batch dict.
        """
        return self.condition(batch)

    def reconstruction_loss(self, fake: torch.Tensor, batch: dict) -> torch.Tensor:
        """Per-sample L1 over the whole image.

        Args:
            fake: the output (N, 3, H, W).
            batch: a batch dict with the target "image".

        Returns:
            (N,) mean absolute errors.
        """
        return masked_l1(fake, batch[B.IMAGE])

    def evaluation_metrics(self, fake: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Batch means of L1 and PSNR against the target.

        Args:
            fake: the output clamped to [-1, 1] (N, 3, H, W).
            batch: a batch dict with the target "image".
        """
        real = batch[B.IMAGE].float()
        return {"l1": masked_l1(fake, real).mean(), "psnr": psnr(fake, real).mean()}

    def show_condition(self, batch: dict) -> torch.Tensor:
        """The condition as an RGB image in [-1, 1].

        Args:
            batch: a batch dict.

        Returns:
            (N, 3, H, W) in [-1, 1].
        """
        raise NotImplementedError

    def visual_panels(self, batch: dict, fake: torch.Tensor) -> list[torch.Tensor]:
        """The condition, `num_visual_samples` outputs (latent variants) and the target.

        Args:
            batch: a batch dict.
            fake: the output for variant 0 (N, 3, H, W).
        """
        extra = [self.sample(batch, variant=k) for k in range(1, self.num_visual_samples)]
        return [self.show_condition(batch), fake, *extra, batch[B.IMAGE]]


class EdgesToPhoto(Translation):
    """Edges -> photo: the condition is the edge map in [-1, 1]: 1 channel (+1 on edges), or the
    3-channel RGB edges image of the pix2pix file as the official code feeds it."""

    condition_is_image = True

    def setup(self, stage: str) -> None:
        """Check that the networks' cond_channels match the data's edge channels."""
        super().setup(stage)
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        want = getattr(datamodule, "cond_channels", None)
        for name, net in (("generator", self.generator), ("discriminator", self.discriminator)):
            have = getattr(net, "cond_channels", want)
            if want is not None and have != want:
                raise ValueError(
                    f"{name}.cond_channels is {have}, but the data gives {want}-channel edges "
                    f"(data.init_args.edges_channels): set {name}.init_args.cond_channels: {want}"
                )

    def condition(self, batch: dict) -> torch.Tensor:
        """The batch's edge map.

        Args:
            batch: a batch dict with "edges" (N, 1 or 3, H, W) in [-1, 1].

        Returns:
            The edges in the image's dtype.
        """
        return batch[B.EDGES].to(batch[B.IMAGE].dtype)

    def show_condition(self, batch: dict) -> torch.Tensor:
        """The edge map as RGB (a 1-channel map repeated).

        Args:
            batch: a batch dict with "edges".
        """
        return batch[B.EDGES].float().expand(-1, 3, -1, -1)


class LabelsToPhoto(Translation):
    """Labels -> photo: the condition is the one-hot label map.

    `num_classes` channels, plus the instance-boundary map (the batch's "instance_edges") as one
    more channel when `instance_edges`.

    Args:
        *args (Any): the system's arguments.
        num_classes: the classes of the label maps (label values 0..num_classes - 1).
        instance_edges: add the instance-boundary channel.
        **kwargs (Any): the system's arguments.
    """

    def __init__(self, *args, num_classes: int, instance_edges: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_classes, self.instance_edges = num_classes, instance_edges
        self.palette: torch.Tensor | None = None
        self.class_labels: dict[int, str] = {i: f"class {i}" for i in range(num_classes)}

    @property
    def cond_channels(self) -> int:
        """Channels of the condition: num_classes, + 1 with instance edges."""
        return self.num_classes + int(self.instance_edges)

    def setup(self, stage: str) -> None:
        """Check the networks' cond_channels; take the dataset's palette and class names."""
        super().setup(stage)
        for name, net in (("generator", self.generator), ("discriminator", self.discriminator)):
            have = getattr(net, "cond_channels", self.cond_channels)
            if have != self.cond_channels:
                raise ValueError(
                    f"{name}.cond_channels is {have}, but num_classes={self.num_classes}"
                    f"{' + 1 instance-edge channel' if self.instance_edges else ''} gives "
                    f"{self.cond_channels}: set {name}.init_args.cond_channels: "
                    f"{self.cond_channels}"
                )
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        spec = getattr(datamodule, "spec", None)
        if spec is not None:
            self.palette = torch.as_tensor(spec.palette, dtype=torch.float32) / 127.5 - 1
            self.class_labels = dict(enumerate(spec.class_names))

    def condition(self, batch: dict) -> torch.Tensor:
        """The one-hot label map (and the instance edges in [0, 1]).

        Args:
            batch: a batch dict with "label" (N, H, W) integer class ids (and "instance_edges"
                (N, 1, H, W) in [-1, 1] when used).

        Returns:
            (N, cond_channels, H, W) in {0, 1} (channels_last).

        Raises:
            ValueError: labels are not integers, or a value is outside 0..num_classes - 1.
        """
        label = batch[B.LABEL]
        if label.dtype not in (torch.int64, torch.int32, torch.uint8):
            raise ValueError(f"label maps must be integer class ids, got dtype {label.dtype}")
        high = int(label.max())
        if high >= self.num_classes or int(label.min()) < 0:
            raise ValueError(
                f"label value {high if high >= self.num_classes else int(label.min())} is outside "
                f"0..{self.num_classes - 1} (num_classes={self.num_classes}) in the samples with "
                f"index {batch[B.INDEX].tolist()}: check num_classes or the label files"
            )
        cond = F.one_hot(label.long(), self.num_classes).permute(0, 3, 1, 2)
        cond = cond.to(batch[B.IMAGE].dtype)
        if self.instance_edges:
            cond = torch.cat([cond, (batch[B.INSTANCE_EDGES].to(cond.dtype) + 1) / 2], dim=1)
        return cond.contiguous(memory_format=torch.channels_last)

    def show_condition(self, batch: dict) -> torch.Tensor:
        """The label map in the dataset's palette (or `default_palette`).

        Args:
            batch: a batch dict with "label" (N, H, W).

        Returns:
            (N, 3, H, W) in [-1, 1].
        """
        palette = self.palette if self.palette is not None else default_palette(self.num_classes)
        return palette.to(batch[B.LABEL].device)[batch[B.LABEL].long()].permute(0, 3, 1, 2)


class EdgesToPhotoTask(EdgesToPhoto, CoModGANTask):
    """CoModGAN edges -> photo. The discriminator sees concat(condition, image), and R1 covers
    both (the official reals are the photo and its condition as one 6-channel image);
    `r1_includes_condition=False` restricts it to the photo."""


class LabelsToPhotoTask(LabelsToPhoto, CoModGANTask):
    """CoModGAN labels -> photo."""


def default_palette(num_classes: int) -> torch.Tensor:
    """Distinct colours in [-1, 1], (num_classes, 3), the same in every run.

    Class 0 (background / unlabeled in most sets) is black.

    Args:
        num_classes: the number of colours.
    """
    g = torch.Generator().manual_seed(1234)
    palette = torch.rand(num_classes, 3, generator=g) * 2 - 1
    palette[0] = -1.0  # class 0 (background / unlabeled in most sets) is black
    return palette
