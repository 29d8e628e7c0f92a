"""`i2i export`: the sampling network as a file that runs without i2i, as ONNX or torch.export.

What is exported is not the bare generator but what a user calls: the task's condition, the
sampling network (G_ema for CoModGAN) and the task's composite, at the model's resolution, with a
dynamic batch size. Inputs (all float32, N the batch):

| input            | shape           | when              | meaning                               |
|------------------|-----------------|-------------------|---------------------------------------|
| `image`          | (N, 3, H, W)    | inpainting        | the photo in [-1, 1]                  |
| `mask`           | (N, 1, H, W)    | inpainting        | 1 = known, 0 = hole                   |
| `cond`           | (N, C, H, W)    | edges, labels     | the task's condition (one-hot labels) |
| `z`              | (N, z_dim)      | a mapping network | the latent                            |
| `truncation_psi` | () scalar       | a mapping network | 1 = no truncation                     |
| `dropout_keep`   | (N, global_dim) | `--dropout on`    | 1 = keep, 0 = drop (dropout on g)     |

The output `output` (N, 3, H, W) is the task's output in [-1, 1] (inpainting: composited, known
pixels exact).

Randomness is made explicit, because a random op inside an exported graph draws from the
runtime's own generator and cannot be reproduced or compared with PyTorch:
- noise (`--noise-mode`): `const` (default) bakes each layer's fixed noise buffer into the graph;
  `none` leaves noise out; `random` draws fresh noise inside the graph (not reproducible).
- dropout on the global code g: the official generator keeps it on at inference. `--dropout on`
  exports it with its keep-mask as the input `dropout_keep`, which the caller draws (the ONNX
  backend draws it from torch's RNG exactly as `F.dropout` would, so a seeded torch run and a
  seeded ONNX run agree); `--dropout off` exports the deterministic generator without it. The
  default follows the network (`dropout_at_inference`).
Truncation psi is an input, so one file serves every psi.

The metadata (kind, resolution, inputs, noise mode, dropout, the model card) is stored in the file:
ONNX `metadata_props["i2i"]`, torch.export's extra file `i2i.json`.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from i2i.data import batch as B
from i2i.errors import ModelFileError
from i2i.inference.model_format import (
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    EXTRA_FILE,
    METADATA_KEY,
)
from i2i.networks import CoModGenerator
from i2i.networks.layers import ModulatedConv2d, NoiseMode
from i2i.safe_load import TRUST_FLAG, TRUST_HELP

Format = Literal["onnx", "torch-export"]
FORMATS: dict[str, str] = {"onnx": ".onnx", "torch-export": ".pt2"}
BATCH_DIM = "batch"


class SamplingGraph(nn.Module):
    """The computation an exported file holds: inputs (a dict, see the module docstring) ->
    the task's output. Built on a copy of the sampling network, so the model is left as it is.

    Args:
        task: an i2i task whose sampling network is a `CoModGenerator`.
        kind: the task's kind: "inpainting", "edges" or "labels".
        noise_mode: "const" bakes each layer's fixed noise into the graph, "none" leaves noise
            out, "random" draws fresh noise inside the graph.
        dropout: whether the graph applies dropout on the global code through the input
            `dropout_keep`; None: as the network does at inference (`dropout_at_inference`).

    Raises:
        ValueError: the sampling network is not a `CoModGenerator`, or an unknown noise_mode.
    """

    def __init__(
        self,
        task: nn.Module,  # an i2i task whose sampling network is a CoModGenerator
        kind: str,  # "inpainting" | "edges" | "labels"
        noise_mode: NoiseMode = "const",
        dropout: bool | None = None,  # None: as the network does at inference
    ):
        super().__init__()
        network = task.sampling_network
        if not isinstance(network, CoModGenerator):
            raise ValueError(
                f"i2i export supports CoModGAN models (a CoModGenerator sampling network); this "
                f"{type(task).__name__} samples with {type(network).__name__}"
            )
        if noise_mode not in ("const", "none", "random"):
            raise ValueError(f"noise_mode must be 'const', 'none' or 'random', got {noise_mode!r}")
        self.kind, self.noise_mode = kind, noise_mode
        self.G = copy.deepcopy(network).eval().requires_grad_(False)
        encoder = self.G.encoder
        if dropout is None:
            dropout = encoder.dropout_at_inference
        self.dropout_p = float(encoder.dropout) if dropout else 0.0
        # The dropout is applied here with an explicit mask, never by F.dropout inside the graph.
        encoder.dropout_at_inference = False
        for layer in self.G.modules():
            if isinstance(layer, ModulatedConv2d):
                # 'auto' branches on the batch size (grouped at 1): one path for every size.
                layer.impl = "shared"
        # Bound methods, not submodules: the task's condition and composite for inpainting hold
        # no parameters, and the task's other networks (D) must stay out of the graph.
        self._condition, self._compose = task.condition, task.compose
        self.has_latent = self.G.mapping is not None

    @property
    def input_names(self) -> list[str]:
        """The graph's inputs in order: `image`, `mask` (inpainting) or `cond`; then `z` and
        `truncation_psi` with a mapping network; then `dropout_keep` with dropout."""
        names = [B.IMAGE, B.MASK] if self.kind == "inpainting" else ["cond"]
        if self.has_latent:
            names += ["z", "truncation_psi"]
        if self.dropout_p > 0:
            names.append("dropout_keep")
        return names

    def example_inputs(self, n: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
        """Random inputs of batch size n (a seeded generator, the global RNG untouched).

        Args:
            n: the batch size.
            seed: the seed of the generator that draws them.

        Returns:
            One tensor per name of `input_names`: the image uniform in [-1, 1], the mask and
                `dropout_keep` in {0, 1}, `cond` and `z` standard normal, `truncation_psi` 1.
        """
        g = torch.Generator().manual_seed(seed)
        h, w = self.G.img_resolution
        shapes = {
            B.IMAGE: (n, 3, h, w),
            B.MASK: (n, 1, h, w),
            "cond": (n, self.G.cond_channels, h, w),
            "z": (n, self.G.z_dim),
            "dropout_keep": (n, self.G.global_dim),
        }
        out = {}
        for name in self.input_names:
            if name == "truncation_psi":
                out[name] = torch.tensor(1.0)
            elif name in (B.MASK, "dropout_keep"):
                out[name] = (torch.rand(shapes[name], generator=g) > 0.5).float()
            elif name == B.IMAGE:
                out[name] = torch.rand(shapes[name], generator=g) * 2 - 1
            else:
                out[name] = torch.randn(shapes[name], generator=g)
        return out

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task's output for one batch of inputs.

        Args:
            inputs: the tensors named by `input_names`: `image` (N, 3, H, W) in [-1, 1] and
                `mask` (N, 1, H, W) with 1 = known, or `cond` (N, C, H, W); `z` (N, z_dim);
                `truncation_psi` a scalar (1 = none); `dropout_keep` (N, global_dim) in {0, 1}.

        Returns:
            (N, 3, H, W) in [-1, 1]; for inpainting composited, the known pixels exact.
        """
        G = self.G
        batch = {k: inputs[k] for k in (B.IMAGE, B.MASK) if k in inputs}
        cond = self._condition(batch) if self.kind == "inpainting" else inputs["cond"]
        ws = None
        if self.has_latent:
            ws = G.map(inputs["z"])
            # G.truncate with psi as a graph input: its `psi == 1` shortcut would be data-dependent.
            ws = G.w_avg.to(ws.dtype).lerp(ws, inputs["truncation_psi"].to(ws.dtype))
        x = G.encoder_input(cond)
        g, skips = G.encoder(x)
        if self.dropout_p > 0:
            g = g * inputs["dropout_keep"].to(g.dtype) * (1.0 / (1.0 - self.dropout_p))
        raw = G.output_image(G.decoder(ws, g, skips, self.noise_mode), x)
        return self._compose(raw, batch) if self.kind == "inpainting" else raw

    def metadata(self, card: dict) -> dict:
        """The i2i metadata stored in the exported file.

        Args:
            card: the model's card (`i2i.inference.model_format`), stored under "card".

        Returns:
            A JSON-ready dict: format and version, kind, resolution [H, W], inputs, z_dim,
                cond_channels, global_dim, noise mode, dropout and its probability, the card.
        """
        h, w = self.G.img_resolution
        return {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "kind": self.kind,
            "resolution": [h, w],
            "inputs": self.input_names,
            "z_dim": self.G.z_dim if self.has_latent else None,
            "cond_channels": self.G.cond_channels,
            "global_dim": self.G.global_dim,
            "noise_mode": self.noise_mode,
            "dropout": self.dropout_p > 0,
            "dropout_p": self.dropout_p,
            "card": card,
        }


def dynamic_shapes(graph: SamplingGraph) -> tuple[dict]:
    """torch.export's dynamic shapes for the graph: dimension 0 of every input but
    `truncation_psi` is the batch, from 1 to 65536.

    Args:
        graph: the graph whose `input_names` are described.
    """
    batch = torch.export.Dim(BATCH_DIM, min=1, max=1 << 16)
    return ({k: (None if k == "truncation_psi" else {0: batch}) for k in graph.input_names},)


def export_program(graph: SamplingGraph) -> torch.export.ExportedProgram:
    """torch.export of the graph, traced at batch 2 (batch 1 would specialise the batch size).

    Args:
        graph: the graph to export.
    """
    with torch.no_grad():
        return torch.export.export(
            graph, (graph.example_inputs(2),), dynamic_shapes=dynamic_shapes(graph)
        )


def write_torch_export(graph: SamplingGraph, path: Path, card: dict) -> None:
    """Save the graph as a torch.export `.pt2` with its metadata in the extra file `i2i.json`.

    Args:
        graph: the graph to export.
        path: the `.pt2` file to write.
        card: the model's card, stored in the metadata.
    """
    program = export_program(graph)
    extra = {EXTRA_FILE: json.dumps(graph.metadata(card))}
    torch.export.save(program, str(path), extra_files=extra)


def read_torch_export(path: str | Path) -> tuple[torch.export.ExportedProgram, dict]:
    """The program and its i2i metadata of a `.pt2` written by `i2i export`.

    Args:
        path: the `.pt2` file.

    Returns:
        (the `ExportedProgram`, the metadata dict; {} when the file has none).
    """
    extra = {EXTRA_FILE: ""}
    program = torch.export.load(str(path), extra_files=extra)
    return program, json.loads(extra[EXTRA_FILE]) if extra[EXTRA_FILE] else {}


def write_onnx(graph: SamplingGraph, path: Path, card: dict, opset: int) -> None:
    """Save the graph as ONNX, its batch dimension named "batch", its metadata in
    `metadata_props["i2i"]`.

    Args:
        graph: the graph to export.
        path: the `.onnx` file to write.
        card: the model's card, stored in the metadata.
        opset: the ONNX opset version.
    """
    import onnx  # heavy, and only this format needs it

    program = export_program(graph)
    onnx_program = torch.onnx.export(
        program,
        dynamo=True,
        input_names=graph.input_names,
        output_names=["output"],
        opset_version=opset,
        verbose=False,
    )
    proto = onnx_program.model_proto
    # The exporter names the dynamic dimension after a symbol (s41...): give it its meaning.
    for value in [*proto.graph.input, *proto.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = BATCH_DIM
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(graph.metadata(card))
    onnx.save(proto, str(path))


def export(
    model,  # an InferenceModel (i2i.inference.model.load_model)
    out: str | Path,
    fmt: Format = "onnx",
    noise_mode: NoiseMode = "const",
    dropout: bool | None = None,
    opset: int = 18,
) -> SamplingGraph:
    """Write the model's sampling graph to `out`.

    Args:
        model (InferenceModel): from `i2i.inference.model.load_model`.
        out: the file to write; its folder is created.
        fmt: "onnx" or "torch-export".
        noise_mode: "const", "none" or "random" (see `SamplingGraph`).
        dropout: dropout on the global code through the input `dropout_keep`; None: as the
            network does at inference.
        opset: the ONNX opset version (ONNX only).

    Returns:
        The graph that was exported: the eager reference to compare the file with.

    Raises:
        ValueError: an unknown format or noise mode, or a model that is not a CoModGAN.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    task = model.task.cpu()
    graph = SamplingGraph(task, model.kind, noise_mode, dropout)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        write_onnx(graph, out, model.card, opset)
    else:
        write_torch_export(graph, out, model.card)
    return graph


def _max_difference(graph: SamplingGraph, out: Path, fmt: str) -> float:
    """|exported - eager| at batch 1 on random inputs: the export checked on the spot."""
    inputs = graph.example_inputs(1, seed=1)
    with torch.no_grad():
        expected = graph(inputs)
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {k: v.numpy() for k, v in inputs.items()})[0])
    else:
        program, _ = read_torch_export(out)
        with torch.no_grad():
            got = program.module()(inputs)
    return float((got - expected).abs().max())


def main(argv: list[str] | None = None) -> int:
    """`i2i export`: write the file, then compare it with PyTorch at batch 1 (unless the noise
    is random).

    Args:
        argv: the command's arguments (None: `sys.argv[1:]`).

    Returns:
        The exit status: 0, or 1 after a one-line error (an existing --out without
            --overwrite, a model that cannot be loaded or exported).
    """
    parser = argparse.ArgumentParser(
        prog="i2i export",
        description="Export a model's sampling network (with the task's condition and composite) "
        "to ONNX or torch.export, at its resolution, with a dynamic batch size.",
    )
    parser.add_argument(
        "--ckpt", required=True, type=Path, help="a .ckpt, or an i2i model (.safetensors + .json)"
    )
    parser.add_argument("--format", required=True, choices=tuple(FORMATS), dest="fmt")
    parser.add_argument("--out", required=True, type=Path, help="the file (.onnx or .pt2)")
    parser.add_argument(
        "--noise-mode",
        choices=("const", "none", "random"),
        default="const",
        help="const: the fixed noise buffers (default); none: no noise; random: fresh noise "
        "drawn inside the graph (not reproducible)",
    )
    parser.add_argument(
        "--dropout",
        choices=("on", "off"),
        default=None,
        help="the dropout on the global code: on = an input `dropout_keep` (the caller draws "
        "the mask), off = none; default: as the network (the official generator: on)",
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument(TRUST_FLAG, action="store_true", help=TRUST_HELP)
    args = parser.parse_args(argv)
    suffix = FORMATS[args.fmt]
    if args.out.suffix != suffix:
        parser.error(f"--out {args.out}: a {args.fmt} file ends in {suffix}")
    if args.out.exists() and not args.overwrite:
        print(
            f"i2i export: error: {args.out} exists already; pass --overwrite to replace it",
            file=sys.stderr,
        )
        return 1
    from i2i.inference.model import load_model

    try:
        model = load_model(args.ckpt, trust_checkpoint=args.trust_checkpoint)
        start = time.perf_counter()
        dropout = None if args.dropout is None else args.dropout == "on"
        graph = export(model, args.out, args.fmt, args.noise_mode, dropout, args.opset)
    except (FileNotFoundError, ModelFileError, ValueError) as e:
        print(f"i2i export: error: {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    h, w = graph.G.img_resolution
    print(
        f"i2i export: wrote {args.out} ({args.fmt}, {model.kind}, {h}x{w}, inputs "
        f"{', '.join(graph.input_names)}; noise {args.noise_mode}, dropout "
        f"{'on' if graph.dropout_p else 'off'}; {seconds:.0f} s)"
    )
    if args.noise_mode != "random":
        difference = _max_difference(graph, args.out, args.fmt)
        print(f"  max |exported - PyTorch| at batch 1: {difference:.2e}")
    return 0
