"""GLCIC: the three phases, the condition, the local patches, exact resume, Poisson blending and
the evaluation protocol."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from i2i.blending import poisson_blend, poisson_blend_image
from i2i.data import batch as B
from i2i.data.inpainting import InpaintingDataModule
from i2i.data.masks import RectangleMaskGenerator
from i2i.lightning_command import run_cli
from i2i.networks import CompletionNetwork, ContextDiscriminator
from i2i.networks.glcic import crop_boxes, hole_centred_boxes
from i2i.tasks import GLCICTask
from i2i.tasks.glcic import default_adadelta, hole_mse, mean_color

REPO = Path(__file__).resolve().parents[2]
GLCIC_TINY = str(REPO / "tests" / "configs" / "glcic_tiny.yaml")
FEATURES = ["--metrics.feature=tests.helpers.TinyFeatures", "--metrics.feature.num_features=8"]


def tiny_task(**kwargs) -> GLCICTask:
    torch.manual_seed(0)
    G = CompletionNetwork(width=4, dilations=(2,))
    D = ContextDiscriminator(32, 16, global_convs=2, local_convs=1, features=8)
    adam = lambda params: torch.optim.Adam(params, lr=1e-3)  # noqa: E731
    kwargs = {"optimizer_g": adam, "optimizer_d": adam, "channels_last": False, **kwargs}
    return GLCICTask(G, D, **kwargs)


def tiny_data(**kwargs) -> InpaintingDataModule:
    return InpaintingDataModule(
        **{
            "resolution": 32,
            "batch_size": 2,
            "val_batch_size": 2,
            "num_workers": 0,
            "synthetic_length": 16,
            "max_val_images": 4,
            "masks": RectangleMaskGenerator(),
            **kwargs,
        }
    )


def hole_batch(n: int = 2, box=(4, 20, 8, 10)) -> dict:
    """Random images with one known hole (top, left, height, width) near the right border."""
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(n, 1, 32, 32)
    t, l, h, w = box
    mask[:, :, t : t + h, l : l + w] = 0
    image = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
    return {B.IMAGE: image, B.MASK: mask, B.INDEX: torch.arange(n)}


def fit(task: GLCICTask, datamodule: InpaintingDataModule) -> L.Trainer:
    """Train until the task's max_iterations, without validation, logs or checkpoints."""
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=-1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule)
    return trainer


def run(*args: str, tmp_path: Path, command: str = "fit"):
    root = str(tmp_path / "run")
    return run_cli(
        [
            command,
            "--config",
            GLCIC_TINY,
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}",
            *args,
        ]
    )


# ---- the schedule and the optimizers --------------------------------------------------------


def test_phase_schedule_by_iteration():
    task = tiny_task(completion_iterations=3, discriminator_iterations=2)
    running = {t: [p.name for p in task.phases() if p.runs_at(t)] for t in range(8)}
    assert running[0] == running[2] == ["completion"]
    assert running[3] == running[4] == ["discriminator"]  # T_D: D alone
    assert running[5] == running[7] == ["discriminator", "joint"]  # D first, as Algorithm 1
    networks = {p.name: p.network for p in task.phases()}
    assert networks == {
        "completion": "generator",
        "discriminator": "discriminator",
        "joint": "generator",
    }


def test_report_defaults():
    G, D = CompletionNetwork(width=4), ContextDiscriminator(32, 16, 2, 1)
    task = GLCICTask(G, D)
    hp = task.hparams
    assert (hp.completion_iterations, hp.discriminator_iterations) == (9000, 1000)
    assert hp.alpha == 0.0004 and hp.real_label == 0.75 and hp.real_patches == "random"
    opt_g, opt_d = task.configure_optimizers()
    for opt in (opt_g, opt_d):
        assert isinstance(opt, torch.optim.Adadelta)
        group = opt.param_groups[0]
        assert (group["lr"], group["rho"], group["eps"]) == (0.001, 0.95, 1e-8)
        assert group["weight_decay"] == 0.0004
    assert default_adadelta([torch.zeros(1, requires_grad=True)]).defaults["lr"] == 0.001
    with pytest.raises(ValueError, match="real_label"):
        GLCICTask(G, D, objective="hinge")
    GLCICTask(G, D, objective="hinge", real_label=None)  # the objective's own D loss
    with pytest.raises(ValueError, match="real_patches"):
        GLCICTask(G, D, real_patches="everywhere")


def test_each_phase_updates_only_its_network():
    task = tiny_task(completion_iterations=2, discriminator_iterations=1, max_iterations=4)
    snapshots = []
    original = task.on_train_batch_end

    def record(outputs, batch, batch_idx):
        snapshots.append(
            {
                name: [p.detach().clone() for p in getattr(task, name).parameters()]
                for name in ("generator", "discriminator")
            }
        )
        original(outputs, batch, batch_idx)

    task.on_train_batch_end = record
    before = {
        name: [p.detach().clone() for p in getattr(task, name).parameters()]
        for name in ("generator", "discriminator")
    }
    fit(task, tiny_data())
    assert len(snapshots) == 4

    def moved(name: str, a: dict, b: dict) -> bool:
        return any(not torch.equal(x, y) for x, y in zip(a[name], b[name], strict=True))

    states = [before, *snapshots]
    expected = [(True, False), (True, False), (False, True), (True, True)]  # (G, D) per iteration
    for t, (g, d) in enumerate(expected):
        assert moved("generator", states[t], states[t + 1]) == g, t
        assert moved("discriminator", states[t], states[t + 1]) == d, t


def test_gradients_reach_every_parameter_in_each_loss():
    task = tiny_task()
    batch = hole_batch()
    for loss_name, network in (
        ("completion_loss", "generator"),
        ("discriminator_loss", "discriminator"),
        ("joint_loss", "generator"),
    ):
        task.zero_grad(set_to_none=True)
        loss, _ = getattr(task, loss_name)(batch)
        loss.backward()
        for name, p in getattr(task, network).named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (loss_name, name)


def test_a_few_completion_steps_lower_the_hole_mse():
    task = tiny_task()
    batch = hole_batch(4)
    optimizer = torch.optim.Adam(task.generator.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        loss, logs = task.completion_loss(batch)
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(task.completion_loss(batch)[0]) < 0.7 * first


def test_hole_mse_counts_only_the_hole():
    real = torch.zeros(1, 3, 4, 4)
    fake = torch.ones(1, 3, 4, 4)
    mask = torch.ones(1, 1, 4, 4)
    mask[..., :2, :] = 0  # half the image is hole
    assert hole_mse(fake, real, mask).tolist() == [0.5]


# ---- the condition and the fill colour ------------------------------------------------------


def test_condition_fills_the_hole_with_the_mean_colour_and_marks_it():
    task = tiny_task(fill_color=(0.1, -0.2, 0.3))
    batch = hole_batch()
    cond = task.condition(batch)
    hole = batch[B.MASK] < 0.5
    assert cond.shape == (2, 4, 32, 32)
    assert torch.equal(cond[:, 3:], hole.float())  # 1 = HOLE, the completion network's convention
    known = (~hole).expand(-1, 3, -1, -1)
    assert torch.equal(cond[:, :3][known], batch[B.IMAGE][known])
    fill = cond[:, :3].permute(0, 2, 3, 1)[hole[:, 0]]
    assert torch.allclose(fill, torch.tensor([0.1, -0.2, 0.3]).expand_as(fill))
    # The output keeps the known pixels exactly.
    out = task.sample(batch)
    assert torch.equal(out[known], batch[B.IMAGE][known])


def test_fill_colour_is_the_data_mean_computed_once_and_checkpointed(tmp_path):
    cli = run("--model.init_args.max_iterations=1", tmp_path=tmp_path)
    model, dm = cli.model, cli.datamodule
    assert bool(model.fill_color_ready)
    expected = mean_color(dm.train_dataset)
    assert torch.allclose(model.fill_color, expected)
    images = torch.stack([dm.train_dataset[i][B.IMAGE] for i in range(len(dm.train_dataset))])
    assert torch.allclose(expected, images.mean(dim=(0, 2, 3)), atol=1e-5)  # 16 <= 256 sampled
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert torch.equal(ckpt["state_dict"]["fill_color"], model.fill_color)
    # An explicit colour is used as given.
    assert torch.equal(tiny_task(fill_color=(0, 0, 0)).fill_color, torch.zeros(3))


# ---- the local discriminator's patches ------------------------------------------------------


class Recording(torch.nn.Module):
    """Wraps the discriminator and records the (image, patch) pairs it is shown."""

    def __init__(self, inner: ContextDiscriminator):
        super().__init__()
        self.inner, self.local_size, self.calls = inner, inner.local_size, []

    def forward(self, image, patch):
        self.calls.append((image.detach().clone(), patch.detach().clone()))
        return self.inner(image, patch)


@pytest.mark.parametrize("real_patches", ["random", "hole"])
def test_the_local_discriminator_sees_the_patch_around_the_hole(real_patches):
    task = tiny_task(real_patches=real_patches)
    task.discriminator = Recording(task.discriminator)
    batch = hole_batch(box=(4, 20, 8, 10))  # the hole: rows 4-11, columns 20-29
    torch.manual_seed(3)
    task.discriminator_loss(batch)
    (real_image, real_patch), (fake_image, fake_patch) = task.discriminator.calls
    # Fakes: the 16 px patch centred on the hole, shifted inside the image: rows 0-15, cols 16-31.
    assert hole_centred_boxes(batch[B.MASK], (16, 16)) == [(0, 16, 16, 16)] * 2
    assert torch.equal(fake_patch, fake_image[:, :, 0:16, 16:32])
    patch_mask = batch[B.MASK][:, :, 0:16, 16:32]
    assert (1 - patch_mask).sum() == (1 - batch[B.MASK]).sum()  # the whole hole is in the patch
    assert torch.equal(real_image, batch[B.IMAGE]) and real_patch.shape == (2, 3, 16, 16)
    if real_patches == "hole":
        assert torch.equal(real_patch, real_image[:, :, 0:16, 16:32])
    else:  # random boxes from the iteration's stream: redraw them with the same seed
        torch.manual_seed(3)
        boxes = task.real_boxes(batch)
        assert torch.equal(real_patch, crop_boxes(batch[B.IMAGE], boxes))
    # The generator's phase shows D the same hole-centred patch of its output.
    task.discriminator.calls.clear()
    task.joint_loss(batch)
    ((image, patch),) = task.discriminator.calls
    assert torch.equal(patch, image[:, :, 0:16, 16:32])


# ---- exact resume across the phase boundaries -----------------------------------------------


def test_resume_continues_exactly_across_the_phases(tmp_path):
    # T_C 2, T_D 1: iterations 0-1 MSE, 2 D alone, 3-5 D + joint; the cut after 3 iterations
    # lands where the joint phase starts.
    straight = run("--model.init_args.max_iterations=6", tmp_path=tmp_path / "a").model
    run("--model.init_args.max_iterations=3", tmp_path=tmp_path / "b")
    resumed = run(
        "--model.init_args.max_iterations=6", "--ckpt_path=last", tmp_path=tmp_path / "b"
    ).model
    assert int(resumed.iteration) == int(straight.iteration) == 6
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    # And the run did train both networks.
    fresh = tiny_task().state_dict()
    assert not torch.equal(fresh["discriminator.out.weight"], a["discriminator.out.weight"])


# ---- Poisson blending ------------------------------------------------------------------------


def _naive_poisson(source, target, hole):
    """A dense system built pixel by pixel: the reference for the sparse solver."""
    c, h, w = target.shape
    cells = [(y, x) for y in range(h) for x in range(w) if hole[y, x]]
    index = {p: i for i, p in enumerate(cells)}
    A = np.zeros((len(cells), len(cells)))
    b = np.zeros((len(cells), c))
    for i, (y, x) in enumerate(cells):
        for qy, qx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if not (0 <= qy < h and 0 <= qx < w):
                continue
            A[i, i] += 1
            b[i] += source[:, y, x] - source[:, qy, qx]
            if (qy, qx) in index:
                A[i, index[(qy, qx)]] -= 1
            else:
                b[i] += target[:, qy, qx]
    out = target.copy()
    solution = np.linalg.solve(A, b)
    for i, (y, x) in enumerate(cells):
        out[:, y, x] = solution[i]
    return out


def test_poisson_blend_matches_a_dense_reference_and_keeps_known_pixels():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(3, 6, 7)), rng.normal(size=(3, 6, 7))
    hole = np.zeros((6, 7), dtype=bool)
    hole[1:4, 2:6] = True
    hole[4:6, 0:2] = True  # a second hole on the image border
    out = poisson_blend_image(source, target, hole)
    np.testing.assert_allclose(out, _naive_poisson(source, target, hole), atol=1e-10)
    np.testing.assert_array_equal(out[:, ~hole], target[:, ~hole])


def test_poisson_blend_removes_a_constant_colour_shift_exactly():
    # A generator that got the content right but the colour off by a constant: the guidance
    # (its gradients) equals the image's, so the blend recovers the image exactly.
    batch = hole_batch()
    image, mask = batch[B.IMAGE].double(), batch[B.MASK].double()
    raw = image + torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64).reshape(1, 3, 1, 1)
    out = poisson_blend(raw, image, mask)
    torch.testing.assert_close(out, image, rtol=0, atol=1e-9)


def test_poisson_blend_solves_the_discrete_poisson_equation():
    batch = hole_batch(box=(5, 5, 20, 12))
    image, mask = batch[B.IMAGE].double(), batch[B.MASK].double()
    raw = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = poisson_blend(raw, image, mask)
    assert torch.equal(out * mask, image * mask)  # known pixels exact

    def laplacian(x):  # interior 5-point Laplacian
        return (
            4 * x[..., 1:-1, 1:-1]
            - x[..., :-2, 1:-1]
            - x[..., 2:, 1:-1]
            - x[..., 1:-1, :-2]
            - (x[..., 1:-1, 2:])
        )

    hole = (mask[:, :, 1:-1, 1:-1] < 0.5).expand(-1, 3, -1, -1)  # the hole does not touch the edge
    residual = (laplacian(out) - laplacian(raw))[hole]
    assert residual.abs().max() < 1e-9


def test_the_task_blends_only_when_asked_and_keeps_known_pixels():
    batch = hole_batch()
    plain, blended = tiny_task(), tiny_task(poisson_blend=True)
    blended.load_state_dict(plain.state_dict())
    plain.eval(), blended.eval()
    a, b = plain.sample(batch), blended.sample(batch)
    known = (batch[B.MASK] > 0.5).expand(-1, 3, -1, -1)
    assert torch.equal(b[known], batch[B.IMAGE][known]) and torch.equal(a[known], b[known])
    assert not torch.allclose(a, b)
    raw = plain.generator(plain.condition(batch))
    torch.testing.assert_close(b, poisson_blend(raw, batch[B.IMAGE], batch[B.MASK]))


# ---- data and the evaluation protocol --------------------------------------------------------


def test_the_datamodule_draws_one_rectangle_per_image():
    dm = tiny_data()
    dm.setup("fit")
    dm.batches_per_step = 1
    batch = next(iter(dm.train_dataloader()))
    val = default_collate([dm.val_dataset[i] for i in range(2)])
    for mask in [*batch[B.MASK], *val[B.MASK]]:
        ys, xs = torch.nonzero(mask[0] < 0.5, as_tuple=True)
        h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        assert len(ys) == h * w and 9 <= h <= 18 and 9 <= w <= 18  # 46-92 at 160 -> 9-18 at 32


def test_i2i_test_runs_the_inpainting_protocol_on_glcic(tmp_path):
    root = tmp_path / "run"
    run_cli(
        [
            "test",
            "--config",
            GLCIC_TINY,
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=false",
            "--data.init_args.max_val_images=8",
            "--trainer.limit_test_batches=2",
            "--model.init_args.poisson_blend=true",
            *FEATURES,
        ]
    )
    report = json.loads((root / "test_results.json").read_text())
    assert report["results"]["n"] == 8
    for key in ("p_ids", "u_ids", "fid", "l1_hole", "psnr_hole", "ssim_hole"):
        assert isinstance(report["results"][key], float), key
    assert report["protocol"]["buckets"]["mode"] == "separate"  # free-form masks per bucket
    assert all(entry["n"] == 8 for entry in report["buckets"].values())


def test_the_sample_grid_samples_in_eval_mode_and_moves_no_batchnorm_statistics(tmp_path):
    from i2i.callbacks import SampleGrid

    task, data = tiny_task(max_iterations=1), tiny_data()
    grid = SampleGrid(every_n_iterations=1, num_samples=2)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=-1,
        limit_val_batches=0,
        logger=False,
        callbacks=[grid],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(task, data)
    task.train()
    before = {k: v.clone() for k, v in task.state_dict().items() if "running_" in k}
    assert before  # the completion network has BatchNorm
    grid.log_grid(trainer, task)
    after = task.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert task.training and task.generator.training  # every module's mode given back
    assert grid.last_path is not None and grid.last_path.is_file()
