"""The convolutional VAE of variational image inpainting (Ham et al., NeurIPS 2018 workshop),
from the paper's description (`shared/seeds/004`).

- Encoder q(z | x): strided 4x4 convolutions (BatchNorm, LeakyReLU 0.2) from the image size down
  to 4x4, then a dense layer to the mean and the log-variance of a Gaussian over z. Its input is
  the complete image (the fully observed variant) or the masked image with its mask (partially
  observed; the task builds it).
- Decoder p(x | z): a dense layer to 4x4, strided 4x4 transposed convolutions (BatchNorm, ReLU)
  back to the image size, Tanh. The one-shot variant also feeds the partially observed image to
  the decoder, resized and concatenated at every level (`decoder_cond_channels`).
- Optional attributes (e.g. CelebA's 40 binary ones) concatenated to the encoder's and/or the
  decoder's dense input (`attr_dim`, `attributes_in`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

AttributesIn = Literal["none", "encoder", "decoder", "both"]


class ConvVAE(nn.Module):
    """`vae(x_enc, cond=None, attributes=None)` -> (x, mu, logvar).

    `encode`, `reparameterize`, `decode` separately for iterative sampling.

    Args:
        img_resolution: side of the square image, a power of two >= 8.
        in_channels: encoder input: 3 (full image) or 4 (masked image + mask).
        out_channels: channels of the output image.
        z_dim: size of the latent z.
        width: channels of the first level, doubled per level up to `max_width`.
        max_width: the largest width of any level.
        decoder_cond_channels: one-shot variant: channels of the decoder's condition; 0 for
            none.
        attr_dim: number of attributes per sample (CelebA: 40); 0 for none.
        attributes_in: where the attributes join: `"none"`, `"encoder"`, `"decoder"` or
            `"both"`.

    Raises:
        ValueError: `img_resolution` is not a power of two >= 8, `attributes_in` is not one of
            the four names, or it is not `"none"` while `attr_dim` is 0.
    """

    def __init__(
        self,
        img_resolution: int = 64,  # square, a power of two >= 8
        in_channels: int = 4,  # encoder input: 3 (full image) or 4 (masked image + mask)
        out_channels: int = 3,
        z_dim: int = 128,
        width: int = 32,  # channels of the first level, doubled per level up to max_width
        max_width: int = 256,
        decoder_cond_channels: int = 0,  # one-shot variant: channels of the decoder's condition
        attr_dim: int = 0,  # number of attributes (CelebA: 40)
        attributes_in: AttributesIn = "none",
    ):
        super().__init__()
        if img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        if attributes_in not in ("none", "encoder", "decoder", "both"):
            raise ValueError(f"attributes_in must be none|encoder|decoder|both: {attributes_in}")
        if attributes_in != "none" and attr_dim <= 0:
            raise ValueError("attributes_in needs attr_dim > 0")
        self.img_resolution, self.z_dim = (img_resolution, img_resolution), z_dim
        self.in_channels, self.decoder_cond_channels = in_channels, decoder_cond_channels
        self.attr_dim, self.attributes_in = attr_dim, attributes_in
        levels = int(math.log2(img_resolution)) - 2  # down to 4x4
        widths = [min(width * 2**i, max_width) for i in range(levels)]
        self.encoder = nn.Sequential()
        c = in_channels
        for w in widths:
            self.encoder.append(
                nn.Sequential(nn.Conv2d(c, w, 4, 2, 1), nn.BatchNorm2d(w), nn.LeakyReLU(0.2))
            )
            c = w
        enc_attr = attr_dim if attributes_in in ("encoder", "both") else 0
        dec_attr = attr_dim if attributes_in in ("decoder", "both") else 0
        self.to_stats = nn.Linear(c * 16 + enc_attr, 2 * z_dim)
        self.from_z = nn.Linear(z_dim + dec_attr, c * 16)
        self.decoder = nn.ModuleList()
        for w in [*reversed(widths[:-1]), width]:  # 4x4 -> the image size
            self.decoder.append(
                nn.Sequential(
                    nn.ConvTranspose2d(c + decoder_cond_channels, w, 4, 2, 1),
                    nn.BatchNorm2d(w),
                    nn.ReLU(),
                )
            )
            c = w
        self.to_image = nn.Conv2d(c + decoder_cond_channels, out_channels, 3, padding=1)
        self._bottom = widths[-1]

    def encode(
        self, x: torch.Tensor, attributes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z | x): its mean and log-variance.

        Args:
            x: encoder input (N, in_channels, R, R) at `img_resolution`.
            attributes: (N, attr_dim) when the encoder reads attributes, else ignored (may be None).

        Returns:
            (mu, logvar), each (N, z_dim).

        Raises:
            ValueError: the encoder reads attributes and they are missing or of the wrong width.
        """
        h = self.encoder(x).flatten(1)
        if self.attributes_in in ("encoder", "both"):
            h = torch.cat([h, self._attributes(attributes, x)], dim=1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I): differentiable in mu and logvar.

        Args:
            mu: (N, z_dim).
            logvar: (N, z_dim), the log of sigma^2.
            generator: the random generator for eps; None uses torch's global one.

        Returns:
            z (N, z_dim).
        """
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + (0.5 * logvar).exp() * eps

    def decode(
        self,
        z: torch.Tensor,
        cond: torch.Tensor | None = None,
        attributes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The decoder p(x | z).

        Args:
            z: (N, z_dim).
            cond: one-shot variant: the decoder's condition (N, decoder_cond_channels, R, R),
                resized to every level; None when `decoder_cond_channels` is 0.
            attributes: (N, attr_dim) when the decoder reads attributes, else ignored (may be
                None).

        Returns:
            The image (N, out_channels, R, R) in [-1, 1] (Tanh).

        Raises:
            ValueError: the one-shot decoder gets no `cond`, or attributes are missing or of the
                wrong width.
        """
        if self.attributes_in in ("decoder", "both"):
            z = torch.cat([z, self._attributes(attributes, z)], dim=1)
        x = self.from_z(z).reshape(z.shape[0], self._bottom, 4, 4)
        if self.decoder_cond_channels and cond is None:
            raise ValueError("the one-shot decoder needs its condition (the observed image)")
        for block in self.decoder:
            x = block(self._with_cond(x, cond))
        return torch.tanh(self.to_image(self._with_cond(x, cond)))

    def _with_cond(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if not self.decoder_cond_channels:
            return x
        return torch.cat([x, F.interpolate(cond, size=x.shape[-2:], mode="area")], dim=1)

    def _attributes(self, attributes: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        if attributes is None or attributes.shape[-1] != self.attr_dim:
            got = None if attributes is None else tuple(attributes.shape)
            raise ValueError(f"this VAE takes {self.attr_dim} attributes per sample, got {got}")
        return attributes.to(like.dtype)

    def forward(
        self,
        x_enc: torch.Tensor,
        cond: torch.Tensor | None = None,
        attributes: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample z and decode.

        Args:
            x_enc: encoder input (N, in_channels, R, R).
            cond: the decoder's condition (one-shot variant), see `decode`; None otherwise.
            attributes: (N, attr_dim), see `encode` and `decode`; None when not used.
            generator: the random generator for the sample of z; None uses torch's global one.

        Returns:
            (x, mu, logvar): the image (N, out_channels, R, R) in [-1, 1] and the posterior's mean
            and log-variance, each (N, z_dim).
        """
        mu, logvar = self.encode(x_enc, attributes)
        z = self.reparameterize(mu, logvar, generator)
        return self.decode(z, cond, attributes), mu, logvar
