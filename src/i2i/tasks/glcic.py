"""Globally and locally consistent image completion (Iizuka et al., SIGGRAPH 2017) on the
adversarial layer, as the design document (`shared/seeds/002`) describes it.

- Condition: concat(image with the hole filled with the dataset's mean colour, hole channel)
  where the channel is 1 in the HOLE (the paper's convention). The colour is `fill_color`, or by
  default the mean of a sample of training images computed once at setup; it is a buffer, so
  checkpoints, resumed runs and inference use the same.
- Output: the Inpainting composite (known pixels kept exactly); optionally Poisson-blended
  (`poisson_blend`) in evaluation, sampling and prediction, never in training.
- Training, by iteration t (Algorithm 1), one minibatch per iteration:
    t < T_C:              "completion": C by the hole-weighted MSE alone;
    T_C <= t:             "discriminator": D on completed images (local patch centred on the
                          hole) and real images (a random patch, or the same boxes);
    T_C + T_D <= t:       "joint": C by MSE + alpha x the GAN loss (after the D step).
- D's loss: the logistic loss with one-sided label smoothing (reals 0.75, fakes 0), or the
  objective chosen by name with `real_label: null`. C's GAN loss: the objective's (default
  non-saturating, the report's "maximize log D(G(z))").
- Optimizers: ADADELTA as the report (TensorFlow's: lr 0.001, rho 0.95, eps 1e-8, weight decay
  0.0004) for both networks; any optimizer callable (e.g. Adam) instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from i2i.blending import poisson_blend
from i2i.data import batch as B
from i2i.losses import smoothed_d_logistic_loss
from i2i.networks.glcic import crop_boxes, hole_centred_boxes
from i2i.tasks.adversarial import AdversarialTask, OptimizerCallable, Phase
from i2i.tasks.inpainting import Inpainting

#: Objectives whose D is a logistic regression, the only ones a smoothed real label applies to.
LOGISTIC_OBJECTIVES = ("minimax", "nonsaturating")
REAL_PATCHES = ("random", "hole")
FILL_COLOR_SAMPLE = 256  # training images averaged for the default fill colour


def default_adadelta(params: Iterable) -> torch.optim.Optimizer:
    """The report's optimizer: TensorFlow's ADADELTA with weight decay.

    lr 0.001, rho 0.95, epsilon 1e-8, weight decay 0.0004 (an L2 term of 0.0004/2 * ||w||^2 in
    the loss).

    Args:
        params: the parameters to optimise.
    """
    return torch.optim.Adadelta(params, lr=0.001, rho=0.95, eps=1e-8, weight_decay=0.0004)


def hole_mse(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The report's hole-weighted MSE, per sample.

    ||M_c (.) (C(x) - x)||^2 / (C x H x W), with M_c the hole, averaged over the whole image so
    alpha keeps its scale.

    Args:
        fake: completions (N, C, H, W).
        real: real images (N, C, H, W).
        mask: (N, 1, H, W), 1 = known, 0 = hole.

    Returns:
        (N,) float32.
    """
    hole = 1 - mask.to(fake.dtype)
    return ((fake.float() - real.float()) * hole).square().flatten(1).mean(1)


class GLCICTask(Inpainting, AdversarialTask):
    """The completion network and the context discriminator trained in the report's three phases.

    See `i2i.networks.glcic` for the networks.

    Args:
        generator: `CompletionNetwork`: 4 channels in (RGB filled + hole), RGB out.
        discriminator: `ContextDiscriminator` with img_resolution = the data's.
        optimizer_g: builds the completion network's optimizer.
        optimizer_d: builds the discriminator's optimizer.
        completion_iterations: T_C: C by MSE alone (the report: 9000).
        discriminator_iterations: T_D: then D alone (the report: 1000).
        alpha: weight of the GAN loss in C's joint loss.
        real_label: D's target for reals (one-sided smoothing); None: the objective's own D loss
            (required for lsgan, hinge, wgan).
        real_patches: the reals' local patch: `"random"` (the report) or `"hole"` (the fakes'
            boxes).
        fill_color: the hole's fill colour (R, G, B) in [-1, 1]; None: the training data's mean,
            computed at setup.
        poisson_blend: blend the hole's border in evaluation and sampling.
        **kwargs (Any): the GAN objective and what every task takes (run length, seeds, ...).

    Raises:
        ValueError: a negative phase length, an unknown `real_patches`, or `real_label` with a
            non-logistic objective.
    """

    batches_per_step = 1  # one minibatch per iteration feeds every phase (Algorithm 1)
    not_hyperparameters = ("generator", "discriminator", "optimizer_g", "optimizer_d")

    def __init__(
        self,
        generator: nn.Module,  # CompletionNetwork: 4 channels in (RGB filled + hole), RGB out
        discriminator: nn.Module,  # ContextDiscriminator(img_resolution = the data's)
        optimizer_g: OptimizerCallable = default_adadelta,
        optimizer_d: OptimizerCallable = default_adadelta,
        completion_iterations: int = 9000,  # T_C: C by MSE alone (the report: 9000)
        discriminator_iterations: int = 1000,  # T_D: then D alone (the report: 1000)
        alpha: float = 0.0004,  # weight of the GAN loss in C's joint loss
        real_label: float | None = 0.75,  # D's target for reals (one-sided smoothing); None:
        # the objective's own D loss (required for lsgan, hinge, wgan)
        real_patches: str = "random",  # reals' local patch: "random" (the report) | "hole"
        fill_color: tuple[float, float, float] | None = None,  # in [-1, 1]; None: data mean
        poisson_blend: bool = False,  # blend the hole's border in evaluation and sampling
        **kwargs,  # the GAN objective and what every task takes (run length, seeds, ...)
    ):
        super().__init__(**kwargs)
        if min(completion_iterations, discriminator_iterations) < 0:
            raise ValueError("completion_iterations and discriminator_iterations must be >= 0")
        if real_patches not in REAL_PATCHES:
            raise ValueError(f"real_patches must be one of {REAL_PATCHES}, got {real_patches!r}")
        objective = self.hparams.objective
        if real_label is not None and objective not in LOGISTIC_OBJECTIVES:
            raise ValueError(
                f"real_label (label smoothing) needs a logistic objective {LOGISTIC_OBJECTIVES}, "
                f"got objective={objective!r}: set real_label: null"
            )
        self.add_network("generator", generator, optimizer_g)
        self.add_network("discriminator", discriminator, optimizer_d)
        # The fill colour is state: computed once (setup) and then restored with the weights.
        color = torch.zeros(3) if fill_color is None else torch.tensor(fill_color).float()
        self.register_buffer("fill_color", color)
        self.register_buffer("fill_color_ready", torch.tensor(fill_color is not None))

    # ---- the schedule ------------------------------------------------------------------------

    def phases(self) -> list[Phase]:
        """ "completion" before T_C, "discriminator" from T_C, "joint" from T_C + T_D."""
        t_c = self.hparams.completion_iterations
        t_d = t_c + self.hparams.discriminator_iterations
        return [
            Phase("completion", "generator", "completion_loss", stop=t_c),
            Phase("discriminator", "discriminator", "discriminator_loss", start=t_c),
            Phase("joint", "generator", "joint_loss", start=t_d),
        ]

    # ---- the fill colour ---------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Compute the fill colour from the training data, unless given or already computed."""
        super().setup(stage)
        # A checkpoint, loaded after setup, overwrites it with the colour its run computed.
        if bool(self.fill_color_ready) or self._trainer is None:
            return
        dataset = getattr(self.trainer.datamodule, "train_dataset", None)
        if dataset is not None:
            self.fill_color.copy_(mean_color(dataset))
            self.fill_color_ready.fill_(True)

    # ---- the problem's hooks -----------------------------------------------------------------

    def condition(self, batch: dict) -> torch.Tensor:
        """concat(image with the hole filled with `fill_color`, hole channel 1 in the HOLE).

        Args:
            batch: a batch dict with "image" (N, 3, H, W) in [-1, 1] and "mask" (1 = known).

        Returns:
            (N, 4, H, W).
        """
        image = batch[B.IMAGE]
        known = batch[B.MASK].to(image.dtype)
        fill = self.fill_color.to(image.dtype).reshape(1, -1, 1, 1)
        return torch.cat([image * known + fill * (1 - known), 1 - known], dim=1)

    def generate(
        self, G: nn.Module, batch: dict, z: torch.Tensor | None = None, blend: bool = False
    ) -> torch.Tensor:
        """The completion network's output, composited (or Poisson-blended) with the known pixels.

        Args:
            G: the completion network.
            batch: a batch dict with "image" and "mask" (1 = known).
            z: ignored (no latent).
            blend: Poisson-blend the hole's border instead of the plain composite.

        Returns:
            (N, 3, H, W); in [-1, 1] without the blend (the network ends in Tanh).
        """
        raw = G(self.condition(batch))
        if blend:
            return poisson_blend(raw.float(), batch[B.IMAGE], batch[B.MASK]).to(raw.dtype)
        return self.compose(raw, batch)

    def eval_kwargs(self) -> dict:
        """{"blend": poisson_blend}."""
        return {"blend": self.hparams.poisson_blend}

    @torch.no_grad()
    def sample(self, batch: dict, variant: int = 0) -> torch.Tensor:
        """The sampling network's output for a batch, with the blend of `poisson_blend`.

        Args:
            batch: a batch dict.
            variant: ignored (no latent).

        Returns:
            (N, 3, H, W), as `generate` gives it.
        """
        # No latent, so the base passes no keyword arguments: ask for the blend here.
        batch = self.prepare(batch)
        return self.generate(self.sampling_network, batch, **self.eval_kwargs())

    # ---- the patches the local discriminator sees --------------------------------------------

    @property
    def local_size(self) -> tuple[int, int]:
        """The discriminator's local patch (h, w)."""
        return tuple(self.discriminator.local_size)

    def fake_boxes(self, batch: dict) -> list[tuple[int, int, int, int]]:
        """Completed images: the patch centred on the hole.

        Args:
            batch: a batch dict with "mask" (1 = known).

        Returns:
            One (top, left, h, w) per sample.
        """
        return hole_centred_boxes(batch[B.MASK], self.local_size)

    def real_boxes(self, batch: dict) -> list[tuple[int, int, int, int]]:
        """Real images: a patch drawn uniformly inside the image (the report).

        Drawn from the iteration's seeded stream; or, with real_patches="hole", the fakes' boxes.

        Args:
            batch: a batch dict with "image" (and "mask" for "hole").

        Returns:
            One (top, left, h, w) per sample.
        """
        if self.hparams.real_patches == "hole":
            return self.fake_boxes(batch)
        n, _, height, width = batch[B.IMAGE].shape
        ph, pw = self.local_size
        tops = torch.randint(0, height - ph + 1, (n,)).tolist()
        lefts = torch.randint(0, width - pw + 1, (n,)).tolist()
        return [(t, l, ph, pw) for t, l in zip(tops, lefts, strict=True)]

    def discriminate(self, images: torch.Tensor, boxes: list) -> torch.Tensor:
        """D on the images and their patches cut at `boxes`.

        Args:
            images: (N, 3, H, W) in [-1, 1].
            boxes: one (top, left, h, w) per sample.

        Returns:
            (N,) logits.
        """
        return self.discriminator(images, crop_boxes(images, boxes))

    # ---- the three losses --------------------------------------------------------------------

    def completion_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """The completion phase: the hole-weighted MSE.

        Args:
            batch: a batch dict.

        Returns:
            The loss and {"train/mse": loss}.
        """
        fake = self.generate(self.generator, batch)
        mse = hole_mse(fake, batch[B.IMAGE], batch[B.MASK]).mean()
        return mse, {"train/mse": mse}

    def discriminator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """D's loss on real and completed patches (smoothed logistic unless `real_label` is None).

        Args:
            batch: a batch dict.

        Returns:
            The loss and the logged loss and mean real / fake logits.
        """
        with torch.no_grad():
            fake = self.generate(self.generator, batch)
        real_logits = self.discriminate(batch[B.IMAGE], self.real_boxes(batch))
        fake_logits = self.discriminate(fake, self.fake_boxes(batch))
        if self.hparams.real_label is None:
            loss = self.d_loss_fn(real_logits, fake_logits).mean()
        else:
            loss = smoothed_d_logistic_loss(
                real_logits, fake_logits, self.hparams.real_label
            ).mean()
        return loss, {
            "train/loss_d": loss,
            "train/logits_real": real_logits.float().mean(),
            "train/logits_fake": fake_logits.float().mean(),
        }

    def joint_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """The joint phase: MSE + alpha x the GAN loss.

        Args:
            batch: a batch dict.

        Returns:
            The loss and its terms to log.
        """
        fake = self.generate(self.generator, batch)
        mse = hole_mse(fake, batch[B.IMAGE], batch[B.MASK]).mean()
        gan = self.g_loss_fn(self.discriminate(fake, self.fake_boxes(batch))).float().mean()
        loss = mse + self.hparams.alpha * gan
        return loss, {"train/mse": mse, "train/loss_g": gan, "train/loss_joint": loss}


@torch.no_grad()
def mean_color(dataset, max_images: int = FILL_COLOR_SAMPLE) -> torch.Tensor:
    """The mean colour (3,) in [-1, 1] of up to `max_images` images spread evenly over a dataset.

    The global RNG is left alone (random crops draw from it), so computing it does not change the
    course of training.

    Args:
        dataset (torch.utils.data.Dataset): yields batch dicts with "image" (3, H, W) in [-1, 1].
        max_images: the most images averaged.

    Returns:
        float32 (3,).
    """
    n = len(dataset)
    picks = torch.linspace(0, n - 1, min(max_images, n)).round().long().unique().tolist()
    total = torch.zeros(3, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for i in picks:
            total += dataset[i][B.IMAGE].double().mean(dim=(1, 2))
    return (total / len(picks)).float()
