"""Checks of the trainer's devices and strategy, made before Lightning builds a process group
or launches ranks: a problem found here is one line that says what to change.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from i2i.checkpoint_checks import process_count


def accelerator_problem_of(trainer: Any, config_files: str) -> str | None:
    """What to change when the config asks for GPUs this machine lacks, else None.

    Args:
        trainer: the parsed `trainer` section (accelerator, devices).
        config_files: the config files, named in the message.
    """
    accelerator, devices = str(trainer.accelerator), trainer.devices
    if accelerator not in ("gpu", "cuda"):
        return None
    available = torch.cuda.device_count()
    wanted = devices if isinstance(devices, int) and devices > 0 else None
    if available and (wanted is None or wanted <= available):
        return None
    if available:
        return (
            f"{config_files} asks for {wanted} GPUs; this machine has {available}: "
            f"add --trainer.devices={available} (the global batch shrinks accordingly)"
        )
    return (
        f"{config_files} asks for accelerator {accelerator} x {devices} devices; this "
        "machine has no GPU: add --trainer.accelerator=cpu --trainer.devices=1 "
        "--trainer.strategy=auto (very slow at this size: fine for a smoke test with "
        "--model.init_args.max_iterations=2), or run it on a GPU machine"
    )


def strategy_problem_of(trainer: Any, model: L.LightningModule) -> str | None:
    """DDP without find_unused_parameters fails a GAN at its first step, on every rank: a
    training phase leaves the other networks' parameters unused. Say so before launching.

    Args:
        trainer: the parsed `trainer` section (devices, accelerator, num_nodes, strategy).
        model: the task to train (a GAN optimises by hand: automatic_optimization False).
    """
    if getattr(model, "automatic_optimization", True):
        return None
    processes = process_count(trainer.devices, str(trainer.accelerator))
    processes *= int(trainer.num_nodes or 1)
    strategy = trainer.strategy
    if processes < 2:
        return None
    if isinstance(strategy, str):
        name = strategy
        if name != "auto" and not (name.startswith("ddp") and "find_unused" not in name):
            return None
        if name.endswith("find_unused_parameters_false"):
            name = name[: -len("_find_unused_parameters_false")]
        fix = f"{'ddp' if name == 'auto' else name}_find_unused_parameters_true"
        shown = "auto (which picks ddp)" if name == "auto" else strategy
    else:
        class_path = str(getattr(strategy, "class_path", ""))
        init_args = getattr(strategy, "init_args", None) or {}
        if not class_path.endswith("DDPStrategy") or init_args.get("find_unused_parameters"):
            return None
        fix, shown = "ddp_find_unused_parameters_true", class_path.rpartition(".")[2]
    return (
        f"--trainer.strategy={shown} cannot train {type(model).__name__} on {processes} "
        "processes (each GAN phase leaves the other networks' parameters unused, which it "
        f"refuses): use --trainer.strategy={fix}"
    )
