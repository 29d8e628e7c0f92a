"""Protocols over pairs (an output and its real image): P-IDS / U-IDS / FID of the outputs against
the reals, and paired translation's diversity, FID against the training targets and semantic
consistency.

Translation (edges -> photo, labels -> photo): FID against the validation reals, or against ALL
the training targets as the paper did (statistics cached on disk, see `i2i.metrics.fid_stats`),
and diversity: the mean LPIPS (AlexNet) over `diversity_pairs` pairs of outputs per input, each
pair two fresh latents (200 inputs x 10 = the official 2,000 pairs). With a `segmenter`, semantic
consistency (`i2i.metrics.protocols.semantic`).
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import torch
from torchmetrics.aggregation import CatMetric

from i2i.data import batch as B
from i2i.metrics.features import quantize_images
from i2i.metrics.fid_stats import (
    FeatureStats,
    deterministic_view,
    frechet_distance_from_moments,
    reference_statistics,
)
from i2i.metrics.ids import InceptionDiscriminativeScore
from i2i.metrics.protocols.base import EvaluationProtocol, data_protocol
from i2i.metrics.protocols.semantic import SemanticConsistencyProtocol


class PairedProtocol(EvaluationProtocol):
    """P-IDS / U-IDS / FID of every output against its real image (`all`): the metric state syncs
    across processes with the pairs still aligned."""

    def start(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        """Fresh metrics: one P-IDS / U-IDS / FID metric, "all"."""
        super().start(trainer, task, stage)
        self.ids: dict[str, InceptionDiscriminativeScore] = {"all": self.networks.ids(self.device)}

    def update(self, batch: dict, outputs: dict) -> None:
        """Add the batch's pairs (real IMAGE, OUTPUT) to the "all" metric."""
        self.ids["all"].update(batch[B.IMAGE].float(), outputs[B.OUTPUT])

    def compute(self) -> dict[str, Any]:
        """The scores of "all": plain floats in validation, with the pair count at test."""
        if self.stage == "val":
            return {k: float(v) for k, v in self.ids["all"].compute().items()}
        return self.scores(self.ids["all"])

    def scores(self, metric: InceptionDiscriminativeScore) -> dict[str, Any]:
        """The pair count over every process and, from 2 pairs on, the metric's scores.

        Args:
            metric: a P-IDS / U-IDS / FID metric that has seen pairs.

        Returns:
            {"n": count, "p_ids", "u_ids", "fid"} (only "n" below 2 pairs).
        """
        count = synced_count(metric, self.trainer)
        with warnings.catch_warnings():
            # Buckets are often smaller than the feature dimension; the JSON keeps their counts.
            warnings.filterwarnings("ignore", message=".*fewer.*samples.*")
            scores = metric.compute() if count > 1 else {}
        return {"n": count, **{k: float(v) for k, v in scores.items()}}

    def describe(self, results: dict[str, Any]) -> dict[str, Any]:
        """The run, the number of pairs against the official one, the generator, latents, features
        and classifier, and the data.

        Args:
            results: what `compute` returned (its "n" is quoted).
        """
        task, dm = self.task, self.trainer.datamodule
        hp = task.hparams
        feature = (
            "inception-v3-compat pool3 (2048), weights-inception-2015-12-05-6726825d.pth, "
            "images quantised to uint8 as TF: floor(x * 127.5 + 128) clipped to [0, 255]"
            if self.networks.inception
            else f"custom module {type(self.networks.feature).__name__}"
        )
        n = results.get("n")
        official = self.options.official_num_pairs
        protocol = {
            **self.run_header(),
            "kimg": float(getattr(task, "kimg", 0.0)),
            "num_pairs": n,
            "official_num_pairs": official,
            "below_official_num_pairs": (
                bool(n is not None and n < official) if official is not None else None
            ),
            "generator": "G_ema"
            if hasattr(task, "generator_ema")
            else type(getattr(task, "sampling_network", task)).__name__,
            "truncation_psi": hp.get("truncation_psi_eval"),
            "latents": f"z fixed per image: seeded by (eval_seed={hp.get('eval_seed')}, index)",
            "features": feature,
            "classifier": "linear SVM, squared hinge, L2, C=1, intercept (LinearSVC(dual=False))",
            "world_size": self.trainer.world_size,
        }
        if dm is not None and hasattr(dm, "hparams"):
            protocol["data"] = data_protocol(dm)
        return protocol


class PairedTranslationProtocol(PairedProtocol):
    """Edges -> photo and labels -> photo: see the module docstring."""

    name = "translation"

    def start(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        """Fresh metrics; at test also diversity, semantic consistency and LPIPS where asked."""
        super().start(trainer, task, stage)
        self.reference: dict[str, Any] = {}
        if stage == "val":
            return
        self.diversity = CatMetric().to(self.device)
        self.semantic = SemanticConsistencyProtocol(self.options, self.networks)
        self.semantic.start(trainer, task, stage)
        if self.options.diversity == "lpips":
            self.lpips = self.networks.lpips(self.device, "set diversity: l1")

    def check_options(self) -> None:
        """Accept every option: `--real` is for the semantic consistency protocol to refuse."""
        pass  # --real: the semantic consistency protocol says whether it can

    def update(self, batch: dict, outputs: dict) -> None:
        """Add a batch: the pairs, and at test semantic consistency and diversity."""
        if self.stage == "val":
            return super().update(batch, outputs)
        real, fake = batch[B.IMAGE].float(), outputs[B.OUTPUT]
        self.ids["all"].update(real, fake)
        self.semantic.update(batch, outputs)
        if self.options.diversity != "none":
            self.update_diversity(batch, fake)

    def update_diversity(self, batch: dict, fake: torch.Tensor) -> None:
        """Add the diversity of `diversity_pairs` pairs of outputs per input.

        Pair p of an input: the outputs of latent variants 2p and 2p + 1 (z seeded by
        (eval_seed, index, variant)), clamped to [-1, 1] as the official metric.

        Args:
            batch: the batch dict.
            fake: the outputs for variant 0 (N, 3, H, W), reused as the first of pair 0.
        """
        for p in range(self.options.diversity_pairs):
            first = fake if p == 0 else self.task.sample(batch, variant=2 * p).float()
            second = self.task.sample(batch, variant=2 * p + 1).float()
            first, second = first.clamp(-1, 1), second.clamp(-1, 1)
            if self.options.diversity == "lpips":
                value = self.lpips(first, second).flatten()
            else:
                value = (first - second).abs().flatten(1).mean(1)
            self.diversity.update(value.float())

    def compute(self) -> dict[str, Any]:
        """The paired scores; at test also diversity (mean and std), FID against the training
        targets where asked, and semantic consistency.
        """
        results = super().compute()
        if self.stage == "val":
            return results
        kind = self.options.diversity
        if kind != "none":
            values = self.diversity.compute() if self.diversity.update_called else None
            if values is not None and values.numel():
                values = values.double().flatten()
                results[f"diversity_{kind}"] = float(values.mean())
                results[f"diversity_{kind}_std"] = float(values.std(unbiased=False))
                results["diversity_pairs"] = int(values.numel())
        if self.options.fid_reference == "train":
            results["fid_train_reference"] = self.fid_against_train()
        results.update(self.semantic.compute())
        return results

    def fid_against_train(self) -> float:
        """FID of the outputs of every process against the statistics of the training targets
        (the paper's edges FID: all of them by default), computed once and cached on disk."""
        trainer, options, metric = self.trainer, self.options, self.ids["all"]
        sum_fn = self.sum_fn()
        # The local features (compute() restores each rank's own state): add up every rank's.
        fake = FeatureStats.of(torch.cat(list(metric.fake_features))).reduce(sum_fn)
        dm = trainer.datamodule
        quantize = getattr(metric, "inception_protocol", False)
        mean, cov, count, info = reference_statistics(
            deterministic_view(dm.train_dataset),
            self.networks.extractor,
            preprocess=quantize_images if quantize else None,
            max_samples=options.fid_train_samples,
            cache_dir=options.fid_stats_dir,
            use_cache=options.cache_fid_stats,
            device=self.device,
            batch_size=32,
            num_workers=getattr(dm, "num_workers", 0),
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            sum_fn=sum_fn,
            broadcast_fn=lambda obj: trainer.strategy.broadcast(obj, src=0),
        )
        self.reference = {"num_reference": count, "num_fakes": fake.count, **info}
        return float(frechet_distance_from_moments(mean, cov, *fake.mean_cov()))

    def describe(self, results: dict[str, Any]) -> dict[str, Any]:
        """The paired description plus the FID reference, diversity and semantic consistency.

        Args:
            results: what `compute` returned.
        """
        protocol = super().describe(results)
        options = self.options
        protocol["fid_reference"] = options.fid_reference
        if options.fid_reference == "train":
            requested = "all" if options.fid_train_samples is None else options.fid_train_samples
            protocol["fid_reference_data"] = {
                "images": "the training targets as stored (no random crop, no flip)",
                "requested": requested,
                **self.reference,
            }
        protocol["diversity"] = (
            {
                "metric": "LPIPS (AlexNet)" if options.diversity == "lpips" else "mean abs (L1)",
                "pairs_per_input": options.diversity_pairs,
                "num_inputs": results.get("n"),
                "num_pairs": results.get("diversity_pairs"),
                "pairs": "pair p of input i: the outputs for latent variants 2p and 2p + 1, "
                "z seeded by (eval_seed, index, variant), clamped to [-1, 1]",
            }
            if options.diversity != "none"
            else None
        )
        protocol["semantic"] = self.semantic.describe(results)
        return protocol


def synced_count(metric: InceptionDiscriminativeScore, trainer: L.Trainer) -> int:
    """The pairs in `metric` over every process.

    Args:
        metric: a P-IDS / U-IDS / FID metric.
        trainer: the running trainer (its strategy sums across processes).

    Returns:
        The number of pairs.
    """
    local = sum(f.shape[0] for f in metric.real_features)
    count = torch.tensor(float(local))
    return int(trainer.strategy.reduce(count, reduce_op="sum")) if trainer.world_size > 1 else local
