"""Backbone benchmark: G and D speed at 256 against the FLOPs floor, and mask generation rate.

    python benchmarks/backbone.py [--resolution 256] [--batches 1 8] [--quick]
    python -m benchmarks.backbone --g-forward-only --batches 1 --reps 7

The floor of a measurement is its FLOPs (torch.utils.flop_counter) divided by the ceiling: the
rate of one large 3x3 convolution, measured just before and just after each row (averaged), as
the machine's speed drifts during a run. "x floor" is time / floor; 1.0 means
the network runs as fast as the best single convolution on this machine.

The layout table times G forward on one condition passed channels_last (as the tasks' batches
are) and as a plain NCHW tensor (as a user's script passes it), the two calls alternating so that
both meet the same load: the networks convert their inputs themselves
(`i2i.networks.ops.to_fast_layout`), so the ratio should be about 1.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import (
    KEEPS_FREED_MEMORY,
    ceiling_gflops,
    count_flops,
    print_table,
    seconds,
    seconds_and_ceiling,
    seconds_interleaved,
)
from i2i.data.mask_drawing import random_mask
from i2i.networks import CoModDiscriminator, CoModGenerator
from i2i.networks.layers import ModulatedConv2d
from i2i.networks.ops import _ConvWeightGradContiguous, weight_grad_wants_contiguous

# The 3x3 convs of G, E and D at 256 whose backward dominates (channels in = out, size, batch).
WEIGHT_GRAD_LAYERS = [
    (512, 16, 1),
    (512, 64, 1),
    (256, 128, 1),
    (128, 256, 1),
    (512, 32, 8),
    (256, 64, 8),
    (128, 128, 8),
]


def set_impl(G: torch.nn.Module, impl: str) -> None:
    for m in G.modules():
        if isinstance(m, ModulatedConv2d):
            m.impl = impl


def weight_grad_rows(ceiling: float, reps: int) -> list[dict]:
    """3x3 convs with bias, forward+backward (input, weight and bias gradients), channels_last:
    the library's backward against the weight gradient on contiguous copies, as time / floor.
    "i2i takes" is what `weight_grad_wants_contiguous` chooses on this machine."""
    rows = []
    for channels, size, batch in WEIGHT_GRAD_LAYERS:
        fmt = torch.channels_last
        x = torch.randn(batch, channels, size, size).to(memory_format=fmt).requires_grad_(True)
        w = torch.randn(channels, channels, 3, 3).to(memory_format=fmt).requires_grad_(True)
        b = torch.zeros(channels, requires_grad=True)
        paths = {
            "library": lambda: torch.nn.functional.conv2d(x, w, b, padding=1),
            "contiguous copies": lambda: _ConvWeightGradContiguous.apply(
                x, w, b, [1, 1], [1, 1], 1, False
            ),
        }
        floor = 3 * 2 * batch * channels * channels * 9 * size * size / 1e9 / ceiling
        row = {"layer": f"{channels}->{channels} @{size}x{size}", "batch": batch}
        for name, fn in paths.items():
            t = seconds(lambda fn=fn: fn().sum().backward(), reps=reps)
            row[f"{name} fwd+bwd x floor"] = f"{t / floor:.2f}"
        row["i2i takes"] = "contiguous copies" if weight_grad_wants_contiguous(x, w) else "library"
        rows.append(row)
    return rows


def print_layout_table(G: torch.nn.Module, resolution: int, batches: list[int], reps: int) -> None:
    """The layout table on CPU: one row per batch size (see the module docstring)."""
    rows = [layout_row(G, torch.randn(b, 4, resolution, resolution), reps) for b in batches]
    print_table(rows, f"G @{resolution} forward, no gradients: the condition's layout, cpu")


def layout_row(G: torch.nn.Module, cond: torch.Tensor, reps: int, device: str = "cpu") -> dict:
    """G forward without gradients on `cond` laid out channels_last and NCHW, alternating, with
    the modulated conv's automatic path; x floor as in the main table."""
    inputs = {
        "channels_last": cond.contiguous(memory_format=torch.channels_last),
        "NCHW": cond.contiguous(),
    }
    fns = {}
    for name, x in inputs.items():

        def forward(x=x):
            with torch.no_grad():
                return G(x)

        fns[name] = forward
    set_impl(G, "shared")  # the FLOP count of the main table
    flops = count_flops(fns["channels_last"])
    set_impl(G, "auto")
    before = ceiling_gflops(device, reps=3)
    t = seconds_interleaved(fns, reps=reps)
    floor = flops / 1e9 / ((before + ceiling_gflops(device, reps=3)) / 2)
    row = {"batch": cond.shape[0], "GFLOP": f"{flops / 1e9:.0f}"}
    for name in inputs:
        row[f"{name} s"] = f"{t[name]:.2f}"
        row[f"{name} x floor"] = f"{t[name] / floor:.2f}"
    row["NCHW / channels_last"] = f"{t['NCHW'] / t['channels_last']:.2f}"
    return row


def gpu_rows(device: torch.device, batch: int = 8, reps: int = 10) -> list[dict]:
    """512 at batch 8 under bf16 autocast: images/s of G forward, G and D forward+backward."""
    torch.manual_seed(0)
    G = CoModGenerator(512, cond_channels=4).to(device)
    D = CoModDiscriminator(512, cond_channels=1).to(device)
    cond = torch.randn(batch, 4, 512, 512, device=device).to(memory_format=torch.channels_last)
    image = torch.randn(batch, 3, 512, 512, device=device).to(memory_format=torch.channels_last)

    def synced(fn):
        def run():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                fn()
            torch.cuda.synchronize(device)

        return run

    cases = {
        "G forward": lambda: G(cond),
        "G forward+backward": lambda: G(cond).float().square().mean().backward(),
        "D forward+backward": lambda: D(image, cond[:, :1]).float().sum().backward(),
    }
    rows = []
    for name, fn in cases.items():
        with torch.set_grad_enabled(name != "G forward"):
            t = seconds(synced(fn), reps=reps, warmup=3)
        rows.append({"what": name, "batch": batch, "s": f"{t:.3f}", "img/s": f"{batch / t:.1f}"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="batch 1 only, one repetition")
    parser.add_argument(
        "--weight-grad-only", action="store_true", help="only the weight-gradient table"
    )
    parser.add_argument(
        "--g-forward-only",
        action="store_true",
        help="only the layout table: G forward on channels_last and NCHW inputs",
    )
    parser.add_argument(
        "--reps",
        type=int,
        help="repetitions per row (median); default 3 at batch 1 and 2 above, 5 for the layout",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.g_forward_only and args.device != "cpu":
        parser.error("--g-forward-only measures the CPU: pass --device cpu")
    torch.set_num_threads(args.threads)
    batches = [1] if args.quick else args.batches
    device = torch.device(args.device)
    r = args.resolution

    ceiling = ceiling_gflops(args.device)
    print(
        f"ceiling: 3x3 conv 512->512 @64x64 = {ceiling:.1f} GFLOP/s "
        f"({args.threads} threads, {device}; malloc: "
        f"{'keeps freed memory (I2I_MALLOC=keep)' if KEEPS_FREED_MEMORY else 'as it comes'})"
    )

    torch.manual_seed(0)
    G = CoModGenerator(r, cond_channels=4).to(device)
    if args.g_forward_only:
        print_layout_table(G, r, batches, args.reps or 5)
        return
    if device.type == "cpu":
        print_table(
            weight_grad_rows(ceiling, reps=1 if args.quick else 3),
            f"Weight gradients of 3x3 convs: the library's backward vs contiguous copies "
            f"(CPU capability {torch.backends.cpu.get_cpu_capability()}; x floor = time / "
            "(3 x forward FLOPs / ceiling))",
        )
        if args.weight_grad_only:
            return
    D = CoModDiscriminator(r, cond_channels=1).to(device)
    rows = []
    for batch in batches:
        reps = args.reps or (1 if args.quick else (3 if batch == 1 else 2))
        cond = torch.randn(batch, 4, r, r, device=device).to(memory_format=torch.channels_last)
        image = torch.randn(batch, 3, r, r, device=device).to(memory_format=torch.channels_last)

        def g_forward():
            with torch.no_grad():
                return G(cond)

        def g_forward_backward():
            G.zero_grad(set_to_none=True)
            G(cond).square().mean().backward()

        def d_forward_backward():
            D.zero_grad(set_to_none=True)
            D(image, cond[:, :1]).sum().backward()

        cases = [
            ("G forward", g_forward, ("grouped", "shared")),
            ("G forward+backward", g_forward_backward, ("grouped", "shared")),
            ("D forward+backward", d_forward_backward, ("-",)),
        ]
        for name, fn, impls in cases:
            # One FLOP count per case, on the shared path: the counter books the weight gradient
            # of a grouped conv at twice the real work, which would flatter the grouped rows.
            set_impl(G, "shared")
            flops = count_flops(fn)
            for impl in impls:
                if impl != "-":
                    set_impl(G, impl)
                t, row_ceiling = seconds_and_ceiling(fn, reps=reps, device=args.device)
                floor = flops / 1e9 / row_ceiling
                rows.append(
                    {
                        "what": name,
                        "batch": batch,
                        "modconv": impl,
                        "GFLOP": f"{flops / 1e9:.0f}",
                        "s": f"{t:.2f}",
                        "GFLOP/s": f"{flops / 1e9 / t:.0f}",
                        "ceiling GFLOP/s": f"{row_ceiling:.0f}",
                        "x floor": f"{t / floor:.2f}",
                        "img/s": f"{batch / t:.2f}",
                    }
                )
        set_impl(G, "auto")
    print_table(rows, f"CoModGAN @{r}, fp32, channels_last, {device}")
    if device.type == "cpu":
        print_layout_table(G, r, batches, args.reps or (1 if args.quick else 5))
    if device.type == "cuda":
        print_table(gpu_rows(device), "CoModGAN @512, batch 8, bf16 autocast, channels_last")

    rng = np.random.default_rng(0)
    mask_rows = []
    for size in (512, 256):
        n = 50 if args.quick else 300
        start = time.perf_counter()
        holes = [1 - random_mask(size, rng=rng).mean().item() for _ in range(n)]
        rate = n / (time.perf_counter() - start)
        mask_rows.append(
            {
                "size": size,
                "masks/s (1 process)": f"{rate:.0f}",
                "mean hole": f"{np.mean(holes):.3f}",
            }
        )
    print_table(mask_rows, "Free-form masks (RandomMask, large)")


if __name__ == "__main__":
    main()
