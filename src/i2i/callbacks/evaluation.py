"""P-IDS / U-IDS / FID during training, and the paper's evaluation protocol under `i2i test`.

During `fit`, every `every_n_validations` validations, G_ema's outputs on the validation set
(fixed masks and latents, produced by the task's validation step) are scored against the reals:
`val/p_ids`, `val/u_ids`, `val/fid`. The metric state syncs across processes (pairs stay aligned)
and every rank takes part, so it is safe under DDP.

Under `test`, the whole protocol runs and is written to `<default_root_dir>/<output>` (JSON) and
to the loggers (scalars, plus a W&B table of the mask-size buckets):
- inpainting: FID, P-IDS, U-IDS overall and per hole-ratio bucket [0,.2) [.2,.4) [.4,.6) [.6,.8)
  [.8,1], with PSNR, SSIM and L1 in the hole as secondary numbers;
- translation: FID (against the validation reals, or the training targets as the paper did) and
  diversity: the mean LPIPS (AlexNet) between the outputs of two latents for the same input.
The JSON records the protocol: seeds, sample counts, masks, features, truncation.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.functional.image import structural_similarity_index_measure

from i2i.data import batch as B
from i2i.losses import masked_l1
from i2i.metrics import InceptionDiscriminativeScore
from i2i.tasks.base import psnr
from i2i.tasks.inpainting import InpaintingTask

log = logging.getLogger(__name__)

BUCKETS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))
LPIPS_FILE = "alexnet-owt-7be5be79.pth"


def bucket_name(low: float, high: float) -> str:
    return f"[{low:.1f},{high:.1f}{']' if high >= 1.0 else ')'}"


def bucket_index(hole_ratio: torch.Tensor) -> torch.Tensor:
    """The bucket of each hole ratio; 1.0 falls in the last bucket."""
    edges = torch.tensor([b[1] for b in BUCKETS[:-1]], device=hole_ratio.device)
    return torch.bucketize(hole_ratio, edges, right=True)


class GANMetrics(Callback):
    """See the module docstring. The feature network is built when first needed, so a run that
    never evaluates needs no Inception weights."""

    def __init__(
        self,
        feature: int | nn.Module = 2048,  # Inception pool3 (the paper's), or any (N, D) module
        weights_path: str | None = None,  # the Inception weights file; default: torch hub cache
        check_hash: bool = True,
        every_n_validations: int = 0,  # 0: only under `test`; k: every k-th validation in fit
        buckets: bool = True,  # inpainting: per hole-ratio bucket numbers under `test`
        diversity: str = "lpips",  # translation: "lpips" (AlexNet), "l1", or "none"
        fid_reference: str = "val",  # translation: "val" reals, or "train" targets (the paper)
        fid_train_samples: int = 10_000,  # training targets for fid_reference="train"
        output: str = "test_results.json",  # written in the run folder (default_root_dir)
    ):
        if diversity not in ("lpips", "l1", "none"):
            raise ValueError(f"diversity must be 'lpips', 'l1' or 'none', got {diversity!r}")
        if fid_reference not in ("val", "train"):
            raise ValueError(f"fid_reference must be 'val' or 'train', got {fid_reference!r}")
        self.feature, self.weights_path, self.check_hash = feature, weights_path, check_hash
        self.every_n_validations, self.buckets = every_n_validations, buckets
        self.diversity, self.fid_reference = diversity, fid_reference
        self.fid_train_samples, self.output = fid_train_samples, output
        self._validations = 0
        self._active = False
        self._ids: dict[str, InceptionDiscriminativeScore] = {}
        self._means: dict[str, MeanMetric] = {}
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
        if test and self.buckets and self._is_inpainting(pl_module):
            for low, high in BUCKETS:
                self._ids[bucket_name(low, high)] = self._new_ids(device, compute_fid=True)

    @staticmethod
    def _is_inpainting(pl_module: L.LightningModule) -> bool:
        return isinstance(pl_module, InpaintingTask)

    # ---- validation during fit -------------------------------------------------------------

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._active = False
        if trainer.sanity_checking or self.every_n_validations <= 0:
            return
        self._validations += 1
        if self._validations % self.every_n_validations == 0:
            self._active = True
            self._reset(pl_module, test=False)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        if self._active:
            self._ids["all"].update(batch[B.IMAGE].float(), outputs["fake"])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active:
            return
        scores = self._ids["all"].compute()
        pl_module.log_dict({f"val/{k}": v.float() for k, v in scores.items()}, sync_dist=False)
        self._active = False

    # ---- the test protocol -----------------------------------------------------------------

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset(pl_module, test=True)
        if not self._is_inpainting(pl_module) and self.diversity == "lpips" and self._lpips is None:
            self._lpips = build_lpips().to(pl_module.device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        real, fake = batch[B.IMAGE].float(), outputs["fake"]
        device = pl_module.device
        self._ids["all"].update(real, fake)
        if self._is_inpainting(pl_module):
            mask = batch[B.MASK].float()
            hole = 1 - mask.flatten(1).mean(1)
            self._mean("hole_ratio", device).update(hole)
            self._mean("l1_hole", device).update(masked_l1(fake, real, mask))
            self._mean("psnr_hole", device).update(psnr(fake, real, 1 - mask))
            self._mean("ssim_hole", device).update(ssim_in_region(fake, real, 1 - mask))
            if self.buckets:
                for k, index in enumerate(bucket_index(hole).tolist()):
                    name = bucket_name(*BUCKETS[index])
                    self._ids[name].update(real[k : k + 1], fake[k : k + 1])
                    self._mean(f"{name}/l1_hole", device).update(
                        masked_l1(fake[k : k + 1], real[k : k + 1], mask[k : k + 1])
                    )
        elif self.diversity != "none":
            other = pl_module.sample(batch, variant=1).float()
            if self.diversity == "lpips":
                value = self._lpips(fake.clamp(-1, 1), other.clamp(-1, 1)).flatten()
            else:
                value = (fake - other).abs().flatten(1).mean(1)
            self._mean(f"diversity_{self.diversity}", device).update(value)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        results: dict[str, Any] = {}
        buckets: dict[str, dict[str, float | int | None]] = {}
        for name, metric in self._ids.items():
            count = _synced_count(metric, trainer)
            scores = _compute(metric) if count > 1 else {}
            entry = {"n": count, **{k: float(v) for k, v in scores.items()}}
            if name == "all":
                results.update(entry)
            else:
                buckets[name] = entry
        for name, mean in self._means.items():
            value = float(mean.compute()) if mean.update_called else None
            if "/" in name:
                bucket, key = name.split("/", 1)
                buckets.setdefault(bucket, {})[key] = value
            else:
                results[name] = value
        if not self._is_inpainting(pl_module) and self.fid_reference == "train":
            results["fid_train_reference"] = self._fid_against_train(trainer, pl_module)
        pl_module.log_dict(
            {f"test/{k}": float(v) for k, v in results.items() if isinstance(v, float)},
            sync_dist=False,
        )
        self.results = {
            "results": results,
            "buckets": buckets,
            "protocol": self._protocol(trainer, pl_module, results),
        }
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / self.output
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.results, indent=2))
            print(f"\ni2i: evaluation written to {path}", flush=True)
            self._log_table(trainer, buckets)

    def _fid_against_train(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float:
        """FID of the outputs against the training targets' features (the paper's edges FID)."""
        from i2i.metrics.features import quantize_images
        from i2i.metrics.ids import frechet_distance

        dataset = trainer.datamodule.train_dataset
        metric = self._ids["all"]
        n = min(self.fid_train_samples, len(dataset))
        feats = []
        for start in range(0, n, 32):
            images = torch.stack([dataset[i][B.IMAGE] for i in range(start, min(n, start + 32))])
            images = images.to(pl_module.device)
            if getattr(metric, "inception_protocol", False):
                images = quantize_images(images)
            with torch.no_grad():
                feats.append(self._extractor(images).float().cpu())
        fake = torch.cat([f.cpu() for f in metric.fake_features])
        return float(frechet_distance(torch.cat(feats), fake))

    def _protocol(self, trainer: L.Trainer, pl_module: L.LightningModule, results) -> dict:
        hp = pl_module.hparams
        dm = trainer.datamodule
        feature = (
            "inception-v3-compat pool3 (2048), weights-inception-2015-12-05-6726825d.pth, "
            "images quantised to uint8"
            if isinstance(self.feature, int)
            else f"custom module {type(self.feature).__name__}"
        )
        protocol = {
            "task": type(pl_module).__name__,
            "checkpoint": getattr(trainer, "ckpt_path", None),
            "iteration": int(getattr(pl_module, "iteration", 0)),
            "kimg": float(getattr(pl_module, "kimg", 0.0)),
            "num_pairs": results.get("n"),
            "generator": "G_ema",
            "truncation_psi": hp.get("truncation_psi_eval"),
            "latents": f"z fixed per image: seeded by (eval_seed={hp.get('eval_seed')}, index)",
            "features": feature,
            "classifier": "linear SVM, squared hinge, L2, C=1, intercept (LinearSVC(dual=False))",
            "world_size": trainer.world_size,
        }
        if dm is not None and hasattr(dm, "hparams"):
            protocol["data"] = {
                k: v
                for k, v in dict(dm.hparams).items()
                if isinstance(v, str | int | float | bool | list | tuple | None)
            }
            protocol["data"]["class"] = type(dm).__name__
        if self._is_inpainting(pl_module):
            protocol["masks"] = (
                "fixed per validation image: RandomMask seeded by "
                f"(seed * 1000003 + index), seed={getattr(dm, 'seed', None)}"
            )
            protocol["buckets"] = [bucket_name(*b) for b in BUCKETS] if self.buckets else []
        else:
            protocol["fid_reference"] = self.fid_reference
            protocol["diversity"] = (
                f"mean {self.diversity.upper()} between two latents per input"
                if self.diversity != "none"
                else None
            )
        return protocol

    @staticmethod
    def _log_table(trainer: L.Trainer, buckets: dict) -> None:
        if not buckets:
            return
        columns = ["bucket", *sorted({k for v in buckets.values() for k in v})]
        rows = [[name, *(entry.get(c) for c in columns[1:])] for name, entry in buckets.items()]
        for logger in trainer.loggers:
            if hasattr(logger, "log_table"):  # WandbLogger
                logger.log_table(key="test/buckets", columns=columns, data=rows)


def _synced_count(metric: InceptionDiscriminativeScore, trainer: L.Trainer) -> int:
    local = sum(f.shape[0] for f in metric.real_features)
    count = torch.tensor(float(local))
    return int(trainer.strategy.reduce(count, reduce_op="sum")) if trainer.world_size > 1 else local


def _compute(metric: InceptionDiscriminativeScore) -> dict[str, torch.Tensor]:
    import warnings

    with warnings.catch_warnings():
        # Buckets are often smaller than the feature dimension; the JSON keeps their counts.
        warnings.filterwarnings("ignore", message=".*fewer.*samples.*")
        return metric.compute()


def ssim_in_region(fake: torch.Tensor, real: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """SSIM per sample averaged over a region (the hole): the SSIM map, then a masked mean."""
    _, ssim_map = structural_similarity_index_measure(
        fake.clamp(-1, 1),
        real.clamp(-1, 1),
        data_range=2.0,
        return_full_image=True,
        reduction="none",
    )
    ssim_map = ssim_map.mean(dim=1, keepdim=True)
    weight = region.expand_as(ssim_map)
    return (ssim_map * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1)


def build_lpips() -> nn.Module:
    """torchmetrics' LPIPS (AlexNet) per sample, offline: the AlexNet weights must be in the torch
    hub cache (`i2i-weights` puts them there)."""
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    path = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"LPIPS needs the AlexNet weights {path}. Run `i2i-weights` where there is network "
            f"(or download https://download.pytorch.org/models/{LPIPS_FILE} into {path.parent}), "
            "or set diversity: l1."
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
