"""Export benchmark: the CoModGAN generator (full width, untrained) at batch 1 on CPU, as PyTorch
eager, onnxruntime and the torch.export program, measured in one run.

    python -m benchmarks.export [--resolutions 256 512] [--reps 3]

"eager" is what `i2i inpaint` runs (`InferenceModel`: channels_last, the batch-1 modulated-conv
path); the exported files hold `SamplingGraph` (condition + G_ema + composite, the shared
modulated-conv path, dropout off, constant noise). Ratios are time / eager time; onnxruntime and
torch get the same number of threads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import print_table, seconds
from i2i.inference.export import SamplingGraph, export_program, read_torch_export, write_onnx
from i2i.inference.model import InferenceModel, build_task


def rows_for(resolution: int, reps: int, folder: Path) -> list[dict]:
    import onnxruntime as ort

    torch.manual_seed(0)
    generator = {
        "class_path": "i2i.networks.CoModGenerator",
        "init_args": {"img_resolution": resolution, "cond_channels": 4},
    }
    task = build_task("i2i.tasks.InpaintingTask", {"generator": generator})
    task.sampling_network.encoder.dropout_at_inference = False  # the same function everywhere
    card = {"kind": "inpainting", "resolution": [resolution, resolution], "task": {}}
    model = InferenceModel(task, card)
    graph = SamplingGraph(task, "inpainting", dropout=False)
    inputs = graph.example_inputs(1, seed=1)
    batch = {"image": inputs["image"], "mask": inputs["mask"]}

    start = time.perf_counter()
    program = export_program(graph)
    path_pt2 = folder / f"g{resolution}.pt2"
    torch.export.save(program, str(path_pt2))
    export_pt2 = time.perf_counter() - start
    start = time.perf_counter()
    path_onnx = folder / f"g{resolution}.onnx"
    write_onnx(graph, path_onnx, card, opset=18)
    export_onnx = time.perf_counter() - start

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path_onnx), options, providers=["CPUExecutionProvider"])
    feeds = {k: v.numpy() for k, v in inputs.items()}
    loaded = read_torch_export(path_pt2)[0].module()

    with torch.no_grad():
        reference = model(batch, inputs["z"], truncation_psi=1.0)
        outputs = {
            "PyTorch eager (InferenceModel)": lambda: model(batch, inputs["z"]),
            "onnxruntime": lambda: torch.from_numpy(session.run(None, feeds)[0]),
            "torch.export program": lambda: loaded(inputs),
        }
        rows, eager = [], None
        for name, fn in outputs.items():
            t = seconds(fn, reps=reps, warmup=1)
            eager = eager or t
            diff = float((fn() - reference).abs().max())
            rows.append(
                {
                    "resolution": resolution,
                    "engine": name,
                    "s / image": f"{t:.2f}",
                    "x eager": f"{t / eager:.2f}",
                    "max abs diff vs eager": f"{diff:.1e}",
                    "export s": {"onnxruntime": f"{export_onnx:.0f}"}.get(
                        name, f"{export_pt2:.0f}" if "export" in name else "-"
                    ),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}; batch 1; fp32; CPU")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for resolution in args.resolutions:
            rows += rows_for(resolution, args.reps, Path(tmp))
            print_table(rows, f"Export: CoModGAN G at batch 1 on CPU (up to {resolution})")


if __name__ == "__main__":
    main()
