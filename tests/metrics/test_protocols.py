"""The evaluation protocols on their own, without training: each task's protocol, the inpainting
buckets and hole scores, paired translation's diversity, unpaired FID with the shorter domain's
repeats left out, each against a naive computation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from i2i.callbacks.evaluation import GANMetrics
from i2i.data import batch as B
from i2i.losses import masked_l1
from i2i.metrics import InceptionDiscriminativeScore, frechet_distance
from i2i.metrics.protocols import (
    InpaintingProtocol,
    PairedTranslationProtocol,
    UnpairedProtocol,
)
from i2i.metrics.protocols.inpainting import BUCKETS, bucket_name
from tests.helpers import TinyFeatures

CPU = torch.device("cpu")


def build(protocol: type, datamodule=None, task=None, stage: str = "test", **options):
    """`protocol` with the callback's options (its defaults, then `options`), started on a
    one-process stand-in trainer."""
    callback = GANMetrics(feature=TinyFeatures(num_features=4), **options)
    out = protocol(callback.options(), callback.networks)
    trainer = SimpleNamespace(world_size=1, datamodule=datamodule, ckpt_path=None)
    task = task or SimpleNamespace(device=CPU, hparams={}, iteration=0)
    out.start(trainer, task, stage)
    return out


def test_each_problem_names_its_protocol():
    from i2i import tasks
    from i2i.tasks.dip import DeepImagePriorTask

    inpainting = (
        tasks.InpaintingTask,
        tasks.GLCICTask,
        tasks.VAEInpaintingTask,
        tasks.ClassicalInpaintingTask,
        DeepImagePriorTask,
    )
    translation = (
        tasks.EdgesToPhotoTask,
        tasks.LabelsToPhotoTask,
        tasks.Pix2PixTask,
        tasks.Pix2PixLabelsTask,
        tasks.NearestNeighbourEdgesTask,
        tasks.NearestNeighbourLabelsTask,
    )
    for task in inpainting:
        assert task.evaluation_protocol is InpaintingProtocol, task
    for task in translation:
        assert task.evaluation_protocol is PairedTranslationProtocol, task
    assert tasks.CycleGANTask.evaluation_protocol is UnpairedProtocol
    names = [p.name for p in (InpaintingProtocol, PairedTranslationProtocol, UnpairedProtocol)]
    assert names == ["inpainting", "translation", "unpaired"]


def masks_with_holes(widths: list[int], size: int = 16) -> torch.Tensor:
    """(N, 1, size, size) masks, 1 = known, with the first `width` columns a hole."""
    mask = torch.ones(len(widths), 1, size, size)
    for i, width in enumerate(widths):
        mask[i, :, :, :width] = 0
    return mask


def test_binned_buckets_split_the_pairs_by_hole_ratio():
    g = torch.Generator().manual_seed(0)
    widths = [1, 5, 6, 6, 15, 16, 2, 8]  # hole ratios 1/16 .. 16/16: buckets 0 1 1 1 4 4 0 2
    real = torch.rand(8, 3, 16, 16, generator=g) * 2 - 1
    fake = torch.rand(8, 3, 16, 16, generator=g) * 2 - 1
    mask = masks_with_holes(widths)
    protocol = build(InpaintingProtocol, buckets="binned")
    for part in (slice(0, 5), slice(5, 8)):
        batch = {B.IMAGE: real[part], B.MASK: mask[part], B.INDEX: torch.arange(8)[part]}
        protocol.update(batch, {B.OUTPUT: fake[part]})
    results = protocol.compute()
    expected = InceptionDiscriminativeScore(TinyFeatures(num_features=4), compute_fid=True)
    expected.update(real, fake)
    assert results["n"] == 8
    for key, value in expected.compute().items():
        assert results[key] == pytest.approx(float(value), rel=1e-6), key
    assert results["hole_ratio"] == pytest.approx(sum(widths) / 16 / 8)
    l1 = masked_l1(fake, real, mask)
    assert results["l1_hole"] == pytest.approx(float(l1.mean()), rel=1e-6)
    members = {0: [0, 6], 1: [1, 2, 3], 2: [7], 3: [], 4: [4, 5]}
    assert list(protocol.buckets) == [bucket_name(*b) for b in BUCKETS]
    for k, entry in enumerate(protocol.buckets.values()):
        assert entry["n"] == len(members[k]) and entry["hole_range"] == list(BUCKETS[k])
        if members[k]:
            assert entry["l1_hole"] == pytest.approx(float(l1[members[k]].mean()), rel=1e-6)
        else:  # an empty bin: its count only
            assert "l1_hole" not in entry
        assert ("p_ids" in entry) == (len(members[k]) > 1)  # scores from 2 pairs on
    described = protocol.describe(results)
    assert described["buckets"]["mode"] == "binned" and described["num_pairs"] == 8
    assert described["features"] == "custom module TinyFeatures"


def test_validation_scores_are_the_pairs_scores_only():
    g = torch.Generator().manual_seed(1)
    real = torch.rand(6, 3, 16, 16, generator=g) * 2 - 1
    fake = torch.rand(6, 3, 16, 16, generator=g) * 2 - 1
    protocol = build(InpaintingProtocol, stage="val")
    protocol.update({B.IMAGE: real, B.MASK: masks_with_holes([4] * 6)}, {B.OUTPUT: fake})
    results = protocol.compute()
    assert set(results) == {"p_ids", "u_ids", "fid"} and protocol.buckets == {}
    assert all(isinstance(v, float) for v in results.values())
    with pytest.raises(ValueError, match="stage must be one of"):
        build(InpaintingProtocol, stage="train")


class VariantOutputs:
    """A stand-in task whose output for variant v of input i is a constant image: (i + v) / 10."""

    device = CPU
    hparams: dict = {}
    iteration = 0

    def sample(self, batch: dict, variant: int = 0) -> torch.Tensor:
        value = (batch[B.INDEX].float() + variant) / 10
        return value[:, None, None, None].expand(-1, 3, 8, 8).clone()


def test_translation_diversity_pairs_the_latent_variants():
    task = VariantOutputs()
    protocol = build(PairedTranslationProtocol, task=task, diversity="l1", diversity_pairs=3)
    index = torch.tensor([0, 4, 9])
    batch = {B.IMAGE: torch.zeros(3, 3, 8, 8), B.INDEX: index}
    protocol.update(batch, {B.OUTPUT: task.sample(batch)})
    results = protocol.compute()
    # Pair p: variants 2p and 2p + 1, one apart, clamped to [-1, 1]: input 9's (0.9 + 2p) are.
    first = ((index[:, None] + 2 * torch.arange(3)) / 10).clamp(-1, 1)
    second = ((index[:, None] + 2 * torch.arange(3) + 1) / 10).clamp(-1, 1)
    values = (second - first).abs().double()
    assert results["diversity_pairs"] == 9
    assert results["diversity_l1"] == pytest.approx(float(values.mean()), rel=1e-6)
    assert results["diversity_l1_std"] == pytest.approx(float(values.std(unbiased=False)))
    described = protocol.describe(results)
    assert described["diversity"]["num_pairs"] == 9 and described["semantic"] is None


def test_unpaired_fid_counts_each_image_once():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(5, 3, 8, 8, generator=g) * 2 - 1, torch.rand(5, 3, 8, 8, generator=g) * 2 - 1
    fake_b, fake_a = -a, b.flip(-1)
    dm = SimpleNamespace(val_sizes=(3, 5))  # samples 3 and 4 repeat A images 0 and 1
    protocol = build(UnpairedProtocol, datamodule=dm)
    for part in (slice(0, 2), slice(2, 5)):
        batch = {B.IMAGE_A: a[part], B.IMAGE_B: b[part], B.INDEX: torch.arange(5)[part]}
        protocol.update(batch, {B.OUTPUT: fake_b[part], B.OUTPUT_A: fake_a[part]})
    results = protocol.compute()
    counts = [results[f"n_{k}"] for k in ("real_a", "fake_b", "real_b", "fake_a")]
    assert counts == [3, 3, 5, 5]
    features = TinyFeatures(num_features=4)
    fid_ab = frechet_distance(features(b), features(fake_b[:3]))
    fid_ba = frechet_distance(features(a[:3]), features(fake_a))
    assert results["fid_ab"] == pytest.approx(float(fid_ab), rel=1e-5)
    assert results["fid_ba"] == pytest.approx(float(fid_ba), rel=1e-5)
    described = protocol.describe(results)
    assert described["evaluation"] == "unpaired" and described["world_size"] == 1
