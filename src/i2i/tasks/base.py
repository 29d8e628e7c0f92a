"""The GAN task base: the official CoModGAN training recipe as a LightningModule.

Manual optimization, one injected optimizer per network. One iteration:
- G step: non-saturating logistic loss on its own real batch and masks, style mixing 0.5 (one coin
  and one crossover layer per minibatch and process, as official), truncation psi 0.5 during
  training (the official quirk), then the G_ema update;
- D step: logistic loss on another real batch with its own masks and fresh latents;
- on every `r1_interval`-th iteration, the lazy R1 as its OWN Adam step of D right after the D
  step, on the same reals, with the penalty alone (gamma / 2 x interval, in fp32 under mixed
  precision), sharing D's optimizer state: 17 D updates per 16 iterations, which is what the
  lazy-regularization correction of lr and beta2 assumes (applied to both networks, G as if
  regularized every 4 iterations, as the official code does);
- w_avg moves on every training-mode generator pass (the G step's and the D step's), from the
  batch mean of w before mixing and truncation.

Subclasses say what the condition is, what the discriminator sees and how the output is composed.
Evaluation and sampling always use G_ema.
"""

from __future__ import annotations

import copy
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import lightning as L
import torch
from torch import nn

from i2i.data import batch as B
from i2i.losses import d_logistic_loss, g_nonsaturating_loss, r1_penalty

OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]


def default_adam(params: Iterable) -> torch.optim.Optimizer:
    """The official base optimizer (before the lazy-regularization correction)."""
    return torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99), eps=1e-8)


def lazy_regularization_correction(optimizer: torch.optim.Optimizer, interval: int) -> None:
    """StyleGAN2's correction for a penalty applied every `interval` steps: lr * c, betas ** c,
    with c = interval / (interval + 1). Both networks get it in the official recipe."""
    if interval <= 0:
        return
    c = interval / (interval + 1)
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * c
        if "betas" in group:
            group["betas"] = tuple(beta**c for beta in group["betas"])


def set_tf32(allow: bool) -> None:
    """TF32 for fp32 matmuls and cuDNN convolutions on GPUs. Off by default, so that `precision:
    32` computes in fp32 as the official code does (PyTorch turns cuDNN's TF32 on by default)."""
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


class GANTask(L.LightningModule):
    """Shared GAN training for every task; subclasses override the small hooks at the bottom."""

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_g: OptimizerCallable = default_adam,  # base lr/betas; the correction is applied
        optimizer_d: OptimizerCallable = default_adam,
        r1_gamma: float = 10.0,  # R1 weight; the penalty is gamma / 2 * ||grad||^2
        r1_interval: int = 16,  # lazy R1 every this many iterations (0 = never)
        g_reg_interval: int = 4,  # official: G's lr/beta2 corrected as if regularized every 4
        ema_halflife_kimg: float = 10.0,  # G_ema half-life in thousands of images (global batch)
        style_mixing_prob: float = 0.5,
        style_mixing_per_sample: bool = False,  # official: one coin and crossover per minibatch
        truncation_psi_train: float = 0.5,  # official quirk: training truncates toward w_avg
        truncation_psi_eval: float = 1.0,  # evaluation and sampling: no truncation
        l1_weight: float = 0.0,  # reconstruction term, off in the official recipe
        max_iterations: int | None = None,  # stop after this many iterations (None = no limit)
        max_kimg: float | None = None,  # stop after this many thousand images (None = no limit)
        channels_last: bool = True,  # ~3x faster FIR filters on CPU; good for GPUs too
        allow_tf32: bool = False,  # GPUs: TF32 matmuls and convolutions (fast, ~10-bit mantissa)
        eval_seed: int = 0,  # seeds z and noise in validation, so numbers compare across runs
    ):
        super().__init__()
        self.automatic_optimization = False
        # Injected callables become dicts in hparams under LightningCLI: keep them out.
        self.save_hyperparameters(
            ignore=["generator", "discriminator", "optimizer_g", "optimizer_d"]
        )
        self.generator, self.discriminator = generator, discriminator
        self.generator_ema = copy.deepcopy(generator).requires_grad_(False).eval()
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        # Counters live in the state dict, so a resumed run continues them exactly.
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.long))
        # Wall time per training phase, filled only when a benchmark sets it to a defaultdict.
        self.phase_seconds: defaultdict[str, float] | None = None

    # ---- setup -------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        set_tf32(self.hparams.allow_tf32)

    def configure_optimizers(self):
        opt_g = self.optimizer_g(self.generator.parameters())
        opt_d = self.optimizer_d(self.discriminator.parameters())
        lazy_regularization_correction(opt_g, self.hparams.g_reg_interval)
        lazy_regularization_correction(opt_d, self.hparams.r1_interval)
        return opt_g, opt_d

    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    def ema_beta(self, global_batch: int) -> float:
        """Per-step EMA decay for a half-life of `ema_halflife_kimg` thousand images."""
        return 0.5 ** (global_batch / max(self.hparams.ema_halflife_kimg * 1000, 1e-8))

    @torch.no_grad()
    def update_ema(self, global_batch: int) -> None:
        beta = self.ema_beta(global_batch)
        ema_params = list(self.generator_ema.parameters())
        torch._foreach_lerp_(ema_params, list(self.generator.parameters()), 1 - beta)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            b_ema.copy_(b)  # w_avg and constant noise follow G

    @property
    def kimg(self) -> float:
        return self.images_seen.item() / 1000

    # ---- the training iteration ----------------------------------------------------------

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """A named range for profilers (`i2i/<name>`), and wall time when benchmarking."""
        with torch.profiler.record_function(f"i2i/{name}"):
            if self.phase_seconds is None:
                yield
                return
            start = time.perf_counter()
            yield
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.phase_seconds[name] += time.perf_counter() - start

    def split_batch(self, batch: dict) -> tuple[dict, dict]:
        """The loader yields 2 x batch_size samples: the first half for G, the second for D."""
        n = next(iter(batch.values())).shape[0]
        if n < 2 or n % 2:
            raise ValueError(f"a training batch needs an even size (G half + D half), got {n}")
        g_batch = {k: v[: n // 2] for k, v in batch.items()}
        d_batch = {k: v[n // 2 :] for k, v in batch.items()}
        return g_batch, d_batch

    def prepare(self, batch: dict) -> dict:
        if self.hparams.channels_last:
            return {
                k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                for k, v in batch.items()
            }
        return batch

    def generate(
        self,
        G: nn.Module,
        batch: dict,
        z: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        **kwargs,
    ) -> torch.Tensor:
        """The task's output for a batch: G on the task's condition, then the task's composite."""
        raw = G(self.condition(batch), z, truncation_psi=truncation_psi, **kwargs)
        return self.compose(raw, batch)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        g_batch, d_batch = (self.prepare(b) for b in self.split_batch(batch))
        n = g_batch[B.IMAGE].shape[0]
        G, D, hp = self.generator, self.discriminator, self.hparams
        mixing = dict(
            style_mixing_prob=hp.style_mixing_prob,
            style_mixing_per_sample=hp.style_mixing_per_sample,
            update_w_avg=True,  # every training-mode pass moves w_avg, as the official graph
        )

        # G step: its own reals and masks.
        with self.phase("g_step"):
            D.requires_grad_(False)
            fake = self.generate(G, g_batch, truncation_psi=hp.truncation_psi_train, **mixing)
            fake_logits = D(fake, self.d_condition(g_batch))
            loss_g = g_nonsaturating_loss(fake_logits).mean()
            if hp.l1_weight:
                loss_g = loss_g + hp.l1_weight * self.reconstruction_loss(fake, g_batch).mean()
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()
            D.requires_grad_(True)

        # D step: another real batch, fresh masks, fresh z.
        with self.phase("d_step"):
            with torch.no_grad():
                fake = self.generate(G, d_batch, truncation_psi=hp.truncation_psi_train, **mixing)
            d_cond = self.d_condition(d_batch)
            real_logits = D(d_batch[B.IMAGE], d_cond)
            fake_logits_d = D(fake, d_cond)
            loss_d = d_logistic_loss(real_logits, fake_logits_d).mean()
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            opt_d.step()
        # G_ema after the D pass (as the official loop runs it with the D step), so that its
        # buffers take this iteration's last w_avg.
        self.update_ema(n * self.world_size)

        # Lazy R1: its own optimizer step of D, on the D step's reals, with the penalty alone.
        if self.is_r1_iteration():
            with self.phase("r1"):
                penalty, _ = r1_penalty(
                    D, d_batch[B.IMAGE], d_cond, include_condition=self.r1_includes_condition
                )
                r1 = penalty.mean()
                # Zeros, not None: parameters that R1 does not reach (the output bias) still
                # take their (zero-gradient) Adam step, as the official optimizer does.
                opt_d.zero_grad(set_to_none=False)
                self.manual_backward(r1 * (hp.r1_gamma / 2) * hp.r1_interval)
                opt_d.step()
            self.log("train/r1", r1.detach(), batch_size=n)

        self.iteration += 1
        self.images_seen += n * self.world_size
        self.log_dict(
            {
                "train/loss_g": loss_g.detach(),
                "train/loss_d": loss_d.detach(),
                "train/logits_real": real_logits.detach().float().mean(),
                "train/logits_fake": fake_logits_d.detach().float().mean(),
            },
            prog_bar=True,
            batch_size=n,
        )
        self.log("train/kimg", self.kimg, batch_size=n)
        self.log("train/iteration", float(self.iteration), batch_size=n)

    def is_r1_iteration(self) -> bool:
        hp = self.hparams
        return hp.r1_interval > 0 and hp.r1_gamma > 0 and int(self.iteration) % hp.r1_interval == 0

    # Whether R1 also differentiates through the discriminator's condition: the official edges
    # model feeds D a 6-channel real (photo + RGB condition), so its R1 covers both.
    r1_includes_condition: bool = False

    def finished(self) -> bool:
        """Whether the run has reached its length (`max_iterations` or `max_kimg`)."""
        hp = self.hparams
        return (hp.max_iterations is not None and int(self.iteration) >= hp.max_iterations) or (
            hp.max_kimg is not None and self.kimg >= hp.max_kimg
        )

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.finished():
            self.trainer.should_stop = True

    # ---- evaluation (always G_ema) ---------------------------------------------------------

    def eval_latents(self, batch: dict, variant: int = 0) -> torch.Tensor | None:
        """A fixed z per sample, seeded by its dataset index (and the variant, for several
        samples of one input), so outputs compare across evaluations and runs."""
        G = self.generator_ema
        if getattr(G, "mapping", None) is None:
            return None
        seeds = [_seed(self.hparams.eval_seed, int(i), variant) for i in batch[B.INDEX]]
        zs = [torch.randn(G.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack(zs).to(self.device)

    @torch.no_grad()
    def sample(self, batch: dict, variant: int = 0) -> torch.Tensor:
        """G_ema's output for a batch with fixed latents and seeded noise; the global RNG is left
        untouched so that evaluation never changes the course of training."""
        batch = self.prepare(batch)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(_seed(self.hparams.eval_seed, int(batch[B.INDEX][0]), variant))
            return self.generate(
                self.generator_ema,
                batch,
                self.eval_latents(batch, variant),
                truncation_psi=self.hparams.truncation_psi_eval,
            )

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test")

    def _evaluate(self, batch: dict, stage: str) -> dict[str, torch.Tensor]:
        """G_ema on a batch: logs the task's cheap metrics and returns the output, which metric
        callbacks (P-IDS / U-IDS / FID) read."""
        fake = self.sample(batch).float()
        metrics = self.evaluation_metrics(fake, batch)
        n = batch[B.IMAGE].shape[0]
        self.log_dict(
            {f"{stage}/{k}": v for k, v in metrics.items()},
            batch_size=n,
            sync_dist=True,
            prog_bar=stage == "val",
        )
        return {"fake": fake}

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {"fake": self.sample(batch).clamp(-1, 1), B.INDEX: batch[B.INDEX]}

    # ---- randomness: one stream per rank and iteration -------------------------------------

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Latents, mixing, noise and dropout draw from a stream seeded by (seed, rank, iteration):
        # every rank draws its own latents (seed_everything alone gives all ranks the same), and
        # a resumed run draws exactly what an uninterrupted one would, with no RNG state to save.
        base = int(os.environ.get("PL_GLOBAL_SEED", 0))
        torch.manual_seed(_seed(base, self.global_rank, int(self.iteration)))

    # ---- task hooks ------------------------------------------------------------------------

    def condition(self, batch: dict) -> torch.Tensor:
        """The generator's condition tensor for a batch."""
        raise NotImplementedError

    def d_condition(self, batch: dict) -> torch.Tensor:
        """What the discriminator sees next to the image."""
        raise NotImplementedError

    def compose(self, raw: torch.Tensor, batch: dict) -> torch.Tensor:
        """The task's output from the raw generator output (inpainting composites)."""
        return raw

    def reconstruction_loss(self, fake: torch.Tensor, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def evaluation_metrics(self, fake: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        return {}

    def visual_panels(self, batch: dict, fake: torch.Tensor) -> list[torch.Tensor]:
        """Images in [-1, 1] (N, 3, H, W) shown side by side in the sample grid; `fake` is the
        output for the default latents."""
        return [fake, batch[B.IMAGE]]


def psnr(
    fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (range 2), per sample."""
    err = (fake - real).square()
    if weight is None:
        mse = err.flatten(1).mean(1)
    else:
        w = weight.expand_as(err)
        mse = (err * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


def _seed(*parts: int) -> int:
    """A non-negative seed from integers (tuple hashes of ints do not vary between processes)."""
    return hash(parts) & 0x7FFF_FFFF_FFFF_FFFF
