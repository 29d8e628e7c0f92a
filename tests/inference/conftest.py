"""Models for the inference tests: one short `i2i fit` (a real Lightning checkpoint) shared by
the session, and tiny untrained model files of each kind written with `write_model`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from i2i.inference.model import build_task, write_model
from tests.clirun import fit_args
from tests.conftest import TINY_G

RES = 32


def generator(cond_channels: int) -> dict:
    return {
        "class_path": "i2i.networks.CoModGenerator",
        "init_args": {"img_resolution": RES, "cond_channels": cond_channels, **TINY_G},
    }


TASKS = {
    "inpainting": ("i2i.tasks.InpaintingTask", {"generator": generator(4)}),
    "edges": ("i2i.tasks.EdgesToPhotoTask", {"generator": generator(1)}),
    "labels": ("i2i.tasks.LabelsToPhotoTask", {"generator": generator(5), "num_classes": 5}),
}


def tiny_model_file(folder: Path, kind: str, seed: int = 0) -> Path:
    """An untrained tiny model of `kind` as a .safetensors + .json pair; the card's path."""
    class_path, init_args = TASKS[kind]
    torch.manual_seed(seed)
    task = build_task(class_path, init_args)
    return write_model(
        folder / kind,
        task_class_path=class_path,
        task_init_args=init_args,
        network_state=task.sampling_network.state_dict(),
        resolution=RES,
        kind=kind,
        source="tests: untrained",
    )


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {kind: tiny_model_file(folder, kind) for kind in TASKS}


@pytest.fixture(scope="session")
def fitted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of `i2i fit` on tests/configs/tiny.yaml, 2 iterations, run in-process (a
    subprocess would pay the imports again): its checkpoints/last.ckpt is a real checkpoint of
    the inpainting task, with the model config the CLI records."""
    from i2i.lightning_command import run_cli

    root = tmp_path_factory.mktemp("fit") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cli = run_cli(
            fit_args(root, "--model.init_args.max_iterations=2", "--trainer.logger=false")
        )
    finally:
        torch.set_num_threads(threads)
    assert cli.exit_code == 0
    assert (root / "checkpoints" / "last.ckpt").is_file()
    return root


# The commands' tests run the console script in a subprocess where marked slow, and its
# dispatch (`i2i.commands.run`, what the script calls) in-process otherwise: a subprocess pays
# ~8 s of imports on the 2-core machines.
