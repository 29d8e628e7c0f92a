"""Training-mode speed against the PyTorch port of CoModGAN (zengxianyu/co-mod-gan-pytorch: the
same architecture), on the same CPU in one run: full width, fp32, 256 px, batch 8 by default.

    git clone https://github.com/zengxianyu/co-mod-gan-pytorch /tmp/co-mod-gan-pytorch
    python -m benchmarks.port --port /tmp/co-mod-gan-pytorch [--batch 8] [--resolution 256]

Without the checkout it stops with the command that gets it (`--if-present`: says so and exits 0,
as `make bench` runs it).

The port is not part of i2i (its code is under CC BY-NC-SA): it is imported from that checkout.
It compiles CUDA kernels when imported, which a CPU machine cannot; they serve only its GPU
paths (on CPU it runs `upfirdn2d_native` and a plain leaky ReLU), so torch's extension loader is
replaced by a placeholder while its modules load, and only the modules the networks need are
loaded (not its package `__init__`s, which import its training options and utilities).

Rows, per implementation (median of `--reps` after one warm-up, the two implementations
alternating so that both share the machine's moments):
- G step: G forward, D forward on the output, backward into G (D frozen), as a training G step
  without the optimizer;
- D step: G forward without gradients, D on the reals and on the fakes, backward into D;
- iteration: G step + D step (the lazy R1, every 16 iterations, is left out of both).
i2i runs as its training task does: channels_last inputs, the automatic modulated-conv path.
Both run with glibc's malloc as it comes (I2I_MALLOC=system unless set): with the `i2i` command's
default, freed memory kept for reuse, the heap i2i's steps leave is not one the port's 4 GiB
temporaries fit in, and the process ran out of 24 GiB in the port's first step.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.utils.cpp_extension

from i2i.allocator import ENV
from i2i.networks import CoModDiscriminator, CoModGenerator

PORT_URL = "https://github.com/zengxianyu/co-mod-gan-pytorch"
PORT_MODULES = (  # in import order: what models/networks/co_mod_gan.py needs
    "models.networks.base_network",
    "models.networks.op.fused_act",
    "models.networks.op.upfirdn2d",
    "models.networks.op",
    "models.networks.stylegan2",
    "models.networks.co_mod_gan",
)


class PortMissing(FileNotFoundError):
    """The port's checkout is not where --port points."""


def port_options(resolution: int) -> types.SimpleNamespace:
    """The port's defaults (its `modify_commandline_options`) for the generator and D."""
    return types.SimpleNamespace(
        crop_size=resolution,
        dlatent_size=512,
        num_channels=3,
        fmap_base=16 << 10,
        fmap_decay=1.0,
        fmap_min=1,
        fmap_max=512,
        randomize_noise=True,
        architecture="skip",
        nonlinearity="lrelu",
        resample_kernel=[1, 3, 3, 1],
        fused_modconv=True,
        pix2pix=False,
        dropout_rate=0.5,
        cond_mod=True,
        style_mod=True,
        noise_injection=True,
        mbstd_num_features=1,
        mbstd_group_size=4,
    )


def import_port(root: Path) -> types.ModuleType:
    """The port's `models.networks.co_mod_gan`, loaded from `root` without its CUDA kernels."""
    source = root / "models" / "networks" / "co_mod_gan.py"
    if not source.is_file():
        raise PortMissing(
            f"no CoModGAN port at {root} ({source} is missing): `git clone {PORT_URL} {root}`, "
            "or pass --port with its folder"
        )
    for package, folder in (("models", root / "models"), ("models.networks", source.parent)):
        module = types.ModuleType(package)
        module.__path__ = [str(folder)]  # a bare package: its __init__ is not run
        sys.modules[package] = module
    real_load = torch.utils.cpp_extension.load
    torch.utils.cpp_extension.load = lambda *args, **kwargs: None  # CUDA kernels, GPU-only paths
    try:
        for name in PORT_MODULES:
            path = root.joinpath(*name.split("."))
            package = path.is_dir()
            path = path / "__init__.py" if package else path.with_suffix(".py")
            search = [str(path.parent)] if package else None
            spec = importlib.util.spec_from_file_location(
                name, path, submodule_search_locations=search
            )
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    finally:
        torch.utils.cpp_extension.load = real_load
    return sys.modules["models.networks.co_mod_gan"]


def i2i_steps(resolution: int, batch: int) -> tuple[Callable[[], None], Callable[[], None]]:
    G = CoModGenerator(img_resolution=resolution, cond_channels=4)
    D = CoModDiscriminator(img_resolution=resolution, cond_channels=1)
    cl = torch.channels_last
    image = torch.randn(batch, 3, resolution, resolution).contiguous(memory_format=cl)
    mask = (torch.rand(batch, 1, resolution, resolution) > 0.5).float().contiguous(memory_format=cl)
    cond = torch.cat([mask - 0.5, image * mask], 1).contiguous(memory_format=cl)

    def g_step() -> None:
        D.requires_grad_(False)
        G.requires_grad_(True)
        D(G(cond, torch.randn(batch, 512)), mask).sum().backward()

    def d_step() -> None:
        G.requires_grad_(False)
        D.requires_grad_(True)
        with torch.no_grad():
            fake = G(cond, torch.randn(batch, 512))
        (D(image, mask).sum() + D(fake, mask).sum()).backward()

    return g_step, d_step


def port_steps(
    port: types.ModuleType, resolution: int, batch: int
) -> tuple[Callable[[], None], Callable[[], None]]:
    opt = port_options(resolution)
    G, D = port.Generator(opt), port.Discriminator(opt)
    image = torch.randn(batch, 3, resolution, resolution)
    mask = (torch.rand(batch, 1, resolution, resolution) > 0.5).float()

    def g_step() -> None:
        D.requires_grad_(False)
        G.requires_grad_(True)
        fake = G(image, mask, [torch.randn(batch, 512)])[0]
        D(fake, mask).sum().backward()

    def d_step() -> None:
        G.requires_grad_(False)
        D.requires_grad_(True)
        with torch.no_grad():
            fake = G(image, mask, [torch.randn(batch, 512)])[0]
        (D(image, mask).sum() + D(fake, mask).sum()).backward()

    return g_step, d_step


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault(ENV, "system")  # before benchmarks.common applies it (see the top)
    from benchmarks.common import print_table

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--port", type=Path, default=Path("/tmp/co-mod-gan-pytorch"))
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--if-present", action="store_true", help="no checkout: skip, exit 0")
    args = parser.parse_args(argv)
    try:
        port = import_port(args.port.resolve())
    except PortMissing as e:
        print(f"benchmarks.port: {e}", file=sys.stdout if args.if_present else sys.stderr)
        sys.exit(0 if args.if_present else 1)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    impls = {
        "i2i": i2i_steps(args.resolution, args.batch),
        "port": port_steps(port, args.resolution, args.batch),
    }
    times: dict[str, dict[str, list[float]]] = {k: {"g": [], "d": []} for k in impls}
    for rep in range(args.reps + 1):  # the first round warms up (allocations, oneDNN plans)
        for name, (g_step, d_step) in impls.items():
            g, d = timed(g_step), timed(d_step)
            print(f"round {rep} {name}: G step {g:.2f} s, D step {d:.2f} s", flush=True)
            if rep:
                times[name]["g"].append(g)
                times[name]["d"].append(d)
    med = {k: {p: statistics.median(v) for p, v in t.items()} for k, t in times.items()}
    rows = []
    for part, label in (("g", "G step"), ("d", "D step"), ("it", "iteration (G + D)")):
        ours = med["i2i"]["g"] + med["i2i"]["d"] if part == "it" else med["i2i"][part]
        theirs = med["port"]["g"] + med["port"]["d"] if part == "it" else med["port"][part]
        rows.append(
            {
                "what": label,
                "i2i s": f"{ours:.2f}",
                "port s": f"{theirs:.2f}",
                "i2i speed-up": f"{theirs / ours:.2f}x",
            }
        )
    print_table(
        rows,
        f"i2i against the CoModGAN port ({args.resolution} px, batch {args.batch}, fp32, "
        f"{torch.get_num_threads()} threads, median of {args.reps})",
    )


if __name__ == "__main__":
    main()
