"""Checks of a checkpoint before a run uses it: damaged (naming those beside it that load),
foreign pickles refused (`i2i.safe_load`), another task or size than the config, the limits it
has reached; and how many processes a `trainer.devices` value starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from i2i.callbacks.resume import RunRecord
from i2i.errors import RefusedFileError, RunError
from i2i.safe_load import damaged, iteration_of, load_checkpoint, loadable_beside


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's contents, memory-mapped where the file format allows (cheap), loaded
    weights-only (`i2i.safe_load`: a foreign pickle is refused by name, nothing runs)."""
    return load_checkpoint(path, mmap=True)


def check_loadable(path: Path) -> dict:
    """Load a checkpoint, or say it is damaged (or refused) and which checkpoints beside it
    load."""
    try:
        return read_checkpoint(path)
    except RefusedFileError as e:
        raise RunError(str(e)) from None
    except Exception as e:
        lines = [damaged(path, e)]
        others = loadable_beside(path)
        if others:
            lines.append("  checkpoints beside it that load: " + "; ".join(others))
            lines.append("  resume from one of them with --ckpt_path=<file>")
        else:
            lines.append("  no other checkpoint beside it loads; start afresh with --overwrite")
        raise RunError("\n".join(lines)) from None


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def _network_config(model_config: dict, model: L.LightningModule) -> dict[str, Any]:
    """The part of a model config that decides shapes: the task class and the injected
    networks (class paths and arguments); run-length and loss settings may change on resume."""
    init_args = model_config.get("init_args") or {}
    kept: dict[str, Any] = {"class_path": model_config.get("class_path")}
    for name, value in init_args.items():
        if isinstance(getattr(model, name, None), torch.nn.Module) and isinstance(value, dict):
            kept.update(_flatten(value, f"{name}."))
    return kept


def check_compatible(
    path: Path, checkpoint: dict, model: L.LightningModule, model_config: dict
) -> None:
    """Say which task class or network setting differs between a checkpoint and the config,
    before Lightning fails with a raw `size mismatch`."""
    expected = model.state_dict()
    state = checkpoint.get("state_dict") or {}
    mismatched = [
        f"{k}: checkpoint {list(state[k].shape)}, config {list(v.shape)}"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    recorded = (checkpoint.get(RunRecord.KEY) or {}).get("model")
    differences = []
    if recorded:
        old, new = _network_config(recorded, model), _network_config(model_config, model)
        for k in sorted(old.keys() | new.keys(), key=lambda k: (k != "class_path", k)):
            if old.get(k) != new.get(k):
                name = "task (model.class_path)" if k == "class_path" else k
                differences.append(f"{name}: checkpoint {old.get(k)}, config {new.get(k)}")
    task_differs = bool(differences) and differences[0].startswith("task")
    if not (mismatched or missing or unexpected or task_differs):
        if differences:
            print(f"i2i: note: {path} was trained with " + "; ".join(differences), flush=True)
        return
    lines = [f"the checkpoint {path} is of another task or size than this config:"]
    if differences:
        lines += [f"  {d}" for d in differences[:8]]
    else:  # a checkpoint from before the record: name the first mismatching tensors
        lines += [f"  {m}" for m in mismatched[:5]]
        if missing or unexpected:
            lines.append(
                f"  {len(missing)} tensor(s) missing from the checkpoint (e.g. "
                f"{(missing or ['-'])[0]}), {len(unexpected)} unexpected (e.g. "
                f"{(unexpected or ['-'])[0]})"
            )
    lines.append("  use the config the checkpoint was trained with, or another --ckpt_path")
    raise RunError("\n".join(lines))


def describe_checkpoint(path: Path) -> str:
    try:
        return f"{path.name} ({iteration_of(read_checkpoint(path))})"
    except Exception:
        return f"{path.name} (does not load)"


def limits_reached(model: L.LightningModule) -> list[tuple[str, str]]:
    """The run-length settings that the task's counters have reached: (name, description)."""
    hp = model.hparams
    ended = []
    max_iterations = getattr(hp, "max_iterations", None)
    if max_iterations is not None and int(model.iteration) >= max_iterations:
        ended.append(("max_iterations", f"max_iterations={max_iterations}"))
    max_kimg = getattr(hp, "max_kimg", None)
    if max_kimg is not None and float(model.kimg) >= max_kimg:
        seen = f"{int(model.images_seen)} images seen"
        ended.append(("max_kimg", f"max_kimg={max_kimg}, at {seen}"))
    return ended or [("max_iterations", "its length")]


def process_count(devices: Any, accelerator: str) -> int:
    """The processes per node that Lightning will start for `trainer.devices`."""
    if isinstance(devices, list | tuple):
        return len(devices)
    text = str(devices).strip()
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    if text.lstrip("-").isdigit() and int(text) >= 0:
        return int(text)
    # "auto" or -1: every GPU, or one CPU process
    return torch.cuda.device_count() if accelerator in ("gpu", "cuda", "auto") else 1
