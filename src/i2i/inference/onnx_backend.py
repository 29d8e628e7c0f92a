"""An exported `.onnx` file (`i2i export --format onnx`) as a model for i2i's inference:
`load_onnx(path)` returns an object with `InferenceModel`'s interface, run by onnxruntime, so
`i2i inpaint model.onnx ...` and the web demo work on it without the PyTorch weights.

Everything the file needs is read from its metadata (`metadata_props["i2i"]`, written by
`i2i.inference.export`): kind, resolution, inputs, noise mode, dropout, the model card.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from i2i.data import batch as B
from i2i.inference.model_format import (
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    METADATA_KEY,
    check_format,
)
from i2i.resolution import as_hw
from i2i.safe_load import check_class_path
from i2i.seeding import derive_seed


class OnnxModel:
    """An exported sampling graph behind `InferenceModel`'s interface: `model(batch, z,
    truncation_psi)` on batches of the batch contract at `resolution`; outputs in [-1, 1].

    Args:
        path: an `.onnx` file written by `i2i export --format onnx`.
        device: where outputs are returned; "cuda" also runs the graph on onnxruntime's CUDA
            provider.

    Raises:
        ValueError: no CUDA provider for a CUDA device, a file onnxruntime cannot load, or one
            without i2i's metadata.
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        import onnxruntime as ort  # heavy: only when an ONNX model is used

        self.path = Path(path)
        self.device = torch.device(device)
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(
                    f"{self.path}: onnxruntime has no CUDA provider here (installed: "
                    f"{', '.join(ort.get_available_providers())}); use --device cpu, or install "
                    "onnxruntime-gpu"
                )
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers)
        except Exception as e:  # onnxruntime raises its own types for damaged or foreign files
            raise ValueError(f"onnxruntime cannot load {self.path}: {e}") from e
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        meta = json.loads(raw) if raw else {}
        check_format(
            meta,
            self.path,
            EXPORT_FORMAT,
            EXPORT_FORMAT_VERSION,
            f"carries no i2i metadata (metadata_props['{METADATA_KEY}']): only files written by "
            "`i2i export --format onnx` can be used as models",
            error=ValueError,
        )
        self.metadata = meta
        self.card: dict = meta["card"]
        self.kind: str = meta["kind"]
        self.resolution: tuple[int, int] = as_hw(meta["resolution"])
        self.inputs: list[str] = meta["inputs"]
        self.z_dim: int | None = meta["z_dim"]
        self.has_latent = "z" in self.inputs
        self.noise_mode: str = meta["noise_mode"]
        init_args = self.card["task"].get("init_args") or {}
        self.num_classes: int | None = init_args.get("num_classes")
        self.cond_channels: int = meta["cond_channels"]
        self.truncation_psi: float = float(init_args.get("truncation_psi_eval", 1.0))
        self._condition = _task_condition(self.card, self.path)
        self._warned_noise = False
        # No PyTorch task behind this model (code that looks for one, e.g. a palette, finds None).
        self.task = None

    def __repr__(self) -> str:
        h, w = self.resolution
        return f"OnnxModel({self.path}, {self.kind}, {h}x{w}, noise={self.noise_mode})"

    def placeholder_image(self, n: int) -> torch.Tensor:
        """The batch's "image" where there is no photo (translation): tasks read its dtype.

        Args:
            n: the batch size.

        Returns:
            Zeros (n, 3, H, W) at the model's resolution, on the CPU.
        """
        return torch.zeros(n, 3, *self.resolution)

    @torch.no_grad()
    def __call__(
        self,
        batch: dict,
        z: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """The exported task's output (N, 3, H, W) in [-1, 1], a CPU tensor. The dropout mask
        (files exported with dropout on) is drawn from torch's global RNG as `F.dropout`
        draws it, so a seeded call gives what the PyTorch model gives under the same seed."""
        batch = {k: v.detach().cpu() for k, v in batch.items()}
        if noise_mode != self.noise_mode and not self._warned_noise:
            warnings.warn(
                f"{self.path} was exported with noise mode {self.noise_mode!r}, fixed in the "
                f"graph; {noise_mode!r} was asked for (re-export with --noise-mode {noise_mode})",
                stacklevel=2,
            )
            self._warned_noise = True
        if self.kind == "inpainting":
            feeds = {B.IMAGE: batch[B.IMAGE].float(), B.MASK: batch[B.MASK].float()}
        else:
            feeds = {"cond": self._condition(batch).float()}
        n = next(iter(feeds.values())).shape[0]
        if self.has_latent:
            if z is None:
                raise ValueError(f"this model takes latents: pass z of shape (N, {self.z_dim})")
            feeds["z"] = z.detach().float().cpu()
            feeds["truncation_psi"] = torch.tensor(float(truncation_psi))
        if "dropout_keep" in self.inputs:
            p = float(self.metadata["dropout_p"])
            feeds["dropout_keep"] = torch.empty(n, self.metadata["global_dim"]).bernoulli_(1 - p)
        arrays = {k: np.ascontiguousarray(v.numpy()) for k, v in feeds.items()}
        (out,) = self.session.run(["output"], arrays)
        return torch.from_numpy(out).to(self.device)

    def sample(
        self, batch: dict, *, seed: int = 0, variant: int = 0, truncation_psi: float | None = None
    ) -> torch.Tensor:
        """`InferenceModel.sample`'s seeding (`ImageTask.sample`): z of the sample with dataset
        index i from derive_seed(seed, i, variant), the dropout mask from derive_seed(seed, first
        index, variant). The noise is the file's own (`noise_mode`), where the PyTorch task's
        sampling draws seeded random noise: a trained model's fine texture differs.

        Args:
            batch: a batch of the batch contract with "index" (N,), the samples' dataset
                indices.
            seed: the evaluation seed.
            variant: which of several samples of one input (0, 1, ...).
            truncation_psi: truncation toward the average w (1 = none); None: the card's
                `truncation_psi_eval` (1 when it has none).

        Returns:
            (N, 3, H, W) in [-1, 1], on the model's device.
        """
        z = None
        if self.has_latent:
            seeds = [derive_seed(seed, int(i), variant) for i in batch[B.INDEX]]
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            z = torch.stack([torch.randn(self.z_dim, generator=g) for g in gens])
        psi = self.truncation_psi if truncation_psi is None else truncation_psi
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, int(batch[B.INDEX][0]), variant))
            return self(batch, z, psi, self.noise_mode)


def _task_condition(card: dict, path: Path):
    """The task's own `condition` for a translation file, so the ONNX path builds exactly the
    tensor the PyTorch task would (one-hot labels with their checks; edges as given). It runs
    the method of the task's class on a stand-in holding the two attributes it reads, instead of
    building the task (its networks) for a file that carries its own weights."""
    if card["kind"] == "inpainting":
        return None
    cls = check_class_path(card["task"]["class_path"], f"the i2i metadata of {path}")
    init_args = card["task"].get("init_args") or {}
    stand_in = SimpleNamespace(
        num_classes=init_args.get("num_classes"),
        instance_edges=init_args.get("instance_edges", False),
    )
    return lambda batch: cls.condition(stand_in, batch)


def load_onnx(path: str | Path, device: str | torch.device = "cpu") -> OnnxModel:
    """An `.onnx` file written by `i2i export` as an inference model.

    Args:
        path: the `.onnx` file.
        device: where outputs are returned (see `OnnxModel`).

    Raises:
        FileNotFoundError: no file at path.
        ValueError: a file that is not an i2i export (see `OnnxModel`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no ONNX model at {path}: write one with `i2i export --format onnx --out {path}`"
        )
    return OnnxModel(path, device)
