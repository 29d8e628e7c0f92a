"""The model file format: .ckpt -> safetensors + JSON card -> the same outputs; damaged,
missing and mismatched files are named with the fix."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import pytest
import torch

from i2i.data.image_options import ImageOptions
from i2i.errors import ModelFileError
from i2i.inference.model import (
    InferenceModel,
    NoDiscriminator,
    load_model,
    load_task,
    save_model,
    write_model,
)
from i2i.io import sha256_of
from i2i.safe_load import load_checkpoint
from tests.inference.conftest import RES, TASKS


def batch(n: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(n, 3, RES, RES, generator=g) * 2 - 1,
        "mask": (torch.rand(n, 1, RES, RES, generator=g) > 0.4).float(),
        "index": torch.arange(n) + 5,
    }


def test_checkpoint_round_trip_gives_identical_outputs(fitted_run, tmp_path, one_torch_thread):
    ckpt = fitted_run / "checkpoints" / "last.ckpt"
    from_ckpt = load_model(ckpt)
    assert isinstance(from_ckpt.task.discriminator, NoDiscriminator)
    assert (from_ckpt.kind, from_ckpt.resolution, from_ckpt.has_latent) == (
        "inpainting",
        (32, 32),
        True,
    )
    assert from_ckpt.z_dim == 32 and from_ckpt.cond_channels == 4
    card_path = save_model(from_ckpt, tmp_path / "model", metrics={"val/l1_hole": 0.5})
    card = json.loads(card_path.read_text())
    assert card["kind"] == "inpainting" and card["resolution"] == [32, 32]
    assert card["kimg"] == pytest.approx(2 * 2 / 1000)  # 2 iterations x batch 2 (G's reals)
    assert card["metrics"] == {"val/l1_hole": 0.5} and card["source"] == str(ckpt)
    assert card["task"]["class_path"] == "i2i.tasks.InpaintingTask"
    args = card["task"]["init_args"]
    assert "generator" in args and not any(
        k.startswith(("discriminator", "optimizer")) for k in args
    )
    weights = tmp_path / "model.safetensors"
    assert card["weights"] == {"file": weights.name, "sha256": sha256_of(weights)}

    # The trained G_ema, not the training generator nor a fresh one.
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    from_file = load_model(weights)
    for k, v in from_file.task.generator_ema.state_dict().items():
        assert torch.equal(v, state[f"generator_ema.{k}"]), k
    b = batch()
    for variant in (0, 1):
        a = from_ckpt.sample(b, seed=7, variant=variant, truncation_psi=0.7)
        assert torch.equal(a, from_file.sample(b, seed=7, variant=variant, truncation_psi=0.7))
    assert not torch.equal(from_ckpt.sample(b, seed=7), from_ckpt.sample(b, seed=8))
    # The task's composite: known pixels are the input's.
    known = b["mask"].bool().expand(-1, 3, -1, -1)
    assert torch.equal(from_file.sample(b, seed=1)[known], b["image"][known])
    # __call__ with explicit z and const noise, the global RNG seeded for the dropout on g.
    z = torch.randn(2, 32)
    torch.manual_seed(0)
    a = from_ckpt(b, z, truncation_psi=0.5)
    torch.manual_seed(0)
    assert torch.equal(a, from_file(b, z, truncation_psi=0.5))
    assert a.shape == (2, 3, 32, 32)
    # Every name of the pair loads.
    for name in (tmp_path / "model", tmp_path / "model.json"):
        assert torch.equal(load_model(name).sample(b, seed=2), from_file.sample(b, seed=2))


def test_load_task_from_run_config_when_the_checkpoint_lacks_the_record(fitted_run, tmp_path):
    ckpt = torch.load(
        fitted_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    del ckpt["i2i"]
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(ckpt, run / "checkpoints" / "old.ckpt")
    with pytest.raises(ModelFileError, match=r"config\.yaml"):
        load_task(run / "checkpoints" / "old.ckpt")
    shutil.copy(fitted_run / "config.yaml", run / "config.yaml")
    task, card = load_task(run / "checkpoints" / "old.ckpt")
    assert card["kind"] == "inpainting"
    for k, v in task.generator_ema.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][f"generator_ema.{k}"])


def test_a_checkpoint_with_the_old_separate_image_options_still_loads(fitted_run, tmp_path):
    path = fitted_run / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint(path)  # weights-only: the options are kept as plain values
    hp = ckpt["datamodule_hyper_parameters"]
    assert hp["images"] == asdict(ImageOptions())
    # Written before `images` existed: the options were separate datamodule arguments.
    old = {k: v for k, v in hp.items() if k != "images"} | asdict(ImageOptions())
    ckpt["datamodule_hyper_parameters"] = type(hp)(old)
    torch.save(ckpt, tmp_path / "old.ckpt")
    model = load_model(tmp_path / "old.ckpt")
    assert (model.kind, model.resolution) == ("inpainting", (32, 32))
    b = batch()
    assert torch.equal(model.sample(b, seed=3), load_model(path).sample(b, seed=3))


def test_tampered_weights_fail_with_the_digest(model_files, tmp_path):
    for name in ("inpainting.json", "inpainting.safetensors"):
        shutil.copy(model_files["inpainting"].parent / name, tmp_path / name)
    weights = tmp_path / "inpainting.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # one bit pattern in the last tensor's bytes
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256") as e:
        load_model(weights)
    assert str(weights) in str(e.value) and "inpainting.json" in str(e.value)


def test_missing_files_are_named(model_files, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model at"):
        load_model(tmp_path / "nothing.safetensors")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_model(tmp_path / "nothing.ckpt")
    shutil.copy(model_files["edges"], tmp_path / "edges.json")  # a card without its weights
    with pytest.raises(FileNotFoundError, match=r"edges\.safetensors.*place edges\.safetensors"):
        load_model(tmp_path / "edges.json")
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    with pytest.raises(ModelFileError, match="not an i2i model card"):
        load_model(tmp_path / "bad.json")
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown model file type '.pt'"):
        load_model(tmp_path / "model.pt")


def test_weights_that_do_not_fit_the_card(model_files, tmp_path):
    card = json.loads(model_files["edges"].read_text())
    card["task"]["init_args"]["generator"]["init_args"]["channel_max"] = 16
    for name in ("edges.safetensors",):
        shutil.copy(model_files["edges"].parent / name, tmp_path / name)
    (tmp_path / "edges.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=r"do not fit the network.*card and the weights"):
        load_model(tmp_path / "edges.json")


def test_kinds_and_their_attributes(model_files):
    edges, labels = load_model(model_files["edges"]), load_model(model_files["labels"])
    assert isinstance(edges, InferenceModel)
    assert (edges.kind, edges.cond_channels, edges.num_classes) == ("edges", 1, None)
    assert (labels.kind, labels.cond_channels, labels.num_classes) == ("labels", 5, 5)
    assert labels.card["task"]["init_args"]["num_classes"] == 5
    b = {
        "label": torch.randint(0, 5, (2, RES, RES)),
        "image": labels.placeholder_image(2),
        "index": torch.arange(2),
    }
    out = labels.sample(b, seed=0)
    assert out.shape == (2, 3, RES, RES) and out.isfinite().all()


def test_write_model_checks_its_kind_and_replaces_both_files(tmp_path):
    class_path, init_args = TASKS["edges"]
    with pytest.raises(ValueError, match="kind must be one of"):
        write_model(
            tmp_path / "m",
            task_class_path=class_path,
            task_init_args=init_args,
            network_state={},
            resolution=32,
            kind="faces",
        )
    assert not list(tmp_path.iterdir())
    path = write_model(
        tmp_path / "m.safetensors",
        task_class_path=class_path,
        task_init_args=init_args,
        network_state={"w": torch.ones(2)},
        resolution=(32, 64),
        kind="edges",
        kimg=1.5,
    )
    assert path == tmp_path / "m.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    card = json.loads(path.read_text())
    assert card["resolution"] == [32, 64] and card["kimg"] == 1.5
