"""The GAN task and the CLI end to end: recipe, exact resume, signals, configs, errors, DDP."""

from __future__ import annotations

import errno
import json
import math
import os
import pickle
import signal
import stat
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.plugins import DoublePrecision
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

from i2i.callbacks import AtomicCheckpointIO
from i2i.cli import I2ICLI
from i2i.config_files import load_config
from i2i.errors import CheckpointWriteError
from i2i.io import umask
from i2i.lightning_command import main
from i2i.lightning_command import run_cli as run_i2i
from i2i.networks import CoModDiscriminator, CoModGenerator
from i2i.tasks import CoModGANTask, ImageTask
from tests import clirun
from tests.conftest import TINY_D, TINY_G

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "configs" / "tiny.yaml")
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def run_cli(*args: str, tmp_path: Path, config: str = TINY):
    root = str(tmp_path / "run")
    return run_i2i(
        [
            "fit",
            "--config",
            config,
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}",
            *args,
        ]
    )


def test_official_recipe_settings():
    task = CoModGANTask(
        CoModGenerator(32, cond_channels=4, **TINY_G),
        CoModDiscriminator(32, cond_channels=1, **TINY_D),
    )
    opt_g, opt_d = task.configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.0016)
    assert opt_g.param_groups[0]["betas"] == pytest.approx((0.0, 0.99**0.8))
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.002 * 16 / 17)
    assert opt_d.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert task.ema_beta(32) == pytest.approx(0.5 ** (32 / 10_000))  # ~0.99778
    assert task.ema_beta(32) == pytest.approx(0.99778, abs=1e-5)
    # The half-life is in images: 4 ranks x 8 decay as fast as 1 rank x 32.
    assert task.ema_beta(4 * 8) == task.ema_beta(32)
    assert math.isclose(task.ema_beta(16) ** 2, task.ema_beta(32))


def test_fit_logs_and_trains(tmp_path):
    cli = run_cli("--model.init_args.max_iterations=3", tmp_path=tmp_path)
    task, trainer = cli.model, cli.trainer
    assert int(task.iteration) == 3  # max_steps counts optimizer steps: G + D per iteration
    assert int(task.images_seen) == 3 * 2
    logged = trainer.callback_metrics
    for key in (
        "train/loss_g",
        "train/loss_d",
        "train/r1",
        "train/logits_real",
        "train/logits_fake",
        "train/kimg",
        "val/l1_hole",
    ):
        assert key in logged and torch.isfinite(logged[key]), key
    assert logged["train/kimg"].item() == pytest.approx(0.006)
    assert task.generator.w_avg.abs().sum() > 0  # the running average moved
    torch.testing.assert_close(task.generator_ema.w_avg, task.generator.w_avg)
    g = dict(task.generator.named_parameters())
    assert any(not torch.equal(p, g[n]) for n, p in task.generator_ema.named_parameters())
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "last.ckpt").is_file() and list(ckpts.glob("best-*.ckpt"))
    assert not list(ckpts.glob(".*tmp*"))  # atomic writes leave no temporaries
    assert list((tmp_path / "run" / "samples").glob("iter*.png"))


def _ema_state(task):
    return {k: v.clone() for k, v in task.generator_ema.state_dict().items()}


def _assert_same_training_state(a, b):
    assert int(a.iteration) == int(b.iteration) and int(a.images_seen) == int(b.images_seen)
    sa, sb = _ema_state(a), _ema_state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-6, msg=f"G_ema.{k} differs")
    for (n, p), q in zip(
        a.discriminator.named_parameters(), b.discriminator.parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=f"D.{n} differs")


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> ImageTask:
    """The tiny run's 6 iterations in one go: what every stopped-and-resumed run must equal."""
    root = tmp_path_factory.mktemp("straight")
    return run_cli("--model.init_args.max_iterations=6", tmp_path=root).model


def test_resume_continues_exactly(straight, tmp_path):
    # 2N iterations in one go == N iterations, a checkpoint, then N more (N = 3: the lazy R1
    # phase with interval 2 is odd at the cut, so a wrong phase after resuming would show).
    run_cli("--model.init_args.max_iterations=3", tmp_path=tmp_path / "b")
    # last.ckpt is the end of the run (iteration 3), not the last validation (2) nor the best.
    last = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["state_dict"]["iteration"].item() == 3
    resumed = run_cli(
        "--model.init_args.max_iterations=6", "--ckpt_path=last", tmp_path=tmp_path / "b"
    ).model
    assert int(resumed.iteration) == 6
    _assert_same_training_state(straight, resumed)


def test_sigterm_leaves_a_checkpoint_that_resumes_exactly(straight, tmp_path):
    cli = run_cli(
        "--model.init_args.max_iterations=6",
        "--trainer.callbacks+=tests.helpers.SignalAt",
        "--trainer.callbacks.iteration=4",
        tmp_path=tmp_path / "b",
    )
    assert int(cli.model.iteration) == 4  # stopped right after the signalled iteration
    last = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["state_dict"]["iteration"].item() == 4
    resumed = run_cli(
        "--model.init_args.max_iterations=6", "--ckpt_path=last", tmp_path=tmp_path / "b"
    ).model
    _assert_same_training_state(straight, resumed)


@pytest.mark.parametrize("ignored", [False, True], ids=["from_a_terminal", "ignored"])
def test_ctrl_c_stops_at_an_iteration_unless_the_process_was_started_to_ignore_it(
    tmp_path, ignored
):
    """A script's `i2i fit ... &` is started with SIGINT ignored: the Ctrl-C that stops the
    script must not stop the run, as it does not stop a command run from a terminal's prompt."""
    given = signal.SIG_IGN if ignored else signal.default_int_handler
    signal.signal(signal.SIGINT, given)  # conftest restores the worker's own after the test
    cli = run_cli(
        "--model.init_args.max_iterations=3",
        "--trainer.callbacks+=tests.helpers.SignalAt",
        "--trainer.callbacks.iteration=1",
        f"--trainer.callbacks.signum={int(signal.SIGINT)}",
        tmp_path=tmp_path,
    )
    assert signal.getsignal(signal.SIGINT) is given  # as it was before
    assert int(cli.model.iteration) == (3 if ignored else 1)


def test_atomic_checkpoint_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        io.save_checkpoint({"step": 2, "bad": lambda: None}, path)  # unpicklable mid-write
    assert torch.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_atomic_checkpoint_on_a_full_disk_keeps_the_old_file_and_no_temporary(tmp_path):
    class FullDiskIO(AtomicCheckpointIO):
        def write(self, checkpoint, tmp) -> None:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask()  # a plain file's mode
    with pytest.raises(CheckpointWriteError, match=f"could not write the checkpoint {path}: the"):
        FullDiskIO().save_checkpoint({"step": 2}, path)
    assert torch.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


class OwnCheckpointIO(TorchCheckpointIO):
    """A user's own CheckpointIO (`--trainer.plugins`): the CLI keeps it."""


def instantiate(config: str | Path, *args: str) -> I2ICLI:
    """The CLI's model, data and trainer for `config`, without running anything."""
    return I2ICLI(
        ImageTask,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        args=["--config", str(config), "--trainer.logger=false", *args],
    )


def _checkpoint_io(*args: str) -> tuple[L.Trainer, object]:
    trainer = instantiate(TINY, *args).trainer
    return trainer, trainer.strategy.checkpoint_io


def test_the_cli_writes_checkpoints_atomically_beside_the_users_plugins():
    trainer, io = _checkpoint_io()
    assert type(io) is AtomicCheckpointIO
    # A plugin of another kind is kept beside it.
    trainer, io = _checkpoint_io("--trainer.plugins=lightning.pytorch.plugins.DoublePrecision")
    assert type(io) is AtomicCheckpointIO and type(trainer.precision_plugin) is DoublePrecision
    # A wrapping one gets it inside; Lightning's plain one is replaced by it.
    trainer, io = _checkpoint_io("--trainer.plugins=lightning.pytorch.plugins.io.AsyncCheckpointIO")
    assert type(io) is AsyncCheckpointIO and type(io.checkpoint_io) is AtomicCheckpointIO
    trainer, io = _checkpoint_io("--trainer.plugins=lightning.pytorch.plugins.io.TorchCheckpointIO")
    assert type(io) is AtomicCheckpointIO
    # The user's own CheckpointIO is theirs to keep (a Trainer takes one).
    trainer, io = _checkpoint_io(f"--trainer.plugins={__name__}.OwnCheckpointIO")
    assert type(io) is OwnCheckpointIO


def test_i2i_fit_saves_every_checkpoint_through_the_atomic_plugin(tmp_path, monkeypatch):
    written = []
    write = AtomicCheckpointIO.write
    monkeypatch.setattr(
        AtomicCheckpointIO, "write", lambda self, c, tmp: (written.append(tmp), write(self, c, tmp))
    )
    cli = run_cli("--model.init_args.max_iterations=2", tmp_path=tmp_path)
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    folder = tmp_path / "run" / "checkpoints"
    saved = sorted(folder.iterdir())
    assert "last.ckpt" in [p.name for p in saved] and all(p.suffix == ".ckpt" for p in saved)
    assert {tmp.parent for tmp in written} == {folder}
    assert {p.name for p in saved} <= {tmp.name.split(".tmp")[0][1:] for tmp in written}


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_parses_and_instantiates(config):
    # On the meta device the full-size networks are built (every class and argument checked)
    # without allocating or initialising their weights, which is what costs seconds here.
    with torch.device("meta"):
        cli = instantiate(
            config, "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto"
        )
    assert all(p.is_meta for p in cli.model.parameters())
    assert isinstance(cli.model, ImageTask)
    # Every network with a resolution of its own has the data's (fully convolutional ones, as
    # GLCIC's completion network, have none).
    sized = [m for m in cli.model.children() if hasattr(m, "img_resolution")]
    assert all(m.img_resolution == cli.datamodule.resolution for m in sized)
    raw = load_config(config)
    assert cli.model.__class__.__name__ == raw["model"]["class_path"].rsplit(".", 1)[1]


def test_print_config_and_typos(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", TINY, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["generator"]["class_path"] == "i2i.networks.CoModGenerator"
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", TINY, "--model.init_args.r1_gama=1"])
    assert exit_info.value.code != 0
    assert "r1_gama" in capsys.readouterr().err


def test_bad_data_errors_name_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=str(empty)):
        run_cli(f"--data.init_args.data_dir={empty}", tmp_path=tmp_path)
    with pytest.raises(ValueError, match="power of two"):
        run_cli("--data.init_args.resolution=48", tmp_path=tmp_path)
    with pytest.raises(ValueError, match="need a polarity"):
        run_cli(
            "--data.init_args.masks=MaskFiles",
            f"--data.init_args.masks.folder={empty}",
            tmp_path=tmp_path,
        )


def test_wandb_is_offline_and_never_prompts(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(os, "environ", os.environ.copy())  # the CLI's default stays in this test
    root = tmp_path / "run"
    cli = run_i2i(
        [
            "fit",
            "--config",
            TINY,
            "--model.init_args.max_iterations=1",
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
            f"--trainer.logger.save_dir={root}",
            "--trainer.logger.project=i2i-test",
        ]
    )
    cli.trainer.logger.experiment.finish()  # later tests start their own runs
    assert os.environ["WANDB_MODE"] == "offline"
    runs = list((root / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb"))


def test_ddp_two_processes_keep_g_ema_and_w_avg_identical(tmp_path):
    """Two gloo ranks forked by Lightning from the test process (ddp_fork, as in a notebook:
    no imports to pay); `ddp`'s launched processes are the elastic and shard tests'."""
    out, root = tmp_path / "digests", tmp_path / "run"
    code, text = clirun.run_i2i(
        "in_process",
        "fit",
        "--config",
        str(TINY),
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--trainer.strategy=ddp_fork_find_unused_parameters_true",
        "--model.init_args.max_iterations=3",
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.save_dir={root}",
        "--trainer.callbacks+=tests.helpers.RankDigest",
        f"--trainer.callbacks.out_dir={out}",
    )
    assert code == 0, text[-3000:]
    # The ranks send back the best checkpoint only: the summary still names the last one.
    assert f"(last: {root / 'checkpoints' / 'last.ckpt'}, best: " in text
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert records[0]["world_size"] == 2
    assert records[0]["g_ema"] == records[1]["g_ema"]
    assert records[0]["draw"] != records[1]["draw"]  # each rank draws its own latents
    assert records[0]["w_avg"] == records[1]["w_avg"]
    assert records[0]["images_seen"] == 3 * 2 * 2  # iterations x batch x world size


def _write_masks(folder: Path, hole_fraction: float, n: int = 4) -> None:
    """White = hole masks, the left `hole_fraction` of each image is the hole."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(n):
        img = Image.new("L", (48, 48), 0)
        img.paste(255, (0, 0, int(48 * hole_fraction), 48))
        img.save(folder / f"mask{i}.png")


def test_mask_files_train_and_inverted_polarity_is_caught(tmp_path):
    masks = tmp_path / "masks"
    _write_masks(masks, hole_fraction=0.2)  # 48 px files for a 32 px run: resized (nearest)
    root = tmp_path / "run"
    common = [
        "--model.init_args.max_iterations=1",
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.save_dir={root}",
        "--data.init_args.masks=MaskFiles",
        f"--data.init_args.masks.folder={masks}",
        "--data.init_args.val_masks=MaskFiles",
        f"--data.init_args.val_masks.folder={masks}",
    ]
    polarity = ["--data.init_args.masks.polarity=white_is_hole"]
    polarity += ["--data.init_args.val_masks.polarity=white_is_hole"]
    cli = run_i2i(["fit", "--config", TINY, *common, *polarity])
    hole = 1 - cli.datamodule.val_dataset[0]["mask"].mean().item()
    assert hole == pytest.approx(0.2, abs=0.04)
    with pytest.raises(ValueError, match="white_is_hole.*inverted|inverted.*white_is_hole"):
        run_i2i(
            ["fit", "--config", TINY, *common, "--data.init_args.masks.polarity=white_is_known"]
            + ["--data.init_args.val_masks.polarity=white_is_known"]
            + ["--overwrite"]  # the same folder as the run above
        )


def test_bf16_mixed_precision_trains(tmp_path):
    cli = run_cli(
        "--trainer.precision=bf16-mixed", "--model.init_args.max_iterations=2", tmp_path=tmp_path
    )
    assert int(cli.model.iteration) == 2
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss_d"])
    assert torch.isfinite(cli.trainer.callback_metrics["train/r1"])


def test_make_train_lists_configs_for_an_unknown_task():
    result = subprocess.run(
        ["make", "train", "TASK=no_such_task"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Unknown TASK=no_such_task" in result.stdout and "demo" in result.stdout
