"""CycleGAN (Zhu et al., ICCV 2017) on the adversarial layer: unpaired translation between two
domains A and B.

Two generators, G_AB: A -> B and G_BA: B -> A (the paper's G and F), and two discriminators,
D_A judging images of domain A and D_B images of domain B (the paper's D_X and D_Y). One
iteration, two phases on the same batch {"image_a", "image_b"}, as the paper's training code:
- "g_step", one Adam step over both generators (registered as one network, `generators`):
  LSGAN (D_B(G_AB(a)) - 1)^2 + (D_A(G_BA(b)) - 1)^2, plus cycle consistency
  lambda (|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1), plus identity
  lambda_identity x lambda (|G_AB(b) - b|_1 + |G_BA(a) - a|_1);
- "d_step", one Adam step over both discriminators (`discriminators`): for each domain,
  0.5 x ((D(real) - 1)^2 + D(fake)^2), the fake drawn from a history of 50 generated images
  (`ImagePool`, Shrivastava et al. 2017) fed with this iteration's outputs of the G step
  (computed before G's update, detached).
Adam lr 2e-4, betas (0.5, 0.999); the lr is constant, then decays linearly to 0 (the adversarial
layer's `lr_constant_iterations` / `lr_decay_iterations`: the paper's 100 + 100 epochs expressed
in iterations). Evaluation translates both ways: FID of G_AB(A) against B and of G_BA(B) against A
(`i2i.metrics.protocols.UnpairedProtocol`), and the cycle L1 on the validation set during fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from i2i.data import batch as B
from i2i.metrics.protocols import UnpairedProtocol
from i2i.seeding import derive_seed
from i2i.tasks.adversarial import AdversarialTask, OptimizerCallable, Phase


def default_adam(params: Iterable) -> torch.optim.Optimizer:
    """The paper's optimizer for both the generators and the discriminators.

    Args:
        params: the parameters to optimise.

    Returns:
        Adam with lr 2e-4, betas (0.5, 0.999).
    """
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


class ImagePool:
    """A history of generated images for a discriminator (Shrivastava et al. 2017).

    `query(images)` returns a batch of the same size: while the pool holds fewer than `size`
    images, each input is stored and returned; once full, each input is returned with
    probability 1/2, otherwise a uniformly drawn stored image is returned and replaced by the
    input. The draws come from torch's global RNG, which the task seeds per (seed, rank,
    iteration), so a resumed run draws what an uninterrupted one would; `state_dict()` holds the
    content, for checkpoints.

    Args:
        size: the most images kept; 0: no history (the input is returned).

    Raises:
        ValueError: a negative size.
    """

    def __init__(self, size: int = 50):
        if size < 0:
            raise ValueError(f"the pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []  # (C, H, W) each, detached

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Mix a batch of generated images with the history (see the class).

        Args:
            images: generated images (N, C, H, W); detached.

        Returns:
            (N, C, H, W) on the input's device and dtype.
        """
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(()).item() < 0.5:
                out.append(image)
            else:
                k = int(torch.randint(self.size, ()).item())
                out.append(self.images[k].to(image.device, image.dtype))
                self.images[k] = image.clone()
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        """The pool's size and its images stacked (K, C, H, W) on the CPU, for checkpoints."""
        stored = torch.stack([i.cpu() for i in self.images]) if self.images else torch.empty(0)
        return {"size": self.size, "images": stored}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the images of `state_dict()`; raises ValueError if they exceed the size."""
        # Stored images stay on the CPU until drawn (query moves them to the batch's device).
        self.images = list(state["images"].unbind(0)) if state["images"].numel() else []
        if len(self.images) > self.size:
            raise ValueError(f"the checkpoint's pool holds {len(self.images)} > {self.size}")


class CycleGANTask(AdversarialTask):
    """Unpaired A <-> B translation by CycleGAN; see the module docstring.

    Args:
        generator_ab: G: A -> B (e.g. `i2i.networks.ResnetGenerator`).
        generator_ba: F: B -> A.
        discriminator_a: D_A: judges images of domain A (e.g. a 3-channel
            `i2i.networks.PatchDiscriminator`).
        discriminator_b: D_B: judges images of domain B.
        optimizer_g: builds one optimizer over both generators.
        optimizer_d: builds one optimizer over both discriminators.
        lambda_cycle: cycle-consistency L1 weight, each direction.
        lambda_identity: identity L1 weight, as a fraction of lambda_cycle (0: off).
        pool_size: generated images kept per discriminator (0: no history).
        d_loss_scale: the D loss is this x (real + fake): 0.5 makes D learn at half G's rate.
        objective: the GAN objective; the paper's least-squares GAN loss by default.
        **kwargs (Any): the lr decay and what every task takes (run length, seeds, ...).
    """

    evaluation_protocol = UnpairedProtocol
    not_hyperparameters = (
        "generator_ab",
        "generator_ba",
        "discriminator_a",
        "discriminator_b",
        "optimizer_g",
        "optimizer_d",
    )
    POOLS_KEY = "i2i_image_pools"  # where the pools' content goes in a checkpoint

    def __init__(
        self,
        generator_ab: nn.Module,  # G: A -> B (ResnetGenerator)
        generator_ba: nn.Module,  # F: B -> A
        discriminator_a: nn.Module,  # D_A: judges images of domain A (PatchDiscriminator, 3 ch)
        discriminator_b: nn.Module,  # D_B: judges images of domain B
        optimizer_g: OptimizerCallable = default_adam,  # one optimizer over both generators
        optimizer_d: OptimizerCallable = default_adam,  # one over both discriminators
        lambda_cycle: float = 10.0,  # cycle-consistency L1 weight, each direction
        lambda_identity: float = 0.5,  # identity L1 weight, as a fraction of lambda_cycle (0: off)
        pool_size: int = 50,  # generated images kept per discriminator (0: no history)
        d_loss_scale: float = 0.5,  # the D loss is 0.5 x (real + fake): D learns at half G's rate
        objective: str = "lsgan",  # the paper's least-squares GAN loss
        **kwargs,  # the lr decay and what every task takes (run length, seeds, ...)
    ):
        super().__init__(objective=objective, **kwargs)
        generators = nn.ModuleDict({"ab": generator_ab, "ba": generator_ba})
        discriminators = nn.ModuleDict({"a": discriminator_a, "b": discriminator_b})
        self.add_network("generators", generators, optimizer_g)
        self.add_network("discriminators", discriminators, optimizer_d)
        self.pools = {"a": ImagePool(pool_size), "b": ImagePool(pool_size)}
        self._fakes: tuple[torch.Tensor, torch.Tensor] | None = None  # G step -> D step

    # The four networks by their roles (CycleGAN's G, F, D_X, D_Y).
    @property
    def generator_ab(self) -> nn.Module:
        """G: A -> B."""
        return self.generators["ab"]

    @property
    def generator_ba(self) -> nn.Module:
        """F: B -> A."""
        return self.generators["ba"]

    @property
    def discriminator_a(self) -> nn.Module:
        """D_A: judges images of domain A."""
        return self.discriminators["a"]

    @property
    def discriminator_b(self) -> nn.Module:
        """D_B: judges images of domain B."""
        return self.discriminators["b"]

    def phases(self) -> list[Phase]:
        """One step over both generators, then one over both discriminators, on the same batch."""
        return [
            Phase("g_step", "generators", "generator_loss"),
            Phase("d_step", "discriminators", "discriminator_loss"),
        ]

    # ---- the two losses -----------------------------------------------------------------

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Both generators' adversarial, cycle and identity losses.

        Keeps this iteration's fakes (detached) for the D step.

        Args:
            batch: a batch dict with "image_a" and "image_b" (N, 3, H, W) in [-1, 1].

        Returns:
            The loss and its terms to log.
        """
        hp = self.hparams
        a, b = batch[B.IMAGE_A], batch[B.IMAGE_B]
        G, F = self.generator_ab, self.generator_ba
        fake_b, fake_a = G(a), F(b)
        self._fakes = (fake_a.detach(), fake_b.detach())  # the D step's fakes, as the paper's
        adv_ab = self.g_loss_fn(self.discriminator_b(fake_b)).mean()
        adv_ba = self.g_loss_fn(self.discriminator_a(fake_a)).mean()
        cycle_a = l1(F(fake_b), a)
        cycle_b = l1(G(fake_a), b)
        loss = adv_ab + adv_ba + hp.lambda_cycle * (cycle_a + cycle_b)
        logs = {
            "train/loss_g": loss,
            "train/adv_ab": adv_ab,
            "train/adv_ba": adv_ba,
            "train/cycle_a": cycle_a,
            "train/cycle_b": cycle_b,
        }
        if hp.lambda_identity > 0:
            identity_a, identity_b = l1(F(a), a), l1(G(b), b)
            loss = loss + hp.lambda_identity * hp.lambda_cycle * (identity_a + identity_b)
            logs.update({"train/identity_a": identity_a, "train/identity_b": identity_b})
        logs["train/loss_g"] = loss
        return loss, logs

    def discriminator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Both discriminators' losses on the reals and on fakes drawn through the image pools.

        Args:
            batch: a batch dict with "image_a" and "image_b".

        Returns:
            The loss, its two domains' terms and the mean real / fake logits to log.
        """
        a, b = batch[B.IMAGE_A], batch[B.IMAGE_B]
        if self._fakes is None:  # a phase list without the G step before this one
            with torch.no_grad():
                self._fakes = (self.generator_ba(b), self.generator_ab(a))
        fake_a, fake_b = self._fakes
        self._fakes = None
        fake_a = self.pools["a"].query(fake_a)
        fake_b = self.pools["b"].query(fake_b)
        scale = self.hparams.d_loss_scale
        real_a, fake_a = self.discriminator_a(a), self.discriminator_a(fake_a)
        real_b, fake_b = self.discriminator_b(b), self.discriminator_b(fake_b)
        loss_a = scale * self.d_loss_fn(real_a, fake_a).mean()
        loss_b = scale * self.d_loss_fn(real_b, fake_b).mean()
        loss = loss_a + loss_b
        return loss, {
            "train/loss_d": loss,
            "train/loss_d_a": loss_a,
            "train/loss_d_b": loss_b,
            "train/logits_real": 0.5 * (real_a.float().mean() + real_b.float().mean()),
            "train/logits_fake": 0.5 * (fake_a.float().mean() + fake_b.float().mean()),
        }

    # ---- the pools in checkpoints -------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the image pools' content in the checkpoint."""
        checkpoint[self.POOLS_KEY] = {k: pool.state_dict() for k, pool in self.pools.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the image pools' content from the checkpoint."""
        for k, state in checkpoint.get(self.POOLS_KEY, {}).items():
            self.pools[k].load_state_dict(state)

    # ---- sampling and evaluation --------------------------------------------------------

    @property
    def sampling_network(self) -> nn.Module:
        """G_AB."""
        return self.generator_ab

    def condition(self, batch: dict) -> torch.Tensor:
        """G_AB's input: the batch's "image_a".

        Args:
            batch: a batch dict with "image_a" (N, 3, H, W) in [-1, 1].
        """
        return batch[B.IMAGE_A]

    @torch.no_grad()
    def sample_ba(self, batch: dict) -> torch.Tensor:
        """G_BA's output for the batch's "image_b" (as `sample` gives G_AB's for "image_a").

        The global RNG is left untouched.

        Args:
            batch: a batch dict with "image_b" and "index".

        Returns:
            (N, 3, H, W), roughly in [-1, 1].
        """
        batch = self.prepare(batch)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(derive_seed(self.hparams.eval_seed, int(batch[B.INDEX][0]), 1))
            return self.generator_ba(batch[B.IMAGE_B])

    def _evaluate(self, batch: dict, stage: str) -> dict[str, torch.Tensor]:
        fake_b, fake_a = self.sample(batch).float(), self.sample_ba(batch).float()
        a, b = batch[B.IMAGE_A].float(), batch[B.IMAGE_B].float()
        with torch.no_grad():
            cycle_a = l1(self.generator_ba(fake_b.to(a.dtype)).float(), a)
            cycle_b = l1(self.generator_ab(fake_a.to(b.dtype)).float(), b)
        metrics = {"cycle_a": cycle_a, "cycle_b": cycle_b, "cycle": 0.5 * (cycle_a + cycle_b)}
        self.log_dict(
            {f"{stage}/{k}": v for k, v in metrics.items()},
            batch_size=a.shape[0],
            sync_dist=True,
            prog_bar=stage == "val",
        )
        return {B.OUTPUT: fake_b, B.OUTPUT_A: fake_a}

    def visual_panels(self, batch: dict, fake: torch.Tensor) -> list[torch.Tensor]:
        """Six panels per sample: A | G_AB(A) | G_BA(G_AB(A)) | B | G_BA(B) | G_AB(G_BA(B)).

        Args:
            batch: a batch dict with "image_a", "image_b" and "index".
            fake: G_AB's output for "image_a".
        """
        with torch.no_grad():
            fake_a = self.sample_ba(batch)
            rec_a = self.generator_ba(fake.to(batch[B.IMAGE_A].dtype))
            rec_b = self.generator_ab(fake_a)
        return [batch[B.IMAGE_A], fake, rec_a, batch[B.IMAGE_B], fake_a, rec_b]


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean absolute difference (torch's L1Loss), in float32.

    Args:
        x: a tensor.
        y: a tensor of the same shape.

    Returns:
        A float32 scalar.
    """
    return (x.float() - y.float()).abs().mean()
