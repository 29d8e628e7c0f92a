"""Classical fills where a model goes: `i2i inpaint classical:harmonic --image ... --mask ...`.

The explicit `classical:` prefix keeps a model file named "telea" unambiguous. A classical fill
has no file, no latent and no resolution: it fills the whole image at its own size
(`i2i.inference.run.inpaint_batch` reads the task's `any_size`), deterministically, so every
sample of one input is the same image.
"""

from __future__ import annotations

import torch

import i2i
from i2i.classical import FILLS
from i2i.inference.model import FORMAT, FORMAT_VERSION, InferenceModel, ModelFileError

PREFIX = "classical:"


def is_classical(spec: object) -> bool:
    return str(spec).startswith(PREFIX)


def load_classical(spec: str, device: str | torch.device = "cpu") -> InferenceModel:
    """The InferenceModel of `classical:NAME` (NAME in `i2i.classical.FILLS`)."""
    from i2i.tasks.classical import ClassicalInpaintingTask

    method = str(spec)[len(PREFIX) :]
    if method not in FILLS:
        raise ModelFileError(
            f"{spec}: no classical fill {method!r}; give one of "
            f"{', '.join(PREFIX + name for name in FILLS)}"
        )
    card = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": {
            "class_path": "i2i.tasks.ClassicalInpaintingTask",
            "init_args": {"method": method},
        },
        "resolution": [1, 1],  # none: the whole image is filled at its own size
        "kind": "inpainting",
        "kimg": 0,
        "metrics": {},
        "source": str(spec),
        "i2i_version": i2i.__version__,
    }
    return InferenceModel(ClassicalInpaintingTask(method=method), card, "cpu")
