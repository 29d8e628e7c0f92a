"""The variable map between published CoModGAN files and i2i's networks: each variable's name
in the official TensorFlow pickles and in the PyTorch port, its i2i state-dict key and its layout,
and the functions that apply the map in either direction (`i2i.weights.comodgan` converts files
with it; the layouts are explained there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from i2i.errors import ConversionError
from i2i.networks.comod import CoModDiscriminator, CoModGenerator

Layout = Literal[
    "same",  # copied (biases, noise strengths, constant noise, w_avg)
    "scalar",  # a [] value; the port stores [1]
    "conv",  # TF [kh, kw, in, out] <-> torch [out, in, kh, kw]
    "conv_up",  # as conv, then rotated 180 degrees
    "dense",  # TF [in, out] <-> torch [out, in]
    "from_rgb_image_first",  # as conv, input channels [image, cond] <-> [cond, image]
    "port_modconv",  # port [1, out, in, k, k] <-> [out, in, k, k]
    "port_mod_bias",  # port bias initialised at 1 <-> i2i bias + 1
    "port_rgb_bias",  # port [1, C, 1, 1] <-> [C]
]


@dataclass(frozen=True)
class Entry:
    """One variable: its name in the published file, its i2i state-dict key, the layout."""

    source: str
    target: str
    layout: Layout
    image_channels: int = 0  # from_rgb_image_first: the image's channels (first in the file)


# --------------------------------------------------------------------------------------------
# Layouts


def to_torch(value: np.ndarray | torch.Tensor, entry: Entry) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value, dtype=np.float32)).clone()
    match entry.layout:
        case "same":
            return t
        case "scalar":
            return t.reshape([])
        case "conv" | "conv_up" | "from_rgb_image_first":
            t = t.permute(3, 2, 0, 1)
            if entry.layout == "conv_up":
                t = t.flip(2, 3)
            elif entry.layout == "from_rgb_image_first":
                t = t.roll(-entry.image_channels, dims=1)
            return t.contiguous()
        case "dense":
            return t.t().contiguous()
        case "port_modconv":
            return t.squeeze(0)
        case "port_mod_bias":
            return t - 1.0
        case "port_rgb_bias":
            return t.reshape(-1)
    raise AssertionError(entry.layout)


def from_torch(t: torch.Tensor, entry: Entry) -> np.ndarray:
    """The inverse of `to_torch`: an i2i tensor in the published file's layout."""
    t = t.detach().float().cpu()
    match entry.layout:
        case "same":
            out = t
        case "scalar":
            out = t.reshape([])
        case "conv" | "conv_up" | "from_rgb_image_first":
            if entry.layout == "conv_up":
                t = t.flip(2, 3)
            elif entry.layout == "from_rgb_image_first":
                t = t.roll(entry.image_channels, dims=1)
            out = t.permute(2, 3, 1, 0)
        case "dense":
            out = t.t()
        case "port_modconv":
            out = t.unsqueeze(0)
        case "port_mod_bias":
            out = t + 1.0
        case "port_rgb_bias":
            out = t.reshape(1, -1, 1, 1)
        case _:
            raise AssertionError(entry.layout)
    return out.contiguous().numpy().copy()  # not ascontiguousarray: it makes 0-d values 1-d


# --------------------------------------------------------------------------------------------
# Name maps, built from an i2i network's structure


def _square_levels(net: CoModGenerator | CoModDiscriminator) -> range:
    h, w = net.img_resolution
    if h != w:
        raise ConversionError(f"the official networks are square; this one is {h}x{w}")
    return net.ladder.levels_down


def resolution_name(level: int) -> str:
    return f"{2**level}x{2**level}"


def generator_entries(g: CoModGenerator) -> list[Entry]:
    """Official variable names (as tflib's `Network.vars` of G: `G_mapping/...`,
    `G_synthesis/...`, and G's own `dlatent_avg`) -> `CoModGenerator` state-dict keys."""
    if g.modulation != "co" or g.mapping is None:
        raise ConversionError(f"only co-modulation is published; got modulation={g.modulation!r}")
    out = [Entry("dlatent_avg", "w_avg", "same")]
    for i in range(len(g.mapping.layers)):
        out += [
            Entry(f"G_mapping/Dense{i}/weight", f"mapping.layers.{i}.weight", "dense"),
            Entry(f"G_mapping/Dense{i}/bias", f"mapping.layers.{i}.bias", "same"),
        ]
    s = "G_synthesis"

    def conv(src: str, dst: str, layout: Layout = "conv") -> list[Entry]:
        return [
            Entry(f"{src}/weight", f"{dst}.weight", layout),
            Entry(f"{src}/bias", f"{dst}.bias", "same"),
        ]

    levels = _square_levels(g)
    top = levels[0]
    out += conv(f"{s}/E_{resolution_name(top)}/FromRGB", "encoder.from_rgb")
    for level in levels:
        out += conv(f"{s}/E_{resolution_name(level)}/Conv0", f"encoder.blocks.{level}.conv")
        out += conv(f"{s}/E_{resolution_name(level)}/Conv1_down", f"encoder.blocks.{level}.down")
    out += conv(f"{s}/E_4x4/Conv", "encoder.conv4")
    out += conv(f"{s}/E_4x4/Dense0", "encoder.fc", "dense")
    out += conv(f"{s}/G_4x4/Dense", "decoder.fc", "dense")

    def modconv(src: str, dst: str, layout: Layout = "conv", noise: bool = True) -> list[Entry]:
        e = conv(src, dst, layout) + [
            Entry(f"{src}/mod_weight", f"{dst}.affine.weight", "dense"),
            Entry(f"{src}/mod_bias", f"{dst}.affine.bias", "same"),
        ]
        if noise:
            e.append(Entry(f"{src}/noise_strength", f"{dst}.noise_strength", "scalar"))
        return e

    layers = {0: "decoder.conv4"}
    out += modconv(f"{s}/G_4x4/Conv", "decoder.conv4")
    out += modconv(f"{s}/G_4x4/ToRGB", "decoder.to_rgb4", noise=False)
    for level in range(3, top + 1):
        block = f"decoder.blocks.{level}"
        out += modconv(f"{s}/G_{resolution_name(level)}/Conv0_up", f"{block}.conv_up", "conv_up")
        out += modconv(f"{s}/G_{resolution_name(level)}/Conv1", f"{block}.conv")
        out += modconv(f"{s}/G_{resolution_name(level)}/ToRGB", f"{block}.to_rgb", noise=False)
        layers[2 * level - 5], layers[2 * level - 4] = f"{block}.conv_up", f"{block}.conv"
    # The official constant noise input k belongs to the layer with index k.
    out += [Entry(f"{s}/noise{k}", f"{layers[k]}.noise_const", "same") for k in sorted(layers)]
    return out


GENERATOR_IGNORED = ("lod",)  # progressive-growing level of detail, always 0 in CoModGAN


def discriminator_entries(d: CoModDiscriminator, image_first: bool) -> list[Entry]:
    """Official D variable names -> `CoModDiscriminator` keys. `image_first`: the file's D reads
    [image, condition] (translation models), i2i's [condition, image]."""
    levels = _square_levels(d)
    first: Layout = "from_rgb_image_first" if image_first else "conv"
    out = [
        Entry(
            f"{resolution_name(levels[0])}/FromRGB/weight", "from_rgb.weight", first, d.img_channels
        ),
        Entry(f"{resolution_name(levels[0])}/FromRGB/bias", "from_rgb.bias", "same"),
    ]
    for i, level in enumerate(levels):
        r = resolution_name(level)
        out += [
            Entry(f"{r}/Conv0/weight", f"blocks.{i}.conv0.weight", "conv"),
            Entry(f"{r}/Conv0/bias", f"blocks.{i}.conv0.bias", "same"),
            Entry(f"{r}/Conv1_down/weight", f"blocks.{i}.conv1.weight", "conv"),
            Entry(f"{r}/Conv1_down/bias", f"blocks.{i}.conv1.bias", "same"),
            Entry(f"{r}/Skip/weight", f"blocks.{i}.skip.weight", "conv"),
        ]
    out += [
        Entry("4x4/Conv/weight", "conv.weight", "conv"),
        Entry("4x4/Conv/bias", "conv.bias", "same"),
        Entry("4x4/Dense0/weight", "fc.weight", "dense"),
        Entry("4x4/Dense0/bias", "fc.bias", "same"),
        Entry("Output/weight", "out.weight", "dense"),
        Entry("Output/bias", "out.bias", "same"),
    ]
    return out


def port_entries(g: CoModGenerator) -> tuple[list[Entry], list[str]]:
    """The port's G_ema keys -> `CoModGenerator` keys, and the port's keys that hold nothing to
    convert (its fixed blur kernels)."""
    out: list[Entry] = []
    for i in range(len(g.mapping.layers)):
        for p in ("weight", "bias"):
            out.append(
                Entry(f"G_mapping.G_mapping.Dense{i}.{p}", f"mapping.layers.{i}.{p}", "same")
            )
    s, ignored = "G_synthesis", []

    def conv(src: str, dst: str, down: bool = False) -> list[Entry]:
        # The port's ConvLayer is a Sequential: [Blur,] EqualConv2d (no bias), FusedLeakyReLU.
        if down:
            ignored.append(f"{src}.0.kernel")
        i = int(down)
        return [
            Entry(f"{src}.{i}.weight", f"{dst}.weight", "same"),
            Entry(f"{src}.{i + 1}.bias", f"{dst}.bias", "same"),
        ]

    def linear(src: str, dst: str) -> list[Entry]:
        return [Entry(f"{src}.{p}", f"{dst}.{p}", "same") for p in ("weight", "bias")]

    def modconv(src: str, dst: str, rgb: bool = False) -> list[Entry]:
        e = [
            Entry(f"{src}.conv.weight", f"{dst}.weight", "port_modconv"),
            Entry(f"{src}.conv.modulation.weight", f"{dst}.affine.weight", "same"),
            Entry(f"{src}.conv.modulation.bias", f"{dst}.affine.bias", "port_mod_bias"),
        ]
        if rgb:
            return e + [Entry(f"{src}.bias", f"{dst}.bias", "port_rgb_bias")]
        return e + [
            Entry(f"{src}.noise.weight", f"{dst}.noise_strength", "scalar"),
            Entry(f"{src}.activate.bias", f"{dst}.bias", "same"),
        ]

    levels = _square_levels(g)
    top = levels[0]
    out += conv(f"{s}.E.{resolution_name(top)}_0.FromRGB", "encoder.from_rgb")
    for level in levels:
        out += conv(f"{s}.E.{resolution_name(level)}.Conv0", f"encoder.blocks.{level}.conv")
        out += conv(
            f"{s}.E.{resolution_name(level)}.Conv1_down", f"encoder.blocks.{level}.down", down=True
        )
    out += conv(f"{s}.E.4x4.Conv", "encoder.conv4")
    out += linear(f"{s}.E.4x4.Dense0", "encoder.fc")
    out += linear(f"{s}.G_4x4.Dense", "decoder.fc")
    out += modconv(f"{s}.G_4x4.Conv", "decoder.conv4")
    out += modconv(f"{s}.G_4x4.ToRGB", "decoder.to_rgb4", rgb=True)
    for level in range(3, top + 1):
        src, dst = f"{s}.G_{resolution_name(level)}", f"decoder.blocks.{level}"
        out += modconv(f"{src}.Conv0_up", f"{dst}.conv_up")
        out += modconv(f"{src}.Conv1", f"{dst}.conv")
        out += modconv(f"{src}.ToRGB", f"{dst}.to_rgb", rgb=True)
        ignored += [f"{src}.Conv0_up.conv.blur.kernel", f"{src}.ToRGB.upsample.kernel"]
    return out, ignored


# --------------------------------------------------------------------------------------------
# Applying a map


def map_state(
    variables: dict[str, np.ndarray | torch.Tensor],
    entries: list[Entry],
    net: torch.nn.Module,
    source: str,
    ignored: tuple[str, ...] | list[str] = (),
) -> dict[str, torch.Tensor]:
    """The i2i state dict of `net` from a file's variables. Every variable must be known (mapped
    or ignored), every mapped one present, every shape right; otherwise one error lists all of
    them."""
    expected = {e.source for e in entries}
    unknown = sorted(set(variables) - expected - set(ignored))
    missing = sorted(expected - set(variables))
    own = net.state_dict()
    state, wrong = {}, []
    for e in entries:
        if e.source not in variables:
            continue
        t = to_torch(variables[e.source], e)
        want = own[e.target].shape
        if t.shape != want:
            have = tuple(np.shape(variables[e.source]))
            wrong.append(f"{e.source} {list(have)} -> {e.target} needs {list(want)}")
            continue
        state[e.target] = t
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown variable(s): {', '.join(unknown)}")
    if missing:
        problems.append(f"{len(missing)} missing variable(s): {', '.join(missing)}")
    if wrong:
        problems.append(f"{len(wrong)} variable(s) of the wrong shape: {'; '.join(wrong)}")
    if problems:
        raise ConversionError(
            f"{source}: does not map onto i2i's {type(net).__name__}: "
            + ". ".join(problems)
            + ". Is it an official CoModGAN file (co-modulation, skip generator, residual D)?"
        )
    return state


def unmap_state(state: dict[str, torch.Tensor], entries: list[Entry]) -> dict[str, np.ndarray]:
    """The inverse: an i2i state dict as the published file's variables."""
    return {e.source: from_torch(state[e.target], e) for e in entries}
