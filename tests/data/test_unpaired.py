"""Unpaired data: two domains drawn independently and deterministically, the official geometry,
the batch keys, and the CycleGAN archives (zip download and offline message)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.data import batch as B
from i2i.data.download import CYCLEGAN_DATASETS, ensure_cyclegan
from i2i.data.unpaired import UnpairedDataModule, UnpairedTrainStream
from i2i.errors import ArchiveError, DownloadError
from tests.data.test_download import Server

SIZES = {"trainA": 5, "trainB": 3, "testA": 2, "testB": 4}


def write_folders(root: Path, size: int = 40) -> None:
    """Each image is one flat grey level, so its file can be read back from any crop: domain A
    levels 10, 20, ..., domain B levels 130, 140, ... (train and test alike)."""
    for split, n in SIZES.items():
        (root / split).mkdir(parents=True)
        base = 10 if split.endswith("A") else 130
        for i in range(n):
            pixels = np.full((size, size, 3), base + 10 * i, dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / f"{i}.png")


def file_of(image: torch.Tensor, base: int) -> int:
    level = round(float(image.mean()) * 127.5 + 127.5)
    return round((level - base) / 10)


def datamodule(root: Path | None, **kwargs) -> UnpairedDataModule:
    defaults = dict(resolution=32, load_size=36, batch_size=2, num_workers=0, val_batch_size=3)
    dm = UnpairedDataModule(root=None if root is None else str(root), **{**defaults, **kwargs})
    dm.setup("fit")
    dm.batches_per_step = 1
    return dm


def stream_files(dm: UnpairedDataModule, steps: int, start: int = 0) -> list[tuple[int, int]]:
    train = dm.train_dataset
    stream = UnpairedTrainStream(
        train.domain_a, train.domain_b, dm.batch_size, seed=dm.seed, start_batch=start
    )
    pairs = []
    for step in range(start, start + steps):
        batch = stream.batch(step)
        for a, b in zip(batch[B.IMAGE_A], batch[B.IMAGE_B], strict=True):
            pairs.append((file_of(a, 10), file_of(b, 130)))
    return pairs


def test_domains_are_drawn_independently_one_epoch_permutation_each(tmp_path):
    write_folders(tmp_path)
    dm = datamodule(tmp_path)
    pairs = stream_files(dm, steps=30)  # 60 positions: 12 epochs of A, 20 of B
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    for epoch in range(12):
        assert sorted(a[5 * epoch : 5 * epoch + 5]) == list(range(5))
    for epoch in range(20):
        assert sorted(b[3 * epoch : 3 * epoch + 3]) == list(range(3))
    # Independent: every A image meets several B images, and the order changes between epochs.
    partners = {i: {pb for pa, pb in pairs if pa == i} for i in range(5)}
    assert all(len(p) >= 2 for p in partners.values())
    assert len({tuple(a[5 * e : 5 * e + 5]) for e in range(12)}) > 1


def test_the_stream_is_deterministic_and_resumes_mid_way(tmp_path):
    write_folders(tmp_path)
    dm = datamodule(tmp_path)
    first = next(iter(dm.train_dataloader()))
    again = next(iter(datamodule(tmp_path).train_dataloader()))
    for key in (B.IMAGE_A, B.IMAGE_B, B.INDEX):
        assert torch.equal(first[key], again[key])
    assert stream_files(dm, 10)[8:] == stream_files(dm, 6, start=4)  # from batch 4 on
    assert stream_files(dm, 10) != stream_files(datamodule(tmp_path, seed=1), 10)


def test_a_stream_resumed_on_another_shape_continues_at_the_same_position(tmp_path):
    """2 processes of batch 2 for 2 steps (positions 0-7), then 1 process of batch 3 from
    position 8, or 3 processes of batch 1: every A and B image and crop of the unbroken run,
    once (the batch's index is the stream position)."""
    write_folders(tmp_path)
    dm = datamodule(tmp_path)

    def read(module, world_size: int, steps: int, offset: int = 0) -> dict[int, tuple]:
        out = {}
        for rank in range(world_size):
            batch_list = [
                module.train_stream(rank, world_size, offset=offset).batch(s) for s in range(steps)
            ]
            for batch in batch_list:
                for a, b, p in zip(batch[B.IMAGE_A], batch[B.IMAGE_B], batch[B.INDEX], strict=True):
                    assert int(p) not in out, f"position {int(p)} read twice"
                    out[int(p)] = (a, b)
        return out

    unbroken = read(dm, 2, 5)  # positions 0-19: 4 epochs of A (5 images), 6 of B (3)
    for world_size, batch, steps in ((1, 3, 4), (3, 1, 4)):
        resumed = read(dm, 2, 2) | read(
            datamodule(tmp_path, batch_size=batch), world_size, steps, offset=8
        )
        assert sorted(resumed) == sorted(unbroken) == list(range(20))
        for p, (a, b) in unbroken.items():
            assert torch.equal(resumed[p][0], a) and torch.equal(resumed[p][1], b), p


def test_official_geometry_crops_flips_and_evaluation_resize(tmp_path):
    root = tmp_path / "data"
    for split in SIZES:
        (root / split).mkdir(parents=True)
    # A horizontal ramp, 48 wide and 24 high: resized to 36 x 36 (aspect ignored), cropped to 32.
    ramp = np.tile(np.linspace(0, 255, 48).astype(np.uint8)[None, :, None], (24, 1, 3))
    for split in SIZES:
        Image.fromarray(ramp).save(root / split / "0.png")
    dm = datamodule(root, batch_size=1)
    crops = [stream_files_raw(dm, step) for step in range(12)]
    assert all(c.shape == (3, 32, 32) for c in crops)
    lefts = {round(float(c[0, 0, 0]), 3) for c in crops}
    assert len(lefts) > 2  # random crop offsets (and flips)
    assert any(float(c[0, 0, 0]) > float(c[0, 0, -1]) for c in crops)  # some are flipped
    val = dm.sample_batch(1)[B.IMAGE_A][0]
    assert val.shape == (3, 32, 32)  # the whole image resized, no crop, no flip
    assert float(val[0, 0, 0]) < -0.9 and float(val[0, 0, -1]) > 0.9
    with pytest.raises(ValueError, match="load_size"):
        UnpairedDataModule(root=str(root), resolution=32, load_size=16)


def stream_files_raw(dm: UnpairedDataModule, step: int) -> torch.Tensor:
    train = dm.train_dataset
    return UnpairedTrainStream(train.domain_a, train.domain_b, 1, seed=0).batch(step)[B.IMAGE_A][0]


def test_evaluation_set_repeats_the_shorter_domain_and_says_so(tmp_path):
    write_folders(tmp_path)
    dm = datamodule(tmp_path)
    assert dm.val_sizes == (2, 4) and len(dm.val_dataset) == 4
    batch = next(iter(dm.val_dataloader()))
    assert [file_of(x, 10) for x in batch[B.IMAGE_A]] == [0, 1, 0]
    assert [file_of(x, 130) for x in batch[B.IMAGE_B]] == [0, 1, 2]
    assert batch[B.INDEX].tolist() == [0, 1, 2]


def test_unpaired_keys_are_in_the_batch_contract(tmp_path):
    write_folders(tmp_path)
    sample = datamodule(tmp_path).val_dataset[0]
    B.validate_sample(sample, "unpaired")
    bad = dict(sample, image_a=sample[B.IMAGE_A][:1])
    with pytest.raises(ValueError, match="image_a"):
        B.validate_sample(bad, "unpaired")
    with pytest.raises(ValueError, match="image_b"):
        B.validate_sample(dict(sample, image_b=sample[B.IMAGE_B] + 5), "unpaired")


def test_embedded_shapes_photos_and_edge_maps():
    dm = datamodule(None, synthetic_length=8, max_val_images=4)
    batch = next(iter(dm.train_dataloader()))
    a, b = batch[B.IMAGE_A], batch[B.IMAGE_B]
    assert a.shape == b.shape == (2, 3, 32, 32)
    assert torch.equal(b[:, 0], b[:, 1]) and set(b.unique().tolist()) <= {-1.0, 1.0}  # edge maps
    assert not torch.equal(a[:, 0], a[:, 1])  # photos
    assert dm.val_sizes == (4, 4)


# ---- the CycleGAN archives ------------------------------------------------------------------


def _zip_of(root: Path, name: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(root.rglob("*.png")):
            zf.write(path, f"{name}/{path.relative_to(root)}")
    return buf.getvalue()


def test_cyclegan_table():
    assert "horse2zebra" in CYCLEGAN_DATASETS and "summer2winter_yosemite" in CYCLEGAN_DATASETS
    for name, info in CYCLEGAN_DATASETS.items():
        assert info.url == f"http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"
        assert info.approx_size_mb > 0


def test_the_zip_downloads_extracts_and_feeds_the_datamodule(tmp_path):
    write_folders(tmp_path / "src")
    server = Server()
    try:
        server.files["/horse2zebra.zip"] = _zip_of(tmp_path / "src", "horse2zebra")
        data = tmp_path / "data"
        dm = UnpairedDataModule(
            root=str(data / "horse2zebra"),
            dataset="horse2zebra",
            url=f"{server.url}/horse2zebra.zip",
            resolution=32,
            load_size=36,
            num_workers=0,
        )
        dm.prepare_data()
        assert sorted(p.name for p in (data / "horse2zebra").iterdir()) == sorted(SIZES)
        assert not (data / "horse2zebra.zip").exists()  # deleted after extraction
        dm.prepare_data()  # present: nothing is fetched again
        assert len(server.requests) == 1
        dm.setup("fit")
        assert dm.val_sizes == (2, 4)
    finally:
        server.close()


def test_offline_and_damaged_archives_name_the_url_and_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        ensure_cyclegan("horse2zebra", tmp_path, download=False)
    msg = str(info.value)
    assert CYCLEGAN_DATASETS["horse2zebra"].url in msg
    assert str(tmp_path / "horse2zebra" / "trainA") in msg and "testB" in msg
    missing = (tmp_path / "nowhere" / "horse2zebra.zip").as_uri()
    with pytest.raises(DownloadError) as info:
        ensure_cyclegan("horse2zebra", tmp_path / "data", url=missing)
    assert missing in str(info.value) and str(tmp_path / "data") in str(info.value)
    # A zip whose member escapes the folder, and one with damaged contents: refused, deleted.
    escaping = io.BytesIO()
    with zipfile.ZipFile(escaping, "w") as zf:
        zf.writestr("horse2zebra/trainA/0.png", b"x")
        zf.writestr("../outside.png", b"x")
    damaged = bytearray(_zip_of(_folders(tmp_path / "src"), "horse2zebra"))
    damaged[100] ^= 0xFF  # inside the first member's data: its CRC fails
    for name, data in (("escaping", escaping.getvalue()), ("damaged", bytes(damaged))):
        archive = tmp_path / name / "horse2zebra.zip"
        archive.parent.mkdir()
        archive.write_bytes(data)
        root = tmp_path / f"{name}-root"
        with pytest.raises(ArchiveError, match="corrupt or unsafe"):
            ensure_cyclegan("horse2zebra", root, url=archive.as_uri())
        assert not (tmp_path / "outside.png").exists() and not any(root.iterdir())
    with pytest.raises(FileNotFoundError, match="dataset: horse2zebra"):
        UnpairedDataModule(root=str(tmp_path / "empty")).prepare_data()
    with pytest.raises(ValueError, match="unknown dataset"):
        UnpairedDataModule(dataset="horse3zebra")


def _folders(root: Path) -> Path:
    write_folders(root)
    return root
