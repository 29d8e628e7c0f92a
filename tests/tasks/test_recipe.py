"""The official training recipe, step by step: the lazy R1 step, w_avg, mixing, TF32, float64."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from i2i.data.inpainting import InpaintingDataModule
from i2i.lightning_command import run_cli
from i2i.losses import r1_penalty
from i2i.networks import CoModDiscriminator, CoModGenerator
from i2i.tasks import EdgesToPhotoTask, InpaintingTask, LabelsToPhotoTask
from tests.conftest import TINY_D, TINY_G
from tests.tasks.test_translation import fast_dev_run, shapes

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "configs" / "tiny.yaml")


def fit_tiny(tmp_path: Path, *args: str):
    root = str(tmp_path / "run")
    return run_cli(
        [
            "fit",
            "--config",
            TINY,
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}",
            *args,
        ]
    )


def test_lazy_r1_is_its_own_adam_step_of_d(tmp_path):
    # 16 iterations from scratch with R1 every 16: one R1 step (iteration 0) on top of 16 D steps.
    fit_tiny(
        tmp_path,
        "--model.init_args.max_iterations=16",
        "--model.init_args.r1_interval=16",
        "--trainer.val_check_interval=16",
    )
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["state_dict"]["iteration"].item() == 16
    opt_g, opt_d = ckpt["optimizer_states"]
    assert {float(s["step"]) for s in opt_g["state"].values()} == {16.0}
    assert {float(s["step"]) for s in opt_d["state"].values()} == {17.0}


@pytest.mark.parametrize("r1_interval,updates", [(4, 2), (0, 1)])
def test_an_r1_iteration_updates_d_twice(monkeypatch, r1_interval, updates):
    # Iteration 0 is an R1 iteration: the D step, then the R1 step (the penalty alone).
    G = CoModGenerator(32, cond_channels=4, **TINY_G)
    D = CoModDiscriminator(32, cond_channels=1, **TINY_D)
    task = InpaintingTask(G, D, r1_interval=r1_interval, r1_gamma=3.0)
    snapshots = []
    original = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.param_groups[0]["params"][0] is next(D.parameters()):
            snapshots.append([p.detach().clone() for p in D.parameters()])
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    dm = InpaintingDataModule(
        resolution=32,
        batch_size=2,
        val_batch_size=2,
        num_workers=0,
        synthetic_length=16,
        max_val_images=4,
    )
    fast_dev_run(task, dm)
    assert len(snapshots) == updates
    if updates == 2:
        after_d, after_r1 = snapshots
        assert any(not torch.equal(a, b) for a, b in zip(after_d, after_r1, strict=True))


def test_w_avg_moves_on_every_training_pass(tmp_path, monkeypatch):
    calls = []
    original = CoModGenerator.update_w_avg

    def counting(self, w, beta=None):
        calls.append(w.shape[0])
        return original(self, w, beta)

    monkeypatch.setattr(CoModGenerator, "update_w_avg", counting)
    fit_tiny(tmp_path, "--model.init_args.max_iterations=3", "--trainer.val_check_interval=3")
    assert len(calls) == 2 * 3  # the G step's pass and the D step's pass, every iteration


def _crossovers(ws: torch.Tensor) -> list[int]:
    """Per sample, the first layer whose w differs from layer 0 (num_ws: not mixed)."""
    differs = (ws != ws[:, :1]).any(dim=2)  # (N, num_ws)
    first = torch.where(differs.any(1), differs.float().argmax(1), torch.tensor(ws.shape[1]))
    return first.tolist()


def test_style_mixing_draws_once_per_minibatch_by_default():
    G = CoModGenerator(32, cond_channels=4, **TINY_G)
    z = torch.randn(64, G.z_dim)
    per_batch = [set(_crossovers(G.map(z, style_mixing_prob=0.5))) for _ in range(12)]
    assert all(len(s) == 1 for s in per_batch)  # one coin and one crossover for all 64
    assert len(set.union(*per_batch)) > 1  # ... drawn anew each minibatch
    assert any(G.num_ws in s for s in per_batch) and any(G.num_ws not in s for s in per_batch)
    per_sample = set(_crossovers(G.map(z, style_mixing_prob=0.5, style_mixing_per_sample=True)))
    assert len(per_sample) > 2


def test_style_mixing_per_sample_is_a_task_option():
    G = CoModGenerator(32, cond_channels=4, **TINY_G)
    D = CoModDiscriminator(32, cond_channels=1, **TINY_D)
    assert InpaintingTask(G, D).hparams.style_mixing_per_sample is False
    assert InpaintingTask(G, D, style_mixing_per_sample=True).hparams.style_mixing_per_sample


def test_r1_covers_the_condition_when_asked():
    a, b = torch.randn(3, 4, 4), torch.randn(3, 4, 4)

    def critic(x, cond):
        return (x * a).flatten(1).sum(1) + (cond * b).flatten(1).sum(1)

    x, c = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    image_only, _ = r1_penalty(critic, x, c)
    both, _ = r1_penalty(critic, x, c, include_condition=True)
    torch.testing.assert_close(image_only, torch.full((5,), a.square().sum().item()))
    torch.testing.assert_close(both, torch.full((5,), (a.square().sum() + b.square().sum()).item()))


def test_edges_r1_includes_the_condition_labels_and_inpainting_do_not(monkeypatch):
    seen = []
    import i2i.tasks.comod as base

    original = base.r1_penalty

    def recording(*args, include_condition=False):
        seen.append(include_condition)
        return original(*args, include_condition=include_condition)

    monkeypatch.setattr(base, "r1_penalty", recording)
    for kind, channels, expected in (("edges", 1, True), ("labels", 6, False)):
        G = CoModGenerator(32, cond_channels=channels, **TINY_G)
        D = CoModDiscriminator(32, cond_channels=channels, **TINY_D)
        if kind == "edges":
            task = EdgesToPhotoTask(G, D, r1_interval=2)
        else:
            task = LabelsToPhotoTask(G, D, num_classes=6, r1_interval=2)
        seen.clear()
        fast_dev_run(task, shapes(kind))
        assert seen == [expected]
    G = CoModGenerator(32, cond_channels=1, **TINY_G)
    D = CoModDiscriminator(32, cond_channels=1, **TINY_D)
    assert EdgesToPhotoTask(G, D, r1_includes_condition=False).r1_includes_condition is False


def test_rgb_edges_condition_trains_with_three_channels():
    # The official edges condition is the 3-channel RGB edges image.
    G = CoModGenerator(32, cond_channels=3, **TINY_G)
    D = CoModDiscriminator(32, cond_channels=3, **TINY_D)
    task = EdgesToPhotoTask(G, D, r1_interval=2)
    dm = shapes("edges")

    class RGBEdges(torch.utils.data.Dataset):
        def __init__(self, inner):
            self.inner = inner

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, i):
            item = dict(self.inner[i])
            item["edges"] = item["edges"].expand(3, -1, -1).clone()
            return item

    build = dm.build_datasets
    dm.build_datasets = lambda: tuple(RGBEdges(d) for d in build())
    trainer = fast_dev_run(task, dm)
    assert torch.isfinite(trainer.callback_metrics["train/r1"])
    batch = dm.sample_batch(2)
    assert task.condition(batch).shape == (2, 3, 32, 32)
    assert task.show_condition(batch).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("allow", [False, True])
def test_tf32_follows_the_task_option(allow):
    G = CoModGenerator(32, cond_channels=4, **TINY_G)
    D = CoModDiscriminator(32, cond_channels=1, **TINY_D)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = not allow
        torch.backends.cudnn.allow_tf32 = not allow
        InpaintingTask(G, D, allow_tf32=allow).setup("fit")
        assert torch.backends.cuda.matmul.allow_tf32 is allow
        assert torch.backends.cudnn.allow_tf32 is allow
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_every_network_runs_in_float64():
    G = CoModGenerator(32, cond_channels=4, **TINY_G).double()
    D = CoModDiscriminator(32, cond_channels=1, **TINY_D).double()
    cond = torch.randn(4, 4, 32, 32, dtype=torch.float64)
    z = torch.randn(4, G.z_dim, dtype=torch.float64)
    img = G(cond, z, truncation_psi=0.5, style_mixing_prob=1.0, update_w_avg=True)
    assert img.dtype == torch.float64 and G.w_avg.dtype == torch.float64
    assert G.w_avg.abs().sum() > 0
    assert G(cond).dtype == torch.float64  # z drawn in the condition's dtype
    logits = D(img, cond[:, :1])
    assert logits.dtype == torch.float64
    (logits.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.parameters())
    penalty, _ = r1_penalty(D, img.detach(), cond[:, :1], include_condition=True)
    assert torch.isfinite(penalty).all()


CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_networks_match_their_data(config):
    from i2i.config_files import load_config

    raw = load_config(config)
    model, data = raw["model"]["init_args"], raw["data"]["init_args"]
    if raw["model"]["class_path"].endswith(".CycleGANTask"):
        # Unpaired RGB <-> RGB: each generator maps 3 channels to 3, each D reads the image alone.
        for name in ("generator_ab", "generator_ba"):
            args = model[name]["init_args"]
            assert args.get("in_channels", 3) == args.get("out_channels", 3) == 3, name
        for name in ("discriminator_a", "discriminator_b"):
            assert model[name]["init_args"]["in_channels"] == 3, name
        assert data.get("load_size", 286) >= data.get("resolution", 256)  # resized, then cropped
        assert "max_iterations" in model  # every run has a length
        return
    if raw["model"]["class_path"].endswith(".ClassicalInpaintingTask"):
        from i2i.classical import FILLS  # no network: a fill of any size, no training length

        assert model.get("method", "harmonic") in FILLS
        assert "hole_range" in data["masks"]["init_args"]
        return
    if raw["model"]["class_path"].endswith(".NearestNeighbourEdgesTask"):
        assert data.get("condition", "edges") == "edges"  # retrieval by edge map
        return
    if raw["model"]["class_path"].endswith(".GLCICTask"):
        return check_glcic_networks(model, data)
    if raw["model"]["class_path"].endswith(".VAEInpaintingTask"):
        vae = model["vae"]["init_args"]
        assert vae["img_resolution"] == data["resolution"]
        assert vae.get("in_channels", 4) == 3  # the encoder sees an RGB image (x or x * m)
        assert vae.get("decoder_cond_channels", 0) == (4 if model.get("one_shot") else 0)
        assert "max_iterations" in model or "max_kimg" in model
        return
    if raw["model"]["class_path"].rsplit(".", 1)[1] in ("Pix2PixTask", "Pix2PixLabelsTask"):
        return check_pix2pix_config(model, raw["data"])
    g_cond = model["generator"]["init_args"]["cond_channels"]
    d_cond = model["discriminator"]["init_args"]["cond_channels"]
    task = raw["model"]["class_path"].rsplit(".", 1)[1]
    if task == "InpaintingTask":
        assert (g_cond, d_cond) == (4, 1)
    elif task == "EdgesToPhotoTask":
        assert g_cond == d_cond == data.get("edges_channels", 1)
    else:
        assert g_cond == d_cond == model["num_classes"] + int(model.get("instance_edges", False))
    assert "max_iterations" in model or "max_kimg" in model  # every run has a length


def check_pix2pix_config(model: dict, data: dict) -> None:
    """pix2pix: the U-Net takes the condition's channels (UNetGenerator in_channels), the PatchGAN
    the condition's + the image's; the U-Net halves the data's sides num_downs times; the lr decay
    ends with the run."""
    import importlib

    module, name = data["class_path"].rsplit(".", 1)
    dm = getattr(importlib.import_module(module), name)(**data["init_args"])
    if "num_classes" in model:  # one-hot label maps
        cond = model["num_classes"] + int(model.get("instance_edges", False))
    else:  # an image condition; the shapes' edge maps are 1 channel
        cond = getattr(dm, "cond_channels", 1)
    g, d = model["generator"]["init_args"], model["discriminator"]["init_args"]
    assert g.get("in_channels", 3) == cond
    assert d.get("in_channels", 6) == cond + g.get("out_channels", 3)
    assert all(side % 2 ** g.get("num_downs", 8) == 0 for side in dm.resolution)
    assert model["max_iterations"] == model["lr_constant_iterations"] + model["lr_decay_iterations"]


def check_glcic_networks(model: dict, data: dict) -> None:
    """GLCIC: RGB + hole into C; D's global branch at the data's resolution and its local patch
    inside it; the report's rectangles; T_C + T_D inside the run."""

    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    G, D = model["generator"]["init_args"], model["discriminator"]["init_args"]
    sides = pair(data["resolution"])
    assert G.get("in_channels", 4) == 4 and all(s % 4 == 0 for s in sides)
    assert pair(D["img_resolution"]) == sides
    local = pair(D.get("local_size", 80))
    assert local[0] <= sides[0] and local[1] <= sides[1]
    assert data["masks"]["class_path"] == "i2i.data.masks.RectangleMaskGenerator"
    t_cd = model["completion_iterations"] + model["discriminator_iterations"]
    assert t_cd < model["max_iterations"]  # every run has a length, and reaches the joint phase


def test_edges_task_names_a_channel_mismatch():
    G = CoModGenerator(32, cond_channels=1, **TINY_G)
    D = CoModDiscriminator(32, cond_channels=1, **TINY_D)
    dm = shapes("edges")
    dm.cond_channels = 3  # as an edges_channels: 3 datamodule says
    with pytest.raises(ValueError, match="generator.init_args.cond_channels: 3"):
        fast_dev_run(EdgesToPhotoTask(G, D), dm)


def test_the_loader_yields_the_batches_a_task_consumes(tmp_path):
    # The task declares it (CoModGAN: 2, a G half and a D half); the CLI links it into the data.
    assert InpaintingTask.batches_per_step == 2
    cli = fit_tiny(tmp_path, "--model.init_args.max_iterations=1")
    assert cli.datamodule.batches_per_step == 2
    batch = next(iter(cli.datamodule.train_dataloader()))
    assert batch["image"].shape[0] == 2 * cli.datamodule.batch_size
    dm = InpaintingDataModule(resolution=32, batch_size=3, num_workers=0, synthetic_length=8)
    dm.setup("fit")
    dm.batches_per_step = 1
    assert next(iter(dm.train_dataloader()))["image"].shape[0] == 3
