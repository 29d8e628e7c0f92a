"""The model file formats, as data: the card of a `.safetensors` / `.json` model pair and the
metadata of an exported file, with the names and versions that mark them.

A model is `<name>.safetensors` (the sampling network's state dict: G_ema for CoModGAN) beside
`<name>.json`, its card: the task class and its constructor arguments without what only training
uses, the resolution, the kind, where the weights come from and their SHA-256. An exported file
(`i2i export`) carries the card in its metadata (ONNX `metadata_props["i2i"]`, torch.export's
extra file `i2i.json`).

A leaf of `i2i.inference`: the loaders (`model`), the exporter (`export`) and the ONNX backend
(`onnx_backend`) all read these names from here, so none of them imports another for a constant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import i2i
from i2i.errors import ModelFileError
from i2i.io import atomic_write, sha256_of
from i2i.resolution import as_hw

FORMAT = "i2i-model"
FORMAT_VERSION = 1
KINDS = ("inpainting", "edges", "labels")  # what a model turns into a photo
WEIGHTS_SUFFIX, CARD_SUFFIX = ".safetensors", ".json"
# Constructor arguments that only training uses: left out of the card, and not built for
# inference (a discriminator gets a placeholder, the others keep their defaults).
TRAINING_ONLY = ("optimizer", "discriminator", "perceptual")

EXPORT_FORMAT, EXPORT_FORMAT_VERSION = "i2i-export", 1
METADATA_KEY, EXTRA_FILE = "i2i", "i2i.json"  # where an exported file keeps its metadata


def check_format(
    meta: object, path: Path, name: str, version: int, not_ours: str, error: type = ModelFileError
) -> None:
    """Check that a model file's metadata names our format at a version this i2i reads.

    Args:
        meta: the file's metadata (a dict when it is ours).
        path: the file, named in errors.
        name: the format's name (`FORMAT` or `EXPORT_FORMAT`).
        version: the newest format version this i2i reads.
        not_ours: the end of the message for a file of another format: what it is not and how
            to write one.
        error: the exception type to raise.

    Raises:
        ModelFileError: (or `error`) another format, or a newer version.
    """
    if not isinstance(meta, dict) or meta.get("format") != name:
        raise error(f"{path} {not_ours}")
    if int(meta.get("format_version", 0)) > version:
        raise error(
            f"{path} has format_version {meta['format_version']}; this i2i reads up to "
            f"{version}: update i2i"
        )


def base_name(path: str | Path) -> Path:
    """The model's name without suffix: `x`, `x.json` and `x.safetensors` all name the model `x`.

    Args:
        path: a model file or its name.
    """
    path = Path(path)
    return path.with_suffix("") if path.suffix in (WEIGHTS_SUFFIX, CARD_SUFFIX) else path


def beside(base: Path, suffix: str) -> Path:
    """The file of a model name with a suffix appended (`model.v2` -> `model.v2.json`).

    Args:
        base: the model's name (`base_name`).
        suffix: `WEIGHTS_SUFFIX` or `CARD_SUFFIX`.
    """
    return base.parent / (base.name + suffix)  # not with_suffix: "model.v2" keeps its ".v2"


def inference_init_args(init_args: dict) -> dict:
    """A task's constructor arguments without what only training uses (optimizers, the
    discriminator, a perceptual loss network), as plain JSON data.

    Args:
        init_args: the task's constructor arguments; those whose names start with one of
            `TRAINING_ONLY` are left out.
    """
    kept = {k: v for k, v in init_args.items() if not k.startswith(TRAINING_ONLY)}
    return json.loads(json.dumps(kept))


def new_card(
    task_class_path: str,  # e.g. "i2i.tasks.InpaintingTask"
    task_init_args: dict,  # its constructor arguments, networks as {class_path, init_args}
    resolution: tuple[int, int] | int,  # (H, W) the model runs at
    kind: str,  # "inpainting" | "edges" | "labels"
    kimg: float | None,  # thousands of training images seen (None: unknown)
    metrics: dict,  # e.g. {"val/p_ids": 0.1}
    source: str,  # where the weights come from: a checkpoint, a published file
) -> dict[str, Any]:
    """A model card, without its weights' entry (a model file pair adds it).

    Args:
        task_class_path: the task's class path, e.g. "i2i.tasks.InpaintingTask".
        task_init_args: its constructor arguments, networks as {class_path, init_args}; the
            training-only ones are left out.
        resolution: (H, W) the model runs at, or one int for a square.
        kind: "inpainting", "edges" or "labels".
        kimg: thousands of training images seen; None: unknown.
        metrics: scores by metric key, e.g. {"val/p_ids": 0.1}.
        source: where the weights come from: a checkpoint, a published file.
    """
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": {"class_path": task_class_path, "init_args": inference_init_args(task_init_args)},
        "resolution": list(as_hw(resolution)),
        "kind": kind,
        "kimg": kimg,
        "metrics": metrics,
        "source": source,
        "i2i_version": i2i.__version__,
    }


def write_model(
    path: str | Path,
    *,
    task_class_path: str,  # e.g. "i2i.tasks.InpaintingTask"
    task_init_args: dict,  # its constructor arguments, networks as {class_path, init_args}
    network_state: dict,  # the sampling network's state dict (G_ema): name -> tensor
    resolution: tuple[int, int] | int,  # (H, W) the model runs at
    kind: str,  # "inpainting" | "edges" | "labels"
    kimg: float | None = None,  # thousands of training images seen (None: unknown)
    metrics: dict | None = None,  # e.g. {"val/p_ids": 0.1}
    source: str = "",  # where the weights come from: a checkpoint, a published file
) -> Path:
    """Write `<path>.safetensors` (the weights) and `<path>.json` (the card) beside it.

    Both files are replaced atomically, the weights first, so a card always describes complete
    weights.

    Args:
        path: the model's name; it may carry either suffix or none.
        task_class_path: the task's class path, e.g. "i2i.tasks.InpaintingTask".
        task_init_args: its constructor arguments, networks as {class_path, init_args}.
        network_state: the sampling network's state dict (G_ema): name -> tensor.
        resolution: (H, W) the model runs at, or one int for a square.
        kind: "inpainting", "edges" or "labels".
        kimg: thousands of training images seen; None: unknown.
        metrics: scores by metric key, e.g. {"val/p_ids": 0.1}; None: none.
        source: where the weights come from: a checkpoint, a published file.

    Returns:
        The card's path.

    Raises:
        ValueError: an unknown kind.
    """
    from safetensors.torch import save_file  # a heavy import only where files are written

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    base = base_name(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    weights, card_path = beside(base, WEIGHTS_SUFFIX), beside(base, CARD_SUFFIX)
    # clone: safetensors refuses tensors that share storage (views of one buffer).
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in network_state.items()}
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    card = new_card(
        task_class_path,
        task_init_args,
        resolution,
        kind,
        None if kimg is None else float(kimg),
        {k: float(v) for k, v in (metrics or {}).items()},
        source,
    )
    card["weights"] = {"file": weights.name, "sha256": sha256_of(weights)}
    text = json.dumps(card, indent=2) + "\n"
    atomic_write(card_path, lambda tmp: tmp.write_text(text))
    return card_path


def read_card(path: str | Path) -> dict:
    """The card of a model file pair, checked for its format (not yet the weights).

    Args:
        path: the pair's name, or either of its files.

    Raises:
        FileNotFoundError: no card beside the name.
        ModelFileError: a card that cannot be read, of another format or a newer version, or
            one that lacks task, resolution, kind or weights.
    """
    card_path = beside(base_name(path), CARD_SUFFIX)
    if not card_path.is_file():
        raise FileNotFoundError(
            f"no model card {card_path}: an i2i model is a .safetensors file with its .json "
            "card beside it (write both with i2i.inference.model.write_model or save_model)"
        )
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as e:
        raise ModelFileError(f"cannot read the model card {card_path}: {e}") from e
    check_format(
        card,
        card_path,
        FORMAT,
        FORMAT_VERSION,
        f'is not an i2i model card (no "format": "{FORMAT}"): write it with '
        "i2i.inference.model.write_model",
    )
    missing = [k for k in ("task", "resolution", "kind", "weights") if k not in card]
    if missing:
        raise ModelFileError(f"the model card {card_path} lacks {', '.join(missing)}")
    return card
