"""The batch contract: the keys of a sample dict, defined once.

Every dataset returns a dict that uses some of these keys; the default collate stacks them into a
batch with a leading batch dimension B. Tasks read batches only through these constants.

| key     | per sample | dtype   | values                                | used by         |
|---------|------------|---------|---------------------------------------|-----------------|
| "image" | (3, H, W)  | float32 | [-1, 1], the real / target photo      | every task      |
| "mask"  | (1, H, W)  | float32 | 1 = known pixel, 0 = hole             | inpainting      |
| "edges" | (C, H, W)  | float32 | [-1, 1], see below                    | edges -> photo  |
| "label" | (H, W)     | int64   | class ids >= 0, resized with NEAREST  | labels -> photo |
| "instance_edges" | (1, H, W) | float32 | [-1, 1], +1 on instance boundaries | labels -> photo |
| "image_a" | (3, H, W) | float32 | [-1, 1], an image of domain A        | unpaired (CycleGAN) |
| "image_b" | (3, H, W) | float32 | [-1, 1], an image of domain B        | unpaired (CycleGAN) |
| "attributes" | (A,)   | float32 | {0, 1}: 1 = present, 0 = absent       | VAE attributes  |
| "index" | scalar int | int64   | the sample's index in its dataset     | fixed val masks |

"edges" has C = 1 (a grey edge map, +1 on the lines: white on black) or C = 3 (the RGB
condition image as it is in the file, e.g. the black-on-white edges half of a pix2pix file: the
official CoModGAN condition; the edges datamodules' ``edges_channels: 3``).

"attributes" come from an attribute file (`i2i.data.attributes`, CelebA's
`list_attr_celeba.txt`: 1 there is 1 here, -1 there is 0 here), one value per attribute name in
the datamodule's order (`attribute_names`).

After collation "index" is an int64 tensor of shape (B,).

Unpaired samples ("image_a", "image_b") hold one image of each domain, drawn independently in
training (an epoch permutation per domain); "image" is absent. In the evaluation sets sample i
holds A[i mod n_A] and B[i mod n_B] for i < max(n_A, n_B): the datamodule's `val_sizes`
(n_A, n_B) says which of them are repeats, so that each image counts once in a metric.

Training batches: a task consumes `batches_per_step` batches of `batch_size` per training step
(`ImageTask.batches_per_step`; CoModGAN: 2, its G and D steps each take their own reals and
masks); the loader yields them concatenated along the batch dimension, in the order the task
uses them, and the CLI sets the datamodule's `batches_per_step` from the task.

Outputs: the validation and test steps return {"fake": (B, 3, H, W)} in [-1, 1] (OUTPUT), which
the metric callbacks read beside the batch; the predict step returns {"fake", "index"}. Unpaired
tasks return {"fake": A -> B, "fake_a": B -> A} (OUTPUT_A: an output in domain A).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

IMAGE = "image"
MASK = "mask"
EDGES = "edges"
LABEL = "label"
INSTANCE_EDGES = "instance_edges"
IMAGE_A = "image_a"
IMAGE_B = "image_b"
ATTRIBUTES = "attributes"
INDEX = "index"
OUTPUT = "fake"  # the key of a task's output in its step results (unpaired: A -> B)
OUTPUT_A = "fake_a"  # unpaired tasks: the B -> A output

KEYS = (IMAGE, MASK, EDGES, LABEL, INSTANCE_EDGES, IMAGE_A, IMAGE_B, ATTRIBUTES, INDEX)
EDGES_CHANNELS = (1, 3)  # a grey edge map (+1 on lines) | the RGB condition image as it is

# Float round-off from resizing may overshoot [-1, 1] by a hair; that is not a contract violation.
_TOL = 1e-4


def _fail(source: str, key: str, problem: str) -> ValueError:
    return ValueError(f"{source}: sample[{key!r}] {problem}")


def _check_float(
    sample: Mapping[str, Any],
    key: str,
    channels: int | tuple[int, ...],
    lo: float,
    hi: float,
    source: str,
) -> tuple[int, int]:
    x = sample[key]
    allowed = (channels,) if isinstance(channels, int) else channels
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
        raise _fail(source, key, f"must be a float32 tensor, got {_describe(x)}")
    if x.ndim != 3 or x.shape[0] not in allowed:
        c = " or ".join(str(a) for a in allowed)
        raise _fail(source, key, f"must have shape (C, H, W) with C = {c}, got {tuple(x.shape)}")
    if x.numel() and (x.min().item() < lo - _TOL or x.max().item() > hi + _TOL):
        raise _fail(
            source,
            key,
            f"values must lie in [{lo}, {hi}], got [{x.min().item():.4g}, {x.max().item():.4g}]",
        )
    return int(x.shape[1]), int(x.shape[2])


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def validate_sample(sample: Mapping[str, Any], source: str = "sample") -> None:
    """Check one (uncollated) sample against the contract.

    Only the keys present are checked, plus that their spatial sizes agree. Cheap enough to run
    on the first few samples of a dataset, not meant for every step.

    Args:
        sample: one dataset item: key -> tensor (or an int index).
        source: what the sample is (a dataset and index), named in the error.

    Raises:
        ValueError: not a dict, an unknown key, a value of the wrong dtype, shape or range
            (images in [-1, 1], mask in [0, 1], labels >= 0, attributes in {0, 1}), or keys
            whose (H, W) differ.
    """
    if not isinstance(sample, Mapping):
        raise ValueError(f"{source}: a sample must be a dict, got {type(sample).__name__}")
    unknown = [k for k in sample if k not in KEYS]
    if unknown:
        raise ValueError(f"{source}: unknown sample keys {unknown}; allowed keys are {list(KEYS)}")

    sizes: dict[str, tuple[int, int]] = {}
    if IMAGE in sample:
        sizes[IMAGE] = _check_float(sample, IMAGE, 3, -1.0, 1.0, source)
    for key in (IMAGE_A, IMAGE_B):
        if key in sample:
            sizes[key] = _check_float(sample, key, 3, -1.0, 1.0, source)
    if MASK in sample:
        sizes[MASK] = _check_float(sample, MASK, 1, 0.0, 1.0, source)
    if EDGES in sample:
        sizes[EDGES] = _check_float(sample, EDGES, EDGES_CHANNELS, -1.0, 1.0, source)
    if INSTANCE_EDGES in sample:
        sizes[INSTANCE_EDGES] = _check_float(sample, INSTANCE_EDGES, (1,), -1.0, 1.0, source)
    if LABEL in sample:
        y = sample[LABEL]
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
            raise _fail(source, LABEL, f"must be an int64 tensor, got {_describe(y)}")
        if y.ndim != 2:
            raise _fail(source, LABEL, f"must have shape (H, W), got {tuple(y.shape)}")
        if y.numel() and y.min().item() < 0:
            raise _fail(source, LABEL, f"class ids must be >= 0, got min {y.min().item()}")
        sizes[LABEL] = (int(y.shape[0]), int(y.shape[1]))
    if ATTRIBUTES in sample:
        a = sample[ATTRIBUTES]
        if not isinstance(a, torch.Tensor) or a.dtype != torch.float32 or a.ndim != 1:
            raise _fail(source, ATTRIBUTES, f"must be a 1-D float32 tensor, got {_describe(a)}")
        if not ((a == 0) | (a == 1)).all():
            raise _fail(source, ATTRIBUTES, "values must be 0 (absent) or 1 (present)")
    if INDEX in sample:
        i = sample[INDEX]
        ok = (isinstance(i, int) and not isinstance(i, bool)) or (
            isinstance(i, torch.Tensor) and i.ndim == 0 and i.dtype == torch.int64
        )
        if not ok:
            raise _fail(source, INDEX, f"must be an int or int64 scalar tensor, got {_describe(i)}")

    if len(set(sizes.values())) > 1:
        raise ValueError(f"{source}: spatial sizes (H, W) of the sample's keys differ: {sizes}")
