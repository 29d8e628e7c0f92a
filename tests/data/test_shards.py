"""Streaming shards: `i2i data optimize` and ShardDataModule against the folder datamodules
(the same files, bytes, crops and masks), the order per rank, exact resume, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from i2i.config_files import load_config
from i2i.data import batch as B
from i2i.data.inpainting import InpaintingDataModule
from i2i.data.label_datamodules import LabelFolderDataModule
from i2i.data.shard_files import MANIFEST
from i2i.data.shard_optimize import load_datamodule, optimize_shards
from i2i.data.shard_order import ShardStream, epoch_order, layout_sample
from i2i.data.shards import FILES, ShardDataModule, dataset_settings, instantiate_datamodule
from i2i.data.stream import ignore_stop_signals
from i2i.data.translation import PairedDataModule
from i2i.errors import ShardMismatchError
from i2i.seeding import seeded_torch_cpu
from tests.clirun import MODES, REPO, TINY, fit_args, i2i, iteration, output, run_i2i

INPAINT = dict(resolution=32, batch_size=2, val_batch_size=2, num_workers=0, val_fraction=0.25)


def write_images(folder: Path, n: int, seed: int = 0) -> None:
    """n small photos of varying sizes, JPEG and PNG: crops differ by image and position."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = 36 + 4 * (i % 3), 40 + 4 * (i % 4)
        ext = "png" if i % 2 else "jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.{ext}"
        )


def data_section(images: Path) -> dict:
    return {
        "class_path": "i2i.data.inpainting.InpaintingDataModule",
        "init_args": {"data_dir": str(images), **INPAINT},
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(images, config, shards): 20 images, a training config, and its shards written by the
    console script in chunks of a few images (several chunks per split)."""
    root = tmp_path_factory.mktemp("shards")
    write_images(root / "images", 20)
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump({"data": data_section(root / "images")}))
    optimize(config, root / "shards", "warm")
    return root / "images", config, root / "shards"


def optimize(config: Path, out: Path, how: str) -> None:
    """`i2i data optimize` as a process (`how`: tests.clirun.start), in chunks of a few images."""
    args = ["--config", str(config), "--out", str(out), "--num-workers", "2"]
    result = i2i("data", "optimize", *args, "--chunk-bytes", "12KB", how=how)
    assert result.returncode == 0, output(result)
    assert "wrote train 15, val 5 samples" in result.stdout


@pytest.mark.slow
def test_a_fresh_interpreter_optimizes_as_the_warm_one(built, tmp_path):
    """`built` forks its command from a warm interpreter (tests.warm): a fresh `i2i` process
    writes the same files, byte for byte but the times of writing (the manifest's, LitData's)."""
    images, config, shards = built
    optimize(config, tmp_path / "shards", "fresh")

    def files(root: Path) -> dict:
        out = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        for name in [name for name in out if name.suffix == ".json"]:
            out[name] = {**json.loads(out[name]), "written": None, "updated_at": None}
        return out

    assert files(tmp_path / "shards") == files(shards)


def shard_module(images: Path, shards: Path, **changes) -> ShardDataModule:
    section = data_section(images)
    section["init_args"].update(changes)
    dm = ShardDataModule(str(shards), section)
    dm.batches_per_step = 2
    dm.setup("fit")
    return dm


def folder_module(images: Path) -> InpaintingDataModule:
    dm = InpaintingDataModule(str(images), **INPAINT)
    dm.batches_per_step = 2
    dm.setup("fit")
    return dm


def test_optimize_records_the_folder_loaders_files_and_their_bytes(built):
    images, config, shards = built
    folder = folder_module(images)
    manifest = json.loads((shards / MANIFEST).read_text())
    assert manifest["count"] == {"train": 15, "val": 5}
    assert manifest["source_config"] == str(config.resolve())
    assert sum(manifest["chunk_sizes"]["train"]) == 15 and len(manifest["chunk_sizes"]["train"]) > 2
    lines = (shards / FILES).read_text().splitlines()
    want = [f"train\t{i}\t{f}" for i, f in enumerate(folder.train_dataset.files)]
    want += [f"val\t{i}\t{f}" for i, f in enumerate(folder.val_dataset.dataset.files)]
    assert lines == want
    dm = shard_module(images, shards)
    files = dm.train_dataset.files
    for j, path in enumerate(folder.train_dataset.files):
        record = files.record(j)
        assert json.loads(record["names"]) == [str(path)]
        assert bytes(record["file0"]) == path.read_bytes()  # the original encoded bytes
    # The dataset opens the files of the sample it last read from the shards, and nothing else.
    path = files[3]
    assert dm.train_dataset.open_file(path).read() == bytes(files.record(3)["file0"])
    with pytest.raises(FileNotFoundError, match="not a file of the shard sample last read"):
        dm.train_dataset.open_file(files[4].with_name("other.png"))


def test_batches_equal_the_folder_loaders_sample_for_sample(built):
    """Each training sample is the folder dataset's image with the crop and mask of its stream
    position, bit for bit; validation samples and masks are the folder's."""
    images, _, shards = built
    dm, folder = shard_module(images, shards), folder_module(images)
    stream, reference = dm.train_stream(), folder.train_stream()
    n = stream.batch_size
    for step in range(4):
        got = stream.batch(step)
        for k in range(n):
            want = reference.make_item(int(got[B.INDEX][k]), step * n + k)
            for key in (B.IMAGE, B.MASK):
                assert torch.equal(got[key][k], want[key])
    assert len(dm.val_dataset) == len(folder.val_dataset) == 5
    for i in range(5):
        got, want = dm.val_dataset[i], folder.val_dataset[i]
        assert got[B.INDEX] == want[B.INDEX] == i
        assert torch.equal(got[B.IMAGE], want[B.IMAGE]) and torch.equal(got[B.MASK], want[B.MASK])
    B.validate_sample(dm.val_dataset[0], "shards")
    assert dm.resolution == folder.resolution  # what tasks ask of a datamodule is the folder's
    assert dm.mask_generator is dm.data.mask_generator and getattr(dm, "spec", None) is None
    # Only what callers ask of a datamodule is the folder's: nothing else is forwarded.
    assert hasattr(dm.data, "given_val_masks") and not hasattr(dm, "given_val_masks")


def test_resume_reads_the_same_batches_with_any_number_of_workers(built):
    """2N batches in one go equal N, then a stream restarted at batch N (as a resumed run
    builds it), read through a DataLoader with 2 workers: samples, crops and masks."""
    images, _, shards = built
    dm = shard_module(images, shards)
    n = 6  # 6 x 4 samples: more than an epoch of 15, so the second epoch's order is checked too
    whole = [dm.train_stream().batch(s) for s in range(2 * n)]
    resumed = dm.train_stream(start_batch=n)
    loader = DataLoader(resumed, batch_size=None, num_workers=2, worker_init_fn=ignore_stop_signals)
    for s, got in zip(range(n, 2 * n), loader, strict=False):
        for key in (B.IMAGE, B.MASK, B.INDEX):
            assert torch.equal(got[key], whole[s][key]), (s, key)
    seen = torch.cat([b[B.INDEX] for b in whole[:4]]).tolist()[:15]  # the first epoch: 15 samples
    assert sorted(seen) == list(range(15))


def read_positions(stream, steps: int, keys=(B.INDEX, B.IMAGE)) -> dict[int, tuple]:
    """{global stream position: (what the batch holds there, per key)} for a stream's first
    `steps` batches."""
    out = {}
    for step in range(steps):
        first = stream.offset + (step * stream.world_size + stream.rank) * stream.batch_size
        batch = stream.batch(step)
        for i in range(stream.batch_size):
            out[first + i] = tuple(batch[key][i] for key in keys)
    return out


def assert_same_reads(got: dict[int, tuple], want: dict[int, tuple]) -> None:
    assert sorted(got) == sorted(want)
    for position, values in want.items():
        assert all(torch.equal(a, b) for a, b in zip(got[position], values, strict=True)), position


def test_a_run_resumed_on_another_shape_reads_what_the_first_shape_would(built):
    """Shards written for 2 processes of loader batch 4, resumed after 2 steps (sample 16) on
    1 process of loader batch 2, and on 4 processes of loader batch 2: every position holds the
    sample, crop and mask of the unbroken 2-process run (2 epochs of 14: each sample once per
    epoch as there)."""
    images, _, shards = built
    dm, small = shard_module(images, shards), shard_module(images, shards, batch_size=1)
    unbroken = {}
    for rank in (0, 1):
        unbroken |= read_positions(dm.train_stream(rank=rank, world_size=2), steps=4)
    assert sorted(unbroken) == list(range(32))
    first = {p: v for p, v in unbroken.items() if p < 16}
    for world_size, steps in ((1, 8), (4, 2)):
        resumed = dict(first)
        for rank in range(world_size):
            stream = small.train_stream(rank=rank, world_size=world_size, offset=16, layout=(2, 4))
            resumed |= read_positions(stream, steps)
        assert_same_reads(resumed, unbroken)
    # The first epoch: each rank's first 7 samples (15 // 2), 14 distinct images.
    epoch = [int(v[0]) for p, v in unbroken.items() if layout_sample(p, 2, 4)[1] < 7]
    assert len(epoch) == len(set(epoch)) == 14


def test_ranks_read_disjoint_samples_in_contiguous_chunk_runs():
    sizes = [5, 7, 6, 4, 8, 5]  # 35 samples in 6 chunks
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for epoch in range(3):
        orders = [epoch_order(sizes, 0, epoch, r, 2) for r in range(2)]
        assert [len(o) for o in orders] == [17, 17]
        assert not set(orders[0]) & set(orders[1])
        assert len(set(orders[0]) | set(orders[1])) == 34 and len(set(orders[0])) == 17
        whole = epoch_order(sizes, 0, epoch)
        assert sorted(whole) == list(range(35))
        assert np.array_equal(np.concatenate(orders), whole[:34])  # contiguous shares
        chunk = np.searchsorted(starts, whole, side="right") - 1
        assert np.count_nonzero(np.diff(chunk)) == len(sizes) - 1  # one run per chunk
    assert not np.array_equal(epoch_order(sizes, 0, 0), epoch_order(sizes, 0, 1))
    assert not np.array_equal(epoch_order(sizes, 0, 0), epoch_order(sizes, 1, 0))


def test_two_ranks_stream_disjoint_samples(built):
    images, _, shards = built
    dm = shard_module(images, shards)
    seen = []
    for rank in range(2):
        stream = dm.train_stream(rank=rank, world_size=2)
        assert isinstance(stream, ShardStream) and stream.per_rank == 7
        indices = torch.cat([stream.batch(s)[B.INDEX] for s in range(2)]).tolist()[:7]
        assert len(set(indices)) == 7
        seen.append(set(indices))
    assert not seen[0] & seen[1]


def test_shards_of_another_config_are_refused_with_the_settings_that_differ(built):
    images, _, shards = built
    with pytest.raises(ShardMismatchError) as e:
        shard_module(images, shards, resolution=64)
    msg = str(e.value)
    assert str(shards) in msg and "resolution: shards 32, config 64" in msg
    assert "i2i data optimize --config" in msg
    free_form = {"class_path": "i2i.data.masks.RandomMaskGenerator", "init_args": {}}
    free_form["init_args"]["hole_range"] = [0.2, 0.4]
    shard_module(images, shards, batch_size=3, masks=free_form)  # loader and masks: free


@pytest.mark.parametrize("mode", MODES)
def test_missing_shards_and_unshardable_configs_fail_in_one_line(built, tmp_path, mode):
    images, _, _ = built
    missing = tmp_path / "nowhere"
    config = shards_config(tmp_path, images, missing)
    code, text = run_i2i(mode, *fit_args(tmp_path / "run", config=config))
    assert code == 1, text
    assert f"no shards in {missing}" in text and "i2i data optimize" in text
    assert "Traceback" not in text
    demo = tmp_path / "demo.yaml"
    demo.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "class_path": "i2i.data.inpainting.InpaintingDataModule",
                    "init_args": INPAINT,
                }
            }
        )
    )
    with pytest.raises(ValueError, match="no files to shard"):
        optimize_shards(demo, tmp_path / "out")
    with pytest.raises(ValueError, match="compression 'gzip' is not one LitData can write"):
        optimize_shards(demo, tmp_path / "out", compression="gzip")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError, match=f"{tmp_path / 'full'} is not empty"):
        optimize_shards(demo, tmp_path / "full")


def test_zstd_shards_read_as_the_plain_ones_and_stay_compressed(built, tmp_path):
    """`--compression zstd`: each chunk file one zstd frame of the chunk LitData indexed; read
    through ShardDataModule they give the plain shards' records and batches, and reading leaves
    the folder as written (LitData would inflate a local folder's chunks in place)."""
    import zstd

    images, config, plain = built
    shards = tmp_path / "zstd"
    # In the test process (`built` runs the console script): the same command, without imports.
    code, text = run_i2i(
        "in_process",
        "data",
        "optimize",
        "--config",
        str(config),
        "--out",
        str(shards),
        "--num-workers",
        "2",
        "--chunk-bytes",
        "12KB",
        "--compression",
        "zstd",
    )
    assert code == 0, text
    assert json.loads((shards / MANIFEST).read_text())["compression"] == "zstd"
    written = {p: p.read_bytes() for p in sorted(shards.rglob("*")) if p.is_file()}
    index = json.loads((shards / "train" / "index.json").read_text())
    assert len(index["chunks"]) > 2
    for chunk in index["chunks"]:
        assert chunk["filename"].endswith(".zstd.bin")
        frame = written[shards / "train" / chunk["filename"]]
        assert frame[:4] == b"\x28\xb5\x2f\xfd"  # the zstd frame magic
        assert len(zstd.decompress(frame)) == chunk["chunk_bytes"]
    dm = ShardDataModule(str(shards), data_section(images), cache_dir=str(tmp_path / "cache"))
    dm.batches_per_step = 2
    dm.setup("fit")
    reference = shard_module(images, plain)
    for j in range(15):
        got, want = (m.train_dataset.files.record(j)["file0"] for m in (dm, reference))
        assert got == want
    stream, want = dm.train_stream(), reference.train_stream()
    for step in range(3):
        got, expected = stream.batch(step), want.batch(step)
        for key in (B.IMAGE, B.MASK, B.INDEX):
            assert torch.equal(got[key], expected[key])
    for i in range(5):
        assert torch.equal(dm.val_dataset[i][B.IMAGE], reference.val_dataset[i][B.IMAGE])
    after = {p: p.read_bytes() for p in sorted(shards.rglob("*")) if p.is_file()}
    assert after == written


def shards_config(tmp_path: Path, images: Path, shards: Path) -> Path:
    """The tiny training config reading `shards` (written from `images`' section)."""
    config = tmp_path / "shards.yaml"
    tiny = yaml.safe_load(TINY.read_text())
    shard_args = {"shards": str(shards), "data": data_section(images)}
    tiny["data"] = {"class_path": "i2i.data.shards.ShardDataModule", "init_args": shard_args}
    config.write_text(yaml.safe_dump(tiny))
    return config


@pytest.mark.parametrize("mode", MODES)
def test_fit_from_shards_and_resume(built, tmp_path, mode):
    """A real `i2i fit` from shards, stopped at 2 iterations and resumed to 3."""
    images, _, shards = built
    config, run = shards_config(tmp_path, images, shards), tmp_path / "run"
    for args in (
        ("--model.init_args.max_iterations=2",),
        (
            "--model.init_args.max_iterations=3",
            "--ckpt_path=last",
        ),
    ):
        code, text = run_i2i(mode, *fit_args(run, *args, config=config), OMP_NUM_THREADS="1")
        assert code == 0, text
    assert iteration(run / "checkpoints" / "last.ckpt") == 3


@pytest.mark.parametrize("mode", MODES)
def test_fit_from_shards_resumed_with_another_batch_size_reads_each_sample_once(
    built, tmp_path, mode
):
    """`i2i fit` from shards, 2 iterations of batch 2, resumed with batch 1 to 6: the samples
    are the unbroken stream's first 16, in order (old code: 4-11 again after 0-7)."""
    images, _, shards = built
    config, run = shards_config(tmp_path, images, shards), tmp_path / "run"
    smaller = tmp_path / "batch1.yaml"
    section = yaml.safe_load(config.read_text())
    section["data"]["init_args"]["data"]["init_args"]["batch_size"] = 1
    smaller.write_text(yaml.safe_dump(section))
    logs = [tmp_path / "first", tmp_path / "second"]
    runs = [
        fit_args(run, "--model.init_args.max_iterations=2", config=config),
        fit_args(run, "--model.init_args.max_iterations=6", "--ckpt_path=last", config=smaller),
    ]
    for log, args in zip(logs, runs, strict=True):
        log_args = (
            "--trainer.callbacks+=tests.helpers.SampleLog",
            f"--trainer.callbacks.out_dir={log}",
        )
        code, text = run_i2i(mode, *args, *log_args, OMP_NUM_THREADS="1")
        assert code == 0, text
    seen = [i for log in logs for i in json.loads((log / "samples0.json").read_text())["indices"]]
    stream = shard_module(images, shards).train_stream()
    assert seen == [int(i) for s in range(4) for i in stream.batch(s)[B.INDEX]]
    assert "sample 8 of the stream: batch per process 2 -> 1" in text


def test_fit_from_shards_resumed_on_two_processes_reads_each_sample_once(built, tmp_path):
    """1 process for 2 iterations, resumed on 2 gloo ranks for 1 more: the unbroken stream's
    first 16 samples (old code: both ranks started at sample 16); the run says that its
    processes now share chunks. The ranks are forked from the test process (ddp_fork: no
    imports to pay); `ddp`'s launched processes are the elastic test's."""
    images, _, shards = built
    config, run = shards_config(tmp_path, images, shards), tmp_path / "run"
    logs = [tmp_path / "first", tmp_path / "second"]
    runs = [
        ("--model.init_args.max_iterations=2",),
        (
            "--model.init_args.max_iterations=3",
            "--ckpt_path=last",
            "--trainer.devices=2",
            "--trainer.strategy=ddp_fork_find_unused_parameters_true",
        ),
    ]
    for log, args in zip(logs, runs, strict=True):
        log_args = (
            "--trainer.callbacks+=tests.helpers.SampleLog",
            f"--trainer.callbacks.out_dir={log}",
        )
        argv = fit_args(run, *args, *log_args, config=config)
        code, text = run_i2i("in_process", *argv)
        assert code == 0, text
    files = [logs[0] / "samples0.json", logs[1] / "samples0.json", logs[1] / "samples1.json"]
    seen = [i for f in files for i in json.loads(f.read_text())["indices"]]
    stream = shard_module(images, shards).train_stream()
    assert seen == [int(i) for s in range(4) for i in stream.batch(s)[B.INDEX]]
    assert "sample 8 of the stream: processes 1 -> 2 (global batch 2 -> 4)" in text
    assert "the processes no longer each read their own chunks" in text


@pytest.mark.slow
def test_fit_from_shards_resumes_exactly(built, tmp_path):
    """`i2i fit` from shards: 4 iterations in one go equal 2, then `--ckpt_path last` and 2
    more, to 1e-6 on every weight."""
    images, _, shards = built
    config = shards_config(tmp_path, images, shards)
    whole, part = tmp_path / "whole", tmp_path / "part"
    runs = [
        fit_args(whole, "--model.init_args.max_iterations=4", config=config),
        fit_args(part, "--model.init_args.max_iterations=2", config=config),
        fit_args(part, "--model.init_args.max_iterations=4", "--ckpt_path=last", config=config),
    ]
    for args in runs:
        result = i2i(*args, OMP_NUM_THREADS="1")
        assert result.returncode == 0, output(result)
    last = [folder / "checkpoints" / "last.ckpt" for folder in (whole, part)]
    assert [iteration(c) for c in last] == [4, 4]
    a, b = (torch.load(c, map_location="cpu", weights_only=False)["state_dict"] for c in last)
    for key, value in a.items():
        if value.is_floating_point():
            torch.testing.assert_close(b[key], value, rtol=0, atol=1e-6)


def _pairs(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        edges = np.full((32, 32, 3), 255, np.uint8)
        edges[rng.integers(0, 32), :] = 0  # a black line on white paper
        photo = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([edges, photo], 1)).save(folder / f"{i}.jpg")


def _labels(root: Path, n: int) -> None:
    rng = np.random.default_rng(2)
    for sub in ("img", "label", "inst"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(
            root / "img" / f"{i}.png"
        )
        Image.fromarray(rng.integers(0, 3, (36, 40), dtype=np.uint8)).save(
            root / "label" / f"{i}.png"
        )
        Image.fromarray(rng.integers(0, 5, (36, 40), dtype=np.uint8)).save(
            root / "inst" / f"{i}.png"
        )


@pytest.mark.parametrize("kind", ["pix2pix_pairs", "labels_with_instances"])
def test_pairs_and_label_maps_stream_as_from_their_folders_where_those_are_absent(kind, tmp_path):
    if kind == "pix2pix_pairs":
        _pairs(tmp_path / "pairs", 8)
        section = {
            "class_path": "i2i.data.translation.PairedDataModule",
            "init_args": {"data_dir": str(tmp_path / "pairs"), **INPAINT},
        }
        make = lambda: PairedDataModule(**section["init_args"])  # noqa: E731
        keys = (B.IMAGE, B.EDGES)
    else:
        _labels(tmp_path, 8)
        args = {
            "image_dir": str(tmp_path / "img"),
            "label_dir": str(tmp_path / "label"),
            "instance_dir": str(tmp_path / "inst"),
            "instance_edges": True,
            "num_classes": 3,
            **INPAINT,
        }
        section = {
            "class_path": "i2i.data.label_datamodules.LabelFolderDataModule",
            "init_args": args,
        }
        make = lambda: LabelFolderDataModule(**args)  # noqa: E731
        keys = (B.IMAGE, B.LABEL, B.INSTANCE_EDGES)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"data": section}))
    manifest = optimize_shards(config, tmp_path / "shards", num_workers=1)
    assert manifest["count"] == {"train": 6, "val": 2}
    # Read where the source folders are absent, as on a training machine with only the shards.
    sources = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "shards"]
    (tmp_path / "elsewhere").mkdir()
    for path in sources:
        path.rename(tmp_path / "elsewhere" / path.name)
    dm = ShardDataModule(str(tmp_path / "shards"), section)
    dm.batches_per_step = 1
    dm.setup("fit")
    stream = dm.train_stream()
    batches = [stream.batch(step) for step in range(3)]
    val = [dm.val_dataset[i] for i in range(2)]
    for path in sources:
        (tmp_path / "elsewhere" / path.name).rename(path)
    folder = make()
    folder.batches_per_step = 1
    folder.setup("fit")
    reference = folder.train_stream()
    for step, got in enumerate(batches):
        for k in range(2):
            want = reference.make_item(int(got[B.INDEX][k]), 2 * step + k)
            for key in keys:
                assert torch.equal(got[key][k], want[key]), key
    for i in range(2):
        for key in keys:
            assert torch.equal(val[i][key], folder.val_dataset[i][key])


@pytest.mark.parametrize(
    ("name", "shards", "loader"),
    [
        ("places512", "data/places2_shards", (4, 6, (512, 512))),
        ("cyclegan_horse2zebra", "data/horse2zebra_shards", (1, 4, (256, 256))),
    ],
)
def test_the_shards_overlays_match_their_configs(name, shards, loader):
    """configs/shards/NAME.yaml (a second --config over NAME.yaml) names the data settings the
    shards of NAME.yaml are checked against: they must stay equal."""
    overlay = yaml.safe_load((REPO / "configs" / "shards" / f"{name}.yaml").read_text())
    dm = instantiate_datamodule(overlay["data"])
    assert isinstance(dm, ShardDataModule) and dm.shards == shards
    source = load_datamodule(REPO / "configs" / f"{name}.yaml")
    assert dataset_settings(dm.data) == dataset_settings(source)
    assert (dm.batch_size, dm.num_workers, dm.resolution) == loader


# --------------------------------------------------------------------------------------------
# An object store: moto's S3 server on localhost, reached as a bucket is (s3://, an endpoint)


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch):
    """(upload, endpoint): an S3 server on 127.0.0.1 with an empty bucket, and a function that
    uploads a folder to s3://BUCKET/PREFIX and returns that URL. Dummy credentials in the
    environment, as a user keeps real ones; the endpoint is given through storage_options."""
    import logging
    import uuid

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # a proxy must not see the server
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    name = f"i2i-{uuid.uuid4().hex[:12]}"  # moto's objects outlive a stopped server
    client.create_bucket(Bucket=name)

    def upload(folder: Path, prefix: str) -> str:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            client.upload_file(str(path), name, f"{prefix}/{path.relative_to(folder)}")
        return f"s3://{name}/{prefix}"

    yield upload, endpoint
    server.stop()


def _batches(dm: ShardDataModule, steps: int, workers: int = 0) -> list[dict]:
    stream = dm.train_stream()
    if not workers:
        return [stream.batch(s) for s in range(steps)]
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        timeout=120,
        worker_init_fn=ignore_stop_signals,
    )
    got = []
    for batch in loader:
        got.append(batch)
        if len(got) == steps:
            return got
    return got


def test_shards_stream_from_an_s3_bucket_as_from_their_folder(built, bucket, tmp_path):
    """Plain and zstd shards uploaded to a bucket: the batches, in one process and through two
    loader workers, equal the local folder's; `i2i fit` trains from the URL on two processes,
    each reading its own samples; a missing prefix fails in one line; shards rewritten at the
    same URL are read afresh."""
    upload, endpoint = bucket
    images, config, plain = built
    # as `built` wrote the plain ones (the chunk layout decides the order)
    optimize_shards(config, tmp_path / "zstd", 2, chunk_bytes="12KB", compression="zstd")
    options = {"endpoint_url": endpoint}
    local = shard_module(images, plain)
    want = _batches(local, 3)
    for folder, prefix in ((plain, "plain"), (tmp_path / "zstd", "zstd")):
        url = upload(folder, prefix)
        dm = ShardDataModule(
            url,
            data_section(images),
            cache_dir=str(tmp_path / f"c_{prefix}"),
            storage_options=options,
        )
        dm.batches_per_step = 2
        dm.setup("fit")
        for workers in (0, 2):
            got = _batches(dm, 3, workers)
            for g, w in zip(got, want, strict=True):
                for key in (B.IMAGE, B.MASK, B.INDEX):
                    assert torch.equal(g[key], w[key]), (prefix, workers, key)
        assert torch.equal(dm.val_dataset[4][B.IMAGE], local.val_dataset[4][B.IMAGE])

    run_config = shards_config(tmp_path, images, plain)
    section = yaml.safe_load(run_config.read_text())
    section["data"]["init_args"].update(
        shards=url.replace("/zstd", "/plain"),
        storage_options=options,
        cache_dir=str(tmp_path / "fit_cache"),
    )
    run_config.write_text(yaml.safe_dump(section))
    # On 2 gloo ranks (forked from this process): each streams its own share (disjoint
    # samples, batch x batches per step each).
    out = tmp_path / "samples"
    code, text = run_i2i(
        "in_process",
        *fit_args(tmp_path / "run", "--model.init_args.max_iterations=1", config=run_config),
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp_fork_find_unused_parameters_true",
        "--trainer.callbacks+=tests.helpers.SampleLog",
        f"--trainer.callbacks.out_dir={out}",
    )
    assert code == 0, text[-3000:]
    assert iteration(tmp_path / "run" / "checkpoints" / "last.ckpt") == 1
    records = [json.loads((out / f"samples{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2]
    per_rank = [r["indices"] for r in records]
    assert len(per_rank[0]) == len(per_rank[1]) == INPAINT["batch_size"] * 2  # D and G batches
    assert len(set(per_rank[0]) | set(per_rank[1])) == 2 * len(per_rank[0])

    missing = url.replace("/zstd", "/nowhere")
    with pytest.raises(ShardMismatchError, match=f"no shards in {missing}"):
        ShardDataModule(missing, data_section(images), storage_options=options).prepare_data()

    rewritten = tmp_path / "rewritten"
    rewritten.mkdir()
    manifest = json.loads((plain / MANIFEST).read_text())
    manifest["count"]["train"] = 14
    (rewritten / MANIFEST).write_text(json.dumps(manifest))
    upload(rewritten, "plain")  # the same URL, a new manifest
    dm = ShardDataModule(
        url.replace("/zstd", "/plain"), data_section(images), storage_options=options
    )
    dm.prepare_data()
    assert dm.manifest["count"]["train"] == 14


# ---- unpaired (CycleGAN) domains ------------------------------------------------------------

UNPAIRED = dict(
    resolution=32, load_size=36, batch_size=2, val_batch_size=2, num_workers=0, max_val_images=None
)


@pytest.fixture(scope="module")
def unpaired(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """(the UnpairedDataModule's section, its shards written by the console script): 6 images
    in each training domain (equal sizes: the orders must still differ), 3 and 5 to test."""
    root = tmp_path_factory.mktemp("unpaired")
    for split, n, seed in (("trainA", 6, 0), ("trainB", 6, 1), ("testA", 3, 2), ("testB", 5, 3)):
        write_images(root / "data" / split, n, seed)
    section = {
        "class_path": "i2i.data.unpaired.UnpairedDataModule",
        "init_args": {"root": str(root / "data"), **UNPAIRED},
    }
    config = root / "cyclegan.yaml"
    config.write_text(yaml.safe_dump({"data": section}))
    code, text = run_i2i(
        "in_process",
        "data",
        "optimize",
        "--config",
        str(config),
        "--out",
        str(root / "shards"),
        "--num-workers",
        "2",
        "--chunk-bytes",
        "12KB",
    )
    assert code == 0, text
    assert "wrote train_a 6, train_b 6, val_a 3, val_b 5 samples" in text
    return section, root / "shards"


def test_unpaired_domains_stream_as_from_their_folders(unpaired):
    """Each domain in its own shards: the same crops and flips per stream position as the folder
    loader, A and B in orders of their own, ranks reading disjoint images of each domain,
    resumable from any batch; the evaluation set and its sizes as the folder's."""
    section, shards = unpaired
    manifest = json.loads((shards / MANIFEST).read_text())
    assert [len(manifest["chunk_sizes"][f"train_{d}"]) > 1 for d in "ab"] == [True, True]
    folder = instantiate_datamodule(section)
    dm = ShardDataModule(str(shards), section)
    for module in (folder, dm):
        module.batches_per_step = 1
        module.setup("fit")
    assert dm.val_sizes == folder.val_sizes == (3, 5)
    reference = folder.train_dataset
    stream = dm.train_stream()
    for step in range(4):  # past the end of the first epoch of each domain (6 images)
        got = stream.batch(step)
        for k in range(2):
            position = 2 * step + k
            with seeded_torch_cpu(0, position):
                want_a = reference.domain_a[stream.index(0, position)]
                want_b = reference.domain_b[stream.index(1, position)]
            assert torch.equal(got[B.IMAGE_A][k], want_a)
            assert torch.equal(got[B.IMAGE_B][k], want_b)
            assert int(got[B.INDEX][k]) == position
    order = [[stream.index(d, p) for p in range(6)] for d in (0, 1)]
    assert sorted(order[0]) == sorted(order[1]) == list(range(6))
    assert order[0] != order[1]  # equal chunk sizes, yet not paired up in a fixed way
    resumed = next(iter(dm.train_stream(start_batch=2)))
    for key in (B.IMAGE_A, B.IMAGE_B, B.INDEX):
        assert torch.equal(resumed[key], stream.batch(2)[key])
    ranks = [dm.train_stream(rank=r, world_size=2) for r in (0, 1)]
    for d in (0, 1):  # each rank's 3 images of the epoch: positions (step * 2 + rank) * 2 + j
        seen = [
            {s.index(d, (q // 2 * 2 + r) * 2 + q % 2) for q in range(3)}
            for r, s in enumerate(ranks)
        ]
        assert len(seen[0]) == len(seen[1]) == 3 and not seen[0] & seen[1]
    for i in range(5):
        got, want = dm.val_dataset[i], folder.val_dataset[i]
        for key in (B.IMAGE_A, B.IMAGE_B):
            assert torch.equal(got[key], want[key])


def test_unpaired_shards_resumed_on_another_shape_read_what_the_first_shape_would(unpaired):
    """Each domain's order is the first shape's (2 processes of batch 2) after a resume on 1
    process of batch 1: the same A and B images and crops at every position."""
    section, shards = unpaired
    dm = ShardDataModule(str(shards), section)
    dm.batches_per_step = 1
    dm.setup("fit")
    keys = (B.IMAGE_A, B.IMAGE_B, B.INDEX)
    unbroken = {}
    for rank in (0, 1):
        unbroken |= read_positions(dm.train_stream(rank=rank, world_size=2), 4, keys)
    resumed = {p: v for p, v in unbroken.items() if p < 8}
    dm.data.batch_size = dm.batch_size = 1
    resumed |= read_positions(dm.train_stream(offset=8, layout=(2, 2)), 8, keys)
    assert_same_reads(resumed, unbroken)


@pytest.mark.parametrize("mode", MODES)
def test_optimize_says_in_one_line_how_to_place_data_it_cannot_download(tmp_path, mode):
    """A config whose dataset is downloaded on first use, with no way to download it."""
    section = {
        "class_path": "i2i.data.unpaired.UnpairedDataModule",
        "init_args": {
            "root": str(tmp_path / "horse2zebra"),
            "dataset": "horse2zebra",
            "url": "http://127.0.0.1:9/horse2zebra.zip",
            **UNPAIRED,
        },
    }
    config = tmp_path / "h2z.yaml"
    config.write_text(yaml.safe_dump({"data": section}))
    code, text = run_i2i(
        mode, "data", "optimize", "--config", str(config), "--out", str(tmp_path / "out")
    )
    assert code == 1, text
    assert "i2i: error: Could not download http://127.0.0.1:9/horse2zebra.zip" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("mode", MODES)
def test_fit_cyclegan_from_unpaired_shards_and_resume(unpaired, tmp_path, mode):
    """A real `i2i fit` of CycleGAN from unpaired shards, stopped at 2 iterations and resumed."""
    section, shards = unpaired
    config = load_config(REPO / "configs" / "cyclegan_demo.yaml")
    config["data"] = {
        "class_path": "i2i.data.shards.ShardDataModule",
        "init_args": {"shards": str(shards), "data": section},
    }
    config["trainer"]["logger"] = False
    path = tmp_path / "cyclegan_shards.yaml"
    path.write_text(yaml.safe_dump(config))
    tiny = [f"--model.init_args.{g}.init_args.n_blocks=1" for g in ("generator_ab", "generator_ba")]
    run = tmp_path / "run"
    for args in (
        ("--model.init_args.max_iterations=2",),
        ("--model.init_args.max_iterations=3", "--ckpt_path=last"),
    ):
        code, text = run_i2i(
            mode,
            *fit_args(
                run,
                *tiny,
                "--trainer.val_check_interval=2",
                "--trainer.limit_val_batches=1",
                "--samples.every_n_iterations=0",
                *args,
                config=path,
            ),
            OMP_NUM_THREADS="1",
        )
        assert code == 0, text
    assert iteration(run / "checkpoints" / "last.ckpt") == 3
