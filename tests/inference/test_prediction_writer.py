"""`i2i predict` writes the files of `i2i inpaint`: a config-driven predict on the demo's data
(its shapes written as PNG files, with mask files) gives the bytes of the command's core on the
same images, masks and seed (tests/inference/test_files.py ties the command to the core)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.callbacks import PredictionWriter
from i2i.data.masks import RandomMaskGenerator, load_mask
from i2i.data.synthetic import ShapesDataset
from i2i.errors import RunError
from i2i.images import to_uint8
from i2i.inference.model import load_model
from i2i.inference.run import inpaint_batch
from tests.clirun import MODES, TINY, run_i2i


def demo_files(root: Path, n_val: int = 6) -> tuple[Path, Path]:
    """The demo's shapes as PNG files (train/ and val/) and free-form masks for val/."""
    for part, n, seed in (("train", 2, 0), ("val", n_val, 1)):
        ds = ShapesDataset(32, length=n, seed=seed)
        for i in range(n):
            path = root / "images" / part / f"shape{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_uint8(ds[i]["image"])).save(path)
    masks = RandomMaskGenerator((0.2, 0.5)).at(32)
    (root / "masks").mkdir()
    for i in range(n_val):
        known = (masks.sample(i)[0].numpy() * 255).astype(np.uint8)
        Image.fromarray(known).save(root / "masks" / f"shape{i}.png")
    return root / "images", root / "masks"


@pytest.mark.parametrize("mode", MODES)
def test_predict_writes_the_bytes_of_the_command(fitted_run, tmp_path, one_torch_thread, mode):
    images, masks = demo_files(tmp_path)
    ckpt = fitted_run / "checkpoints" / "last.ckpt"
    root = tmp_path / "predict"
    code, text = run_i2i(
        mode,
        "predict",
        "--config",
        str(TINY),
        f"--ckpt_path={ckpt}",
        f"--trainer.default_root_dir={root}",
        "--trainer.logger=false",
        f"--data.init_args.data_dir={images}",
        "--data.init_args.val_masks=MaskFiles",
        f"--data.init_args.val_masks.folder={masks}",
        "--data.init_args.val_masks.polarity=white_is_known",
        "--data.init_args.val_batch_size=4",
        "--model.init_args.eval_seed=5",
    )
    assert code == 0, text[-3000:]
    written = sorted(p.name for p in (root / "predictions").iterdir())
    assert written == [f"shape{i}.png" for i in range(6)]

    # The command's core on the same files: seed 5, batches of 4 in sorted order.
    model = load_model(ckpt)
    items = []
    for i in range(6):
        image = np.asarray(Image.open(images / "val" / f"shape{i}.png").convert("RGB"))
        known = load_mask(masks / f"shape{i}.png", polarity="white_is_known")[0].numpy() > 0.5
        items.append((image, known, i))
    expected = inpaint_batch(model, items[:4], seed=5) + inpaint_batch(model, items[4:], seed=5)
    for (image, known, i), outs in zip(items, expected, strict=True):
        got = np.asarray(Image.open(root / "predictions" / f"shape{i}.png"))
        assert np.array_equal(got, outs[0]), i
        assert np.array_equal(got[known], image[known]) and (got[~known] != image[~known]).any()
        # Same PNG bytes, not only the same pixels.
        Image.fromarray(outs[0]).save(tmp_path / "x.png")
        assert (tmp_path / "x.png").read_bytes() == (
            root / "predictions" / f"shape{i}.png"
        ).read_bytes()

    # Run again (in-process: the console script's function): the files are there.
    code, text = run_i2i(
        "in_process",
        "predict",
        "--config",
        str(TINY),
        f"--ckpt_path={ckpt}",
        f"--trainer.default_root_dir={root}",
        "--trainer.logger=false",
        f"--data.init_args.data_dir={images}",
        "--data.init_args.val_masks=MaskFiles",
        f"--data.init_args.val_masks.folder={masks}",
        "--data.init_args.val_masks.polarity=white_is_known",
    )
    assert code == 1 and "shape0.png already exists" in text, text


class _Loader:
    def __init__(self, dataset):
        self.dataset = dataset


class _Trainer:
    def __init__(self, root: Path, dataset):
        self.default_root_dir = str(root)
        self.predict_dataloaders = _Loader(dataset)


def test_writer_names_samples_and_refuses_existing_files(tmp_path, one_torch_thread):
    class Task(torch.nn.Module):
        def sample(self, batch, variant=0):
            return torch.full_like(batch["image"], -1.0 + variant)

    files = [tmp_path / "data" / "val" / "a" / "x.jpg", tmp_path / "data" / "val" / "y.png"]
    dataset = type("D", (), {"files": files, "__len__": lambda self: 2})()
    writer = PredictionWriter(num_samples=2, panel=True)
    trainer = _Trainer(tmp_path / "run", dataset)
    writer.on_predict_start(trainer, None)
    batch = {
        "image": torch.zeros(2, 3, 8, 8),
        "mask": torch.ones(2, 1, 8, 8),
        "index": torch.tensor([1, 0]),
    }
    writer.write_on_batch_end(trainer, Task(), {"fake": Task().sample(batch)}, None, batch, 0)
    out = tmp_path / "run" / "predictions"
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert names == ["a/x_0.png", "a/x_1.png", "a/x_panel.png", "y_0.png", "y_1.png", "y_panel.png"]
    assert np.asarray(Image.open(out / "y_0.png")).max() == 0
    assert np.asarray(Image.open(out / "y_1.png")).min() == 128  # variant 1: 0.0 -> 128
    with pytest.raises(RunError, match=r"x_0\.png already exists"):
        writer.on_predict_start(trainer, None)
    PredictionWriter(num_samples=2, panel=True, overwrite=True).on_predict_start(trainer, None)
    unnamed = PredictionWriter(output_dir=str(tmp_path / "o"))
    unnamed.on_predict_start(_Trainer(tmp_path, None), None)
    assert unnamed.name(12) == "000012"
