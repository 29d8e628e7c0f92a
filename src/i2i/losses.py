"""Losses as pure functions returning one value per sample (reduce in the task).

The official CoModGAN recipe is the non-saturating logistic G loss, the logistic D loss and a lazy
R1 penalty on the reals; reconstruction losses exist as options with weight 0 by default.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from i2i.errors import ModelFileError


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """softplus(-D(G(c))): the generator wants its fakes called real."""
    return F.softplus(-fake_logits.float())


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """softplus(D(fake)) + softplus(-D(real))."""
    return F.softplus(fake_logits.float()) + F.softplus(-real_logits.float())


# ---- the GAN objectives, by name -------------------------------------------------------------
# Each takes the discriminator's raw outputs (logits or critic values) and returns one value per
# sample; `GAN_OBJECTIVES[name]` gives the pair (d_loss(real, fake), g_loss(fake)).


def d_minimax_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))) with D = sigmoid(logits): the original GAN's D loss (the
    same as the logistic loss of the non-saturating variant)."""
    return d_logistic_loss(real_logits, fake_logits)


def g_minimax_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """log(1 - D(G(z))) = -softplus(logits): the saturating G loss of the minimax game, whose
    gradient vanishes when D rejects the fakes confidently (why non-saturating exists)."""
    return -F.softplus(fake_logits.float())


def d_lsgan_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Least squares (Mao et al. 2017) with targets 1 (real) and 0 (fake):
    (D(x) - 1)^2 + D(G(z))^2."""
    return (real_logits.float() - 1).square() + fake_logits.float().square()


def g_lsgan_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """(D(G(z)) - 1)^2: the generator wants its fakes scored as real."""
    return (fake_logits.float() - 1).square()


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """relu(1 - D(x)) + relu(1 + D(G(z))) (SAGAN, SPADE)."""
    return F.relu(1 - real_logits.float()) + F.relu(1 + fake_logits.float())


def g_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-D(G(z))."""
    return -fake_logits.float()


def d_wgan_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The critic's Wasserstein loss D(G(z)) - D(x); add `gradient_penalty` (WGAN-GP)."""
    return fake_logits.float() - real_logits.float()


def g_wgan_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-D(G(z))."""
    return -fake_logits.float()


def gradient_penalty(
    critic: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *d_args: torch.Tensor,
    weight: float = 10.0,
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): weight * (||grad D(x_hat)||_2 - 1)^2 per sample at
    x_hat = eps * real + (1 - eps) * fake, eps ~ U(0, 1) per sample; fp32 like R1."""
    device_type = real.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
        x_hat = (eps * real.detach().float() + (1 - eps) * fake.detach().float()).requires_grad_()
        out = critic(x_hat, *(a.float() for a in d_args)).float()
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return weight * (grad.flatten(1).norm(dim=1) - 1).square()


def smoothed_d_logistic_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, real_target: float = 0.9
) -> torch.Tensor:
    """The logistic D loss with one-sided label smoothing: the reals' target is `real_target`
    (e.g. 0.9, or GLCIC's 0.75) instead of 1; the fakes' stays 0."""
    return F.binary_cross_entropy_with_logits(
        real_logits.float(), torch.full_like(real_logits.float(), real_target), reduction="none"
    ) + F.softplus(fake_logits.float())


GAN_OBJECTIVES: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    "minimax": (d_minimax_loss, g_minimax_loss),
    "nonsaturating": (d_logistic_loss, g_nonsaturating_loss),
    "lsgan": (d_lsgan_loss, g_lsgan_loss),
    "hinge": (d_hinge_loss, g_hinge_loss),
    "wgan": (d_wgan_loss, g_wgan_loss),  # pair it with gradient_penalty (WGAN-GP)
}


def gan_objective(name: str) -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
    """(d_loss, g_loss) of a GAN objective by name."""
    if name not in GAN_OBJECTIVES:
        raise ValueError(f"unknown GAN objective {name!r}; choose one of {sorted(GAN_OBJECTIVES)}")
    return GAN_OBJECTIVES[name]


def r1_penalty(
    discriminator: Callable[..., torch.Tensor],
    real: torch.Tensor,
    *d_args: torch.Tensor,
    include_condition: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """||grad D(x, *d_args)||^2 per sample at the reals x, and the logits D(x).

    The gradient is taken with respect to the image x, and with `include_condition` also with
    respect to the first of `d_args` (the condition D sees beside the image): the official edges
    model's reals are photo + RGB condition, so its R1 covers every input channel of D.
    Computed in fp32 even inside an autocast region: the squared gradient norm underflows and
    loses its precision in bf16/fp16. The caller scales it by gamma / 2 (and the lazy interval).
    """
    device_type = real.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        real = real.detach().float().requires_grad_(True)
        args = [a.float() for a in d_args]
        inputs = [real]
        if include_condition:
            if not args:
                raise ValueError("include_condition=True needs the condition as the first d_arg")
            args[0] = args[0].detach().requires_grad_(True)
            inputs.append(args[0])
        logits = discriminator(real, *args).float()
        grads = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    penalty = sum(g.square().flatten(1).sum(dim=1) for g in grads)
    return penalty, logits


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over the latent dimensions:
    0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=1)


def masked_l1(
    fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor | None = None, region: str = "hole"
) -> torch.Tensor:
    """Mean absolute error per sample; with a mask (1 = known) over the hole (or the known part).

    The mean is over the pixels of the region (times channels), so the loss does not shrink with
    the hole. A sample whose region is empty contributes 0.
    """
    diff = (fake.float() - real.float()).abs()
    if mask is None:
        return diff.flatten(1).mean(dim=1)
    if region not in ("hole", "known"):
        raise ValueError(f"region must be 'hole' or 'known', got {region!r}")
    weight = (1 - mask.float()) if region == "hole" else mask.float()
    weight = weight.expand_as(diff)
    return (diff * weight).flatten(1).sum(dim=1) / weight.flatten(1).sum(dim=1).clamp_min(1)


VGG16_FILE = "vgg16-397923af.pth"


class PerceptualLoss(nn.Module):
    """Distance between VGG-16 features (relu1_2, relu2_2, relu3_3, relu4_3) of images in [-1, 1],
    weighted per layer (`layer_weights`), L1 or squared L2 (`distance`).

    `weights`: "imagenet" loads torchvision's ImageNet weights from the torch hub cache (offline:
    place `vgg16-397923af.pth` in `$TORCH_HOME/hub/checkpoints/`), a path loads that file, and
    None keeps random weights (for tests). The network is frozen and kept out of state dicts.
    """

    LAYER_ENDS = (
        4,
        9,
        16,
        23,
    )  # indices after relu1_2, relu2_2, relu3_3, relu4_3 in vgg16.features

    def __init__(
        self,
        weights: str | Path | None = "imagenet",
        layer_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0),  # lambda_l of each layer
        distance: str = "l1",  # "l1": mean |a - b|; "l2": mean (a - b)^2 (the VAE paper's)
    ):
        super().__init__()
        if len(layer_weights) != len(self.LAYER_ENDS):
            raise ValueError(
                f"layer_weights needs {len(self.LAYER_ENDS)} values (relu1_2, relu2_2, relu3_3, "
                f"relu4_3), got {layer_weights}"
            )
        if distance not in ("l1", "l2"):
            raise ValueError(f"distance must be 'l1' or 'l2', got {distance!r}")
        self.layer_weights, self.distance = tuple(float(w) for w in layer_weights), distance
        from torchvision.models.vgg import cfgs, make_layers

        # VGG-16's convolutional part alone (as vgg16().features, keys included): building the
        # whole network would initialise its 120M classifier weights only to drop them.
        net = make_layers(cfgs["D"])[: self.LAYER_ENDS[-1]]
        net.requires_grad_(False).eval()
        object.__setattr__(self, "net", net)  # not a submodule: stays out of checkpoints
        # Loaded on first use (or by `load_weights()` at a task's setup), so that a config that
        # names the loss parses and instantiates on a machine without the file.
        self.weights, self._loaded = weights, weights is None
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))

    def load_weights(self) -> None:
        """Load the VGG-16 weights (once); a missing file names where it goes."""
        if self._loaded:
            return
        weights = self.weights
        path = _torch_hub_file(VGG16_FILE) if weights == "imagenet" else Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"VGG-16 weights not found at {path}. Download "
                f"https://download.pytorch.org/models/{VGG16_FILE} and place it there "
                "(`i2i-weights` does it where there is network), or pass weights=<path>."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        wanted = self.net.state_dict().keys()
        missing = [f"features.{k}" for k in wanted if f"features.{k}" not in state]
        if missing:
            raise ModelFileError(
                f"{path} is not a VGG-16 state dict: it lacks {', '.join(missing[:3])}"
                f"{' ...' if len(missing) > 3 else ''}. Place torchvision's {VGG16_FILE} there."
            )
        self.net.load_state_dict({k: state[f"features.{k}"] for k in wanted})
        self._loaded = True

    def _apply(self, fn, recurse=True):
        self.net._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.load_weights()
        x = ((x + 1) / 2 - self.mean) / self.std
        feats, start = [], 0
        for end in self.LAYER_ENDS:
            x = self.net[start:end](x)
            feats.append(x)
            start = end
        return feats

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        losses = []
        for weight, a, b in zip(
            self.layer_weights, self.features(fake), self.features(real), strict=True
        ):
            diff = (a - b).abs() if self.distance == "l1" else (a - b).square()
            losses.append(weight * diff.flatten(1).mean(dim=1))
        return torch.stack(losses).sum(dim=0)


def _torch_hub_file(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name
