"""Configs that compose (`base:`), ship inside the package and are found by name
(`i2i.config_files`), in a checkout and in an installed wheel."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from i2i.config_files import (
    PACKAGED_CONFIGS,
    config_names,
    load_config,
    merge,
    packaged_config,
    resolve_config_arguments,
)
from i2i.errors import ConfigFileError
from tests.clirun import REPO


def _write(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _print_config(*args: str) -> dict:
    """`i2i fit ARGS --print_config`, in this process, as parsed YAML."""
    from i2i.lightning_command import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(out.getvalue())


# ---- the merge rules ---------------------------------------------------------------------


def test_mappings_merge_and_lists_and_scalars_replace():
    below = {"trainer": {"devices": 8, "precision": "32-true"}, "sides": [46, 92]}
    above = {"trainer": {"devices": 1}, "sides": [10]}
    assert merge(below, above) == {"trainer": {"devices": 1, "precision": "32-true"}, "sides": [10]}


def test_a_new_class_does_not_inherit_the_old_class_init_args():
    below = {"class_path": "a.Old", "init_args": {"width": 64, "depth": 3}}
    assert merge(below, {"class_path": "a.New", "init_args": {"ngf": 8}}) == {
        "class_path": "a.New",
        "init_args": {"ngf": 8},
    }
    # The same class, or no class_path: the init_args merge.
    same = merge(below, {"class_path": "a.Old", "init_args": {"width": 32}})
    assert same == {"class_path": "a.Old", "init_args": {"width": 32, "depth": 3}}
    assert merge(below, {"init_args": {"depth": 5}})["init_args"] == {"width": 64, "depth": 5}
    # A class chosen over a block without one keeps that block's init_args, class_path first.
    chosen = merge({"init_args": {"width": 64}}, {"class_path": "a.New"})
    assert list(chosen) == ["class_path", "init_args"] and chosen["init_args"] == {"width": 64}


def test_bases_resolve_against_their_file_merge_in_order_and_nest(tmp_path):
    _write(tmp_path / "trainer" / "one.yaml", {"trainer": {"devices": 1, "max_steps": -1}})
    _write(
        tmp_path / "trainer" / "cpu.yaml", {"base": "one.yaml", "trainer": {"accelerator": "cpu"}}
    )
    _write(tmp_path / "logging" / "none.yaml", {"trainer": {"logger": False, "devices": 2}})
    experiment = _write(
        tmp_path / "experiment.yaml",
        {"base": ["trainer/cpu.yaml", "logging/none.yaml"], "trainer": {"max_steps": 5}},
    )
    assert load_config(experiment) == {
        "trainer": {"devices": 2, "max_steps": 5, "accelerator": "cpu", "logger": False}
    }


def test_a_missing_base_and_bases_that_name_each_other_are_named(tmp_path):
    missing = _write(tmp_path / "missing.yaml", {"base": ["nowhere.yaml"], "seed_everything": 0})
    with pytest.raises(ConfigFileError, match="nowhere.yaml"):
        load_config(missing)
    _write(tmp_path / "a.yaml", {"base": "b.yaml"})
    _write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigFileError, match="a.yaml -> b.yaml -> a.yaml"):
        load_config(tmp_path / "a.yaml")


def test_the_command_names_a_missing_base_in_one_line(tmp_path, capsys):
    from i2i.lightning_command import main

    missing = _write(tmp_path / "missing.yaml", {"base": ["nowhere.yaml"], "seed_everything": 0})
    assert main(["fit", "--config", str(missing), "--print_config"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    expected = f"base 'nowhere.yaml' of a config in {tmp_path}: no file {tmp_path / 'nowhere.yaml'}"
    assert error == [f"i2i: error: {expected}"]


# ---- names and the packaged folder ---------------------------------------------------------


def test_configs_in_a_checkout_is_the_packaged_folder():
    assert (REPO / "configs").resolve() == PACKAGED_CONFIGS.resolve()
    assert {"demo", "edges2shoes", "classical"} <= set(config_names())
    assert not {"wandb", "gpu8_ddp"} & set(config_names())  # fragments are no experiments


def test_a_bare_name_means_the_packaged_config_and_a_path_stays_a_path(tmp_path, monkeypatch):
    assert packaged_config("demo") == PACKAGED_CONFIGS / "demo.yaml"
    assert packaged_config("configs/demo.yaml") is None and packaged_config("nothing") is None
    args = ["fit", "--config", "demo", "--config=edges2shoes", "--config", "mine.yaml"]
    assert resolve_config_arguments(args) == [
        "fit",
        "--config",
        str(PACKAGED_CONFIGS / "demo.yaml"),
        f"--config={PACKAGED_CONFIGS / 'edges2shoes.yaml'}",
        "--config",
        "mine.yaml",
    ]
    # A file of that name where the command runs wins over the packaged config.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("seed_everything: 1\n")
    assert resolve_config_arguments(["--config", "demo"]) == ["--config", "demo"]


@pytest.mark.parametrize("name", config_names())
def test_every_packaged_config_loads_with_its_bases(name):
    config = load_config(name)
    assert "base" not in config
    assert {"trainer", "model", "data"} <= set(config), name
    assert "." in config["model"]["class_path"] and "." in config["data"]["class_path"], name


def test_the_bare_name_and_the_checkout_path_print_the_same_config():
    by_name = _print_config("--config", "demo")
    assert by_name == _print_config("--config", "configs/demo.yaml")
    assert by_name["trainer"]["default_root_dir"] == "runs/demo"
    assert by_name["model"]["init_args"]["generator"]["init_args"]["channel_max"] == 64


def test_a_config_with_bases_prints_as_the_same_config_written_out(tmp_path):
    """The parser merges `base:` as `load_config` does: an overlay over the demo prints as its
    merged content, and several --config still merge in order after it."""
    overlay = _write(
        tmp_path / "overlay.yaml",
        {
            "base": [str(PACKAGED_CONFIGS / "demo.yaml")],
            "trainer": {"default_root_dir": str(tmp_path / "run")},
            "model": {"init_args": {"max_iterations": 7}},
        },
    )
    flat = _write(tmp_path / "flat.yaml", load_config(overlay))
    printed = _print_config("--config", str(overlay))
    assert printed == _print_config("--config", str(flat))
    assert printed["model"]["init_args"]["max_iterations"] == 7
    assert printed["model"]["init_args"]["classical_reference"] == "biharmonic"  # from the base
    more = _write(tmp_path / "more.yaml", {"model": {"init_args": {"max_iterations": 9}}})
    twice = _print_config("--config", str(overlay), "--config", str(more))
    assert twice["model"]["init_args"]["max_iterations"] == 9


# ---- an installed wheel --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv to build and install a wheel")
def test_an_installed_wheel_finds_its_configs_by_name(tmp_path):
    """A wheel built from the checkout, installed alone into a fresh environment (this
    environment's dependencies visible through a plain path, so that i2i comes from the wheel),
    trains `--config demo` and lists its configs in `i2i compare`."""
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", source / "src", ignore=ignore)
    uv_env = {**os.environ, "UV_OFFLINE": "1", "UV_NO_CONFIG": "1"}
    uv_env.pop("VIRTUAL_ENV", None)

    def uv(*args: str) -> None:
        result = subprocess.run(["uv", *args], env=uv_env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr

    dist = tmp_path / "dist"
    build = ["build", "--wheel", "--no-build-isolation", "--python", sys.executable]
    uv(*build, "--out-dir", str(dist), str(source))
    (wheel,) = dist.glob("i2i-*.whl")
    venv = tmp_path / "venv"
    uv("venv", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    uv("pip", "install", "--python", str(python), "--no-deps", str(wheel))
    fresh = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (fresh / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["WANDB_MODE"] = "disabled"

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)

    # i2i from the wheel, and `i2i compare` lists the configs packaged with it.
    probe = "import i2i, i2i.compare as c; print(i2i.__file__); print(c.PACKAGED_CONFIGS)"
    where = run(python, "-c", probe)
    assert where.returncode == 0, where.stderr[-2000:]
    module, configs = where.stdout.split()
    assert Path(module).is_relative_to(venv) and (Path(configs) / "demo.yaml").is_file()
    printed = run(venv / "bin" / "i2i", "fit", "--config", "demo", "--print_config")
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert yaml.safe_load(printed.stdout)["trainer"]["default_root_dir"] == "runs/demo"
    assert run(venv / "bin" / "i2i", "compare", "--help").returncode == 0
