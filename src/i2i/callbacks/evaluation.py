"""P-IDS / U-IDS / FID during training, and the paper's evaluation protocol under `i2i test`.

During `fit`, every `every_n_validations` validations, G_ema's outputs on the validation set
(fixed masks and latents, produced by the task's validation step) are scored against the reals:
`val/p_ids`, `val/u_ids`, `val/fid`. The metric state syncs across processes (pairs stay aligned)
and every rank takes part, so it is safe under DDP.

Under `test`, the whole protocol runs and is written to `<default_root_dir>/<output>` (JSON) and
to the loggers (scalars, plus a W&B table of the mask-size buckets):
- inpainting: FID, P-IDS, U-IDS over the whole evaluation set (N pairs: one mask and one z per
  image; 10,000 for FFHQ, 36,500 for Places2), and per hole-ratio bucket [0,.2) [.2,.4) [.4,.6)
  [.6,.8) [.8,1]. By default each bucket is a SEPARATE full-N run, as the official `ids10k-h0..h4`:
  G_ema completes every evaluated image again with a mask drawn with that bucket's hole_range
  (fixed per image and bucket). `buckets: binned` splits the pairs of the one run by hole ratio
  instead (cheap; the only option with mask files). PSNR, SSIM and L1 in the hole are secondary
  numbers, with `edge_f1_hole` (Canny edges in the hole, `i2i.metrics.structure`). A run that
  scores fewer pairs than `official_num_pairs` says so (warning + JSON flag).
  `perceptual_distance: true` adds `lpips`: LPIPS (AlexNet) of each completion to its real image,
  the variational inpainting paper's "perceptual distance" (overall, per bucket, and `val/lpips`
  with the validation IDS).
- translation: FID against the validation reals, or against ALL the training targets as the paper
  did (statistics cached on disk, see `i2i.metrics.fid_stats`), and diversity: the mean LPIPS
  (AlexNet) over `diversity_pairs` pairs of outputs per input, each pair two fresh latents
  (200 inputs x 10 = the official 2,000 pairs). With a `segmenter` (labels -> photo): semantic
  consistency, `miou`, `pixel_accuracy` and per-class IoU of the segmenter's predictions on the
  outputs against the input label maps (`i2i.metrics.SemanticConsistency`, classes mapped by
  `semantic_classes`); `real: true` (`i2i test --real`) scores the real photos too (`real_miou`,
  the ceiling).
- unpaired (CycleGAN): FID in each direction, `fid_ab` (G_AB's outputs for the A images against
  the real B images) and `fid_ba` (G_BA's for the B images against the real A images), each image
  of the evaluation set counted once (the datamodule's `val_sizes` names the repeats of the
  shorter domain). During fit, `every_n_validations` logs `val/fid_ab` and `val/fid_ba`.
The JSON records the protocol: seeds, sample counts, masks, features, truncation.

Under DDP each rank scores its share of the images (Lightning's DistributedSampler, without the
samples it repeats to even out the shares) and the separate bucket runs re-use each rank's share.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchmetrics import MeanMetric
from torchmetrics.aggregation import CatMetric

from i2i.data import batch as B
from i2i.data.masks import MaskFolder, RandomMaskGenerator
from i2i.losses import masked_l1
from i2i.metrics import InceptionDiscriminativeScore
from i2i.metrics.features import quantize_images
from i2i.metrics.fid_stats import (
    FeatureStats,
    deterministic_view,
    frechet_distance_from_moments,
    reference_statistics,
)
from i2i.metrics.image import psnr
from i2i.metrics.semantic import SemanticConsistency, class_set
from i2i.metrics.structure import edge_f1_in_region, ssim_in_region
from i2i.seeding import numpy_rng

log = logging.getLogger(__name__)

BUCKETS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))
BUCKET_MODES = ("separate", "binned", "none")
LPIPS_FILE = "alexnet-owt-7be5be79.pth"


def bucket_name(low: float, high: float) -> str:
    return f"[{low:.1f},{high:.1f}{']' if high >= 1.0 else ')'}"


def bucket_index(hole_ratio: torch.Tensor) -> torch.Tensor:
    """The bucket of each hole ratio; 1.0 falls in the last bucket."""
    edges = torch.tensor([b[1] for b in BUCKETS[:-1]], device=hole_ratio.device)
    return torch.bucketize(hole_ratio, edges, right=True)


class BucketMaskDataset(Dataset):
    """The validation images `indices` of `dataset` with masks drawn by `masks` (one bucket's
    hole_range), fixed per image and bucket: seeded by (seed, 2, bucket, image index)."""

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


class GANMetrics(Callback):
    """See the module docstring. The feature network is built when first needed, so a run that
    never evaluates needs no Inception weights."""

    def __init__(
        self,
        feature: int | nn.Module = 2048,  # Inception pool3 (the paper's), or any (N, D) module
        weights_path: str | None = None,  # the Inception weights file; default: torch hub cache
        check_hash: bool = True,
        every_n_validations: int = 0,  # 0: only under `test`; k: every k-th validation in fit
        buckets: str = "separate",  # inpainting under `test`: "separate" full runs per hole_range
        # (official), "binned" (one run split by hole ratio: cheap), or "none"
        official_num_pairs: int | None = None,  # the paper's N for this dataset (10000 FFHQ,
        # 36500 Places2, 200 edges); fewer pairs: a warning and a flag in the JSON. None: custom
        perceptual_distance: bool = False,  # inpainting: LPIPS (AlexNet) of each completion to
        # its real image, the variational inpainting paper's; `lpips` under test, `val/lpips`
        diversity: str = "lpips",  # translation: "lpips" (AlexNet), "l1", or "none"
        diversity_pairs: int = 10,  # pairs of latents per input (200 inputs x 10 = official 2,000)
        fid_reference: str = "val",  # translation: "val" reals, or "train" targets (the paper)
        fid_train_samples: int | None = None,  # cap on training targets (None: all, the paper)
        fid_stats_dir: str
        | None = None,  # reference-statistics cache; None: ~/.cache/i2i/fid_stats
        cache_fid_stats: bool = True,  # False: recompute the training statistics every run
        segmenter: nn.Module | None = None,  # labels -> photo: images in [-1, 1] -> class logits
        # (i2i.networks.segmenters: DRNSegmenter, DeepLabV2Segmenter, UperNetSegmenter, or any)
        semantic_classes: str | None = None,  # the label ids -> segmenter classes: "cityscapes",
        # "coco_stuff", "ade20k"; None: the label ids are the segmenter's classes
        real: bool = False,  # also segment the real photos (`i2i test --real`): the ceiling
        output: str = "test_results.json",  # written in the run folder (default_root_dir)
    ):
        if buckets not in BUCKET_MODES:
            raise ValueError(f"buckets must be one of {BUCKET_MODES}, got {buckets!r}")
        if diversity not in ("lpips", "l1", "none"):
            raise ValueError(f"diversity must be 'lpips', 'l1' or 'none', got {diversity!r}")
        if diversity_pairs < 1:
            raise ValueError(f"diversity_pairs must be >= 1, got {diversity_pairs}")
        if fid_reference not in ("val", "train"):
            raise ValueError(f"fid_reference must be 'val' or 'train', got {fid_reference!r}")
        self.feature, self.weights_path, self.check_hash = feature, weights_path, check_hash
        self.every_n_validations, self.buckets = every_n_validations, buckets
        self.official_num_pairs = official_num_pairs
        self.perceptual_distance = perceptual_distance
        self.diversity, self.diversity_pairs = diversity, diversity_pairs
        self.fid_reference, self.fid_train_samples = fid_reference, fid_train_samples
        self.fid_stats_dir, self.cache_fid_stats = fid_stats_dir, cache_fid_stats
        self.output = output
        self.segmenter, self.semantic_classes, self.real = segmenter, semantic_classes, real
        if semantic_classes is not None:
            class_set(semantic_classes)  # an unknown name stops here, with the choices
        self._semantic: dict[str, SemanticConsistency] = {}  # "" outputs, "real_" photos
        self._semantic_size: list[int] | None = None
        self._validations = 0
        self._active = False
        self._ids: dict[str, InceptionDiscriminativeScore] = {}
        self._means: dict[str, MeanMetric] = {}
        self._unpaired: dict[str, FeatureStats] = {}  # unpaired: features of the four sets
        self._diversity: CatMetric | None = None
        self._indices: list[int] = []  # the evaluated images' "index" on this rank
        self._rank_samples = 0  # samples this rank's test loader has given so far
        self._bucket_mode = "none"
        self._bucket_note: str | None = None
        self._reference: dict[str, Any] = {}
        self._lpips: nn.Module | None = None
        self._extractor: nn.Module | None = None
        self.results: dict[str, Any] | None = None

    # ---- metric objects --------------------------------------------------------------------

    def _new_ids(self, device: torch.device, compute_fid: bool) -> InceptionDiscriminativeScore:
        if self._extractor is None:
            feature = self.feature
            if isinstance(feature, int):
                metric = InceptionDiscriminativeScore(
                    feature, compute_fid, weights_path=self.weights_path, check_hash=self.check_hash
                )
                self._extractor = metric.feature_extractor  # shared by every metric below
                return metric.to(device)
            self._extractor = feature
        metric = InceptionDiscriminativeScore(self._extractor, compute_fid)
        metric.inception_protocol = isinstance(self.feature, int)
        return metric.to(device)

    def _mean(self, name: str, device: torch.device) -> MeanMetric:
        if name not in self._means:
            self._means[name] = MeanMetric().to(device)
        return self._means[name]

    def _reset(self, pl_module: L.LightningModule, test: bool) -> None:
        device = pl_module.device
        self._ids = {"all": self._new_ids(device, compute_fid=True)}
        self._means = {}
        self._unpaired = {}
        if test and self._bucket_mode != "none":
            for low, high in BUCKETS:
                self._ids[bucket_name(low, high)] = self._new_ids(device, compute_fid=True)

    @staticmethod
    def _is_inpainting(pl_module: L.LightningModule) -> bool:
        return getattr(pl_module, "evaluation", None) == "inpainting"  # the task says

    @staticmethod
    def _is_unpaired(pl_module: L.LightningModule) -> bool:
        return getattr(pl_module, "evaluation", None) == "unpaired"

    # ---- unpaired: FID in each direction -------------------------------------------------

    def _update_unpaired(self, trainer: L.Trainer, batch: dict, outputs: dict, keep: int) -> None:
        """Features of the real A and B images and of both translations; the repeats of the
        shorter domain (index >= its size) are left out of its two sets."""
        sizes = getattr(trainer.datamodule, "val_sizes", None)
        index = batch[B.INDEX][:keep].cpu()
        in_a, in_b = (index < sizes[0], index < sizes[1]) if sizes else (index >= 0,) * 2
        sets = {
            "real_a": batch[B.IMAGE_A][:keep][in_a.to(batch[B.IMAGE_A].device)],
            "fake_b": outputs[B.OUTPUT][:keep][in_a.to(outputs[B.OUTPUT].device)],
            "real_b": batch[B.IMAGE_B][:keep][in_b.to(batch[B.IMAGE_B].device)],
            "fake_a": outputs[B.OUTPUT_A][:keep][in_b.to(outputs[B.OUTPUT_A].device)],
        }
        metric = self._ids["all"]  # its feature network and preprocessing (uint8 for Inception)
        for name, images in sets.items():
            if images.shape[0] == 0:
                continue
            features = metric._features(images.float())
            if name not in self._unpaired:
                self._unpaired[name] = FeatureStats(features.shape[1])
            self._unpaired[name].update(features)

    def _unpaired_scores(self, trainer: L.Trainer, device: torch.device) -> dict[str, Any]:
        """FID A -> B and B -> A over every rank's images, and the image counts."""
        sum_fn = self._sum_fn(trainer, device)
        stats = {k: v.reduce(sum_fn) for k, v in sorted(self._unpaired.items())}
        out: dict[str, Any] = {f"n_{k}": s.count for k, s in stats.items()}
        for name, real, fake in (("fid_ab", "real_b", "fake_b"), ("fid_ba", "real_a", "fake_a")):
            if real in stats and fake in stats and min(stats[real].count, stats[fake].count) > 1:
                moments = (*stats[real].mean_cov(), *stats[fake].mean_cov())
                out[name] = float(frechet_distance_from_moments(*moments))
        return out

    def _choose_bucket_mode(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """'separate' needs the free-form generator; mask files only allow binning."""
        self._bucket_mode, self._bucket_note = self.buckets, None
        if not self._is_inpainting(pl_module):
            self._bucket_mode = "none"
            return
        if self.buckets != "separate":
            return
        dm = trainer.datamodule
        val = getattr(dm, "val_dataset", None)
        masks = getattr(val, "masks", None)
        if isinstance(masks, MaskFolder):
            self._bucket_mode = "binned"
            self._bucket_note = (
                "validation masks from mask files (val_mask_dir): only binning makes sense, a "
                "file has one hole ratio, so the buckets bin the pairs of the one run; separate "
                "per-bucket runs need the free-form generator"
            )
        elif not isinstance(getattr(dm, "mask_generator", None), RandomMaskGenerator) or not (
            hasattr(val, "dataset") and hasattr(dm, "keys")
        ):
            self._bucket_mode = "binned"
            self._bucket_note = (
                f"{type(dm).__name__} has no free-form mask generator and fixed validation set "
                "(mask_generator, val_dataset.dataset): the buckets bin the pairs of the one run"
            )

    # ---- validation during fit -------------------------------------------------------------

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._active = False
        if trainer.sanity_checking or self.every_n_validations <= 0:
            return
        self._validations += 1
        if self._validations % self.every_n_validations == 0:
            self._active = True
            self._reset(pl_module, test=False)
            self._build_perceptual(pl_module)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        if self._active and self._is_unpaired(pl_module):
            self._update_unpaired(trainer, batch, outputs, batch[B.IMAGE_A].shape[0])
        elif self._active:
            self._ids["all"].update(batch[B.IMAGE].float(), outputs["fake"])
            if self._is_inpainting(pl_module) and self.perceptual_distance:
                lpips = self._perceptual(outputs["fake"], batch[B.IMAGE])
                self._mean("lpips", pl_module.device).update(lpips)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active:
            return
        if self._is_unpaired(pl_module):
            scores = self._unpaired_scores(trainer, pl_module.device)
            logged = {f"val/{k}": float(v) for k, v in scores.items() if k.startswith("fid")}
            pl_module.log_dict(logged, sync_dist=False)
            self._active = False
            return
        scores = self._ids["all"].compute()
        if "lpips" in self._means:
            scores["lpips"] = self._means["lpips"].compute()  # synced across processes
        pl_module.log_dict({f"val/{k}": v.float() for k, v in scores.items()}, sync_dist=False)
        self._active = False

    # ---- the test protocol -----------------------------------------------------------------

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._choose_bucket_mode(trainer, pl_module)
        self._reset(pl_module, test=True)
        self._indices, self._rank_samples, self._reference = [], 0, {}
        self._diversity = CatMetric().to(pl_module.device)
        self._build_semantic(pl_module)
        if self._is_unpaired(pl_module):
            return
        if not self._is_inpainting(pl_module) and self.diversity == "lpips" and self._lpips is None:
            self._lpips = build_lpips().to(pl_module.device)
        self._build_perceptual(pl_module)

    def _unrepeated(self, trainer: L.Trainer, n: int) -> int:
        """How many of this batch's n samples are not DistributedSampler's repeats (it pads the
        ranks' shares to equal length with samples from the start of the set)."""
        start, self._rank_samples = self._rank_samples, self._rank_samples + n
        loader = trainer.test_dataloaders
        if isinstance(loader, list | tuple):
            loader = loader[0] if loader else None
        sampler = getattr(loader, "sampler", None)
        if not isinstance(sampler, DistributedSampler) or sampler.shuffle:
            return n
        size, rank, replicas = len(sampler.dataset), sampler.rank, sampler.num_replicas
        # The k-th sample of this rank is sample rank + k * replicas of the padded sequence.
        return sum(1 for k in range(start, start + n) if rank + k * replicas < size)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self._is_unpaired(pl_module):
            keep = self._unrepeated(trainer, batch[B.IMAGE_A].shape[0])
            if keep:
                self._update_unpaired(trainer, batch, outputs, keep)
            return
        keep = self._unrepeated(trainer, batch[B.IMAGE].shape[0])
        if keep == 0:
            return
        batch = {k: v[:keep] for k, v in batch.items()}
        real, fake = batch[B.IMAGE].float(), outputs["fake"][:keep]
        self._indices.extend(int(i) for i in batch[B.INDEX])
        self._ids["all"].update(real, fake)
        self._update_semantic(batch, real, fake)
        if self._is_inpainting(pl_module):
            hole = self._update_inpainting("", real, fake, batch[B.MASK].float(), pl_module.device)
            if self._bucket_mode == "binned":
                for k, index in enumerate(bucket_index(hole).tolist()):
                    one = slice(k, k + 1)
                    self._ids[bucket_name(*BUCKETS[index])].update(real[one], fake[one])
                    self._update_inpainting(
                        bucket_name(*BUCKETS[index]) + "/",
                        real[one],
                        fake[one],
                        batch[B.MASK][one].float(),
                        pl_module.device,
                    )
        elif self.diversity != "none":
            self._update_diversity(pl_module, batch, fake)

    def _update_inpainting(self, prefix: str, real, fake, mask, device) -> torch.Tensor:
        hole = 1 - mask.flatten(1).mean(1)
        self._mean(f"{prefix}hole_ratio", device).update(hole)
        self._mean(f"{prefix}l1_hole", device).update(masked_l1(fake, real, mask))
        self._mean(f"{prefix}psnr_hole", device).update(psnr(fake, real, 1 - mask))
        self._mean(f"{prefix}ssim_hole", device).update(ssim_in_region(fake, real, 1 - mask))
        edge_f1 = edge_f1_in_region(fake, real, 1 - mask)
        self._mean(f"{prefix}edge_f1_hole", device).update(edge_f1)
        if self.perceptual_distance:
            self._mean(f"{prefix}lpips", device).update(self._perceptual(fake, real))
        return hole

    def _build_perceptual(self, pl_module: L.LightningModule) -> None:
        """AlexNet for the inpainting perceptual distance, when asked for (offline: its weights
        file must be in the torch hub cache, or the run stops here naming it)."""
        if self.perceptual_distance and self._is_inpainting(pl_module) and self._lpips is None:
            self._lpips = build_lpips("set metrics.perceptual_distance: false").to(pl_module.device)

    def _perceptual(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """LPIPS per pair over the whole image (the completion, known pixels included), both
        clamped to [-1, 1], LPIPS's input range."""
        return self._lpips(fake.float().clamp(-1, 1), real.float().clamp(-1, 1)).flatten()

    def _update_diversity(self, pl_module: L.LightningModule, batch: dict, fake) -> None:
        """Pair p of an input: the outputs of latent variants 2p and 2p + 1 (z seeded by
        (eval_seed, index, variant)), clamped to [-1, 1] as the official metric."""
        for p in range(self.diversity_pairs):
            first = fake if p == 0 else pl_module.sample(batch, variant=2 * p).float()
            second = pl_module.sample(batch, variant=2 * p + 1).float()
            first, second = first.clamp(-1, 1), second.clamp(-1, 1)
            if self.diversity == "lpips":
                value = self._lpips(first, second).flatten()
            else:
                value = (first - second).abs().flatten(1).mean(1)
            self._diversity.update(value.float())

    # ---- semantic consistency (labels -> photo) ---------------------------------------------

    def _build_semantic(self, pl_module: L.LightningModule) -> None:
        """The mIoU metrics of a translation test with a segmenter; its weights are loaded here,
        so that a missing file stops the run before any image is generated."""
        self._semantic, self._semantic_size = {}, None
        translation = getattr(pl_module, "evaluation", None) == "translation"
        if self.real and (self.segmenter is None or not translation):
            raise ValueError(
                "--real scores the real photos with metrics.segmenter, for labels -> photo: "
                + ("set metrics.segmenter" if translation else f"{type(pl_module).__name__} is not")
                + " (configs/cityscapes.yaml, cocostuff.yaml and ade20k.yaml name theirs)"
            )
        if self.segmenter is None or not translation:
            return
        load = getattr(self.segmenter, "load_weights", None)
        if callable(load):
            load()
        for prefix in ("", "real_") if self.real else ("",):
            if self.semantic_classes is not None:
                metric = SemanticConsistency.for_class_set(self.semantic_classes, self.segmenter)
            else:
                classes = getattr(self.segmenter, "num_classes", None)
                metric = SemanticConsistency(classes or pl_module.num_classes, self.segmenter)
            self._semantic[prefix] = metric.to(pl_module.device)

    def _update_semantic(self, batch: dict, real: torch.Tensor, fake: torch.Tensor) -> None:
        if not self._semantic:
            return
        if B.LABEL not in batch:
            raise ValueError(
                "metrics.segmenter is set, but the test batches hold no label maps ('label'): "
                "semantic consistency needs a labels -> photo datamodule (label ids, not colour "
                "label images); remove metrics.segmenter for this data"
            )
        label = batch[B.LABEL]
        self._semantic_size = list(label.shape[-2:])
        self._semantic[""].update(fake, label)
        if "real_" in self._semantic:
            self._semantic["real_"].update(real, label)

    def _semantic_scores(self) -> dict[str, Any]:
        """miou, pixel_accuracy, mean_accuracy and per-class IoU by class name (None where the
        class is in neither labels nor predictions), over every rank's images."""
        out: dict[str, Any] = {}
        for prefix, metric in self._semantic.items():
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

    def _semantic_protocol(self) -> dict[str, Any] | None:
        if not self._semantic:
            return None
        metric = self._semantic[""]
        names = self.semantic_classes
        return {
            "evaluation_size": self._semantic_size,
            "labels": "the batches' label maps at the evaluation size, as the datamodule gives "
            "them (label files resized with nearest interpolation: class ids are never "
            "interpolated)",
            "class_set": class_set(names).description
            if names
            else "the dataset's label ids are the segmenter's classes",
            "class_names": list(metric.class_names or range(metric.num_classes)),
            **metric.protocol(),
            "real": "real_*: the real validation photos through the same segmenter (the ceiling)"
            if self.real
            else None,
        }

    def _separate_buckets(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The official per-bucket protocol: each bucket a full run over the evaluated images
        (this rank's share), masks drawn with the bucket's hole_range."""
        dm = trainer.datamodule
        generator: RandomMaskGenerator = dm.mask_generator
        device = pl_module.device
        for k, (low, high) in enumerate(BUCKETS):
            name = bucket_name(low, high)
            masks = RandomMaskGenerator(generator.size, (low, high), generator.variant)
            data = BucketMaskDataset(
                dm.val_dataset.dataset, self._indices, masks, dm.keys, dm.seed, k
            )
            loader = DataLoader(
                data,
                batch_size=getattr(dm, "val_batch_size", 8),
                num_workers=getattr(dm, "num_workers", 0),
                generator=torch.Generator().manual_seed(0),  # leave the global RNG alone
            )
            for batch in loader:
                batch = {key: value.to(device) for key, value in batch.items()}
                real, mask = batch[B.IMAGE].float(), batch[B.MASK].float()
                fake = pl_module.sample(batch).float().clamp(-1, 1)  # as the test step's
                self._ids[name].update(real, fake)
                self._update_inpainting(f"{name}/", real, fake, mask, device)
            rank_zero_info(f"i2i: bucket {name} scored (hole_range [{low}, {high}])")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._is_unpaired(pl_module):
            self._finish_unpaired(trainer, pl_module)
            return
        if self._bucket_mode == "separate":
            self._separate_buckets(trainer, pl_module)
        results: dict[str, Any] = {}
        buckets: dict[str, dict[str, Any]] = {}
        for name, metric in self._ids.items():
            count = _synced_count(metric, trainer)
            scores = _compute(metric) if count > 1 else {}
            entry = {"n": count, **{k: float(v) for k, v in scores.items()}}
            if name == "all":
                results.update(entry)
            else:
                low, high = BUCKETS[[bucket_name(*b) for b in BUCKETS].index(name)]
                buckets[name] = {"hole_range": [low, high], **entry}
        for name, mean in self._means.items():
            value = float(mean.compute()) if mean.update_called else None
            if "/" in name:
                bucket, key = name.split("/", 1)
                buckets.setdefault(bucket, {})[key] = value
            else:
                results[name] = value
        if not self._is_inpainting(pl_module) and self.diversity != "none":
            values = self._diversity.compute() if self._diversity.update_called else None
            if values is not None and values.numel():
                values = values.double().flatten()
                results[f"diversity_{self.diversity}"] = float(values.mean())
                results[f"diversity_{self.diversity}_std"] = float(values.std(unbiased=False))
                results["diversity_pairs"] = int(values.numel())
        if not self._is_inpainting(pl_module) and self.fid_reference == "train":
            results["fid_train_reference"] = self._fid_against_train(trainer, pl_module)
        results.update(self._semantic_scores())
        pl_module.log_dict(
            {f"test/{k}": float(v) for k, v in results.items() if isinstance(v, float)},
            sync_dist=False,
        )
        protocol = self._protocol(trainer, pl_module, results)
        self.results = {"results": results, "buckets": buckets, "protocol": protocol}
        if protocol["below_official_num_pairs"] and trainer.is_global_zero:
            message = (
                f"i2i test scored {results.get('n')} pairs, fewer than the official protocol's "
                f"{self.official_num_pairs} for this dataset: P-IDS / U-IDS / FID are biased "
                "and not comparable with published numbers (score the whole evaluation set: "
                "data max_val_images: null, no limit_test_batches)"
            )
            warnings.warn(message, UserWarning, stacklevel=2)
            log.warning(message)
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / self.output
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.results, indent=2))
            print(f"\ni2i: evaluation written to {path}", flush=True)
            self._log_table(trainer, buckets)

    def _finish_unpaired(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        results = self._unpaired_scores(trainer, pl_module.device)
        pl_module.log_dict(
            {f"test/{k}": float(v) for k, v in results.items() if k.startswith("fid")},
            sync_dist=False,
        )
        dm = trainer.datamodule
        feature = (
            "inception-v3-compat pool3 (2048), images quantised to uint8 as TF"
            if isinstance(self.feature, int)
            else f"custom module {type(self.feature).__name__}"
        )
        protocol: dict[str, Any] = {
            "task": type(pl_module).__name__,
            "checkpoint": getattr(trainer, "ckpt_path", None),
            "iteration": int(getattr(pl_module, "iteration", 0)),
            "evaluation": "unpaired",
            "fid_ab": "G_AB(A) of every evaluation A image against every evaluation B image",
            "fid_ba": "G_BA(B) of every evaluation B image against every evaluation A image",
            "features": feature,
            "world_size": trainer.world_size,
        }
        if dm is not None and hasattr(dm, "hparams"):
            protocol["data"] = data_protocol(dm)
        self.results = {"results": results, "buckets": {}, "protocol": protocol}
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / self.output
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.results, indent=2))
            print(f"\ni2i: evaluation written to {path}", flush=True)

    def _sum_fn(self, trainer: L.Trainer, device: torch.device):
        if trainer.world_size <= 1:
            return lambda t: t
        return lambda t: trainer.strategy.reduce(t.to(device), reduce_op="sum").cpu()

    def _fid_against_train(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float:
        """FID of the outputs of every rank against the statistics of the training targets (the
        paper's edges FID: all of them by default), computed once and cached on disk."""
        metric = self._ids["all"]
        sum_fn = self._sum_fn(trainer, pl_module.device)
        # The local features (compute() restores each rank's own state): add up every rank's.
        fake = FeatureStats.of(torch.cat(list(metric.fake_features))).reduce(sum_fn)
        dm = trainer.datamodule
        quantize = getattr(metric, "inception_protocol", False)
        mean, cov, count, info = reference_statistics(
            deterministic_view(dm.train_dataset),
            self._extractor,
            preprocess=quantize_images if quantize else None,
            max_samples=self.fid_train_samples,
            cache_dir=self.fid_stats_dir,
            use_cache=self.cache_fid_stats,
            device=pl_module.device,
            batch_size=32,
            num_workers=getattr(dm, "num_workers", 0),
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            sum_fn=sum_fn,
            broadcast_fn=lambda obj: trainer.strategy.broadcast(obj, src=0),
        )
        self._reference = {"num_reference": count, "num_fakes": fake.count, **info}
        return float(frechet_distance_from_moments(mean, cov, *fake.mean_cov()))

    def _protocol(self, trainer: L.Trainer, pl_module: L.LightningModule, results) -> dict:
        hp = pl_module.hparams
        dm = trainer.datamodule
        feature = (
            "inception-v3-compat pool3 (2048), weights-inception-2015-12-05-6726825d.pth, "
            "images quantised to uint8 as TF: floor(x * 127.5 + 128) clipped to [0, 255]"
            if isinstance(self.feature, int)
            else f"custom module {type(self.feature).__name__}"
        )
        n = results.get("n")
        official = self.official_num_pairs
        protocol = {
            "task": type(pl_module).__name__,
            "checkpoint": getattr(trainer, "ckpt_path", None),
            "iteration": int(getattr(pl_module, "iteration", 0)),
            "kimg": float(getattr(pl_module, "kimg", 0.0)),
            "num_pairs": n,
            "official_num_pairs": official,
            "below_official_num_pairs": (
                bool(n is not None and n < official) if official is not None else None
            ),
            "generator": "G_ema"
            if hasattr(pl_module, "generator_ema")
            else type(getattr(pl_module, "sampling_network", pl_module)).__name__,
            "truncation_psi": hp.get("truncation_psi_eval"),
            "latents": f"z fixed per image: seeded by (eval_seed={hp.get('eval_seed')}, index)",
            "features": feature,
            "classifier": "linear SVM, squared hinge, L2, C=1, intercept (LinearSVC(dual=False))",
            "world_size": trainer.world_size,
        }
        if dm is not None and hasattr(dm, "hparams"):
            protocol["data"] = data_protocol(dm)
        if self._is_inpainting(pl_module):
            masks = getattr(getattr(dm, "val_dataset", None), "masks", None)
            protocol["masks"] = (
                f"mask files {masks.root} ({masks.polarity}), image index i -> file i mod "
                f"{len(masks)}"
                if isinstance(masks, MaskFolder)
                else "fixed per validation image: RandomMask seeded by "
                f"(seed * 1000003 + index), seed={getattr(dm, 'seed', None)}"
            )
            protocol["buckets"] = self._bucket_protocol(dm)
            protocol["perceptual_distance"] = (
                "LPIPS (torchmetrics, AlexNet and its linear heads) of the completion to the "
                "real image, whole image, both clamped to [-1, 1]"
                if self.perceptual_distance
                else None
            )
        else:
            protocol["fid_reference"] = self.fid_reference
            if self.fid_reference == "train":
                protocol["fid_reference_data"] = {
                    "images": "the training targets as stored (no random crop, no flip)",
                    "requested": "all"
                    if self.fid_train_samples is None
                    else self.fid_train_samples,
                    **self._reference,
                }
            protocol["diversity"] = (
                {
                    "metric": "LPIPS (AlexNet)" if self.diversity == "lpips" else "mean abs (L1)",
                    "pairs_per_input": self.diversity_pairs,
                    "num_inputs": n,
                    "num_pairs": results.get("diversity_pairs"),
                    "pairs": "pair p of input i: the outputs for latent variants 2p and 2p + 1, "
                    "z seeded by (eval_seed, index, variant), clamped to [-1, 1]",
                }
                if self.diversity != "none"
                else None
            )
            protocol["semantic"] = self._semantic_protocol()
        return protocol

    def _bucket_protocol(self, dm) -> dict[str, Any]:
        mode = self._bucket_mode
        out: dict[str, Any] = {
            "mode": mode,
            "requested": self.buckets,
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
        if self._bucket_note:
            out["note"] = self._bucket_note
        return out

    @staticmethod
    def _log_table(trainer: L.Trainer, buckets: dict) -> None:
        if not buckets:
            return
        columns = ["bucket", *sorted({k for v in buckets.values() for k in v} - {"hole_range"})]
        rows = [[name, *(entry.get(c) for c in columns[1:])] for name, entry in buckets.items()]
        for logger in trainer.loggers:
            if hasattr(logger, "log_table"):  # WandbLogger
                logger.log_table(key="test/buckets", columns=columns, data=rows)


def data_protocol(dm: L.LightningDataModule) -> dict:
    """The datamodule's plain settings and class, for the protocol of a JSON result."""
    plain = str | int | float | bool | list | tuple | None
    data = {k: v for k, v in dict(dm.hparams).items() if isinstance(v, plain)}
    data["class"] = type(dm).__name__
    return data


def _synced_count(metric: InceptionDiscriminativeScore, trainer: L.Trainer) -> int:
    local = sum(f.shape[0] for f in metric.real_features)
    count = torch.tensor(float(local))
    return int(trainer.strategy.reduce(count, reduce_op="sum")) if trainer.world_size > 1 else local


def _compute(metric: InceptionDiscriminativeScore) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        # Buckets are often smaller than the feature dimension; the JSON keeps their counts.
        warnings.filterwarnings("ignore", message=".*fewer.*samples.*")
        return metric.compute()


def build_lpips(instead: str = "set diversity: l1") -> nn.Module:
    """torchmetrics' LPIPS (AlexNet) per sample, offline: the AlexNet weights must be in the torch
    hub cache (`i2i-weights` puts them there); `instead` is the error's way to do without."""
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    path = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"LPIPS needs the AlexNet weights {path}. Run `i2i-weights` where there is network "
            f"(or download https://download.pytorch.org/models/{LPIPS_FILE} into {path.parent}), "
            f"or {instead}."
        )
    lpips = LearnedPerceptualImagePatchSimilarity(net_type="alex", reduction="mean")
    net = lpips.net

    class PerSample(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.net(a, b).flatten()

    return PerSample().eval().requires_grad_(False)
