"""The `i2i` command as the user runs it: exit status, where files go, short errors, and the
paper configs on a machine without GPU or data (as subprocesses; the error messages in this
process too, and as subprocesses under `make test-full`)."""

from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import yaml

from i2i.cli import I2ICLI
from i2i.config_files import load_config
from i2i.errors import RunError
from tests.clirun import MODES, REPO, TINY, env, fit_args, i2i, iteration, output, run_i2i

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
# Offline for sure: a proxy that refuses connections (urllib honours it).
REFUSING_PROXY = {
    key: "http://127.0.0.1:9" for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
}


def test_console_script_exits_0_and_every_file_lands_in_the_run_folder(tmp_path):
    # A config that hard-codes its run folder and W&B's save_dir, run with another folder.
    configured, root = tmp_path / "configured", tmp_path / "elsewhere"
    config = yaml.safe_load(TINY.read_text())
    config["trainer"]["default_root_dir"] = str(configured)
    config["trainer"]["logger"] = {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {"project": "i2i-test", "save_dir": str(configured)},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = i2i(
        *fit_args(root, "--model.init_args.max_iterations=2", config=path), WANDB_MODE="offline"
    )
    assert result.returncode == 0, output(result)[-3000:]
    assert "I2ICLI object" not in output(result)  # the console script printed its return value
    assert "i2i: training finished" in result.stdout and str(root) in result.stdout
    assert not configured.exists()
    assert (root / "checkpoints" / "last.ckpt").is_file() and (root / "config.yaml").is_file()
    assert list((root / "samples").glob("*.png"))
    assert list((root / "wandb").glob("offline-run-*/*.wandb"))


@pytest.mark.parametrize("mode", MODES)
def test_a_run_stopped_by_max_time_says_where_and_resumes_past_it(tmp_path, mode):
    """`trainer.max_time` (the demo's bound) ends the run before its length with a validation,
    a checkpoint and a line naming the iteration and the command that trains on."""
    root = tmp_path / "run"
    args = ["--model.init_args.max_iterations=100000", "--trainer.max_time=00:00:00:03"]
    code, text = run_i2i(mode, *fit_args(root, *args))
    assert code == 0, text[-3000:]
    match = re.search(
        r"trainer.max_time \(00:00:03\) stopped it at iteration (\d+) of 100000; "
        r"to train on: (i2i fit .*--ckpt_path=last --trainer.max_time=null)",
        text,
    )
    assert match, text[-3000:]
    stopped = int(match.group(1))
    assert 0 < stopped < 100000 and "--overwrite" not in match.group(2)
    assert iteration(root / "checkpoints" / "last.ckpt") == stopped
    assert "val/l1_hole=" in text  # validated at the stop
    code, resumed = run_i2i(
        mode,
        *fit_args(
            root,
            f"--model.init_args.max_iterations={stopped + 2}",
            "--ckpt_path=last",
            "--trainer.max_time=null",
        ),
    )
    assert code == 0, resumed[-3000:]
    assert iteration(root / "checkpoints" / "last.ckpt") == stopped + 2
    assert "time limit" not in resumed


def test_shipped_configs_do_not_hard_code_the_log_folder():
    for config in CONFIGS:
        logger = load_config(config)["trainer"].get("logger") or {}
        assert "save_dir" not in (logger.get("init_args") or {}), config.name


def _assert_short_typo_error(code: int, text: str, typo: str) -> None:
    assert code == 2, text[-2000:]
    lines = text.strip().splitlines()
    assert len(lines) < 15, text
    assert typo in lines[0] and "did you mean: model.init_args.r1_gamma" in text
    assert "r1_interval" in text  # the other keys of the group are listed


@pytest.mark.parametrize("mode", MODES)
def test_a_typo_in_a_flag_names_the_close_key(mode):
    code, text = run_i2i(mode, "fit", "--config", str(TINY), "--model.init_args.r1_gama=1")
    _assert_short_typo_error(code, text, "model.init_args.r1_gama")


@pytest.mark.parametrize("mode", MODES)
def test_a_typo_in_a_config_file_names_the_close_key(tmp_path, mode):
    config = yaml.safe_load(TINY.read_text())
    config["model"]["init_args"]["r1_gama"] = 1
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    code, text = run_i2i(mode, "fit", "--config", str(path))
    _assert_short_typo_error(code, text, "model.init_args.r1_gama")


def _printed_data(mode: str, *args: str) -> dict:
    code, text = run_i2i(mode, "fit", *args, "--print_config")
    assert code == 0, text[-3000:]
    return yaml.safe_load(text)["data"]["init_args"]


@pytest.mark.parametrize("mode", MODES)
def test_image_options_are_a_nested_group_in_yaml_and_on_the_command_line(tmp_path, mode):
    overlay = tmp_path / "pad.yaml"
    overlay.write_text("data:\n  init_args:\n    images: {small_images: pad}\n")
    from_yaml = _printed_data(mode, "--config", "demo", "--config", str(overlay))
    from_flag = _printed_data(
        mode, "--config", "demo", "--data.init_args.images.small_images", "pad"
    )
    for data in (from_yaml, from_flag):
        assert data["images"]["small_images"] == "pad"
        assert data["images"]["resize"] == "cover" and data["images"]["hflip"] is True
        assert "small_images" not in data
    # A datamodule whose default differs keeps it: COCO-Stuff upscales small photos.
    assert _printed_data(mode, "--config", "cocostuff")["images"]["small_images"] == "upscale"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["flag", "yaml"])
def test_a_moved_key_fails_in_one_line_naming_its_new_spelling(tmp_path, where, mode):
    if where == "flag":
        code, text = run_i2i(
            mode, "fit", "--config", "demo", "--data.init_args.small_images", "pad"
        )
    else:
        old = tmp_path / "old.yaml"
        old.write_text("data:\n  init_args:\n    small_images: pad\n")
        code, text = run_i2i(mode, "fit", "--config", "demo", "--config", str(old))
    assert code == 2, text[-2000:]
    assert text.strip().splitlines() == [
        "i2i: error: data.init_args.small_images moved: write data.init_args.images.small_images"
    ]


@pytest.mark.parametrize("mode", MODES)
def test_unpaired_crop_moved_to_train_crop(mode):
    code, text = run_i2i(mode, "fit", "--config", "cyclegan_demo", "--data.init_args.crop=center")
    assert code == 2, text[-2000:]
    assert text.strip() == (
        "i2i: error: data.init_args.crop moved: write data.init_args.images.train_crop"
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "old, value, new",
    [
        ("hole_range", "[0.1, 0.4]", "data.init_args.masks.init_args.hole_range"),
        ("mask_shape", "rectangle", "data.init_args.masks.class_path (free_form: "),
        ("mask_dir", "/data/masks", "data.init_args.masks.init_args.folder (masks: {class_path"),
        ("val_mask_dir", "/data/masks", "data.init_args.val_masks.init_args.folder"),
        ("mask_polarity", "white_is_hole", "data.init_args.masks.init_args.polarity"),
    ],
)
def test_a_moved_mask_key_names_the_mask_source_it_went_to(old, value, new, mode):
    code, text = run_i2i(mode, "fit", "--config", "demo", f"--data.init_args.{old}", value)
    assert code == 2, text[-2000:]
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"i2i: error: data.init_args.{old} moved: ")
    assert f"write {new}" in lines[0]


@pytest.mark.parametrize("mode", MODES)
def test_mask_sources_are_chosen_by_class_path(tmp_path, mode):
    data = _printed_data(mode, "--config", "demo")
    assert data["masks"]["class_path"] == "i2i.data.masks.RandomMaskGenerator"
    assert data["masks"]["init_args"]["hole_range"] == [0.1, 0.5] and data["val_masks"] is None
    glcic = _printed_data(mode, "--config", "glcic_demo")["masks"]
    assert glcic["class_path"] == "i2i.data.masks.RectangleMaskGenerator"
    assert "hole_range" not in glcic["init_args"]  # a new class never inherits the old's args
    files = _printed_data(
        mode,
        "--config",
        "demo",
        "--data.init_args.val_masks=MaskFiles",
        f"--data.init_args.val_masks.folder={tmp_path}",
        "--data.init_args.val_masks.polarity=white_is_hole",
    )["val_masks"]
    assert files["class_path"] == "i2i.data.masks.MaskFiles"
    assert files["init_args"]["folder"] == str(tmp_path)
    assert files["init_args"]["polarity"] == "white_is_hole"


def make_train(task: str, args: str, timeout: float = 240):
    return subprocess.run(
        ["make", "train", f"TASK={task}", f"ARGS={args}"],
        cwd=REPO,
        env=env(**REFUSING_PROXY),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _i2i_lines(result) -> list[str]:
    """Output lines, without make's own `make: *** [...] Error 1` trailer (`make[1]: ...` when
    the test itself runs under make, as `make test` does)."""
    return [
        line
        for line in output(result).strip().splitlines()
        if not re.match(r"make(\[\d+\])?: ", line)
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU message needs a machine without")
def test_make_train_edges2shoes_without_data_or_gpu_names_the_url_and_folder(tmp_path):
    folder = tmp_path / "edges2shoes"
    # What `make train TASK=edges2shoes` runs, in the test process, offline.
    args = ("fit", "--config", "configs/edges2shoes.yaml", f"--data.init_args.root={folder}")
    code, text = run_i2i("in_process", *args, **REFUSING_PROXY)
    assert code == 1, text[-3000:]
    lines = text.strip().splitlines()
    assert "Traceback" not in text and "No supported gpu backend" not in text
    assert "edges2shoes.tar.gz" in lines[-1] and str(tmp_path) in lines[-1]
    assert "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/edges2shoes.tar.gz" in lines[-1]
    # The GPU-sized config also says what to change on this machine.
    assert any("--trainer.accelerator=cpu" in line for line in lines)
    # `make train` itself, on two CPU processes: still one message, from the main process,
    # before any process group.
    args = f"--data.init_args.root={folder} --trainer.accelerator=cpu --trainer.devices=2"
    result = make_train("edges2shoes", args)
    assert result.returncode != 0
    text = output(result)
    assert "gloo" not in text.lower() and "Traceback" not in text
    assert text.count("i2i: error") == 1
    assert "edges2shoes.tar.gz" in _i2i_lines(result)[-1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU message needs a machine without")
@pytest.mark.parametrize("mode", MODES)
def test_a_gpu_config_on_a_cpu_machine_says_what_to_change(tmp_path, mode):
    folder = tmp_path / "edges2shoes"
    for split in ("train", "val"):
        (folder / split).mkdir(parents=True)  # the data is there: only the GPU is missing
    code, text = run_i2i(
        mode, "fit", "--config", "configs/edges2shoes.yaml", f"--data.init_args.root={folder}"
    )
    assert code == 1
    assert "Traceback" not in text and "No supported gpu backend" not in text
    last = text.strip().splitlines()[-1]
    assert "configs/edges2shoes.yaml asks for accelerator gpu x 8 devices" in last
    assert "--trainer.accelerator=cpu --trainer.devices=1" in last


def test_the_default_progress_bar_counts_iterations_even_with_rich_installed(tmp_path):
    # gradio pulls in rich, and Lightning then defaults to its Rich bar, which counts batches.
    from i2i.callbacks import IterationProgressBar
    from i2i.lightning_command import run_cli

    args = ["--model.init_args.max_iterations=1", "--trainer.enable_progress_bar=true"]
    cli = run_cli(fit_args(tmp_path, *args, "--trainer.logger=false"))
    bars = [c for c in cli.trainer.callbacks if "ProgressBar" in type(c).__name__]
    assert [type(b) for b in bars] == [IterationProgressBar]
    assert cli.trainer.progress_bar_callback is bars[0]


@pytest.mark.parametrize(
    "name", ["compare", "dip", "inpaint", "translate", "export", "demo", "convert", "data"]
)
@pytest.mark.parametrize("mode", MODES)
def test_every_file_command_prints_its_help_and_exits_0(name, mode):
    from i2i.commands import FILE_COMMANDS

    assert name in FILE_COMMANDS
    args = [name, "optimize", "--help"] if name == "data" else [name, "--help"]
    code, text = run_i2i(mode, *args)
    assert code == 0, text[-2000:]
    assert "usage:" in text and "Traceback" not in text


def test_the_top_level_help_lists_the_file_commands_too():
    from i2i.commands import FILE_COMMANDS

    code, text = run_i2i("in_process", "--help")
    assert code == 0, text[-2000:]
    assert "{fit,validate,test,predict}" in text  # Lightning's own
    listed = text.split("file commands")[1]
    for name, (_, what) in FILE_COMMANDS.items():
        assert f"  {name}" in listed and what in listed, name


def test_a_command_builds_the_parser_of_its_own_subcommand_only(tmp_path):
    """Each subcommand's parser takes a quarter of a second to build: `i2i fit ...` builds fit's
    alone. A config of several subcommands' sections given before the subcommand still works."""
    from i2i.lightning_command import run_cli

    args = fit_args(tmp_path / "run", "--model.init_args.max_iterations=1")
    cli = run_cli(args)
    assert cli.exit_code == 0 and int(cli.model.iteration) == 1
    assert list(cli.subcommands()) == ["fit"] and list(cli._subcommand_parsers) == ["fit"]
    sections = {name: yaml.safe_load(TINY.read_text()) for name in ("fit", "validate")}
    (tmp_path / "both.yaml").write_text(yaml.safe_dump(sections))
    root = f"--trainer.default_root_dir={tmp_path / 'both'}"
    cli = run_cli(["--config", str(tmp_path / "both.yaml"), "fit", root, args[-1]])
    assert cli.exit_code == 0 and int(cli.model.iteration) == 1
    assert list(cli._subcommand_parsers) == ["fit", "validate", "test", "predict"]


def _images(folder, n: int, value: int | None = None, size: int = 48) -> None:
    """`n` PNGs: random RGB photos, or grey masks of one `value`."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        if value is None:
            array = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        else:
            array = np.full((size, size), value, np.uint8)
        Image.fromarray(array).save(folder / f"{i}.png")


def _one_error_line(result) -> str:
    return _one_error_line_of(result.returncode, output(result))


def _one_error_line_of(code: int, text: str) -> str:
    assert code == 1, text[-3000:]
    assert "Traceback" not in text and text.count("i2i: error") == 1, text[-3000:]
    lines = text.strip().splitlines()
    assert lines[-1].startswith("i2i: error: "), text[-3000:]
    return lines[-1]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("images", [1, 2], ids=["one-image", "two-images"])
def test_a_data_error_at_setup_is_one_line_and_the_traceback_is_for_debugging(
    tmp_path, images, mode
):
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    _images(photos, images)
    _images(masks, 2, value=255)  # all known: nothing to learn
    data = [
        f"--data.init_args.data_dir={photos}",
        "--data.init_args.masks=MaskFiles",
        f"--data.init_args.masks.folder={masks}",
        "--data.init_args.masks.polarity=white_is_known",
    ]
    line = _one_error_line_of(*run_i2i(mode, *fit_args(tmp_path / "run", *data)))
    if images == 1:
        assert f"{photos} has 1 image(s) and no separate validation set" in line
    else:
        assert f"masks in {masks} hide almost nothing" in line
    code, text = run_i2i(mode, *fit_args(tmp_path / "run", *data), I2I_DEBUG="1")
    assert code == 1 and "Traceback" in text
    assert text.strip().splitlines()[-1] == line


def test_a_data_error_on_two_processes_is_printed_once(tmp_path):
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    _images(photos, 1)
    _images(masks, 2, value=255)
    args = fit_args(
        tmp_path / "run",
        f"--data.init_args.data_dir={photos}",
        "--data.init_args.masks=MaskFiles",
        f"--data.init_args.masks.folder={masks}",
        "--data.init_args.masks.polarity=white_is_known",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp_find_unused_parameters_true",
    )
    line = _one_error_line(i2i(*args))
    assert f"{photos} has 1 image(s)" in line


@pytest.mark.parametrize("mode", MODES)
def test_a_corrupt_image_in_a_loader_worker_is_one_line(tmp_path, mode):
    # In the test process the worker is forked from it, and what it prints is read too.
    photos = tmp_path / "photos"
    _images(photos, 6)
    bad = photos / "0.png"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # its header still reads
    args = ["--data.init_args.images.on_corrupt=raise", "--data.init_args.num_workers=1"]
    code, text = run_i2i(
        mode, *fit_args(tmp_path / "run", f"--data.init_args.data_dir={photos}", *args)
    )
    line = _one_error_line_of(code, text)
    assert line.startswith(f"i2i: error: Cannot decode image {bad} (OSError: image file is")
    assert "DataLoader worker" not in text


def test_a_file_command_prints_a_user_error_alone(tmp_path):
    # `i2i compare` trains in-process; a config whose data cannot be downloaded (offline).
    code, text = run_i2i(
        "in_process",
        "compare",
        "--configs",
        "edges2shoes",
        "--kimg",
        "0.001",
        "--out",
        str(tmp_path),
        **REFUSING_PROXY,
    )
    assert code == 1, text[-3000:]
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith("i2i: error: Could not download http")


def test_a_user_error_on_another_rank_alone_is_printed_once_and_ends_the_run(tmp_path):
    args = fit_args(
        tmp_path / "run",
        "--model.init_args.max_iterations=100",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp_find_unused_parameters_true",
        "--trainer.callbacks+=tests.helpers.UserErrorOnRank",
    )
    result = i2i(*args, timeout=240)
    text = output(result)
    assert result.returncode != 0, text[-3000:]
    assert "Traceback" not in text and text.count("i2i: error") == 1, text[-3000:]
    assert "i2i: error: test: a bad file read by rank 1 only" in text


def test_rank_zero_waits_for_a_launched_rank_that_is_exiting_before_judging_the_error():
    # Rank 1's user error closes its connections in its exit handlers; rank 0's collective
    # breaks a moment before rank 1 has exited. Rank 0 must then end quietly, not print a
    # traceback of the broken collective beside rank 1's message.
    exiting = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(1); raise SystemExit(1)"]
    )
    cli = SimpleNamespace(
        trainer=SimpleNamespace(strategy=SimpleNamespace(launcher=SimpleNamespace(procs=[exiting])))
    )
    broken = RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer")
    with pytest.raises(SystemExit) as stop:
        I2ICLI._end_launched_ranks(cli, broken)
    assert stop.value.code == 1 and exiting.returncode == 1
    # A rank still at work when rank 0 meets the user's own error is ended at once.
    waiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    cli.trainer.strategy.launcher.procs = [waiting]
    I2ICLI._end_launched_ranks(cli, RunError("a bad file"))
    assert waiting.wait(timeout=10) == -9
