"""The unpaired protocol (CycleGAN): FID in each direction, `fid_ab` (G_AB's outputs for the A
images against the real B images) and `fid_ba` (G_BA's for the B images against the real A
images), each image of the evaluation set counted once (the datamodule's `val_sizes` names the
repeats of the shorter domain). The same scores in validation (`val/fid_ab`, `val/fid_ba`).
"""

from __future__ import annotations

from typing import Any

import lightning as L

from i2i.data import batch as B
from i2i.metrics.fid_stats import FeatureStats, frechet_distance_from_moments
from i2i.metrics.protocols.base import EvaluationProtocol, data_protocol


class UnpairedProtocol(EvaluationProtocol):
    """See the module docstring. The features of the four sets (real_a, fake_b, real_b, fake_a)
    are running sums, added up over the processes when computed."""

    name = "unpaired"

    def start(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        """Fresh running sums; the scorer's feature network makes the features."""
        super().start(trainer, task, stage)
        # Its feature network and preprocessing (uint8 for Inception) make the features.
        self.scorer = self.networks.ids(self.device)
        self.stats: dict[str, FeatureStats] = {}

    def update(self, batch: dict, outputs: dict) -> None:
        """Features of the real A and B images and of both translations; the repeats of the
        shorter domain (index >= its size) are left out of its two sets."""
        sizes = getattr(self.trainer.datamodule, "val_sizes", None)
        index = batch[B.INDEX].cpu()
        in_a, in_b = (index < sizes[0], index < sizes[1]) if sizes else (index >= 0,) * 2
        sets = {
            "real_a": batch[B.IMAGE_A][in_a.to(batch[B.IMAGE_A].device)],
            "fake_b": outputs[B.OUTPUT][in_a.to(outputs[B.OUTPUT].device)],
            "real_b": batch[B.IMAGE_B][in_b.to(batch[B.IMAGE_B].device)],
            "fake_a": outputs[B.OUTPUT_A][in_b.to(outputs[B.OUTPUT_A].device)],
        }
        for name, images in sets.items():
            if images.shape[0] == 0:
                continue
            features = self.scorer.features(images.float())
            if name not in self.stats:
                self.stats[name] = FeatureStats(features.shape[1])
            self.stats[name].update(features)

    def compute(self) -> dict[str, Any]:
        """FID A -> B and B -> A over every process's images, and the image counts."""
        sum_fn = self.sum_fn()
        stats = {k: v.reduce(sum_fn) for k, v in sorted(self.stats.items())}
        out: dict[str, Any] = {f"n_{k}": s.count for k, s in stats.items()}
        for name, real, fake in (("fid_ab", "real_b", "fake_b"), ("fid_ba", "real_a", "fake_a")):
            if real in stats and fake in stats and min(stats[real].count, stats[fake].count) > 1:
                moments = (*stats[real].mean_cov(), *stats[fake].mean_cov())
                out[name] = float(frechet_distance_from_moments(*moments))
        return out

    def describe(self, results: dict[str, Any]) -> dict[str, Any]:
        """The run, what fid_ab and fid_ba compare, the features and the data.

        Args:
            results: what `compute` returned (unused).
        """
        feature = (
            "inception-v3-compat pool3 (2048), images quantised to uint8 as TF"
            if self.networks.inception
            else f"custom module {type(self.networks.feature).__name__}"
        )
        protocol: dict[str, Any] = {
            **self.run_header(),
            "evaluation": self.name,
            "fid_ab": "G_AB(A) of every evaluation A image against every evaluation B image",
            "fid_ba": "G_BA(B) of every evaluation B image against every evaluation A image",
            "features": feature,
            "world_size": self.trainer.world_size,
        }
        dm = self.trainer.datamodule
        if dm is not None and hasattr(dm, "hparams"):
            protocol["data"] = data_protocol(dm)
        return protocol
