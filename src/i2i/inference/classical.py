"""Classical fills where a model goes: `i2i inpaint classical:harmonic --image ... --mask ...`.

The explicit `classical:` prefix keeps a model file named "telea" unambiguous. A classical fill
has no file, no latent and no resolution: it fills the whole image at its own size
(`i2i.inference.run.inpaint_batch` reads the task's `any_size`), deterministically, so every
sample of one input is the same image.
"""

from __future__ import annotations

from torch import nn

from i2i.classical import FILLS
from i2i.errors import ModelFileError
from i2i.inference.model_format import new_card

PREFIX = "classical:"


def is_classical(spec: object) -> bool:
    """Whether a model argument names a classical fill (`classical:NAME`) rather than a file.

    Args:
        spec: what the user gave as the model: a path or a string.
    """
    return str(spec).startswith(PREFIX)


def load_classical(spec: str) -> tuple[nn.Module, dict]:
    """The task and its card for `classical:NAME`, for `i2i.inference.model.load_model` to
    serve like any model.

    Args:
        spec: `classical:NAME`, NAME a key of `i2i.classical.FILLS`.

    Returns:
        (a `ClassicalInpaintingTask`, its model card; the card's resolution, 1, is a
            placeholder: the fill runs at each image's own size).

    Raises:
        ModelFileError: NAME is not a known fill.
    """
    from i2i.tasks.classical import ClassicalInpaintingTask

    method = str(spec)[len(PREFIX) :]
    if method not in FILLS:
        raise ModelFileError(
            f"{spec}: no classical fill {method!r}; give one of "
            f"{', '.join(PREFIX + name for name in FILLS)}"
        )
    # resolution: none, the whole image is filled at its own size
    card = new_card(
        "i2i.tasks.ClassicalInpaintingTask", {"method": method}, 1, "inpainting", 0, {}, str(spec)
    )
    return ClassicalInpaintingTask(method=method), card
