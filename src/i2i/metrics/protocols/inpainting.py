"""The inpainting protocol (CoModGAN's): FID, P-IDS, U-IDS over the whole evaluation set (N
pairs: one mask and one z per image; 10,000 for FFHQ, 36,500 for Places2), and per hole-ratio
bucket [0,.2) [.2,.4) [.4,.6) [.6,.8) [.8,1].

By default (`buckets: separate`) each bucket is a SEPARATE full-N run, as the official
`ids10k-h0..h4`: G_ema completes every evaluated image again with a mask drawn with that bucket's
hole_range (fixed per image and bucket). `buckets: binned` splits the pairs of the one run by hole
ratio instead (cheap; the only option with mask files). PSNR, SSIM and L1 in the hole are
secondary numbers, with `edge_f1_hole` (Canny edges in the hole, `i2i.metrics.structure`).
`perceptual_distance` adds `lpips`: LPIPS (AlexNet) of each completion to its real image, the
variational inpainting paper's "perceptual distance" (overall, per bucket, and in validation).

Under DDP the separate bucket runs re-use each process's share of the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MeanMetric

from i2i.data import batch as B
from i2i.data.masks import MaskFiles, RandomMaskGenerator
from i2i.losses import masked_l1
from i2i.metrics.image import psnr
from i2i.metrics.protocols.paired import PairedProtocol
from i2i.metrics.structure import edge_f1_in_region, ssim_in_region
from i2i.seeding import numpy_rng

BUCKETS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))
BUCKET_MODES = ("separate", "binned", "none")


def bucket_name(low: float, high: float) -> str:
    """The bucket's name, "[low,high)" (closed at 1.0: "[0.8,1.0]").

    Args:
        low: the bucket's lowest hole ratio.
        high: the bucket's upper bound.
    """
    return f"[{low:.1f},{high:.1f}{']' if high >= 1.0 else ')'}"


def bucket_index(hole_ratio: torch.Tensor) -> torch.Tensor:
    """The bucket of each hole ratio; 1.0 falls in the last bucket.

    Args:
        hole_ratio: (N,) hole ratios in [0, 1].

    Returns:
        (N,) integer bucket indices in 0..4 (see `BUCKETS`).
    """
    edges = torch.tensor([b[1] for b in BUCKETS[:-1]], device=hole_ratio.device)
    return torch.bucketize(hole_ratio, edges, right=True)


class BucketMaskDataset(Dataset):
    """The evaluated images with one bucket's masks, fixed per image and bucket.

    The validation images `indices` of `dataset` with masks drawn by `masks` (one bucket's
    hole_range), seeded by (seed, 2, bucket, image index).

    Args:
        dataset: the validation images (without masks).
        indices: their "index" values to evaluate, in order.
        masks: the bucket's mask generator (1 = known).
        keys: the batch keys the task needs.
        seed: the datamodule's seed.
        bucket: the bucket's number, 0..4.
    """

    def __init__(
        self,
        dataset: Dataset,  # the validation images (without masks)
        indices: Sequence[int],  # their "index" values to evaluate, in order
        masks: RandomMaskGenerator,
        keys: Sequence[str],  # the batch keys the task needs
        seed: int,  # the datamodule's seed
        bucket: int,  # the bucket's number, 0..4
    ):
        self.dataset, self.indices, self.masks = dataset, list(indices), masks
        self.keys, self.seed, self.bucket = tuple(keys), int(seed), int(bucket)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.dataset[self.indices[i]]
        item = {key: item[key] for key in self.keys if key in item}
        rng = numpy_rng(self.seed, 2, self.bucket, int(item[B.INDEX]))
        item[B.MASK] = self.masks(rng)
        return item


class InpaintingProtocol(PairedProtocol):
    """See the module docstring."""

    name = "inpainting"

    def start(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        """Fresh metrics; at test, the bucket mode is chosen and a metric made per bucket."""
        self.mode, self.note = "none", None
        if stage == "test":
            self.choose_bucket_mode(trainer.datamodule)
        super().start(trainer, task, stage)
        if self.mode != "none":
            for low, high in BUCKETS:
                self.ids[bucket_name(low, high)] = self.networks.ids(self.device)
        self.means: dict[str, MeanMetric] = {}
        self.indices: list[int] = []  # the evaluated images' "index" on this process
        if self.options.perceptual_distance:
            instead = "set metrics.perceptual_distance: false"
            self.lpips = self.networks.lpips(self.device, instead)

    def choose_bucket_mode(self, dm: L.LightningDataModule) -> None:
        """Set `mode`: 'separate' needs the free-form generator; mask files only allow binning.

        Falls back to 'binned' (with a note for the JSON) where 'separate' is asked but impossible.

        Args:
            dm: the datamodule (its `val_dataset`, `mask_generator` and `keys` are read).
        """
        self.mode = self.options.buckets
        if self.mode != "separate":
            return
        val = getattr(dm, "val_dataset", None)
        masks = getattr(val, "masks", None)
        if isinstance(masks, MaskFiles):
            self.mode = "binned"
            self.note = (
                "validation masks from mask files (MaskFiles): only binning makes sense, a "
                "file has one hole ratio, so the buckets bin the pairs of the one run; separate "
                "per-bucket runs need the free-form generator"
            )
        elif not isinstance(getattr(dm, "mask_generator", None), RandomMaskGenerator) or not (
            hasattr(val, "dataset") and hasattr(dm, "keys")
        ):
            self.mode = "binned"
            self.note = (
                f"{type(dm).__name__} has no free-form mask generator and fixed validation set "
                "(mask_generator, val_dataset.dataset): the buckets bin the pairs of the one run"
            )

    def mean(self, name: str) -> MeanMetric:
        """The running mean called `name`, made on first use.

        Args:
            name: the score's key, with "bucket/" in front for a bucket's.
        """
        if name not in self.means:
            self.means[name] = MeanMetric().to(self.device)
        return self.means[name]

    def perceptual(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """LPIPS per pair over the whole image (the completion, known pixels included).

        Both are clamped to [-1, 1], LPIPS's input range.

        Args:
            fake: (N, 3, H, W) completions.
            real: (N, 3, H, W) real images.

        Returns:
            (N,) distances.
        """
        return self.lpips(fake.float().clamp(-1, 1), real.float().clamp(-1, 1)).flatten()

    def update(self, batch: dict, outputs: dict) -> None:
        """Add a batch: P-IDS / U-IDS / FID (and LPIPS); at test also the hole scores."""
        fake = outputs[B.OUTPUT]
        if self.stage == "val":
            super().update(batch, outputs)
            if self.options.perceptual_distance:
                self.mean("lpips").update(self.perceptual(fake, batch[B.IMAGE]))
            return
        real = batch[B.IMAGE].float()
        self.indices.extend(int(i) for i in batch[B.INDEX])
        self.ids["all"].update(real, fake)
        hole = self.update_hole_scores("", real, fake, batch[B.MASK].float())
        if self.mode == "binned":
            for k, index in enumerate(bucket_index(hole).tolist()):
                one, name = slice(k, k + 1), bucket_name(*BUCKETS[index])
                self.ids[name].update(real[one], fake[one])
                mask = batch[B.MASK][one].float()
                self.update_hole_scores(name + "/", real[one], fake[one], mask)

    def update_hole_scores(self, prefix: str, real, fake, mask) -> torch.Tensor:
        """Add the hole ratio, L1, PSNR, SSIM, edge F1 (and LPIPS) in the hole to the running means.

        Args:
            prefix: "" for the whole set, "bucket/" for a bucket's.
            real (torch.Tensor): (N, 3, H, W) in [-1, 1].
            fake (torch.Tensor): (N, 3, H, W) in [-1, 1].
            mask (torch.Tensor): (N, 1, H, W), 1 = known, 0 = hole.

        Returns:
            (N,) hole ratios.
        """
        hole = 1 - mask.flatten(1).mean(1)
        self.mean(f"{prefix}hole_ratio").update(hole)
        self.mean(f"{prefix}l1_hole").update(masked_l1(fake, real, mask))
        self.mean(f"{prefix}psnr_hole").update(psnr(fake, real, 1 - mask))
        self.mean(f"{prefix}ssim_hole").update(ssim_in_region(fake, real, 1 - mask))
        self.mean(f"{prefix}edge_f1_hole").update(edge_f1_in_region(fake, real, 1 - mask))
        if self.options.perceptual_distance:
            self.mean(f"{prefix}lpips").update(self.perceptual(fake, real))
        return hole

    def run_separate_buckets(self) -> None:
        """The official per-bucket protocol: each bucket a full run over the evaluated images
        (this process's share), masks drawn with the bucket's hole_range."""
        dm, task = self.trainer.datamodule, self.task
        generator: RandomMaskGenerator = dm.mask_generator
        for k, (low, high) in enumerate(BUCKETS):
            name = bucket_name(low, high)
            masks = RandomMaskGenerator((low, high), generator.variant).at(generator.size)
            images = dm.val_dataset.dataset
            data = BucketMaskDataset(images, self.indices, masks, dm.keys, dm.seed, k)
            loader = DataLoader(
                data,
                batch_size=getattr(dm, "val_batch_size", 8),
                num_workers=getattr(dm, "num_workers", 0),
                generator=torch.Generator().manual_seed(0),  # leave the global RNG alone
            )
            for batch in loader:
                batch = {key: value.to(self.device) for key, value in batch.items()}
                real, mask = batch[B.IMAGE].float(), batch[B.MASK].float()
                fake = task.sample(batch).float().clamp(-1, 1)  # as the test step's
                self.ids[name].update(real, fake)
                self.update_hole_scores(f"{name}/", real, fake, mask)
            rank_zero_info(f"i2i: bucket {name} scored (hole_range [{low}, {high}])")

    def compute(self) -> dict[str, Any]:
        """The overall scores; at test also the per-bucket ones (into `buckets`), running the
        separate bucket runs first when that is the mode.
        """
        if self.stage == "val":
            results = super().compute()
            if "lpips" in self.means:
                results["lpips"] = float(self.means["lpips"].compute())  # synced
            return results
        if self.mode == "separate":
            self.run_separate_buckets()
        results = super().compute()
        for name, metric in self.ids.items():
            if name != "all":
                low, high = BUCKETS[[bucket_name(*b) for b in BUCKETS].index(name)]
                self.buckets[name] = {"hole_range": [low, high], **self.scores(metric)}
        for name, mean in self.means.items():
            value = float(mean.compute()) if mean.update_called else None
            if "/" in name:
                bucket, key = name.split("/", 1)
                self.buckets.setdefault(bucket, {})[key] = value
            else:
                results[name] = value
        return results

    def describe(self, results: dict[str, Any]) -> dict[str, Any]:
        """The paired protocol's description plus the masks, buckets and perceptual distance.

        Args:
            results: what `compute` returned.
        """
        protocol = super().describe(results)
        dm = self.trainer.datamodule
        masks = getattr(getattr(dm, "val_dataset", None), "masks", None)
        protocol["masks"] = (
            f"mask files {masks.files.root} ({masks.polarity}), image index i -> file i mod "
            f"{len(masks.files)}"
            if isinstance(masks, MaskFiles)
            else "fixed per validation image: RandomMask seeded by "
            f"(seed * 1000003 + index), seed={getattr(dm, 'seed', None)}"
        )
        protocol["buckets"] = self.describe_buckets(dm)
        protocol["perceptual_distance"] = (
            "LPIPS (torchmetrics, AlexNet and its linear heads) of the completion to the "
            "real image, whole image, both clamped to [-1, 1]"
            if self.options.perceptual_distance
            else None
        )
        return protocol

    def describe_buckets(self, dm: L.LightningDataModule) -> dict[str, Any]:
        """How the buckets were made, for the test JSON.

        Args:
            dm: the datamodule (its mask generator and seed are quoted).

        Returns:
            {"mode", "requested", "names"}, plus "masks" and "note" where they apply.
        """
        mode = self.mode
        out: dict[str, Any] = {
            "mode": mode,
            "requested": self.options.buckets,
            "names": [bucket_name(*b) for b in BUCKETS] if mode != "none" else [],
        }
        if mode == "separate":
            generator = dm.mask_generator
            out["masks"] = (
                "a separate full run per bucket over the same images: RandomMask with the "
                f"bucket's hole_range (variant={generator.variant!r}), fixed per image and "
                f"bucket: seeded by (seed={dm.seed}, 2, bucket, index)"
            )
        elif mode == "binned":
            out["masks"] = "the pairs of the one run, binned by their mask's hole ratio"
        if self.note:
            out["note"] = self.note
        return out
