"""CelebA's attribute file: the reader, its errors, the datamodule option, and a VAE trained on
attributes through the console script."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.data import batch as B
from i2i.data.attributes import ATTRIBUTES_FILE, find_attributes_file, read_attributes
from i2i.data.inpainting import InpaintingDataModule
from tests.clirun import run_i2i

NAMES = ["Bald", "Smiling", "Young"]
# One row per image: the file's values (1 / -1); every image differs from the next.
ROWS = {f"{i:06d}": [1 if (i >> k) & 1 else -1 for k in range(len(NAMES))] for i in range(1, 11)}


def write_attributes(path: Path, rows: dict[str, list[int]] = ROWS, header: int | None = None):
    lines = [str(len(rows) if header is None else header), " ".join(NAMES)]
    lines += [f"{stem}.jpg " + " ".join(f"{v:2d}" for v in values) for stem, values in rows.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_images(folder: Path, stems=ROWS) -> None:
    """32 px PNGs (the file names say .jpg: rows match by name without extension)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem in stems:
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{stem}.png")


def expected(stem: str, names=NAMES) -> torch.Tensor:
    values = dict(zip(NAMES, ROWS[stem], strict=True))
    return torch.tensor([1.0 if values[n] == 1 else 0.0 for n in names])


def test_the_reader_maps_1_and_minus_1_to_1_and_0_in_the_files_order(tmp_path):
    table = read_attributes(write_attributes(tmp_path / ATTRIBUTES_FILE))
    assert table.names == NAMES and len(table.rows) == 10
    for stem in ROWS:
        assert torch.equal(table.rows[stem], expected(stem)), stem
    picked = table.select(["Young", "Bald"])
    assert picked.names == ["Young", "Bald"]
    assert torch.equal(picked.rows["000003"], expected("000003", ["Young", "Bald"]))
    with pytest.raises(ValueError, match=r"no attribute \['Smilling'\].*Bald, Smiling, Young"):
        table.select(["Smilling"])
    files = [Path("a/000002.png"), Path("000005.jpg")]
    torch.testing.assert_close(
        table.for_files(files), torch.stack([expected("000002"), expected("000005")])
    )


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (lambda r: r.update({"000004": [1, -1]}), 6, r"'000004.jpg' has 2 values, .* names 3"),
        (
            lambda r: r.update({"000007": [1, 0, -1]}),
            9,
            r"'000007.jpg' has the value '0' for Smiling: .* 1 .* or -1",
        ),
        (lambda r: r.pop("000010"), 1, r"the file says 10 images but has 9 rows"),
    ],
    ids=["wrong_count", "value_outside", "truncated"],
)
def test_a_bad_row_names_the_file_and_the_line(tmp_path, edit, line, message):
    rows = {k: list(v) for k, v in ROWS.items()}
    edit(rows)
    path = write_attributes(tmp_path / ATTRIBUTES_FILE, rows, header=10)
    with pytest.raises(ValueError, match=rf"{ATTRIBUTES_FILE}, line {line}: {message}") as err:
        read_attributes(path)
    assert str(path) in str(err.value)


def test_a_missing_file_and_an_image_without_a_row_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}.*Place it in .*attributes_file"):
        find_attributes_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist: place CelebA's"):
        read_attributes(tmp_path / "nowhere.txt")
    images = tmp_path / "img_align_celeba"
    write_images(images, [*ROWS, "000011"])  # one image more than the file has rows
    write_attributes(tmp_path / ATTRIBUTES_FILE)  # beside the image folder: found in its parent
    assert find_attributes_file(images) == tmp_path / ATTRIBUTES_FILE
    dm = InpaintingDataModule(str(images), resolution=32, num_workers=0, attributes=True)
    with pytest.raises(ValueError, match=r"1 image\(s\) have no row in .*000011.png"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="embedded shapes"):
        InpaintingDataModule(None, resolution=32, attributes=True)


def test_batches_carry_each_images_attributes(tmp_path):
    write_images(tmp_path)
    write_attributes(tmp_path / ATTRIBUTES_FILE)
    dm = InpaintingDataModule(
        str(tmp_path),
        resolution=32,
        batch_size=4,
        val_batch_size=4,
        num_workers=0,
        val_fraction=0.3,
        attributes=["Young", "Smiling"],
    )
    dm.setup("fit")
    assert dm.attribute_names == ["Young", "Smiling"]
    val = dm.val_dataset.dataset
    for i in range(len(val)):
        sample = dm.val_dataset[i]
        B.validate_sample(sample, "val")
        assert torch.equal(sample[B.ATTRIBUTES], expected(val.files[i].stem, dm.attribute_names))
    train = next(iter(dm.train_dataloader()))
    assert train[B.ATTRIBUTES].shape == (4, 2) and train[B.ATTRIBUTES].dtype == torch.float32
    rows = {tuple(expected(s, dm.attribute_names).tolist()) for s in ROWS}
    assert {tuple(r) for r in train[B.ATTRIBUTES].tolist()} <= rows
    with pytest.raises(ValueError, match=r"'attributes'\] values must be 0 \(absent\) or 1"):
        B.validate_sample({B.ATTRIBUTES: torch.tensor([1.0, -1.0])})


VAE = "--model.init_args.vae.init_args."


def test_a_vae_and_data_that_disagree_on_attributes_stop_before_training():
    from i2i.networks.vae import ConvVAE
    from i2i.tasks.vae import VAEInpaintingTask

    plain = VAEInpaintingTask(ConvVAE(32, 3, z_dim=8, width=8))
    plain.check_attributes([])
    with pytest.raises(ValueError, match="takes 0 attributes .* gives 3: Bald, Smiling, Young"):
        plain.check_attributes(NAMES)
    both = VAEInpaintingTask(ConvVAE(32, 3, z_dim=8, width=8, attr_dim=40, attributes_in="both"))
    with pytest.raises(ValueError, match=r"takes 40 attributes .*'both'.* gives 0\. Set"):
        both.check_attributes([])


def test_a_vae_trains_on_attributes_through_the_command(tmp_path):
    data, root = tmp_path / "celeba", tmp_path / "run"
    write_images(data / "img_align_celeba")
    write_attributes(data / ATTRIBUTES_FILE)
    common = [
        "fit",
        "--config",
        "configs/vae_demo.yaml",
        f"--trainer.default_root_dir={root}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--data.init_args.data_dir={data / 'img_align_celeba'}",
        "--data.init_args.resolution=32",
        "--data.init_args.batch_size=4",
        "--data.init_args.val_batch_size=4",
        "--data.init_args.num_workers=0",
        "--data.init_args.val_fraction=0.3",
        "--data.init_args.attributes=true",
        "--trainer.val_check_interval=2",
        "--trainer.limit_val_batches=1",
        "--samples.every_n_iterations=2",
        "--samples.num_samples=2",
        "--model.init_args.max_iterations=2",
        f"{VAE}img_resolution=32",
        f"{VAE}width=8",
        f"{VAE}z_dim=16",
        f"{VAE}max_width=16",
    ]
    args = (*common, "--overwrite", f"{VAE}attr_dim=3", f"{VAE}attributes_in=both")
    code, text = run_i2i("in_process", *args)
    assert code == 0, text[-3000:]
    state = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert int(state["state_dict"]["iteration"]) == 2
    from i2i.networks.vae import ConvVAE

    vae = ConvVAE(32, 3, z_dim=16, width=8, max_width=16, attr_dim=3, attributes_in="both")
    vae.load_state_dict({k[4:]: v for k, v in state["state_dict"].items() if k.startswith("vae.")})
    vae.eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    flipped = a.clone()
    flipped[:, 1] = 1 - flipped[:, 1]  # Smiling
    with torch.no_grad():
        mu, _ = vae.encode(x, a)
        assert not torch.allclose(mu, vae.encode(x, flipped)[0])  # the encoder reads them
        z = torch.randn(2, 16)
        assert not torch.allclose(vae.decode(z, attributes=a), vae.decode(z, attributes=flipped))
