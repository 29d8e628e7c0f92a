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
import torch.nn.functional as F
from torch import nn

from i2i.networks.layers import (
    EqualConv2d,
    EqualLinear,
    MinibatchStdLayer,
    ModulatedConv2d,
    NoiseMode,
    normalize_2nd_moment,
)
from i2i.networks.ops import ModConvImpl, assert_shape, fir_filter, memory_format, upsample2d
from i2i.resolution import parse_resolution

Modulation = Literal["co", "style", "cond"]


class ResolutionLadder:
    """Shapes and channel widths of every level k (the shorter side is 2^k), shared by G and D.

    Args:
        img_resolution (int | tuple[int, int]): the image size: an int (square) or (H, W),
            powers of two with an aspect ratio up to 4:1 (see
            `i2i.resolution.parse_resolution`).
        channel_base: the width at level k is min(channel_base / 2^(k-1), channel_max).
        channel_max: the largest width of any level.
    """

    def __init__(self, img_resolution, channel_base: int, channel_max: int):
        self.height, self.width = parse_resolution(img_resolution, name="img_resolution")
        short = min(self.height, self.width)
        self.aspect = (self.height // short, self.width // short)  # the 4x4 bottleneck times this
        self.top = int(math.log2(short))  # level of the full resolution
        self.channel_base, self.channel_max = channel_base, channel_max

    def channels(self, level: int) -> int:
        """The channel width at a level.

        Args:
            level: k, where the shorter side of the feature map is 2^k (2 is the 4x4 bottleneck).

        Returns:
            min(channel_base / 2^(k-1), channel_max).
        """
        return min(self.channel_base // 2 ** (level - 1), self.channel_max)

    def size(self, level: int) -> tuple[int, int]:
        """The feature map's (H, W) at a level.

        Args:
            level: k, where the shorter side is 2^k.

        Returns:
            (2^k, 2^k) times the aspect ratio, for example (4, 8) at level 2 of a 256x512 ladder.
        """
        return (2**level * self.aspect[0], 2**level * self.aspect[1])

    @property
    def levels_down(self) -> range:
        """The encoder's and discriminator's block levels, from the top down to 8x8."""
        return range(self.top, 2, -1)


class MappingNetwork(nn.Module):
    """z -> pixel norm -> `num_layers` FC layers (lr multiplier 0.01) -> w.

    Args:
        z_dim: size of the latent z.
        w_dim: size of the intermediate latent w (and of every hidden layer).
        num_layers: number of fully connected layers, each with leaky ReLU.
        lr_multiplier: learning-rate multiplier of every layer.
    """

    def __init__(self, z_dim: int, w_dim: int, num_layers: int = 8, lr_multiplier: float = 0.01):
        super().__init__()
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.Sequential(
            *(
                EqualLinear(i, o, activation="lrelu", lr_multiplier=lr_multiplier)
                for i, o in zip(dims[:-1], dims[1:], strict=True)
            )
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents to intermediate latents.

        Args:
            z: (N, z_dim), usually N(0, 1).

        Returns:
            w (N, w_dim).
        """
        return self.layers(normalize_2nd_moment(z))


class Encoder(nn.Module):
    """The conditional branch of the generator.

    From-RGB 1x1, then per level a 3x3 conv (its output is the skip feature E[res]) and a
    blurred stride-2 3x3 conv; at 4x4 a 3x3 conv (E[4]), flatten, dense to the global code g,
    dropout.

    Args:
        ladder: the levels' sizes and widths.
        cond_channels: channels of the condition.
        global_dim: size of the global code g.
        dropout: dropout probability on g, in [0, 1].
        dropout_at_inference: keep the dropout on g in eval mode (the official behaviour).
    """

    def __init__(
        self,
        ladder: ResolutionLadder,
        cond_channels: int,
        global_dim: int,
        dropout: float,
        dropout_at_inference: bool,
    ):
        super().__init__()
        self.ladder, self.dropout, self.dropout_at_inference = ladder, dropout, dropout_at_inference
        self.from_rgb = EqualConv2d(
            cond_channels, ladder.channels(ladder.top), 1, activation="lrelu"
        )
        self.blocks = nn.ModuleDict()
        for level in ladder.levels_down:
            c, c_next = ladder.channels(level), ladder.channels(level - 1)
            self.blocks[str(level)] = nn.ModuleDict(
                {
                    "conv": EqualConv2d(c, c, 3, activation="lrelu"),
                    "down": EqualConv2d(c, c_next, 3, activation="lrelu", down=2),
                }
            )
        c4 = ladder.channels(2)
        self.conv4 = EqualConv2d(c4, c4, 3, activation="lrelu")
        h4, w4 = ladder.size(2)
        self.fc = EqualLinear(c4 * h4 * w4, global_dim, activation="lrelu")

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Encode a condition.

        Args:
            cond: (N, cond_channels, H, W) at the ladder's full resolution.

        Returns:
            The global code g (N, global_dim) and the skip features {level: (N, channels(level),
            *size(level))} for every level from the top down to 2 (4x4).
        """
        x = self.from_rgb(cond)
        skips: dict[int, torch.Tensor] = {}
        for level in self.ladder.levels_down:
            block = self.blocks[str(level)]
            x = block["conv"](x)
            skips[level] = x
            x = block["down"](x)
        x = self.conv4(x)
        skips[2] = x
        g = self.fc(x.flatten(1))
        # The official code keeps this dropout on at inference (its guard is commented out), so the
        # global code is stochastic at test time too; `dropout_at_inference=False` turns that off.
        g = F.dropout(g, self.dropout, training=self.training or self.dropout_at_inference)
        return g, skips


class Decoder(nn.Module):
    """The synthesis branch of the generator.

    dense(g) -> 4x4 plus E[4], then per level an up-sampling modulated conv, + E[res], a
    modulated conv and a ToRGB, with the skip RGB architecture.

    Args:
        ladder: the levels' sizes and widths.
        img_channels: channels of the output image.
        global_dim: size of the global code g.
        style_dim: inputs of each layer's affine map (w_dim, global_dim, or their sum).
        has_w: whether the layers read a w (False under `modulation='cond'`).
        g_in_styles: whether the affine maps read g (co-modulation and 'cond').
        modconv_impl: modulated conv path, see `i2i.networks.ops.modulated_conv2d`.
    """

    def __init__(
        self,
        ladder: ResolutionLadder,
        img_channels: int,
        global_dim: int,
        style_dim: int,
        has_w: bool,
        g_in_styles: bool,  # co-modulation and 'cond': the affine maps read g
        modconv_impl: ModConvImpl,
    ):
        super().__init__()
        self.ladder, self.g_in_styles = ladder, g_in_styles
        c4 = ladder.channels(2)
        h4, w4 = ladder.size(2)
        self.fc = EqualLinear(global_dim, c4 * h4 * w4, activation="lrelu")

        def index(i: int) -> int | None:
            return i if has_w else None

        def conv(c_in, c_out, level, w_index, up=1):
            return ModulatedConv2d(
                c_in, c_out, style_dim, ladder.size(level), index(w_index), up=up, impl=modconv_impl
            )

        def to_rgb(c_in, level, w_index):
            return ModulatedConv2d(
                c_in,
                img_channels,
                style_dim,
                ladder.size(level),
                index(w_index),
                kernel_size=1,
                demodulate=False,
                use_noise=False,
                activation="linear",
                impl=modconv_impl,
            )

        # Layer indices of the spec: 4x4 conv 0 and ToRGB 1; at res 2^k: up conv 2k-5, conv 2k-4,
        # ToRGB 2k-3. Each layer stores its own index at construction, so no loop variable is
        # captured late (the bug of a known port that made every up conv read the last w).
        self.conv4 = conv(c4, c4, 2, 0)
        self.to_rgb4 = to_rgb(c4, 2, 1)
        self.blocks = nn.ModuleDict()
        for level in range(3, ladder.top + 1):
            c_in, c = ladder.channels(level - 1), ladder.channels(level)
            self.blocks[str(level)] = nn.ModuleDict(
                {
                    "conv_up": conv(c_in, c, level, 2 * level - 5, up=2),
                    "conv": conv(c, c, level, 2 * level - 4),
                    "to_rgb": to_rgb(c, level, 2 * level - 3),
                }
            )
        self.num_ws = 2 * ladder.top - 2
        self.register_buffer("fir", fir_filter(), persistent=False)

    def forward(
        self,
        ws: torch.Tensor | None,  # (N, num_ws, w_dim), or None when modulation is 'cond'
        g: torch.Tensor,  # (N, global_dim): the decoder's input, and a style input unless 'style'
        skips: dict[int, torch.Tensor],
        noise_mode: NoiseMode,
    ) -> torch.Tensor:
        """Synthesise the raw image.

        Args:
            ws: (N, num_ws, w_dim), or None when modulation is 'cond'.
            g: (N, global_dim): the decoder's input, and a style input unless modulation is 'style'.
            skips: the encoder's skip features by level (see `Encoder.forward`).
            noise_mode: `"random"`, `"const"` or `"none"` (see `ModulatedConv2d.forward`).

        Returns:
            The raw image (N, img_channels, H, W), not clamped.
        """

        def style_input(layer: ModulatedConv2d) -> torch.Tensor:
            parts = []
            if layer.w_index is not None:
                parts.append(ws[:, layer.w_index])
            if self.g_in_styles:
                parts.append(g)
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

        e4 = skips[2]
        # Follow the encoder's memory format: the FIR filters' depthwise convs are much faster
        # in channels_last on CPU (docs/benchmarks.md, FIR filters).
        x = e4 + self.fc(g).reshape(e4.shape).contiguous(memory_format=memory_format(e4))
        x = self.conv4(x, style_input(self.conv4), noise_mode)
        img = self.to_rgb4(x, style_input(self.to_rgb4), noise_mode)
        for level in range(3, self.ladder.top + 1):
            block = self.blocks[str(level)]
            x = block["conv_up"](x, style_input(block["conv_up"]), noise_mode)
            x = x + skips[level]
            x = block["conv"](x, style_input(block["conv"]), noise_mode)
            img = upsample2d(img, self.fir) + block["to_rgb"](x, style_input(block["to_rgb"]))
        return img


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
            cond: (N, cond_channels, H, W), built by the task (values around [-1, 1]).
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
            image: (N, img_channels, H, W) at `img_resolution`, in [-1, 1].
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
        x = self.blocks(self.from_rgb(image))
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)
