"""SemanticConsistency: the confusion matrix against a naive count, mIoU / pixel accuracy against
a naive computation and a numpy one, the ignore label, class sets, resizing of logits, errors, the
semantic consistency protocol, and 2-process DDP against 1 process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from i2i.metrics.semantic import (
    IGNORE,
    SemanticConsistency,
    class_set,
    scores_from_confusion,
)
from tests import clirun
from tests.helpers import fork_gloo_ranks

C = 5
N, H, W = 6, 12, 10


def random_maps(seed: int = 0, ignore_share: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, C, (N, H, W), generator=g)
    target[torch.rand(N, H, W, generator=g) < ignore_share] = IGNORE
    # Predictions right 60% of the time, so IoUs are neither 0 nor 1.
    pred = torch.where(
        torch.rand(N, H, W, generator=g) < 0.6,
        target.clamp(max=C - 1),
        torch.randint(0, C, (N, H, W), generator=g),
    )
    return pred, target


def naive_confusion(pred, target, num_classes):
    out = [[0] * num_classes for _ in range(num_classes)]
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist(), strict=True):
        if t != IGNORE:
            out[t][p] += 1
    return out


def naive_scores(conf):
    ious, present = [], 0
    for c in range(len(conf)):
        tp = conf[c][c]
        union = sum(conf[c]) + sum(row[c] for row in conf) - tp
        if union:
            ious.append(tp / union)
    correct = sum(conf[c][c] for c in range(len(conf)))
    total = sum(map(sum, conf))
    present = len(ious)
    return sum(ious) / present, correct / total


def test_confusion_matrix_against_a_naive_count():
    pred, target = random_maps()
    metric = SemanticConsistency(C)
    metric.update(pred, target)
    conf = metric.confmat
    assert conf.tolist() == naive_confusion(pred, target, C)
    assert int(conf.sum()) == int((target != IGNORE).sum())


def numpy_scores(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict:
    """mIoU over the classes in the labels or the predictions, pixel accuracy, mean accuracy over
    the classes in the labels, per-class IoU (NaN where absent), ignored pixels left out."""
    keep = target != IGNORE
    p, t = pred[keep], target[keep]
    iou, accuracy = [], []
    for c in range(num_classes):
        tp = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        iou.append(tp / union if union else np.nan)
        truth = np.sum(t == c)
        accuracy.append(tp / truth if truth else np.nan)
    return {
        "miou": np.nanmean(iou),
        "pixel_accuracy": np.mean(p == t),
        "mean_accuracy": np.nanmean(accuracy),
        "per_class_iou": np.array(iou),
    }


def test_scores_against_numpy_with_the_ignore_label_and_absent_classes():
    g = torch.Generator().manual_seed(5)
    classes = 9  # 7 and 8 never occur in the labels; 8 is never predicted either
    target = torch.randint(0, 6, (N, H, W), generator=g)
    target[torch.rand(N, H, W, generator=g) < 0.3] = IGNORE
    pred = torch.randint(0, 8, (N, H, W), generator=g)
    right = torch.rand(N, H, W, generator=g) < 0.5
    pred[right & (target != IGNORE)] = target[right & (target != IGNORE)]
    metric = SemanticConsistency(classes)
    for i in range(0, N, 4):
        metric.update(pred[i : i + 4], target[i : i + 4])
    scores = metric.compute()
    expected = numpy_scores(pred.numpy(), target.numpy(), classes)
    for key in ("miou", "pixel_accuracy", "mean_accuracy"):
        assert float(scores[key]) == pytest.approx(float(expected[key]), rel=1e-12), key
    np.testing.assert_allclose(scores["per_class_iou"].numpy(), expected["per_class_iou"])
    assert math.isnan(float(scores["per_class_iou"][8]))  # neither labelled nor predicted
    assert float(scores["per_class_iou"][7]) == 0.0  # predicted only: counts, with IoU 0


def test_scores_against_a_naive_computation():
    pred, target = random_maps(1)
    metric = SemanticConsistency(C)
    for i in range(0, N, 4):  # two updates, the last one short
        metric.update(pred[i : i + 4], target[i : i + 4])
    scores = metric.compute()
    miou, accuracy = naive_scores(naive_confusion(pred, target, C))
    assert float(scores["miou"]) == pytest.approx(miou, rel=1e-12)
    assert float(scores["pixel_accuracy"]) == pytest.approx(accuracy, rel=1e-12)
    assert scores["per_class_iou"].shape == (C,)
    assert 0 < miou < 1


def test_classes_absent_from_labels_and_predictions_do_not_count():
    conf = torch.zeros(4, 4, dtype=torch.long)
    conf[0, 0], conf[1, 1], conf[1, 0] = 6, 2, 2  # class 0 IoU 6/8, class 1 2/4; 2 and 3 absent
    scores = scores_from_confusion(conf)
    assert float(scores["miou"]) == pytest.approx((6 / 8 + 2 / 4) / 2)
    assert float(scores["pixel_accuracy"]) == pytest.approx(8 / 10)
    assert float(scores["mean_accuracy"]) == pytest.approx((6 / 6 + 2 / 4) / 2)
    assert math.isnan(float(scores["per_class_iou"][2]))


def test_ignored_pixels_never_count():
    pred, target = random_maps(2, ignore_share=0.5)
    a = SemanticConsistency(C)
    a.update(pred, target)
    other = pred.clone()
    ignored = target == IGNORE
    other[ignored] = (pred[ignored] + 1) % C  # change every prediction under the ignore label
    b = SemanticConsistency(C)
    b.update(other, target)
    assert torch.equal(a.confmat, b.confmat)
    assert int(a.confmat.sum()) == int((~ignored).sum())


class LabelPainter(nn.Module):
    """A "perfect" segmenter for images that encode a label map in their first channel
    (class c as -1 + 2c / (C - 1)): one-hot logits at half resolution."""

    def forward(self, images):
        classes = ((images[:, 0] + 1) * (C - 1) / 2).round().long()
        return F.one_hot(classes, C).permute(0, 3, 1, 2).float()[:, :, ::2, ::2] * 10


def test_a_segmenter_that_recovers_the_labels_scores_one():
    g = torch.Generator().manual_seed(3)
    coarse = torch.randint(0, C, (2, 8, 8), generator=g)
    label = coarse.repeat_interleave(2, 1).repeat_interleave(2, 2)  # 2x2 blocks: halving keeps them
    image = (label.float() * 2 / (C - 1) - 1)[:, None].expand(2, 3, 16, 16)
    metric = SemanticConsistency(C, LabelPainter())
    metric.update(image, label)
    scores = metric.compute()
    assert float(scores["miou"]) == 1.0 and float(scores["pixel_accuracy"]) == 1.0
    # Logits at half resolution were resized (bilinear) to the labels' 16x16 before the argmax.
    assert int(metric.confmat.sum()) == 2 * 16 * 16


def test_class_sets_map_dataset_ids_onto_the_segmenters_classes():
    city = class_set("cityscapes")
    assert city.num_classes == 19 and len(city.mapping) == 35
    assert (
        city.class_names[:3] == ("road", "sidewalk", "building")
        and city.class_names[-1] == "bicycle"
    )
    assert city.mapping[7] == 0 and city.mapping[26] == 13 and city.mapping[0] == IGNORE
    assert sum(v != IGNORE for v in city.mapping) == 19
    coco = class_set("coco_stuff")
    assert coco.num_classes == 182 and coco.mapping[182] == IGNORE and coco.mapping[181] == 181
    ade = class_set("ade20k")
    assert ade.num_classes == 150 and ade.mapping[0] == IGNORE and ade.mapping[1] == 0
    assert ade.class_names[0] == "wall"

    metric = SemanticConsistency.for_class_set("cityscapes")
    label = torch.tensor([[[7, 8, 0, 33]]])  # road, sidewalk, unlabeled (ignored), bicycle
    pred = torch.tensor([[[0, 0, 5, 18]]])
    metric.update(pred, label)
    assert metric.confmat[0, 0] == 1 and metric.confmat[1, 0] == 1 and metric.confmat[18, 18] == 1
    assert int(metric.confmat.sum()) == 3
    with pytest.raises(ValueError, match="unknown class set 'cityscape'"):
        class_set("cityscape")


def test_bad_labels_and_logits_are_named():
    metric = SemanticConsistency(C)
    with pytest.raises(ValueError, match=r"label value\(s\) \[7\] outside the segmenter's 0..4"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 7], [1, 2]]]))
    with pytest.raises(ValueError, match=r"expected logits \(N, 5, h, w\), got \(1, 3, 2, 2\)"):
        metric.update(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    city = SemanticConsistency.for_class_set("cityscapes")
    with pytest.raises(ValueError, match=r"label value\(s\) \[40\] outside the class map's 0..34"):
        city.update(torch.zeros(1, 1, 1, dtype=torch.long), torch.tensor([[[40]]]))
    with pytest.raises(ValueError, match="outside the segmenter's 0..4"):
        SemanticConsistency(C, class_map=[0, 1, 9])


# ---- `i2i test` on a labels -> photo config ---------------------------------------------------


class NearestColour(nn.Module):
    """A stand-in segmenter for the demo shapes (no weights to download): logits are minus the
    squared distance of each pixel to each class's palette colour."""

    def __init__(self):
        super().__init__()
        from i2i.data.synthetic import PALETTE

        self.num_classes = len(PALETTE)
        palette = torch.tensor(PALETTE, dtype=torch.float32) / 127.5 - 1
        self.register_buffer("palette", palette[None, :, :, None, None])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return -((images[:, None] - self.palette) ** 2).sum(2)


@pytest.mark.parametrize("mode", clirun.MODES)
def test_i2i_test_reports_fid_miou_and_the_real_ceiling(tmp_path, mode):
    from i2i.data.synthetic import ShapesDataset

    root = tmp_path / "run"
    tiny = {"channel_base": 256, "channel_max": 32, "img_resolution": 32}
    code, text = clirun.run_i2i(
        mode,
        "test",
        "--config=configs/demo_labels.yaml",
        f"--trainer.default_root_dir={root}",
        "--trainer.logger=false",
        "--trainer.limit_test_batches=2",
        *(
            f"--model.init_args.{net}.init_args.{k}={v}"
            for net in ("generator", "discriminator")
            for k, v in tiny.items()
        ),
        "--data.init_args.resolution=32",
        "--data.init_args.val_length=16",
        "--data.init_args.num_workers=0",
        "--metrics.feature=tests.helpers.TinyFeatures",
        "--metrics.feature.num_features=8",
        "--metrics.diversity=l1",
        "--metrics.diversity_pairs=1",
        "--metrics.segmenter=tests.metrics.test_semantic.NearestColour",
        "--real",
    )
    assert code == 0, text[-4000:]
    report = json.loads((root / "test_results.json").read_text())
    results, semantic = report["results"], report["protocol"]["semantic"]
    assert {"fid", "miou", "pixel_accuracy", "real_miou", "real_pixel_accuracy"} <= set(results)
    assert set(results["per_class_iou"]) == {str(i) for i in range(6)}

    # The reals' scores against a naive count over the same 16 validation images (2 x 8).
    val = ShapesDataset(32, length=16, seed=1)  # the datamodule's validation set (seed + 1)
    images = torch.stack([val[i]["image"] for i in range(16)])
    labels = torch.stack([val[i]["label"] for i in range(16)])
    with torch.no_grad():
        pred = NearestColour()(images).argmax(1)
    miou, accuracy = naive_scores(naive_confusion(pred, labels, 6))
    assert results["real_miou"] == pytest.approx(miou, rel=1e-9)
    assert results["real_pixel_accuracy"] == pytest.approx(accuracy, rel=1e-9)
    assert results["real_miou"] > results["miou"]  # an untrained generator: below the ceiling
    assert semantic["evaluation_size"] == [32, 32] and "nearest" in semantic["labels"]
    assert (
        semantic["segmenter"] == "NearestColour" and len(semantic["segmenter_state_sha256"]) == 64
    )
    assert semantic["real"] is not None and semantic["multi_scale"] is None


def test_labels_configs_pair_each_dataset_with_its_segmenter():
    """The shipped labels -> photo configs: DRN-D-105 / Cityscapes train ids, DeepLab-v2 /
    COCO-Stuff, UperNet / ADE20K; the callback instantiates (segmenters on the meta device: no
    weights are read before `i2i test`) and each segmenter's classes are its class set's."""
    import importlib

    from i2i.callbacks.evaluation import GANMetrics
    from i2i.config_files import load_config

    repo = Path(__file__).resolve().parents[2]
    expected = {
        "cityscapes": ("DRNSegmenter", "cityscapes"),
        "cocostuff": ("DeepLabV2Segmenter", "coco_stuff"),
        "ade20k": ("UperNetSegmenter", "ade20k"),
    }
    for name, (segmenter_name, classes) in expected.items():
        metrics = load_config(repo / "configs" / f"{name}.yaml")["metrics"]
        spec = metrics.pop("segmenter")
        module, cls = spec["class_path"].rsplit(".", 1)
        with torch.device("meta"):
            segmenter = getattr(importlib.import_module(module), cls)(**spec.get("init_args", {}))
        callback = GANMetrics(segmenter=segmenter, **metrics)
        assert (cls, callback.semantic_classes) == (segmenter_name, classes), name
        assert segmenter.num_classes == class_set(classes).num_classes, name
        assert segmenter.weights == "published", name
    with pytest.raises(ValueError, match="unknown class set 'cityscape'"):
        GANMetrics(semantic_classes="cityscape")


def semantic_protocol(**options):
    from i2i.callbacks.evaluation import GANMetrics
    from i2i.metrics.protocols import SemanticConsistencyProtocol

    callback = GANMetrics(**options)
    return SemanticConsistencyProtocol(callback.options(), callback.networks)


def test_a_segmenter_on_data_without_label_maps_is_refused():
    from types import SimpleNamespace

    from i2i.callbacks.evaluation import GANMetrics
    from i2i.metrics.protocols import InpaintingProtocol

    task = SimpleNamespace(device=torch.device("cpu"), num_classes=6)
    protocol = semantic_protocol(segmenter=NearestColour())
    protocol.start(None, task, "test")
    edges_batch = {"image": torch.zeros(1, 3, 8, 8), "edges": torch.zeros(1, 1, 8, 8)}
    with pytest.raises(ValueError, match="hold no label maps .*remove metrics.segmenter"):
        protocol.update(edges_batch, {"fake": edges_batch["image"]})
    # Without a segmenter it measures nothing, and says nothing in the JSON.
    protocol = semantic_protocol()
    protocol.start(None, task, "test")
    protocol.update(edges_batch, {"fake": edges_batch["image"]})
    assert protocol.compute() == {} and protocol.describe({}) is None
    with pytest.raises(ValueError, match="--real scores the real photos .*set metrics.segmenter"):
        semantic_protocol(real=True).start(None, task, "test")
    # inpainting: no semantic consistency, so --real is refused whatever the segmenter
    callback = GANMetrics(segmenter=NearestColour(), real=True)
    inpainting = InpaintingProtocol(callback.options(), callback.networks)
    with pytest.raises(ValueError, match="--real scores the real photos .*SimpleNamespace is not"):
        inpainting.start(SimpleNamespace(datamodule=None), task, "test")


def test_the_semantic_protocol_scores_outputs_and_photos_against_the_labels():
    from types import SimpleNamespace

    protocol = semantic_protocol(segmenter=NearestColour(), real=True)
    protocol.start(None, SimpleNamespace(device=torch.device("cpu"), num_classes=6), "test")
    g = torch.Generator().manual_seed(6)
    label = torch.randint(0, 6, (4, 8, 8), generator=g)
    photo = NearestColour().palette[0, :, :, 0, 0][label].permute(0, 3, 1, 2)  # the label's colours
    noise = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    protocol.update({"image": photo, "label": label}, {"fake": noise})
    results = protocol.compute()
    assert results["real_miou"] == 1.0 and results["real_pixel_accuracy"] == 1.0
    with torch.no_grad():
        pred = NearestColour()(noise).argmax(1)
    miou, accuracy = naive_scores(naive_confusion(pred, label, 6))
    assert results["miou"] == pytest.approx(miou, rel=1e-12)
    assert results["pixel_accuracy"] == pytest.approx(accuracy, rel=1e-12)
    assert protocol.describe(results)["evaluation_size"] == [8, 8]


# ---- DDP: 2 gloo processes against 1 --------------------------------------------------------


def _score_share(rank: int, data: str, out: str) -> None:
    """One rank of a gloo group: updated with its share, scored, written."""
    pred, target, num_classes, split = torch.load(data)
    share = slice(0, split) if rank == 0 else slice(split, None)  # uneven shares
    metric = SemanticConsistency(num_classes)
    metric.update(pred[share], target[share])
    scores = metric.compute()
    result = {
        "miou": float(scores["miou"]),
        "pixel_accuracy": float(scores["pixel_accuracy"]),
        "local_pixels": int(metric.confmat.sum()),  # compute() restores the local state
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def test_two_processes_score_what_one_does(tmp_path):
    pred, target = random_maps(4)
    torch.save((pred, target, C, 2), tmp_path / "data.pt")
    fork_gloo_ranks(_score_share, str(tmp_path / "data.pt"), str(tmp_path))
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    single = SemanticConsistency(C)
    single.update(pred, target)
    expected = single.compute()
    for r in results:
        assert r["miou"] == pytest.approx(float(expected["miou"]), rel=1e-12)
        assert r["pixel_accuracy"] == pytest.approx(float(expected["pixel_accuracy"]), rel=1e-12)
    assert results[0]["local_pixels"] + results[1]["local_pixels"] == int(single.confmat.sum())
    assert results[0]["local_pixels"] < results[1]["local_pixels"]
