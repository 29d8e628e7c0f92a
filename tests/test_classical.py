"""Classical baselines (`i2i.classical`, `i2i.tasks.classical`) as the user runs them: fills with
no training at any size, `i2i inpaint classical:NAME`, `i2i test` with their configs."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from i2i.classical import FILLS, harmonic_fill, nearest_neighbour
from tests.clirun import MODES, run_i2i


def _scene(h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, h, w, generator=g) * 2 - 1
    known = torch.ones(1, h, w)
    known[:, h // 4 : h // 2 + 3, w // 5 : w // 2] = 0
    known[:, -3:, -4:] = 0  # a hole on the image's corner too
    return image, known


@pytest.mark.parametrize("method", sorted(FILLS))
def test_every_fill_keeps_known_pixels_bit_for_bit_at_any_size(method):
    image, known = _scene(37, 53)
    out = FILLS[method](image, known)
    keep = known.expand_as(image) > 0.5
    assert out.shape == image.shape and out.dtype == image.dtype
    assert torch.equal(out[keep], image[keep])
    assert torch.isfinite(out).all() and out.abs().max() <= 1
    assert not torch.equal(out[~keep], image[~keep])  # the hole was filled, not left as is
    assert torch.equal(FILLS[method](image, known), out)  # deterministic
    assert torch.equal(FILLS[method](image, torch.ones(1, 37, 53)), image)  # nothing to fill


def test_harmonic_fill_solves_laplace_and_stays_fast_on_a_large_hole():
    """A harmonic function (x, y, x*y) is its own harmonic fill; 1000x1000 with a 600x600 hole
    (360,000 unknowns) is one sparse solve of seconds."""
    size = 1000
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    image = torch.stack([xx, yy, xx * yy])
    known = torch.ones(1, size, size)
    known[:, 200:800, 200:800] = 0
    start = time.perf_counter()
    out = harmonic_fill(image, known)
    assert time.perf_counter() - start < 30
    assert (out - image).abs().max() < 1e-4
    # Mean of the 4 neighbours in the hole, on a small random image.
    image, known = _scene(20, 24)
    out = harmonic_fill(image, known).double()
    padded = torch.nn.functional.pad(out[None], (1, 1, 1, 1), mode="replicate")[0]
    hole = known[0] < 0.5
    inner = hole.clone()
    inner[0, :] = inner[-1, :] = False
    inner[:, 0] = inner[:, -1] = False
    mean = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
    assert torch.allclose(out[:, inner], mean[:, inner] / 4, atol=1e-6)


def test_nearest_neighbour_returns_the_target_of_the_closest_condition():
    keys = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    values = torch.arange(3)[:, None].expand(3, 5)
    got, index = nearest_neighbour(torch.tensor([[9.0, 1.0], [0.0, 8.0]]), keys, values)
    assert index.tolist() == [1, 2] and got[:, 0].tolist() == [1, 2]


def _write_scene(folder, h=45, w=70):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    image = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    hole = np.zeros((h, w), bool)
    hole[10:30, 20:50] = True
    Image.fromarray(image).save(folder / "images" / "a.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(folder / "masks" / "a.png")
    return image, hole


@pytest.mark.parametrize("mode", MODES)
def test_i2i_inpaint_fills_with_a_classical_method_at_the_image_size(tmp_path, mode):
    image, hole = _write_scene(tmp_path / "in")
    args = [
        "--image",
        str(tmp_path / "in" / "images"),
        "--mask",
        str(tmp_path / "in" / "masks"),
        "--mask-polarity",
        "white_is_hole",
    ]
    for method in ("telea", "harmonic"):
        out_dir = tmp_path / f"out_{method}"
        code, text = run_i2i(mode, "inpaint", f"classical:{method}", *args, "--out", str(out_dir))
        assert code == 0, text[-2000:]
        out = np.asarray(Image.open(out_dir / "a.png"))
        assert out.shape == image.shape  # its own size, no window resized to a model's
        assert np.array_equal(out[~hole], image[~hole])
        assert not np.array_equal(out[hole], image[hole])
    # Deterministic: several samples would be copies, so it says so instead.
    code, text = run_i2i(
        mode,
        "inpaint",
        "classical:telea",
        *args,
        "--num-samples",
        "2",
        "--out",
        str(tmp_path / "two"),
    )
    assert code == 1 and "deterministic" in text
    assert "--num-samples 1" in text and not (tmp_path / "two").exists()
    code, text = run_i2i(mode, "inpaint", "classical:telia", *args, "--out", str(tmp_path / "typo"))
    assert code == 1 and "classical:telea" in text
    assert "Traceback" not in text


FEATURES = ["--metrics.feature=tests.helpers.TinyFeatures", "--metrics.feature.num_features=8"]


@pytest.mark.parametrize("mode", MODES)
def test_i2i_test_scores_a_classical_fill_like_a_model(tmp_path, mode):
    root = tmp_path / "run"
    code, text = run_i2i(
        mode,
        "test",
        "--config",
        "configs/classical.yaml",
        "--model.init_args.method=navier_stokes",
        f"--trainer.default_root_dir={root}",
        "--trainer.limit_test_batches=1",
        "--data.init_args.val_batch_size=4",
        "--data.init_args.num_workers=0",
        *FEATURES,
    )
    assert code == 0, text[-3000:]
    report = json.loads((root / "test_results.json").read_text())
    assert report["results"]["n"] == 4
    for key in ("l1_hole", "psnr_hole", "ssim_hole", "edge_f1_hole", "fid", "p_ids"):
        assert np.isfinite(report["results"][key]), key
    assert report["protocol"]["generator"] == "ClassicalFill"
    assert report["protocol"]["task"] == "ClassicalInpaintingTask"
    # A classical fill is a reference itself: the CLI must not give it the models' default one.
    config = yaml.safe_load((root / "config.yaml").read_text())
    assert config["model"]["init_args"]["classical_reference"] is None


@pytest.mark.parametrize("mode", MODES)
def test_i2i_test_scores_nearest_neighbour_retrieval(tmp_path, mode):
    root = tmp_path / "run"
    code, text = run_i2i(
        mode,
        "test",
        "--config",
        "configs/nearest_edges.yaml",
        f"--trainer.default_root_dir={root}",
        "--trainer.limit_test_batches=1",
        "--model.init_args.max_train_images=64",
        "--data.init_args.val_batch_size=4",
        "--data.init_args.num_workers=0",
        *FEATURES,
    )
    assert code == 0, text[-3000:]
    report = json.loads((root / "test_results.json").read_text())
    assert report["results"]["n"] == 4 and np.isfinite(report["results"]["fid"])
    assert report["protocol"]["task"] == "NearestNeighbourEdgesTask"
    # Deterministic: two "latents" give the same retrieved photo.
    assert report["results"]["diversity_l1"] == 0.0


@pytest.mark.parametrize("problem", ["edges", "labels"])
def test_retrieval_returns_the_training_photo_of_the_closest_condition(problem):
    """A training pair's own condition retrieves its own photo; a validation input gets the
    photo of the training condition nearest to it at the retrieval size."""
    from torch.utils.data import default_collate

    from i2i.data.synthetic import NUM_CLASSES, ShapesDataset
    from i2i.tasks import NearestNeighbourEdgesTask, NearestNeighbourLabelsTask

    train, val = ShapesDataset(32, length=24, seed=0), ShapesDataset(32, length=4, seed=1)
    if problem == "edges":
        task = NearestNeighbourEdgesTask(retrieval_resolution=16)
    else:
        task = NearestNeighbourLabelsTask(num_classes=NUM_CLASSES, retrieval_resolution=16)
    task.build_bank(train)
    batch = default_collate([train[i] for i in (3, 17)])
    assert torch.equal(task.sample(batch), batch["image"])
    batch = default_collate([val[i] for i in range(4)])
    out = task.sample(batch)
    keys = task.retrieval.key(task.condition(default_collate([train[i] for i in range(24)])))
    nearest = torch.cdist(task.retrieval.key(task.condition(batch)), keys).argmin(1)
    assert torch.equal(out, torch.stack([train[int(i)]["image"] for i in nearest]))
