"""When to run the task's evaluation protocol, and where its numbers go.

What is measured belongs to the task: its `evaluation_protocol` (`i2i.metrics.protocols`:
inpainting with hole-ratio buckets, paired translation with diversity and semantic consistency,
unpaired FID in each direction). This callback builds that protocol with the options of the
config's `metrics:` block and runs it:

- during `fit`, every `every_n_validations` validations, on the task's validation outputs (fixed
  masks and latents): the cheap scores, logged as `val/<name>` (`val/p_ids`, `val/fid`, ...);
- under `test`, the whole protocol, written to `<default_root_dir>/<output>` (JSON: results,
  buckets, and the protocol: seeds, sample counts, masks, features, truncation) and to the
  loggers (scalars as `test/<name>`, plus a W&B table of the buckets). A run that scores fewer
  pairs than `official_num_pairs` says so (warning + JSON flag).

The metric state syncs across processes (pairs stay aligned) and every rank takes part, so it is
safe under DDP. Under `test` each rank scores its share of the images (Lightning's
DistributedSampler, without the samples it repeats to even out the shares).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DistributedSampler

from i2i.data import batch as B
from i2i.io import atomic_write
from i2i.metrics.protocols import EvaluationOptions, EvaluationProtocol, ScoringNetworks
from i2i.metrics.protocols.inpainting import BUCKET_MODES
from i2i.metrics.semantic import class_set

log = logging.getLogger(__name__)


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
        if semantic_classes is not None:
            class_set(semantic_classes)  # an unknown name stops here, with the choices
        self.networks = ScoringNetworks(feature, weights_path, check_hash)
        self.every_n_validations, self.output = every_n_validations, output
        self.buckets, self.official_num_pairs = buckets, official_num_pairs
        self.perceptual_distance = perceptual_distance
        self.diversity, self.diversity_pairs = diversity, diversity_pairs
        self.fid_reference, self.fid_train_samples = fid_reference, fid_train_samples
        self.fid_stats_dir, self.cache_fid_stats = fid_stats_dir, cache_fid_stats
        self.segmenter, self.semantic_classes, self.real = segmenter, semantic_classes, real
        self._validations = 0
        self._protocol: EvaluationProtocol | None = None  # the evaluation under way, if any
        self._rank_samples = 0  # samples this rank's test loader has given so far
        self.results: dict[str, Any] | None = None

    def options(self) -> EvaluationOptions:
        """What to measure, as set now (`i2i test --real` sets `real` after construction)."""
        return EvaluationOptions(
            **{f.name: getattr(self, f.name) for f in fields(EvaluationOptions)}
        )

    def _start(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        self._protocol = task.evaluation_protocol(self.options(), self.networks)
        self._protocol.start(trainer, task, stage)

    def _log(self, task: L.LightningModule, stage: str, results: dict[str, Any]) -> None:
        scalars = {f"{stage}/{k}": v for k, v in results.items() if isinstance(v, float)}
        task.log_dict(scalars, sync_dist=False)  # already over every process

    # ---- validation during fit -------------------------------------------------------------

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._protocol = None
        if trainer.sanity_checking or self.every_n_validations <= 0:
            return
        self._validations += 1
        if self._validations % self.every_n_validations == 0:
            self._start(trainer, pl_module, "val")

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        if self._protocol is not None:
            self._protocol.update(batch, outputs)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._protocol is not None:
            self._log(pl_module, "val", self._protocol.compute())
            self._protocol = None

    # ---- the test protocol -----------------------------------------------------------------

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rank_samples = 0
        self._start(trainer, pl_module, "test")

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
        keep = self._unrepeated(trainer, batch[B.INDEX].shape[0])
        if keep == 0:
            return
        batch = {k: v[:keep] for k, v in batch.items()}
        outputs = {k: v[:keep] for k, v in outputs.items()}
        self._protocol.update(batch, outputs)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        protocol, self._protocol = self._protocol, None
        results = protocol.compute()
        self._log(pl_module, "test", results)
        self.results = {
            "results": results,
            "buckets": protocol.buckets,
            "protocol": protocol.describe(results),
        }
        if self.results["protocol"].get("below_official_num_pairs") and trainer.is_global_zero:
            message = (
                f"i2i test scored {results.get('n')} pairs, fewer than the official protocol's "
                f"{self.official_num_pairs} for this dataset: P-IDS / U-IDS / FID are biased "
                "and not comparable with published numbers (score the whole evaluation set: "
                "data max_val_images: null, no limit_test_batches)"
            )
            warnings.warn(message, UserWarning, stacklevel=2)
            log.warning(message)
        if trainer.is_global_zero:
            self._write(Path(trainer.default_root_dir) / self.output, self.results)
            self._log_table(trainer, protocol.buckets)

    @staticmethod
    def _write(path: Path, results: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(results, indent=2)
        atomic_write(path, lambda tmp: tmp.write_text(text))
        print(f"\ni2i: evaluation written to {path}", flush=True)

    @staticmethod
    def _log_table(trainer: L.Trainer, buckets: dict) -> None:
        if not buckets:
            return
        columns = ["bucket", *sorted({k for v in buckets.values() for k in v} - {"hole_range"})]
        rows = [[name, *(entry.get(c) for c in columns[1:])] for name, entry in buckets.items()]
        for logger in trainer.loggers:
            if hasattr(logger, "log_table"):  # WandbLogger
                logger.log_table(key="test/buckets", columns=columns, data=rows)
