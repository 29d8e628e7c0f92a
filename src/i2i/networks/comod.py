"""The co-modulated generator and the residual discriminator of CoModGAN (Zhao et al., ICLR 2021).

Implemented from the project's specification (`shared/docs/comodgan.md`, sections 1 and 2), which
records how the official code behaves. The generator is task-agnostic: it maps a condition tensor
(`cond_channels` channels, built by the task) and a latent z to an image. Masks, compositing and
labels belong to the tasks.

Resolutions are powers of two, square by default or (H, W) with an aspect ratio up to 4:1. The
channel table and the depth follow the shorter side, so 256x512 has the layers of the 256 model
with a 4x8 bottleneck.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from i2i.networks.comod_parts import Decoder, Encoder, MappingNetwork, ResolutionLadder
from i2i.networks.layers import (
    EqualConv2d,
    EqualLinear,
    MinibatchStdLayer,
    NoiseMode,
)
from i2i.networks.ops import ModConvImpl, assert_shape, to_fast_layout

Modulation = Literal["co", "style", "cond"]


class CoModGenerator(nn.Module):
    """The co-modulated generator: `G(cond, z)` -> raw image (not clamped, not composited).

    Under co-modulation every modulated layer l reads concat(w_l, g), with w_l from the mapping
    network and g the global code of the encoder. `modulation='style'` drops g from the affine maps
    (an unconditional StyleGAN2 decoder with encoder skips); `'cond'` drops w (no mapping network).

    Args:
        img_resolution: H = W, or (H, W): powers of two, aspect ratio up to 4:1.
        cond_channels: channels of the condition (inpainting: mask - 0.5 and x * mask).
        img_channels: channels of the output image.
        z_dim: size of the latent z.
        w_dim: size of the intermediate latent w.
        mapping_layers: FC layers of the mapping network.
        channel_base: the width at level k is min(channel_base / 2^(k-1), channel_max).
        channel_max: the largest width of any level.
        global_dim: size of the encoder's global code g.
        global_dropout: dropout probability on g.
        dropout_at_inference: keep the dropout on g on in eval mode (the official behaviour).
        modulation: `'co'`: A(w, g); `'style'`: A(w); `'cond'`: A(g).
        w_avg_beta: decay of the running average of w, per update.
        modconv_impl: `'grouped'`, `'shared'`, or `'auto'` (chosen per batch and device).

    Raises:
        ValueError: `modulation` is none of the three names, or `img_resolution` is not
            powers of two within 4:1.
    """

    def __init__(
        self,
        img_resolution: int | tuple[int, int] = 512,  # H = W, or (H, W): powers of two, <= 4:1
        cond_channels: int = 4,  # channels of the condition (inpainting: mask - 0.5 and x * mask)
        img_channels: int = 3,  # channels of the output image
        z_dim: int = 512,  # latent z
        w_dim: int = 512,  # intermediate latent w
        mapping_layers: int = 8,  # FC layers of the mapping network
        channel_base: int = 16384,  # width at level k is min(channel_base / 2^(k-1), channel_max)
        channel_max: int = 512,
        global_dim: int = 1024,  # size of the encoder's global code g
        global_dropout: float = 0.5,  # dropout on g
        dropout_at_inference: bool = True,  # official: the dropout on g stays on in eval mode
        modulation: Modulation = "co",  # 'co': A(w, g); 'style': A(w); 'cond': A(g)
        w_avg_beta: float = 0.995,  # decay of the running average of w, per update
        modconv_impl: ModConvImpl = "auto",  # 'grouped', 'shared', or chosen per batch and device
    ):
        super().__init__()
        if modulation not in ("co", "style", "cond"):
            raise ValueError(f"modulation must be 'co', 'style' or 'cond', got {modulation!r}")
        self.ladder = ResolutionLadder(img_resolution, channel_base, channel_max)
        self.img_resolution = (self.ladder.height, self.ladder.width)
        self.cond_channels, self.img_channels = cond_channels, img_channels
        self.z_dim, self.w_dim, self.global_dim = z_dim, w_dim, global_dim
        self.modulation, self.w_avg_beta = modulation, w_avg_beta
        has_w = modulation != "cond"
        style_dim = {"co": w_dim + global_dim, "style": w_dim, "cond": global_dim}[modulation]

        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers) if has_w else None
        self.encoder = Encoder(
            self.ladder, cond_channels, global_dim, global_dropout, dropout_at_inference
        )
        self.decoder = Decoder(
            self.ladder,
            img_channels,
            global_dim,
            style_dim,
            has_w,
            modulation != "style",
            modconv_impl,
        )
        self.num_ws = self.decoder.num_ws
        self.register_buffer("w_avg", torch.zeros(w_dim))

    # ---- latent space -----------------------------------------------------------------------

    @torch.no_grad()
    def update_w_avg(self, w: torch.Tensor, beta: float | None = None) -> None:
        """Move the running average of w toward the mean of this batch of w.

        Under torch.distributed the mean is taken over every process's batch, so `w_avg` stays
        identical on every process.

        Args:
            w: (N, w_dim).
            beta: the decay: w_avg <- mean + beta * (w_avg - mean); None uses `w_avg_beta`.
        """
        beta = self.w_avg_beta if beta is None else beta
        mean = w.detach().to(self.w_avg.dtype).mean(dim=0)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(mean)
            mean /= dist.get_world_size()
        self.w_avg.copy_(mean.lerp(self.w_avg, beta))

    def truncate(
        self, ws: torch.Tensor, psi: float = 1.0, cutoff: int | None = None
    ) -> torch.Tensor:
        """w <- w_avg + psi * (w - w_avg) on the layers below `cutoff` (all when None).

        Args:
            ws: (N, num_ws, w_dim).
            psi: 1 leaves `ws` unchanged, 0 gives `w_avg`.
            cutoff: truncate only the layers with index below it; None truncates all.

        Returns:
            (N, num_ws, w_dim); `ws` itself when psi is 1.
        """
        if psi == 1.0:
            return ws
        w_avg = self.w_avg.to(ws.dtype)
        if cutoff is None:
            return w_avg.lerp(ws, psi)
        ws = ws.clone()
        ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], psi)
        return ws

    @staticmethod
    def mix_styles(ws: torch.Tensor, ws2: torch.Tensor, crossover: torch.Tensor) -> torch.Tensor:
        """Layers at index >= crossover[i] of sample i take ws2; crossover = num_ws means no mix.

        Args:
            ws: (N, num_ws, w_dim).
            ws2: the second styles, broadcastable to `ws`.
            crossover: (N,) integer layer indices.

        Returns:
            (N, num_ws, w_dim).
        """
        layer = torch.arange(ws.shape[1], device=ws.device).reshape(1, -1, 1)
        return torch.where(layer < crossover.reshape(-1, 1, 1), ws, ws2)

    def map(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        style_mixing_prob: float = 0.0,
        update_w_avg: bool = False,
        style_mixing_per_sample: bool = False,
    ) -> torch.Tensor:
        """z (N, z_dim) -> ws (N, num_ws, w_dim).

        Mapping, w_avg update, style mixing (a second z and a random crossover layer), then
        truncation toward w_avg (w only, never g). Style mixing draws, as the official code, one
        coin and one crossover layer for the whole minibatch; `style_mixing_per_sample` draws them
        per sample instead.

        Args:
            z: (N, z_dim).
            truncation_psi: see `truncate`; 1 means no truncation.
            truncation_cutoff: see `truncate`; None truncates every layer.
            style_mixing_prob: probability of mixing in a second z's styles, in [0, 1].
            update_w_avg: update the running average of w with this batch's w (training).
            style_mixing_per_sample: draw the mixing coin and crossover per sample.

        Returns:
            ws (N, num_ws, w_dim).

        Raises:
            RuntimeError: the generator has no mapping network (`modulation='cond'`).
            ValueError: `z` is not (N, z_dim).
        """
        if self.mapping is None:
            raise RuntimeError("modulation='cond' has no mapping network and no w")
        assert_shape(z, [None, self.z_dim], "z")
        w = self.mapping(z)
        if update_w_avg:
            self.update_w_avg(w)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if style_mixing_prob > 0:
            n = z.shape[0]
            w2 = self.mapping(torch.randn_like(z)).unsqueeze(1).expand_as(ws)
            draws = n if style_mixing_per_sample else 1
            crossover = torch.randint(1, self.num_ws, (draws,), device=z.device).expand(n)
            mixed = (torch.rand(draws, device=z.device) < style_mixing_prob).expand(n)
            crossover = torch.where(mixed, crossover, torch.full_like(crossover, self.num_ws))
            ws = self.mix_styles(ws, w2, crossover)
        return self.truncate(ws, truncation_psi, truncation_cutoff)

    # ---- image ------------------------------------------------------------------------------

    def synthesize(
        self, cond: torch.Tensor, ws: torch.Tensor | None, noise_mode: NoiseMode = "random"
    ) -> torch.Tensor:
        """The encoder and decoder for given ws.

        Args:
            cond: (N, cond_channels, H, W) at `img_resolution`.
            ws: (N, num_ws, w_dim), or None when modulation is 'cond'.
            noise_mode: `"random"`, `"const"` or `"none"` (see `ModulatedConv2d.forward`).

        Returns:
            The raw image (N, img_channels, H, W), not clamped.

        Raises:
            ValueError: `cond` or `ws` has the wrong shape.
        """
        assert_shape(cond, [None, self.cond_channels, *self.img_resolution], "cond")
        if ws is not None:
            assert_shape(ws, [cond.shape[0], self.num_ws, self.w_dim], "ws")
        x = self.encoder_input(cond)
        g, skips = self.encoder(x)
        return self.output_image(self.decoder(ws, g, skips, noise_mode), x)

    def encoder_input(self, cond: torch.Tensor) -> torch.Tensor:
        """What the encoder reads: the condition itself (a subclass may prepare it).

        Args:
            cond: (N, cond_channels, H, W).

        Returns:
            The encoder's input, here `cond` unchanged.
        """
        return cond

    def output_image(self, raw: torch.Tensor, encoder_input: torch.Tensor) -> torch.Tensor:
        """The generator's output from the decoder's.

        The decoder's own here; a subclass may add to it what it prepared in `encoder_input`.

        Args:
            raw: the decoder's image (N, img_channels, H, W).
            encoder_input: what `encoder_input` returned.

        Returns:
            The image (N, img_channels, H, W), here `raw` unchanged.
        """
        return raw

    def forward(
        self,
        cond: torch.Tensor,  # (N, cond_channels, H, W)
        z: torch.Tensor | None = None,  # (N, z_dim); drawn N(0, 1) when None
        truncation_psi: float = 1.0,  # 1 = no truncation (official evaluation); training uses 0.5
        truncation_cutoff: int | None = None,  # truncate only layers below this index
        noise_mode: NoiseMode = "random",  # per-pixel noise: fresh, the fixed buffer, or off
        style_mixing_prob: float = 0.0,  # official training: 0.5
        update_w_avg: bool = False,  # training: track the running average of w
        style_mixing_per_sample: bool = False,  # official: one draw per minibatch
    ) -> torch.Tensor:
        """Generate images for a batch of conditions.

        Args:
            cond: (N, cond_channels, H, W), built by the task (values around [-1, 1]), in any
                memory layout: the encoder converts it (`i2i.networks.ops.to_fast_layout`).
            z: (N, z_dim); drawn N(0, 1) when None. Ignored under `modulation='cond'`.
            truncation_psi: 1 = no truncation (official evaluation); training uses 0.5.
            truncation_cutoff: truncate only layers below this index; None truncates all.
            noise_mode: per-pixel noise: `"random"` (fresh), `"const"` (the fixed buffer) or
                `"none"` (off).
            style_mixing_prob: probability of style mixing (official training: 0.5).
            update_w_avg: training: track the running average of w.
            style_mixing_per_sample: draw mixing per sample (official: one draw per minibatch).

        Returns:
            The raw image (N, img_channels, H, W): trained toward [-1, 1] but not clamped, and not
            composited with the known pixels.
        """
        ws = None
        if self.mapping is not None:
            if z is None:
                z = torch.randn(cond.shape[0], self.z_dim, device=cond.device, dtype=cond.dtype)
            ws = self.map(
                z,
                truncation_psi,
                truncation_cutoff,
                style_mixing_prob,
                update_w_avg,
                style_mixing_per_sample,
            )
        return self.synthesize(cond, ws, noise_mode)

    def extra_repr(self) -> str:
        """The resolution, condition channels, modulation and number of ws, for `print(model)`."""
        return (
            f"img_resolution={self.img_resolution}, cond_channels={self.cond_channels}, "
            f"modulation={self.modulation!r}, num_ws={self.num_ws}"
        )


class DiscriminatorBlock(nn.Module):
    """3x3 conv, blurred stride-2 3x3 conv, plus a 1x1 stride-2 skip: (x + skip) / sqrt 2.

    Args:
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation="lrelu", down=2)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: (N, in_channels, H, W), H and W even.

        Returns:
            (N, out_channels, H/2, W/2).
        """
        y = self.skip(x)
        return (self.conv1(self.conv0(x)) + y) * (1 / math.sqrt(2))


class CoModDiscriminator(nn.Module):
    """StyleGAN2's residual discriminator, conditioned by concatenation.

    D(image, cond) reads concat(cond, image) and returns one logit per sample, shape (N,).

    Args:
        img_resolution: H = W, or (H, W): powers of two, aspect ratio up to 4:1.
        img_channels: channels of the image.
        cond_channels: channels of the condition (inpainting: the mask - 0.5; edges / labels:
            the condition); 0 for an unconditional discriminator.
        channel_base: the width at level k is min(channel_base / 2^(k-1), channel_max).
        channel_max: the largest width of any level.
        mbstd_group_size: largest minibatch-stddev group (official: min(4, batch)).
        mbstd_num_channels: channels the minibatch-stddev layer appends.
    """

    def __init__(
        self,
        img_resolution: int | tuple[int, int] = 512,
        img_channels: int = 3,
        cond_channels: int = 1,  # inpainting: the mask - 0.5; edges / labels: the condition
        channel_base: int = 16384,
        channel_max: int = 512,
        mbstd_group_size: int = 4,  # official: min(4, batch)
        mbstd_num_channels: int = 1,
    ):
        super().__init__()
        self.ladder = ladder = ResolutionLadder(img_resolution, channel_base, channel_max)
        self.img_resolution = (ladder.height, ladder.width)
        self.img_channels, self.cond_channels = img_channels, cond_channels
        self.from_rgb = EqualConv2d(
            img_channels + cond_channels, ladder.channels(ladder.top), 1, activation="lrelu"
        )
        self.blocks = nn.Sequential(
            *(
                DiscriminatorBlock(ladder.channels(level), ladder.channels(level - 1))
                for level in ladder.levels_down
            )
        )
        c4 = ladder.channels(2)
        h4, w4 = ladder.size(2)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
        self.conv = EqualConv2d(c4 + mbstd_num_channels, c4, 3, activation="lrelu")
        self.fc = EqualLinear(c4 * h4 * w4, c4, activation="lrelu")
        self.out = EqualLinear(c4, 1)

    def forward(self, image: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Score images.

        Args:
            image: (N, img_channels, H, W) at `img_resolution`, in [-1, 1], in any memory layout
                (converted with `cond` by `i2i.networks.ops.to_fast_layout`).
            cond: (N, cond_channels, H, W); may be None only when `cond_channels` is 0.

        Returns:
            One logit per sample (N,): higher means judged real.

        Raises:
            ValueError: a shape is wrong, or `cond` is None while `cond_channels` > 0.
        """
        assert_shape(image, [None, self.img_channels, *self.img_resolution], "image")
        if self.cond_channels:
            if cond is None:
                raise ValueError(f"this discriminator expects a {self.cond_channels}-channel cond")
            assert_shape(cond, [image.shape[0], self.cond_channels, *self.img_resolution], "cond")
            image = torch.cat([cond.to(image.dtype), image], dim=1)
        # After the concatenation, which lays out a 1-channel cond and a channels_last image NCHW.
        x = self.blocks(self.from_rgb(to_fast_layout(image)))
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)
