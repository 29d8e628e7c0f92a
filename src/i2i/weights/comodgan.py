"""Published CoModGAN weights -> i2i models: the official TensorFlow pickles and the PyTorch
port's G_ema state dicts, converted variable by variable, with nothing guessed.

`i2i convert FILE --out PATH` reads the file, infers the architecture from the variables' shapes,
maps every variable onto `CoModGenerator` / `CoModDiscriminator` by name, and writes the model as
safetensors plus a JSON card (`i2i.inference.model.write_model`). A variable the map does not
know, one it expects but does not find, or a shape that disagrees stops the conversion with all
of their names.

Layouts (official -> i2i), from the official code's variable shapes:
- conv kernels [kh, kw, in, out] -> [out, in, kh, kw]; dense [in, out] -> [out, in]. Equalized
  learning rate stores the same N(0, 1)-scaled values in both (the runtime scale, the lr
  multiplier of the mapping network and the activation gain are applied at run time alike);
- the up-sampling convolutions' kernels are rotated 180 degrees: i2i up-samples with a transposed
  convolution, which equals the official operation with the kernel flipped (measured);
- styles are dense(w; g) + mod_bias + 1 in both, so mod_bias is copied as it is; noise strengths,
  biases and the constant noise inputs `noise<k>` (layer k) are copied; `dlatent_avg` is `w_avg`;
- the discriminator of a translation model (pix2pix mode) reads [image, condition] where i2i's
  reads [condition, image]: its from-RGB kernel's input channels are reordered.

The PyTorch port (zengxianyu/co-mod-gan-pytorch) stores the same values in PyTorch layouts, with
the style bias initialised at 1 instead of an added 1 (so 1 is subtracted) and no `w_avg` or
constant noise. Its up-sampling kernels are already rotated (its author's TF conversion flips
them for the same transposed convolution i2i uses), so they are taken as stored. Its published
G_ema files are the official pickles converted (its README says so); the port's own forward
omits the official E[4] addition at the decoder's start, which i2i keeps, so the converted model
computes the official generator. A G_ema trained with the port's
code learnt without that addition: i2i has no such variant, so only the published files (or a
file passed with `--from-official-tf`) are accepted.
"""

from __future__ import annotations

import argparse
import math
import pickle
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from i2i.errors import ConversionError
from i2i.inference.model_format import KINDS, write_model
from i2i.networks.comod import CoModDiscriminator, CoModGenerator
from i2i.weights import tf_pickle
from i2i.weights.comodgan_map import (
    GENERATOR_IGNORED,
    discriminator_entries,
    generator_entries,
    map_state,
    port_entries,
    resolution_name,
)
from i2i.weights.registry import COMODGAN_FILES

TASKS = {
    "inpainting": "i2i.tasks.InpaintingTask",
    "edges": "i2i.tasks.EdgesToPhotoTask",
    "labels": "i2i.tasks.LabelsToPhotoTask",
}
GENERATOR_CLASS = "i2i.networks.CoModGenerator"
DISCRIMINATOR_CLASS = "i2i.networks.CoModDiscriminator"

# The port's published G_ema files, all converted from the official pickles.
PORT_FILES = tuple(e.name for e in COMODGAN_FILES if e.name.endswith("_net_G_ema.pth"))
W_AVG_SAMPLES = 10_000  # z draws whose mean w stands in for the port's missing dlatent_avg
SEED = 0  # for that draw and the port's missing constant noise: the conversion is deterministic


# --------------------------------------------------------------------------------------------
# Architecture from the variables' shapes


def _channel_args(channels: dict[int, int], source: str) -> dict[str, int]:
    """channel_base and channel_max that reproduce the width of every level."""
    cmax = max(channels.values())
    narrower = [lvl for lvl in sorted(channels) if channels[lvl] < cmax]
    candidates = [16384] + ([channels[narrower[0]] * 2 ** (narrower[0] - 1)] if narrower else [])
    for base in candidates:
        if all(min(base // 2 ** (lvl - 1), cmax) == c for lvl, c in channels.items()):
            return {"channel_base": base, "channel_max": cmax}
    raise ConversionError(
        f"{source}: the channel widths per resolution {dict(sorted(channels.items()))} do not "
        "follow min(channel_base / 2^(level-1), channel_max)"
    )


def generator_args_from_tf(variables: dict[str, np.ndarray], kwargs: dict, source: str) -> dict:
    """CoModGenerator init args from the official G's variables (and its static kwargs)."""
    for key, want in (("style_mod", True), ("cond_mod", True), ("architecture", "skip")):
        if key in kwargs and kwargs[key] != want:
            raise ConversionError(
                f"{source}: G was built with {key}={kwargs[key]!r}; only {want!r} (the "
                "published configuration) converts"
            )
    shape = {k: np.shape(v) for k, v in variables.items()}
    s = "G_synthesis"
    rgb = [k for k in shape if re.fullmatch(rf"{s}/E_(\d+)x\1/FromRGB/weight", k)]
    if len(rgb) != 1:
        raise ConversionError(
            f"{source}: expected one {s}/E_<R>x<R>/FromRGB/weight (the encoder's input), "
            f"found {rgb or 'none'}"
        )
    resolution = int(rgb[0].split("/")[1][2:].split("x")[0])
    top = int(math.log2(resolution))
    channels = {2: shape[f"{s}/E_4x4/Conv/weight"][3]} if f"{s}/E_4x4/Conv/weight" in shape else {}
    for level in range(3, top + 1):
        key = f"{s}/E_{resolution_name(level)}/Conv0/weight"
        if key in shape:
            channels[level] = shape[key][3]
    dense = sorted(
        int(m.group(1)) for k in shape if (m := re.fullmatch(r"G_mapping/Dense(\d+)/weight", k))
    )
    if (
        not dense
        or f"{s}/E_4x4/Dense0/weight" not in shape
        or f"{s}/G_4x4/ToRGB/weight" not in shape
    ):
        raise ConversionError(
            f"{source}: G_mapping/Dense<i>/weight, {s}/E_4x4/Dense0/weight and "
            f"{s}/G_4x4/ToRGB/weight are needed to infer the architecture"
        )
    return {
        "img_resolution": resolution,
        "cond_channels": int(shape[rgb[0]][2]),
        "img_channels": int(shape[f"{s}/G_4x4/ToRGB/weight"][3]),
        "z_dim": int(shape["G_mapping/Dense0/weight"][0]),
        "w_dim": int(shape[f"G_mapping/Dense{dense[-1]}/weight"][1]),
        "mapping_layers": len(dense),
        **_channel_args(channels, source),
        "global_dim": int(shape[f"{s}/E_4x4/Dense0/weight"][1]),
        "global_dropout": float(kwargs.get("dropout_rate", 0.5)),
    }


def discriminator_args_from_tf(
    variables: dict[str, np.ndarray], kwargs: dict, img_channels: int, source: str
) -> dict:
    shape = {k: np.shape(v) for k, v in variables.items()}
    rgb = [k for k in shape if re.fullmatch(r"(\d+)x\1/FromRGB/weight", k)]
    if len(rgb) != 1 or "4x4/Conv/weight" not in shape:
        raise ConversionError(
            f"{source}: expected one <R>x<R>/FromRGB/weight and 4x4/Conv/weight in D, found "
            f"{rgb or 'no FromRGB'}"
        )
    resolution = int(rgb[0].split("x")[0])
    channels = {2: shape["4x4/Conv/weight"][3]}
    for level in range(3, int(math.log2(resolution)) + 1):
        if f"{resolution_name(level)}/Conv0/weight" in shape:
            channels[level] = shape[f"{resolution_name(level)}/Conv0/weight"][3]
    return {
        "img_resolution": resolution,
        "img_channels": img_channels,
        "cond_channels": int(shape[rgb[0]][2]) - img_channels,
        **_channel_args(channels, source),
        "mbstd_group_size": int(kwargs.get("mbstd_group_size", 4)),
        "mbstd_num_channels": int(shape["4x4/Conv/weight"][2]) - channels[2],
    }


def generator_args_from_port(state: dict[str, torch.Tensor], source: str) -> dict:
    shape = {k: tuple(v.shape) for k, v in state.items()}
    rgb = [k for k in shape if re.fullmatch(r"G_synthesis\.E\.(\d+)x\1_0\.FromRGB\.0\.weight", k)]
    dense = sorted(
        int(m.group(1))
        for k in shape
        if (m := re.fullmatch(r"G_mapping\.G_mapping\.Dense(\d+)\.weight", k))
    )
    needed = (
        "G_synthesis.E.4x4.Conv.0.weight",
        "G_synthesis.E.4x4.Dense0.weight",
        "G_synthesis.G_4x4.ToRGB.conv.weight",
    )
    if len(rgb) != 1 or not dense or any(k not in shape for k in needed):
        raise ConversionError(
            f"{source}: not a co-mod-gan-pytorch G_ema state dict (expected "
            "G_mapping.G_mapping.Dense<i>.weight, G_synthesis.E.<R>x<R>_0.FromRGB.0.weight, "
            f"{', '.join(needed)})"
        )
    resolution = int(rgb[0].split(".")[2].split("x")[0])
    channels = {2: shape["G_synthesis.E.4x4.Conv.0.weight"][0]}
    for level in range(3, int(math.log2(resolution)) + 1):
        key = f"G_synthesis.E.{resolution_name(level)}.Conv0.0.weight"
        if key in shape:
            channels[level] = shape[key][0]
    return {
        "img_resolution": resolution,
        "cond_channels": shape[rgb[0]][1],
        "img_channels": shape["G_synthesis.G_4x4.ToRGB.conv.weight"][1],
        "z_dim": shape["G_mapping.G_mapping.Dense0.weight"][1],
        "w_dim": shape[f"G_mapping.G_mapping.Dense{dense[-1]}.weight"][0],
        "mapping_layers": len(dense),
        **_channel_args(channels, source),
        "global_dim": shape["G_synthesis.E.4x4.Dense0.weight"][0],
    }


# --------------------------------------------------------------------------------------------
# Whole files


@dataclass
class Converted:
    """A converted model: network arguments and i2i state dicts (G and D are None when the file
    has none), and what the card should say about where it came from."""

    generator_args: dict
    generator_ema: dict[str, torch.Tensor]
    generator: dict[str, torch.Tensor] | None = None
    discriminator_args: dict | None = None
    discriminator: dict[str, torch.Tensor] | None = None
    image_first: bool = False  # a translation model (official pix2pix mode)
    notes: list[str] = field(default_factory=list)


def convert_tf_networks(nets: dict[str, tf_pickle.TFNetwork], source: str) -> Converted:
    """The official (G, D, Gs) -> i2i state dicts (Gs is G_ema)."""
    if "Gs" not in nets:
        raise ConversionError(
            f"{source}: expected the official (G, D, Gs) tuple, found {list(nets)}"
        )
    gs = nets["Gs"]
    synthesis = gs.components.get("synthesis")
    kwargs = {**gs.static_kwargs, **(synthesis.static_kwargs if synthesis else {})}
    g_vars = gs.variables()
    g_args = generator_args_from_tf(g_vars, kwargs, source)
    g = CoModGenerator(**g_args)
    entries = generator_entries(g)
    out = Converted(g_args, map_state(g_vars, entries, g, f"{source} (Gs)", GENERATOR_IGNORED))
    if "G" in nets:
        out.generator = map_state(
            nets["G"].variables(), entries, g, f"{source} (G)", GENERATOR_IGNORED
        )
    if "D" in nets:
        d_vars = nets["D"].variables()
        d_args = discriminator_args_from_tf(
            d_vars, nets["D"].static_kwargs, g_args["img_channels"], source
        )
        # Translation (pix2pix mode) feeds D [image, condition]; inpainting [mask - 0.5, image].
        out.image_first = bool(kwargs.get("pix2pix", d_args["cond_channels"] != 1))
        d = CoModDiscriminator(**d_args)
        out.discriminator_args = d_args
        out.discriminator = map_state(
            d_vars, discriminator_entries(d, out.image_first), d, f"{source} (D)"
        )
    else:
        out.image_first = bool(kwargs.get("pix2pix", g_args["cond_channels"] != 4))
    out.notes.append(
        "official TensorFlow pickle: G, D and Gs (G_ema) converted variable by variable"
    )
    return out


def convert_port_state(state: dict[str, torch.Tensor], source: str) -> Converted:
    """The port's G_ema state dict -> i2i. What the port does not store is made here, the same
    on every run: w_avg as the mean w of 10,000 seeded z, the constant noise seeded N(0, 1)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    g_args = generator_args_from_port(state, source)
    g = CoModGenerator(**g_args)
    entries, ignored = port_entries(g)
    mapped = map_state(state, entries, g, source, ignored)
    gen = torch.Generator().manual_seed(SEED)
    for key, buf in g.state_dict().items():
        if key.endswith("noise_const"):
            mapped[key] = torch.randn(buf.shape, generator=gen)
    g.load_state_dict({**g.state_dict(), **mapped})
    with torch.no_grad():
        z = torch.randn(W_AVG_SAMPLES, g.z_dim, generator=gen)
        mapped["w_avg"] = g.mapping(z).mean(dim=0)
    out = Converted(g_args, mapped)
    out.notes += [
        "co-mod-gan-pytorch G_ema (the official weights converted by the port): run in the "
        "official architecture, with the E[4] addition at the decoder's start that the port omits",
        f"w_avg: the mean w of {W_AVG_SAMPLES} z drawn with seed {SEED} (the port stores none); "
        f"constant noise: N(0, 1) drawn with seed {SEED} (the port stores none)",
    ]
    return out


def load_port_file(path: Path) -> dict[str, torch.Tensor]:
    try:  # weights_only: tensors and containers, never code
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ConversionError(
            f"{path}: cannot read it as a PyTorch state dict ({str(err).splitlines()[0]}); "
            "download it again"
        ) from err
    for key in ("G_ema", "netG_ema", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: expected a state dict of tensors (the port's G_ema .pth)")
    return state


def convert_file(path: Path, from_official_tf: bool = False) -> Converted:
    """An official pickle (.pkl) or a port G_ema state dict (.pth / .pt)."""
    if not path.is_file():
        raise ConversionError(
            f"{path}: no such file. Download it by hand (`i2i-weights --only comodgan` lists "
            "where each file is published) and pass its path"
        )
    if path.suffix == ".pkl":
        return convert_tf_networks(tf_pickle.load_networks(path), str(path))
    if path.suffix not in (".pth", ".pt"):
        raise ConversionError(
            f"{path}: unknown kind of file; expected an official .pkl or a port G_ema .pth"
        )
    if path.name not in PORT_FILES and not from_official_tf:
        raise ConversionError(
            f"{path}: not one of the port's published files ({', '.join(PORT_FILES)}). "
            "i2i's generator adds E[4] at the decoder's start as the official code does; the "
            "port's code does not, so a G_ema trained with the port is a different function "
            "that i2i cannot run. If this file is the official weights converted by the port "
            "(a published file renamed), pass --from-official-tf"
        )
    return convert_port_state(load_port_file(path), str(path))


def kimg_from_name(name: str) -> float | None:
    """The official names end in the training length: co-mod-gan-ffhq-9-025000 -> 25000 kimg."""
    match = re.search(r"-(\d{6})(?:_net_G_ema)?\.(?:pkl|pth|pt)$", name)
    return float(match.group(1)) if match else None


def guess_kind(path: Path, converted: Converted) -> str:
    if not converted.image_first:
        return "inpainting"
    name = path.name.lower()
    if "edges" in name:
        return "edges"
    if "coco" in name or "label" in name:
        return "labels"
    raise ConversionError(
        f"{path}: a translation model (its condition is an image); say which with "
        "--kind edges or --kind labels"
    )


def task_args(kind: str, converted: Converted) -> dict:
    """The task's init args as a paper config sets them (the generator as {class_path,
    init_args}); the model card keeps no discriminator, a training-only network."""
    cond = converted.generator_args["cond_channels"]
    if kind == "inpainting" and (converted.image_first or cond != 4):
        raise ConversionError(
            f"--kind inpainting needs a generator with 4 condition channels (mask - 0.5, "
            f"masked image); this one has {cond}: use --kind edges or labels"
        )
    if kind != "inpainting" and not converted.image_first:
        raise ConversionError(f"--kind {kind}: this file is an inpainting model")
    out: dict = {
        "generator": {"class_path": GENERATOR_CLASS, "init_args": converted.generator_args}
    }
    if kind == "labels":
        if cond <= 3:
            raise ConversionError(
                f"--kind labels: the condition has {cond} channels, a colour-coded label map "
                "whose palette the official code does not publish, not i2i's one-hot map. "
                "Convert it with --kind edges to use it as an image-conditioned model"
            )
        out["num_classes"] = cond
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="i2i convert",
        description="Convert a published CoModGAN file (official TF pickle, or the PyTorch "
        "port's G_ema .pth) into an i2i model: PATH.safetensors + PATH.json.",
    )
    parser.add_argument("file", type=Path, help="co-mod-gan-*.pkl or co-mod-gan-*_net_G_ema.pth")
    parser.add_argument("--out", type=Path, required=True, help="output path, without suffix")
    parser.add_argument(
        "--kind", choices=KINDS, help="default: inferred (inpainting) or from the name"
    )
    parser.add_argument("--resolution", type=int, help="check the file's resolution is this")
    parser.add_argument(
        "--from-official-tf",
        action="store_true",
        help="accept a renamed port .pth as official weights converted by the port",
    )
    args = parser.parse_args(argv)
    try:
        converted = convert_file(args.file, args.from_official_tf)
        resolution = converted.generator_args["img_resolution"]
        if args.resolution is not None and args.resolution != resolution:
            raise ConversionError(
                f"{args.file}: a {resolution}x{resolution} model, not {args.resolution}: "
                "drop --resolution or pick the right file"
            )
        kind = args.kind or guess_kind(args.file, converted)
        path = write(
            converted, args.out, kind, source=args.file.name, kimg=kimg_from_name(args.file.name)
        )
    except (ConversionError, OSError, pickle.UnpicklingError) as err:
        print(f"i2i convert: error: {err}", file=sys.stderr)
        return 1
    print(f"i2i convert: {args.file} -> {path} ({kind}, {resolution}x{resolution})")
    return 0


def write(converted: Converted, out: Path, kind: str, source: str, kimg: float | None) -> Path:
    """The model file pair: G_ema (the sampling network) and its card."""
    res = converted.generator_args["img_resolution"]
    return write_model(
        out,
        task_class_path=TASKS[kind],
        task_init_args=task_args(kind, converted),
        network_state=converted.generator_ema,
        resolution=(res, res),
        kind=kind,
        kimg=kimg,
        source=f"{source}: " + "; ".join(converted.notes),
    )
