"""Running `i2i` as the user does: a subprocess of the console script or `python -m i2i`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"
SCRIPT = Path(sys.executable).parent / "i2i"  # the console script of this environment


def env(**extra: str) -> dict[str, str]:
    """No W&B, no inherited DDP variables; `tests.helpers` importable by the subprocess."""
    out = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MASTER_PORT", "LOCAL_RANK", "MASTER_ADDR", "WORLD_SIZE", "RANK", "NODE_RANK")
    }
    out["PYTHONPATH"] = str(REPO) + os.pathsep + out.get("PYTHONPATH", "")
    out["WANDB_MODE"] = "disabled"
    out.update(extra)
    return out


def command(*args: str, module: bool = False) -> list[str]:
    return [sys.executable, "-m", "i2i", *args] if module else [str(SCRIPT), *args]


def i2i(*args: str, module: bool = False, timeout: float = 300, **extra_env: str):
    """Run `i2i ARGS` from the repository root; the CompletedProcess (text, both streams)."""
    return run(command(*args, module=module), timeout, **extra_env)


def run(argv: list[str], timeout: float = 300, **extra_env: str):
    """Run `argv` as `i2i` is run: from the repository root, in `env()`."""
    return subprocess.run(
        argv,
        cwd=REPO,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fit_args(root: Path, *args: str, config: Path = TINY) -> list[str]:
    return ["fit", "--config", str(config), f"--trainer.default_root_dir={root}", *args]


def iteration(checkpoint: Path) -> int:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return int(state["iteration"])


def output(result) -> str:
    return result.stdout + result.stderr
