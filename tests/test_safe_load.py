"""Files from strangers run no code (`i2i.safe_load`): checkpoints given to every command, model
cards, shard folders. A hostile payload would `touch` a marker file: that the marker does not
exist after the command is what proves that nothing ran."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
import yaml

from i2i.errors import RefusedFileError
from i2i.safe_load import check_class_path, load_checkpoint
from tests.clirun import MODES, PROCESSES, fit_args, i2i, output, run_i2i
from tests.inference.conftest import fitted_run, tiny_model_file  # noqa: F401 (a fixture)


class RunsACommand:
    """Unpickled, runs `touch marker` (its pickle names os.system, not this class)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("photo") / "a.png"
    Image.new("RGB", (32, 32), (90, 120, 40)).save(path)
    return path


@pytest.fixture
def hostile(fitted_run: Path, tmp_path: Path) -> tuple[Path, Path]:  # noqa: F811
    """(a copy of a real checkpoint whose hyperparameters hold an object that runs a command
    when unpickled, the marker that command creates)."""
    checkpoint = torch.load(fitted_run / "checkpoints" / "last.ckpt", weights_only=True)
    marker = tmp_path / "ran"
    checkpoint["hyper_parameters"]["note"] = RunsACommand(marker)
    path = tmp_path / "downloaded" / "model.ckpt"
    path.parent.mkdir()
    torch.save(checkpoint, path)
    return path, marker


def refused_in_one_line(ran: tuple[int, str], path: Path) -> None:
    """`ran` is run_i2i's (exit status, output) of a command given the hostile file."""
    code, text = ran
    assert code == 1, text
    assert "Traceback" not in text
    [line] = [line for line in text.splitlines() if "refers to" in line]
    assert str(path) in line and "system" in line and "--trust-checkpoint" in line


# ---- checkpoints ---------------------------------------------------------------------------


def test_a_real_checkpoint_loads_weights_only_with_the_allow_list(fitted_run):  # noqa: F811
    path = fitted_run / "checkpoints" / "last.ckpt"
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    checkpoint = load_checkpoint(path)
    assert checkpoint["i2i"]["model"]["class_path"] == "i2i.tasks.InpaintingTask"
    assert "optimizer_states" in checkpoint and "callbacks" in checkpoint


def test_an_object_of_an_unlisted_class_is_refused_by_name(fitted_run, tmp_path):  # noqa: F811
    checkpoint = torch.load(fitted_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["args"] = argparse.Namespace(a=1)
    path = tmp_path / "namespace.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(RefusedFileError, match=r"namespace\.ckpt refers to argparse\.Namespace"):
        load_checkpoint(path)
    assert load_checkpoint(path, trust=True)["hyper_parameters"]["args"].a == 1


@pytest.mark.parametrize("mode", MODES)
def test_inpaint_refuses_a_checkpoint_that_runs_code(hostile, photo, tmp_path, mode):
    path, marker = hostile
    args = ["inpaint", str(path), "--image", str(photo), "--mask", "random"]
    refused_in_one_line(run_i2i(mode, *args, "--out", str(tmp_path / "out")), path)
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", PROCESSES)
def test_inpaint_loads_a_checkpoint_that_runs_code_when_trusted(hostile, photo, tmp_path, how):
    # A process of its own: trusting is the console script's decision for its whole run.
    path, marker = hostile
    args = ["inpaint", str(path), "--image", str(photo), "--mask", "random"]
    result = i2i(*args, "--out", str(tmp_path / "out"), "--trust-checkpoint", how=how)
    assert result.returncode == 0, output(result)
    assert "warning: --trust-checkpoint" in result.stderr
    assert marker.exists() and any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("command", ["export", "demo"])
def test_export_and_demo_refuse_a_checkpoint_that_runs_code(command, hostile, tmp_path, mode):
    path, marker = hostile
    if command == "export":
        out = tmp_path / "m.onnx"
        args = ["export", "--ckpt", str(path), "--format", "onnx", "--out", str(out)]
    else:
        args = ["demo", "--model", str(path), "--port", "1"]  # refused before any server starts
    refused_in_one_line(run_i2i(mode, *args), path)
    assert not marker.exists()


@pytest.mark.parametrize("mode", MODES)
def test_fit_refuses_to_resume_from_a_checkpoint_that_runs_code(hostile, tmp_path, mode):
    path, marker = hostile
    args = fit_args(tmp_path / "run", f"--ckpt_path={path}", "--model.init_args.max_iterations=2")
    refused_in_one_line(run_i2i(mode, *args), path)
    assert not marker.exists()


@pytest.mark.parametrize("how", PROCESSES)
def test_fit_resumes_from_a_checkpoint_that_runs_code_when_trusted(hostile, tmp_path, how):
    path, marker = hostile
    args = fit_args(tmp_path / "run", f"--ckpt_path={path}", "--model.init_args.max_iterations=2")
    result = i2i(*args, "--trust-checkpoint", how=how)  # finished already: loads, nothing to train
    assert result.returncode == 0, output(result)
    assert "warning: --trust-checkpoint" in result.stderr and marker.exists()


@pytest.mark.parametrize("mode", MODES)
def test_a_damaged_checkpoint_names_the_ones_beside_it_that_load(fitted_run, photo, tmp_path, mode):  # noqa: F811
    folder = tmp_path / "checkpoints"
    shutil.copytree(fitted_run / "checkpoints", folder)
    last = folder / "last.ckpt"
    last.write_bytes(last.read_bytes()[:50_000])
    code, text = run_i2i(
        mode,
        "inpaint",
        str(last),
        "--image",
        str(photo),
        "--mask",
        "random",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 1, text
    assert f"{last} is damaged" in text
    loadable = [p for p in folder.glob("*.ckpt") if p != last]
    assert loadable and all(f"{p} (iteration 2)" in text for p in loadable)
    assert "e.g. checkpoints/last.ckpt" not in text


# ---- model cards ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_card_naming_another_package_is_refused_before_anything_runs(photo, tmp_path, mode):
    card_path = tiny_model_file(tmp_path, "inpainting")
    marker = tmp_path / "ran"
    card = json.loads(card_path.read_text())
    command = {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}}
    card["task"]["init_args"]["eval_seed"] = command  # old i2i: os.system(...) -> 0, exit 0
    card_path.write_text(json.dumps(card))
    weights = card_path.with_suffix(".safetensors")
    code, text = run_i2i(
        mode,
        "inpaint",
        str(weights),
        "--image",
        str(photo),
        "--mask",
        "random",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 1, text
    assert not marker.exists()
    assert f"{card_path} names the class 'os.system'" in text


def test_only_network_and_task_classes_of_i2i_may_be_named():
    assert check_class_path("i2i.tasks.InpaintingTask", "card").__name__ == "InpaintingTask"
    for name in ("builtins.eval", "i2i.safe_load.load_checkpoint", "i2i.cli.I2ICLI", "i2i..x"):
        with pytest.raises(RefusedFileError, match="card"):
            check_class_path(name, "card")


# ---- shard folders -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(shards of 8 images written by `optimize_shards`, the data section that reads them)."""
    from i2i.data.shard_optimize import optimize_shards
    from tests.data.test_shards import data_section, write_images

    root = tmp_path_factory.mktemp("shards")
    write_images(root / "images", 8)
    config = root / "data.yaml"
    config.write_text(yaml.safe_dump({"data": data_section(root / "images")}))
    optimize_shards(config, root / "shards", num_workers=1)
    assert (root / "shards" / "datasets.json").is_file()
    assert not (root / "shards" / "datasets.pkl").exists()
    args = {"shards": str(root / "shards"), "data": data_section(root / "images")}
    section = {"class_path": "i2i.data.shards.ShardDataModule", "init_args": args}
    return root / "shards", section


def _shard_fit(mode: str, tmp_path: Path, folder: Path, section: dict) -> tuple[int, str]:
    section = json.loads(json.dumps(section))
    section["init_args"]["shards"] = str(folder)
    config = tmp_path / "shards.yaml"
    config.write_text(yaml.safe_dump({"data": section}))
    args = fit_args(tmp_path / "run", "--config", str(config), "--model.init_args.max_iterations=2")
    return run_i2i(mode, *args)


@pytest.mark.parametrize("mode", MODES)
def test_fit_refuses_a_shard_folder_with_a_pickle(shards, tmp_path, mode):
    folder = tmp_path / "bucket"
    shutil.copytree(shards[0], folder)
    marker = tmp_path / "ran"
    (folder / "datasets.json").unlink()  # as written by an older i2i, or by a stranger
    (folder / "datasets.pkl").write_bytes(__import__("pickle").dumps(RunsACommand(marker)))
    code, text = _shard_fit(mode, tmp_path, folder, shards[1])
    assert code == 1, text
    assert not marker.exists()
    assert "Traceback" not in text
    assert "datasets.pkl is a pickle, which i2i no longer reads" in text


def test_datasets_json_may_name_only_the_folder_datasets(shards, tmp_path):
    from i2i.data.shards import ShardDataModule
    from i2i.errors import ShardMismatchError

    folder = tmp_path / "bucket"
    shutil.copytree(shards[0], folder)
    described = json.loads((folder / "datasets.json").read_text())
    described["datasets"]["train"]["class"] = "subprocess.Popen"
    (folder / "datasets.json").write_text(json.dumps(described))
    section = json.loads(json.dumps(shards[1]["init_args"]))
    dm = ShardDataModule(str(folder), section["data"])
    with pytest.raises(ShardMismatchError, match=r"datasets\.json names the class 'subprocess"):
        dm.prepare_data()


def test_records_litdata_would_unpickle_are_refused(shards, tmp_path):
    """LitData decodes a field with the serializer its index.json names; "pickle" runs code."""
    import litdata

    from i2i.data.shards import ShardDataModule
    from i2i.errors import ShardMismatchError

    folder = tmp_path / "bucket"
    shutil.copytree(shards[0], folder)
    marker = tmp_path / "ran"
    shutil.rmtree(folder / "train")
    litdata.optimize(
        fn=_hostile_record,
        inputs=[(i, str(marker)) for i in range(6)],
        output_dir=str(folder / "train"),
        num_workers=1,
        chunk_bytes="64MB",
        start_method="fork",
        verbose=False,
    )
    assert (
        "pickle"
        in json.loads((folder / "train" / "index.json").read_text())["config"]["data_format"]
    )
    dm = ShardDataModule(str(folder), json.loads(json.dumps(shards[1]["init_args"]))["data"])
    dm.batches_per_step = 1
    with pytest.raises(ShardMismatchError, match=r"train/index\.json decodes fields with pickle"):
        dm.setup("fit")
        dm.train_dataset[0]  # old i2i: LitData unpickles the record's "names" here
    assert not marker.exists()


def _hostile_record(item: tuple[int, str]) -> dict:
    index, marker = item
    return {"index": index, "names": RunsACommand(Path(marker)), "file0": b""}


# ---- outputs written atomically get a plain file's mode ------------------------------------


def test_atomic_writers_give_the_mode_a_plain_open_gives(tmp_path):
    from i2i.data.edge_maps import EdgeCache
    from i2i.io import atomic_write

    old = os.umask(0o027)
    try:
        (tmp_path / "plain").write_bytes(b"x")
        atomic_write(tmp_path / "atomic", lambda tmp: tmp.write_bytes(b"x"))
        cache = EdgeCache(tmp_path / "edges")
        cache.save("k", torch.ones(1, 8, 8))
        written = [tmp_path / "atomic", cache.path("k")]
    finally:
        os.umask(old)
    want = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert want == 0o640
    assert [stat.S_IMODE(p.stat().st_mode) for p in written] == [want, want]
