"""pix2pix: the losses against a hand computation, training, sampling with dropout and BatchNorm
at inference, the lr schedule, exact resume, and the real facades and edges2shoes files."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from PIL import Image

from i2i.data import batch as B
from i2i.data.datasets import image_to_tensor
from i2i.data.synthetic import ShapesDataModule
from i2i.data.translation import Edges2ShoesDataModule, FacadesDataModule
from i2i.lightning_command import run_cli
from i2i.networks import PatchDiscriminator, UNetGenerator
from i2i.tasks import Pix2PixLabelsTask, Pix2PixTask
from i2i.tasks.pix2pix import EVAL_NORMS, check_pix2pix_networks
from tests.conftest import shared_data

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "configs" / "pix2pix_tiny.yaml")


def tiny_task(cond: int = 1, res: int = 32, **kwargs) -> Pix2PixTask:
    # num_downs 6 has one dropout block (the 8 x ngf decoder block after the innermost one).
    num_downs = 6 if res >= 64 else 5
    G = UNetGenerator(cond, ngf=4, num_downs=num_downs)
    D = PatchDiscriminator(cond + 3, ndf=4, n_layers=2)
    return Pix2PixTask(G, D, **kwargs)


def shapes(res: int = 32, length: int = 16, batch_size: int = 2, **kwargs) -> ShapesDataModule:
    return ShapesDataModule(
        "edges",
        resolution=res,
        batch_size=batch_size,
        val_batch_size=4,
        num_workers=0,
        length=length,
        val_length=8,
        **kwargs,
    )


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def test_the_papers_settings():
    task = tiny_task()
    assert task.batches_per_step == 1  # one batch for the D and the G step
    assert task.hparams.l1_weight == 100.0 and task.hparams.d_loss_weight == 0.5
    assert task.hparams.objective == "nonsaturating"  # D's BCE, G maximising log D
    assert [(p.name, p.network) for p in task.phases()] == [
        ("d_step", "discriminator"),
        ("g_step", "generator"),
    ]
    for opt in task.configure_optimizers():
        assert isinstance(opt, torch.optim.Adam)
        assert opt.param_groups[0]["lr"] == pytest.approx(2e-4)
        assert opt.param_groups[0]["betas"] == pytest.approx((0.5, 0.999))
    assert not hasattr(task, "generator_ema") and task.sampling_network is task.generator


@pytest.mark.parametrize("objective", ["nonsaturating", "lsgan"])
def test_losses_match_a_hand_computation(objective):
    task = tiny_task(objective=objective)
    batch = shapes().sample_batch(2)
    cond, real = batch[B.EDGES], batch[B.IMAGE]
    G, D = task.generator, task.discriminator

    torch.manual_seed(1)
    loss_d, logs_d = task.discriminator_loss(batch)
    loss_g, logs_g = task.generator_loss(batch)  # through the same output
    torch.manual_seed(1)
    fake = G(cond)  # BatchNorm in training mode: batch statistics, so repeatable
    real_logits, fake_logits = D(real, cond), D(fake, cond)
    if objective == "nonsaturating":
        bce = F.binary_cross_entropy_with_logits
        d_ref = 0.5 * (
            bce(real_logits, torch.ones_like(real_logits))
            + bce(fake_logits, torch.zeros_like(fake_logits))
        )
        gan_ref = bce(fake_logits, torch.ones_like(fake_logits))
    else:
        d_ref = 0.5 * (
            F.mse_loss(real_logits, torch.ones_like(real_logits)) + fake_logits.square().mean()
        )
        gan_ref = F.mse_loss(fake_logits, torch.ones_like(fake_logits))
    l1_ref = (fake - real).abs().mean()
    torch.testing.assert_close(loss_d, d_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_g, gan_ref + 100 * l1_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logs_g["train/l1"], l1_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logs_g["train/loss_g_gan"], gan_ref, rtol=1e-5, atol=1e-6)
    assert task._fake is None  # the output is not kept beyond the iteration


def test_the_g_phase_backpropagates_through_the_d_phase_output():
    task = tiny_task()
    batch = shapes().sample_batch(2)
    task.discriminator.requires_grad_(True)
    task.generator.requires_grad_(False)  # as the adversarial layer sets it for D's phase
    loss_d, _ = task.discriminator_loss(batch)
    loss_d.backward()
    assert all(p.grad is None for p in task.generator.parameters())  # D's loss: G detached
    assert all(not p.requires_grad for p in task.generator.parameters())
    task.discriminator.requires_grad_(False)
    task.generator.requires_grad_(True)
    loss_g, _ = task.generator_loss(batch)
    loss_g.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in task.generator.parameters())


class L1Recorder(Callback):
    def __init__(self):
        self.l1: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.l1.append(float(trainer.callback_metrics["train/l1"]))


def test_training_changes_the_weights_and_lowers_the_l1_loss():
    task = tiny_task(max_iterations=30)
    dm = shapes(length=2)  # one batch of the same two scenes every iteration
    before = {k: v.clone() for k, v in task.state_dict().items()}
    recorder = L1Recorder()
    trainer(max_steps=-1, limit_val_batches=0, callbacks=[recorder]).fit(task, dm)
    assert int(task.iteration) == 30
    after = task.state_dict()
    for prefix in ("generator.", "discriminator."):
        changed = [
            k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])
        ]
        assert len(changed) > 0.9 * sum(k.startswith(prefix) for k in before), prefix
    first, last = sum(recorder.l1[:3]) / 3, sum(recorder.l1[-3:]) / 3
    assert last < 0.95 * first, recorder.l1  # 0.36 -> 0.32 at the paper's lr


def test_two_variants_differ_and_each_repeats():
    task = tiny_task(res=64)
    batch = shapes(64).sample_batch(3)
    flags = [m.training for m in task.modules()]
    buffers = {k: v.clone() for k, v in task.generator.state_dict().items()}
    a, b = task.sample(batch, variant=0), task.sample(batch, variant=1)
    assert (a - b).abs().mean() > 1e-3  # dropout at inference, seeded by the variant
    assert torch.equal(a, task.sample(batch, variant=0))
    # per_sample: an output depends on its own input alone, whatever the batch holds.
    part = {k: v[1:2] for k, v in batch.items()}
    torch.testing.assert_close(task.sample(part)[0], a[1], rtol=0, atol=1e-6)
    # Sampling changes neither the running statistics nor any module's mode.
    assert all(torch.equal(v, buffers[k]) for k, v in task.generator.state_dict().items())
    assert [m.training for m in task.modules()] == flags


@pytest.mark.parametrize("norm", EVAL_NORMS)
def test_eval_norm_options(norm):
    task = tiny_task(eval_norm=norm)  # 32 px: no dropout block, BatchNorm alone decides
    batch = shapes().sample_batch(3)
    buffers = {k: v.clone() for k, v in task.generator.state_dict().items()}
    whole = task.sample(batch)
    alone = torch.cat([task.sample({k: v[i : i + 1] for k, v in batch.items()}) for i in range(3)])
    if norm == "batch":  # the statistics of the whole evaluation batch
        assert not torch.allclose(whole, alone, atol=1e-4)
    else:  # each output's own statistics, or the running averages: no batch dependence
        torch.testing.assert_close(whole, alone, rtol=0, atol=1e-6)
    task.hparams.eval_norm = "per_sample" if norm == "running" else "running"
    assert not torch.allclose(task.sample(batch), whole, atol=1e-4)
    assert all(torch.equal(v, buffers[k]) for k, v in task.generator.state_dict().items())
    with pytest.raises(ValueError, match="eval_norm"):
        tiny_task(eval_norm="instance")


def test_networks_that_do_not_fit_the_data_are_named():
    G, D = UNetGenerator(3, ngf=4, num_downs=5), PatchDiscriminator(6, ndf=4)
    check_pix2pix_networks(G, D, 3, (64, 64))
    with pytest.raises(ValueError, match="generator.init_args.in_channels: 1"):
        check_pix2pix_networks(G, D, 1, (64, 64))
    with pytest.raises(ValueError, match="discriminator.init_args.in_channels: 6"):
        check_pix2pix_networks(G, PatchDiscriminator(4, ndf=4), 3, (64, 64))
    with pytest.raises(ValueError, match="multiples of 32"):
        check_pix2pix_networks(G, D, 3, (48, 64))
    with pytest.raises(ValueError, match="in_channels: 1"):  # through setup, from the data
        trainer(fast_dev_run=2).fit(Pix2PixTask(G, D), FakeChannels(1))


class FakeChannels(ShapesDataModule):
    def __init__(self, channels: int):
        super().__init__("edges", resolution=32, batch_size=2, num_workers=0, length=4)
        self.cond_channels = channels


def test_labels_task_fits_on_one_hot_maps():
    G = UNetGenerator(6, ngf=4, num_downs=5)
    D = PatchDiscriminator(9, ndf=4, n_layers=2)
    task = Pix2PixLabelsTask(G, D, num_classes=6)
    dm = ShapesDataModule(
        "labels",
        resolution=32,
        batch_size=2,
        val_batch_size=4,
        num_workers=0,
        length=8,
        val_length=4,
    )
    trainer(fast_dev_run=2).fit(task, dm)
    assert int(task.iteration) == 1  # fast_dev_run=2 caps optimizer steps: D + G
    assert task.sample(dm.sample_batch(2)).shape == (2, 3, 32, 32)


# ---- through the CLI: the lr schedule and exact resume -------------------------------------


class LrRecorder(Callback):
    """The learning rates each iteration trains with, and those left after the run."""

    def __init__(self):
        self.lrs: dict[int, tuple[float, ...]] = {}
        self.final: tuple[float, ...] = ()

    @staticmethod
    def _lrs(trainer) -> tuple[float, ...]:
        return tuple(o.param_groups[0]["lr"] for o in trainer.optimizers)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs[int(pl_module.iteration)] = self._lrs(trainer)

    def on_train_end(self, trainer, pl_module):
        self.final = self._lrs(trainer)


def fit(tmp_path: Path, *args: str):
    root = str(tmp_path / "run")
    cli = run_cli(
        [
            "fit",
            "--config",
            TINY,
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}",
            "--trainer.callbacks+=tests.tasks.test_pix2pix.LrRecorder",
            *args,
        ]
    )
    (recorder,) = [c for c in cli.trainer.callbacks if isinstance(c, LrRecorder)]
    return cli.model, recorder


def test_lr_decay_and_exact_resume(tmp_path):
    # The tiny config: lr constant for iterations 0-1, then a linear decay over 4 iterations
    # (factor 1 - (i - 2) / 4 at iteration i >= 2), 0 after the run's 6 iterations.
    straight, lrs = fit(tmp_path / "a")
    expected = {i: 2e-4 * f for i, f in enumerate([1, 1, 1, 0.75, 0.5, 0.25])}
    for i, lr in expected.items():
        assert lrs.lrs[i] == pytest.approx((lr, lr), abs=1e-12), i
    assert lrs.final == (0.0, 0.0)  # the end of the decay

    # 2N = N + resume + N (N = 3: the cut is inside the decay).
    fit(tmp_path / "b", "--model.init_args.max_iterations=3")
    last = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["state_dict"]["iteration"].item() == 3
    resumed, lrs_b = fit(tmp_path / "b", "--ckpt_path=last")
    assert int(resumed.iteration) == 6 and sorted(lrs_b.lrs) == [3, 4, 5]
    for i in (3, 4, 5):  # the schedule survives the resume
        assert lrs_b.lrs[i] == pytest.approx(lrs.lrs[i], abs=1e-12), i
    assert lrs_b.final == (0.0, 0.0)
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=f"{k} differs")


# ---- the real files ------------------------------------------------------------------------


def _halves(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    return image_to_tensor(img.crop((0, 0, h, h))), image_to_tensor(img.crop((h, 0, w, h)))


def _split_folder(tmp_path: Path, name: str, train: list[Path], val: list[Path]) -> Path:
    """<tmp>/<name>/{train,val} of links to the shared files (never copies in the repo)."""
    root = tmp_path / name
    for split, files in (("train", train), ("val", val)):
        (root / split).mkdir(parents=True)
        for f in files:
            os.symlink(f, root / split / f.name)
    return root


def test_real_facades_labels_to_photo(tmp_path):
    folder = shared_data("facades", "mmagic")
    root = _split_folder(
        tmp_path, "facades", sorted(folder.glob("train_*.jpg")), [folder / "test_3.jpg"]
    )
    dm = FacadesDataModule(root=str(root), download=False, num_workers=0, val_batch_size=1)
    assert dm.cond_channels == 3 and dm.hparams.direction == "BtoA"
    dm.setup("fit")
    sample = dm.val_dataset[0]
    photo, labels = _halves(folder / "test_3.jpg")
    torch.testing.assert_close(sample[B.EDGES], labels)  # the condition is the RIGHT half
    torch.testing.assert_close(sample[B.IMAGE], photo)
    with pytest.raises(ValueError, match="probably the photo half"):
        FacadesDataModule(root=str(root), download=False, num_workers=0, direction="AtoB").setup(
            "fit"
        )
    G = UNetGenerator(3, ngf=4, num_downs=8)  # unet_256's depth, narrow
    task = Pix2PixTask(G, PatchDiscriminator(6, ndf=4), max_iterations=2)
    trainer(max_steps=-1, val_check_interval=1, limit_val_batches=1).fit(task, dm)
    assert int(task.iteration) == 2
    assert task.sample(dm.sample_batch(1)).shape == (1, 3, 256, 256)


def test_real_edges2shoes_edges_to_photo(tmp_path):
    files = sorted(shared_data("edges2shoes", "hzycool_val").glob("*.jpg"))
    root = _split_folder(tmp_path, "edges2shoes", files[:4], files[4:6])
    dm = Edges2ShoesDataModule(
        root=str(root), download=False, num_workers=0, edges_channels=3, val_batch_size=2
    )
    dm.setup("fit")
    edges, photo = _halves(files[4])
    torch.testing.assert_close(dm.val_dataset[0][B.EDGES], edges)  # AtoB: the LEFT half
    torch.testing.assert_close(dm.val_dataset[0][B.IMAGE], photo)
    task = Pix2PixTask(UNetGenerator(3, ngf=4), PatchDiscriminator(6, ndf=4), max_iterations=1)
    trainer(max_steps=-1, limit_val_batches=1).fit(task, dm)
    assert int(task.iteration) == 1
