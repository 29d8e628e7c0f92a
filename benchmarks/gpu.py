"""GPU training throughput: CoModGAN 512 at batch 8 per GPU, one row per precision and layout.

    python -m benchmarks.gpu [--iterations 12] [--modes fp32 tf32 bf16 bf16-cl bf16-cl-compile]
                             [--peak-tflops 989] [--device cuda]
    python -m benchmarks.gpu --device cpu --tiny      # a seconds-long smoke run of the same code

Each row trains the real task (configs/places512.yaml, synthetic shapes data, one device) through
Lightning: a full iteration is the G step, the D step and the lazy R1 (run every 2 iterations here
so that it is measured, amortised over the official 16). R1 is always computed in fp32, also under
bf16-mixed (`i2i.losses.r1_penalty` leaves autocast). "images/s" counts the batch of one
iteration, as the official kimg counter does: the official code's published rate is about
25M images in a week on 8 V100s, i.e. 41 images/s for 8 GPUs (5.2 per GPU).

MFU: the model FLOPs of an iteration (torch.utils.flop_counter on one uncompiled fp32 iteration
with and without R1; multiply-add = 2) per second, over the device's dense bf16 peak, taken from
PEAK_BF16_TFLOPS by device name or from --peak-tflops. Memory: the peak allocated by torch.

Without a CUDA device the rows print "no CUDA device" and the script exits 0, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import gc
from dataclasses import dataclass

import torch
from lightning.pytorch.callbacks import Callback

from benchmarks.common import FlopCount, print_table
from benchmarks.training import run_fit, summarize
from i2i.lightning_command import configure_wandb_environment

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets, matched by
# substring of torch.cuda.get_device_name() (first match wins: specific names first). V100 has no
# bf16: its fp16 peak is listed.
PEAK_BF16_TFLOPS = {
    "GB200": 2500.0,
    "B200": 2250.0,
    "H200": 989.4,
    "GH200": 989.4,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "H800": 989.4,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.1,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
    "V100": 125.0,
}

OFFICIAL_IMAGES_PER_S_PER_GPU = 25e6 / (7 * 86400) / 8  # 25M images, one week, 8 V100s


@dataclass(frozen=True)
class Mode:
    precision: str  # Lightning's trainer.precision
    tf32: bool  # TF32 matmuls and convolutions (CUDA only)
    channels_last: bool  # the task's channels_last hparam: batches (and so activations) NHWC
    compile: bool  # torch.compile of the generator and the discriminator


MODES = {
    "fp32": Mode("32-true", tf32=False, channels_last=False, compile=False),
    "tf32": Mode("32-true", tf32=True, channels_last=False, compile=False),
    "bf16": Mode("bf16-mixed", tf32=True, channels_last=False, compile=False),
    "bf16-cl": Mode("bf16-mixed", tf32=True, channels_last=True, compile=False),
    "bf16-cl-compile": Mode("bf16-mixed", tf32=True, channels_last=True, compile=True),
}


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key.lower() in device_name.lower():
            return value
    return None


def set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


class CompileNetworks(Callback):
    """torch.compile of G and D in place (`nn.Module.compile`: state-dict keys unchanged)."""

    def on_fit_start(self, trainer, pl_module):
        pl_module.generator.compile()
        pl_module.discriminator.compile()


class CountFlops(Callback):
    """FLOPs of each iteration, and whether it ran R1."""

    def __init__(self):
        self.flops: list[tuple[int, bool]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._counter = FlopCount()
        self._counter.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._counter.__exit__(None, None, None)
        ran_r1 = "r1" in (pl_module.phase_seconds or {})
        self.flops.append((self._counter.total, ran_r1))


def fit_args(device: str, tiny: bool, batch: int, mode: Mode) -> list[str]:
    args = [
        "--config",
        "configs/places512.yaml",
        f"--trainer.accelerator={'gpu' if device == 'cuda' else device}",
        "--trainer.devices=1",
        "--trainer.strategy=auto",
        f"--trainer.precision={mode.precision}",
        f"--model.init_args.channels_last={str(mode.channels_last).lower()}",
        "--data.init_args.data_dir=null",
        f"--data.init_args.batch_size={batch}",
    ]
    if tiny:  # the tests' 32 px networks (tests/configs/tiny.yaml), no loader workers
        g = "--model.init_args.generator.init_args"
        d = "--model.init_args.discriminator.init_args"
        args += [
            f"{g}.img_resolution=32",
            f"{g}.z_dim=32",
            f"{g}.w_dim=32",
            f"{g}.mapping_layers=2",
            f"{g}.channel_base=256",
            f"{g}.channel_max=32",
            f"{g}.global_dim=64",
            f"{d}.img_resolution=32",
            f"{d}.channel_base=256",
            f"{d}.channel_max=32",
            "--data.init_args.resolution=32",
            "--data.init_args.num_workers=0",
            "--data.init_args.synthetic_length=64",
        ]
    else:
        args += ["--data.init_args.num_workers=6", "--data.init_args.synthetic_length=4096"]
    return args


def iteration_flops(device: str, tiny: bool, batch: int, r1_interval: int = 16) -> float:
    """Model FLOPs of one iteration with R1 amortised over `r1_interval`."""
    counter = CountFlops()
    run_fit(fit_args(device, tiny, batch, MODES["fp32"]), 2, [counter])
    plain = [f for f, r1 in counter.flops if not r1]
    with_r1 = [f for f, r1 in counter.flops if r1]
    if not plain or not with_r1:
        raise RuntimeError(f"expected iterations with and without R1, got {counter.flops}")
    return plain[0] + (with_r1[0] - plain[0]) / r1_interval


def measure(device: str, tiny: bool, batch: int, mode: Mode, iterations: int) -> dict:
    cuda = device == "cuda"
    if cuda:
        set_tf32(mode.tf32)
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    callbacks = [CompileNetworks()] if mode.compile else []
    records, _ = run_fit(fit_args(device, tiny, batch, mode), iterations, callbacks)
    if mode.compile:
        records = records[2:]  # the first iterations with and without R1 compile their graphs
    s = summarize(records)
    s["memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="32 px tiny networks, batch 2")
    parser.add_argument("--batch", type=int, default=None, help="per device (default 8; tiny 2)")
    parser.add_argument("--iterations", type=int, default=None, help="default 12 (tiny 5)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak")
    args = parser.parse_args(argv)
    configure_wandb_environment()
    batch = args.batch or (2 if args.tiny else 8)
    iterations = args.iterations or (5 if args.tiny else 12)
    size = "32 px tiny" if args.tiny else "512"
    title = f"CoModGAN {size}, batch {batch} per device, full iteration (R1 every 16, amortised)"

    if args.device == "cuda" and not torch.cuda.is_available():
        rows = [{"mode": name, "result": "no CUDA device"} for name in args.modes]
        print_table(rows, title + ": not measured")
        return

    if args.device == "cuda":
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops or peak_tflops(name)
    else:
        name, peak = "CPU", args.peak_tflops
    flops = iteration_flops(args.device, args.tiny, batch)
    print(
        f"device: {name}; dense bf16 peak: {peak or 'unknown'} TFLOP/s; "
        f"model FLOPs per iteration: {flops / 1e9:.2f} GFLOP",
        flush=True,
    )

    rows = []
    for mode_name in args.modes:
        mode = MODES[mode_name]
        s = measure(args.device, args.tiny, batch, mode, iterations)
        seconds = s["iteration"] + s["data"]
        rate = batch / seconds
        rows.append(
            {
                "mode": mode_name,
                "precision": mode.precision,
                "TF32": "on" if mode.tf32 else "off",
                "layout": "channels_last" if mode.channels_last else "NCHW",
                "compile": "G, D" if mode.compile else "-",
                "G s": f"{s['g_step']:.3f}",
                "D s": f"{s['d_step']:.3f}",
                "R1 s": f"{s['r1']:.3f}",
                "data+other s": f"{s['data'] + s['other']:.3f}",
                "iteration s": f"{seconds:.3f}",
                "images/s": f"{rate:.2f}",
                "x official/GPU": f"{rate / OFFICIAL_IMAGES_PER_S_PER_GPU:.2f}",
                "MFU": f"{flops / seconds / (peak * 1e12):.1%}" if peak else "-",
                "memory GiB": f"{s['memory_gib']:.1f}",
            }
        )
        print(rows[-1], flush=True)
    print_table(rows, f"{title} on {name}")


if __name__ == "__main__":
    main()
