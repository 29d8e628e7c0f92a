"""CoModGAN started from a classical fill: the hole is filled by a harmonic fill before the
encoder reads it, and the network learns a residual over that fill.

A small model trained for minutes on a CPU spends its budget learning what Laplace's equation
gives for free: smooth colour across the hole. `PrefilledCoModGenerator` hands it that fill as
input and as the starting output (output = fill + gain * G(...), the gain a learned scalar that
starts at 0, so the untrained model is the harmonic fill), and leaves it only what diffusion
cannot do: continue the edges and shapes that the hole cuts. Everything else (mapping,
co-modulation, encoder, decoder) is `CoModGenerator`'s; the official configs do not use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from i2i.networks.comod import CoModGenerator

# The 4-neighbour sum, as a depthwise kernel (one per channel).
_CROSS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def harmonic_prefill(image: torch.Tensor, known: torch.Tensor, smoothing: int = 16) -> torch.Tensor:
    """A batched approximation of the harmonic fill, cheap enough for every training step.

    The approximation of `i2i.classical.harmonic_fill` in plain torch ops, exportable. Nested
    iteration: the masked image is averaged down to 1 px, each level's hole starts from the
    coarser level's fill (bilinear) and takes `smoothing` Jacobi steps of the 4-neighbour mean
    (neighbours inside the image only), so the low frequencies come from the coarse levels and
    the steps need not travel far.

    Args:
        image: (N, C, H, W), any range (the generator passes x * mask in [-1, 1]).
        known: (N, 1, H, W), 1 = known, 0 = hole (thresholded at 0.5).
        smoothing: Jacobi steps per level.

    Returns:
        (N, C, H, W): the image with its hole filled and the known pixels unchanged. An image with
        nothing known is filled with 0 (grey).
    """
    known = (known > 0.5).to(image.dtype)
    h, w = image.shape[-2:]
    if h == 1 and w == 1:
        return image * known
    weights = F.avg_pool2d(known, 2, ceil_mode=True)
    sums = F.avg_pool2d(image * known, 2, ceil_mode=True)
    coarse = harmonic_prefill(
        sums / weights.clamp_min(1e-8), (weights > 0).to(image.dtype), smoothing
    )
    start = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    x = image * known + start * (1 - known)
    c = image.shape[1]
    kernel = _CROSS.to(image)
    neighbours = F.conv2d(
        torch.ones_like(known[:1]), kernel.expand(1, 1, 3, 3), padding=1
    )  # 4 inside, 3 on a border, 2 in a corner
    for _ in range(smoothing):
        mean = F.conv2d(x, kernel.expand(c, 1, 3, 3), padding=1, groups=c) / neighbours
        x = image * known + mean * (1 - known)
    return x


class PrefilledCoModGenerator(CoModGenerator):
    """`CoModGenerator` for inpainting that starts from a harmonic fill.

    Its condition image is harmonically prefilled and its output is that fill plus a learned
    residual: `fill + gain * G(cond', z)`, gain starting at 0. The condition keeps CoModGAN's
    layout, concat(mask - 0.5, x * mask) (cond_channels 4), so tasks, inference and export use
    it as any generator.

    Args:
        *args (Any): `CoModGenerator`'s arguments.
        prefill_smoothing: Jacobi steps per level of `harmonic_prefill`.
        **kwargs (Any): `CoModGenerator`'s arguments.

    Raises:
        ValueError: `cond_channels` is not 1 + `img_channels`.
    """

    def __init__(self, *args, prefill_smoothing: int = 16, **kwargs):
        # prefill_smoothing: Jacobi steps per level of `harmonic_prefill` (16 at 64 px: within
        # ~1% of the exact solve in hole L1; more for large images at inference is not needed,
        # the network corrects the rest).
        super().__init__(*args, **kwargs)
        if self.cond_channels != 1 + self.img_channels:
            raise ValueError(
                "PrefilledCoModGenerator reads an inpainting condition, concat(mask - 0.5, "
                f"x * mask): cond_channels must be {1 + self.img_channels}, got "
                f"{self.cond_channels}"
            )
        self.prefill_smoothing = prefill_smoothing
        self.residual_gain = nn.Parameter(torch.zeros([]))

    def encoder_input(self, cond: torch.Tensor) -> torch.Tensor:
        """The condition with the hole of its image harmonically filled.

        Args:
            cond: (N, 1 + C, H, W): concat(mask - 0.5, x * mask), mask 1 = known.

        Returns:
            (N, 1 + C, H, W): the same mask channel and the prefilled image (no gradient flows
            through the fill).
        """
        with torch.no_grad():
            fill = harmonic_prefill(cond[:, 1:], cond[:, :1] + 0.5, self.prefill_smoothing)
        return torch.cat([cond[:, :1], fill], dim=1)

    def output_image(self, raw: torch.Tensor, encoder_input: torch.Tensor) -> torch.Tensor:
        """The fill plus the learned residual: fill + residual_gain * raw.

        Args:
            raw: the decoder's image (N, C, H, W).
            encoder_input: what `encoder_input` returned; its channels 1: are the fill.

        Returns:
            (N, C, H, W), not clamped and not composited.
        """
        return encoder_input[:, 1:] + self.residual_gain * raw

    def extra_repr(self) -> str:
        """`CoModGenerator`'s summary plus the prefill and its smoothing steps."""
        return super().extra_repr() + f", prefill='harmonic', smoothing={self.prefill_smoothing}"
