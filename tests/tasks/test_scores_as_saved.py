"""Validation scores the outputs as the user gets them (clamped to [-1, 1]) and logs the
classical reference fill's scores beside the model's."""

from __future__ import annotations

import csv

import pytest
import torch

from i2i.classical import harmonic_fill
from tests.clirun import MODES, fit_args, run_i2i


def _logged(root) -> dict[str, list[float]]:
    rows = list(csv.DictReader(next(root.rglob("metrics.csv")).open()))
    out: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            if v not in ("", None):
                out.setdefault(k, []).append(float(v))
    return out


@pytest.fixture(scope="module")
def loud_run(tmp_path_factory):
    """`i2i fit` of the tiny config for 2 iterations with a generator whose outputs reach ~16."""
    root = tmp_path_factory.mktemp("loud")
    code, text = run_i2i(
        "in_process",
        *fit_args(
            root,
            "--model.init_args.generator.class_path=tests.helpers.LoudCoModGenerator",
            "--model.init_args.max_iterations=2",
            "--samples.every_n_iterations=0",
        ),
    )
    assert code == 0, text[-3000:]
    return _logged(root)


def test_validation_scores_describe_images_not_raw_network_outputs(loud_run):
    """The raw hole values are ~16x out of range; scored as saved, L1 in [-1, 1] is at most 2
    and PSNR is not negative (it was val/l1 15.5, val/psnr -19.7 dB for edges2shoes)."""
    assert 0 < loud_run["val/l1_hole"][-1] <= 2
    assert loud_run["val/psnr_hole"][-1] > 0
    for key in ("val/ssim_hole", "val/edge_f1_hole"):
        assert -1 <= loud_run[key][-1] <= 1, key


def test_validation_logs_the_harmonic_fill_beside_the_model(loud_run):
    assert 0 < loud_run["val/l1_hole_harmonic"][-1] < loud_run["val/l1_hole"][-1]
    assert 0 <= loud_run["val/edge_f1_hole_harmonic"][-1] <= 1


def test_the_reference_is_computed_once_per_image_and_matches_a_direct_fill(monkeypatch):
    import i2i.tasks.inpainting as inpainting
    from i2i.classical import fill_batch
    from i2i.data.inpainting import InpaintingDataModule
    from i2i.losses import masked_l1
    from i2i.tasks import ClassicalInpaintingTask, ImageTask, Inpainting

    class Task(Inpainting, ImageTask):
        pass

    data = InpaintingDataModule(resolution=32, val_batch_size=4, num_workers=0, max_val_images=4)
    data.setup("validate")
    batch = next(iter(data.val_dataloader()))
    calls = []

    def counting(method, images, masks):
        calls.append(images.shape[0])
        return fill_batch(method, images, masks)

    monkeypatch.setattr(inpainting, "fill_batch", counting)
    task = Task()
    first = task.classical_scores(batch)
    again = task.classical_scores(batch)
    assert calls == [4]  # the second validation reads the cache
    assert torch.equal(first["l1_hole"], again["l1_hole"])
    pairs = zip(batch["image"], batch["mask"], strict=True)
    filled = torch.stack([harmonic_fill(x, m) for x, m in pairs])
    want = masked_l1(filled, batch["image"], batch["mask"]).mean()
    assert float(first["l1_hole"].mean()) == pytest.approx(float(want), abs=1e-6)
    assert ClassicalInpaintingTask().classical_reference is None  # no reference of itself
    with pytest.raises(ValueError, match="unknown classical fill 'harmonik'"):
        Task(classical_reference="harmonik")


@pytest.mark.parametrize("mode", MODES)
def test_the_reference_fill_is_a_model_argument(tmp_path, mode):
    root = tmp_path / "run"
    code, text = run_i2i(
        mode,
        *fit_args(
            root,
            "--model.init_args.classical_reference=telea",
            "--trainer.logger=false",
            "--model.init_args.max_iterations=2",
            "--samples.every_n_iterations=0",
            "--checkpoint.monitor=val/l1_hole_telea",
        ),
    )
    assert code == 0, text[-3000:]
    assert "val/l1_hole_telea=" in text  # the end-of-run report names it
