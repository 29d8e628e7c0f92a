"""Running the Lightning subcommands (fit, validate, test, predict) as the `i2i` command: in this
process with `run_cli` (tests, notebooks, benchmarks), and as `main`, which
`i2i.commands` calls, turning errors the user can act on into one message and an exit status and
ending the loader workers and launched ranks that an error leaves behind. W&B is set to stay
offline and silent unless the user configured it.
"""

from __future__ import annotations

import os
import time
import warnings

import lightning as L

from i2i.cli import I2ICLI, error_message
from i2i.errors import find_user_error, report
from i2i.tasks import ImageTask


def configure_wandb_environment() -> None:
    """Never let W&B prompt or wait on the network: offline unless the user configured it."""
    if not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")


def run_cli(args: list[str] | None = None, **kwargs) -> I2ICLI:
    """The `i2i` command in-process (tests, notebooks): returns the CLI object, with `.model`,
    `.trainer` and `.exit_code`; errors raise."""
    configure_wandb_environment()
    # Noise a user cannot act on: torch's LeafSpec notice, Lightning noting that G_ema is in eval
    # mode (on purpose; Lightning keeps submodule modes), and jsonargparse deprecations raised
    # inside Lightning's CLI.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    kwargs.setdefault("subclass_mode_model", True)
    kwargs.setdefault("subclass_mode_data", True)
    kwargs.setdefault("save_config_kwargs", {"overwrite": True})
    return I2ICLI(ImageTask, L.LightningDataModule, args=args, **kwargs)


def _stop_loader_workers() -> None:
    """DataLoader workers ignore SIGTERM (a stop is the main process's to make), so the exit
    handler of multiprocessing, which terminates and then joins them, would wait forever for
    the persistent workers that an error left running: end them first."""
    import multiprocessing

    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()
            child.join(timeout=10)


def _launched_rank() -> bool:
    """A process that Lightning started for another device: the user's command is its parent."""
    return int(os.environ.get("LOCAL_RANK") or 0) > 0


# Ranks meet the same bad data or setting within moments of each other (they start each
# stage together): rank 0 then reports it and ends the others well within this wait.
SAME_ERROR_WAIT = 5.0


def _rank_zero_reports(wait: float = SAME_ERROR_WAIT) -> bool:
    """On a launched rank: whether the user's process (rank 0) ended within `wait` seconds, as
    it does after reporting the same error; otherwise this rank's error is its own."""
    parent, deadline = os.getppid(), time.time() + wait
    while time.time() < deadline:
        if os.getppid() != parent:
            return True
        time.sleep(0.2)
    return False


def main(args: list[str] | None = None) -> int:
    """Lightning's subcommands (fit, validate, test, predict) as `i2i.commands.main`, the console
    script, runs them: the exit status (0 success, 1 error, 2 bad option, 128 + signal after a
    graceful stop). Errors that explain themselves print one message, no traceback
    (I2I_DEBUG=1 prints it too)."""
    try:
        return run_cli(args).exit_code
    except Exception as e:
        message = error_message(e)
        if message is None and find_user_error(e) is None:
            raise
        # Every rank meets the same bad data or setting: the user's process says it once.
        if _launched_rank() and _rank_zero_reports():
            return 1
        return report(e, message)
    finally:
        _stop_loader_workers()
