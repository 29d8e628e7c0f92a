"""The `i2i` command: Lightning CLI over the GAN tasks and datamodules.

    i2i fit --config configs/demo.yaml
    i2i fit --config configs/demo.yaml --ckpt_path last        # resume exactly
    i2i fit --config configs/demo.yaml --overwrite             # start afresh in a used folder
    i2i validate|test|predict --config ... --ckpt_path PATH
    i2i fit --config configs/demo.yaml --print_config           # the full resolved config
    i2i fit --config demo                                       # a packaged config by name

Every run gets a checkpoint callback (last + best, written atomically, in
<trainer.default_root_dir>/checkpoints), a sample-grid callback and a graceful stop on Ctrl-C or
SIGTERM, and the metrics callback (P-IDS / U-IDS / FID; the full protocol under `i2i test`).
Everything a run writes lives under its `trainer.default_root_dir`, logs included (the logger's
`save_dir` follows it unless given on the command line).
Weights & Biases runs offline unless W&B is configured (WANDB_API_KEY or WANDB_MODE).

Before anything is written or any process group is built, `fit` checks: the data (downloads
happen here, once), the accelerator and the DDP strategy, a checkpoint to resume (damaged, another
task or size, already finished, `last` missing beside other checkpoints), a folder in use by
another run (a lock held until the process ends), a folder that holds another run's checkpoints,
a folder that cannot be written, and stale temporaries of a killed save. Such problems end in a
few lines that say what to do (`I2I_DEBUG=1` adds the traceback); the exit status is 0 on
success, 1 on an error, 2 on a bad option, 130 / 143 after Ctrl-C / SIGTERM.

This module holds the LightningCLI subclass; `i2i.lightning_command` runs it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    BasePredictionWriter,
    RichProgressBar,
    Timer,
    TQDMProgressBar,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from i2i.callbacks import (
    GracefulShutdown,
    IterationProgressBar,
    LastAndBestCheckpoint,
    PredictionWriter,
    RunRecord,
    SampleGrid,
)
from i2i.callbacks.evaluation import GANMetrics
from i2i.callbacks.resume import (
    LAST,
    checkpoint_plugins,
    last_checkpoint_path,
    locked_run_folder,
    probe_writable,
    remove_stale_temporaries,
    write_error,
)
from i2i.checkpoint_checks import (
    check_compatible,
    check_loadable,
    describe_checkpoint,
    limits_reached,
)
from i2i.config_files import resolve_config_arguments
from i2i.config_keys import I2IArgumentParser
from i2i.device_checks import accelerator_problem_of, strategy_problem_of
from i2i.errors import RunError, UserError, find_user_error
from i2i.safe_load import TRUST_FLAG, trust_checkpoints

STARTED = time.time()
# Errors whose message says everything: printed as one `i2i: error:` line, exit status 1.
USER_ERRORS = (UserError, FileNotFoundError)
# Seconds a launched rank gets to finish exiting before rank 0 judges whether it failed first.
LAUNCHED_RANK_EXIT_WAIT = 5.0
WRITE_ERRNOS = (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT)


def _checkpoint_dir(default_root_dir: str | None) -> str:
    return str(Path(default_root_dir or ".") / "checkpoints")


def _import_path(value: Any) -> str:
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    return f"{getattr(value, '__module__', None) or type(value).__module__}.{name}"


# ---- the CLI -------------------------------------------------------------------------------


class I2ICLI(LightningCLI):
    """LightningCLI with i2i's callbacks, run-safety checks and short errors; `exit_code` is the
    command's exit status once it has run."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("parser_class", I2IArgumentParser)
        self.exit_code = 0
        self.skipped_reason: str | None = None  # fit had nothing to do
        command = sys.argv[1:] if kwargs.get("args") is None else kwargs["args"]
        self._first_argument = command[0] if isinstance(command, list | tuple) and command else None
        super().__init__(*args, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:
        """Lightning's subcommands, only the one the command line starts with if it does (each
        parser takes a quarter of a second to build); starting with an option gets them all."""
        every, only = LightningCLI.subcommands(), self._first_argument
        return {only: every[only]} if only in every else every

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        if args is None:
            self.argv = sys.argv[1:]
        else:
            self.argv = [str(a) for a in args] if isinstance(args, list | tuple) else []
        resolved = resolve_config_arguments(self.argv)  # `--config demo`: the shipped one
        if resolved == self.argv:
            return super().parse_arguments(parser, args)
        with warnings.catch_warnings():  # Lightning's warning about args beside sys.argv
            if args is None:  # does not apply: these are sys.argv's own
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().parse_arguments(parser, resolved)

    def _parse_ckpt_path(self) -> None:
        """Lightning would read the checkpoint here (a damaged one ends in a traceback) and
        replace the config's model settings with the checkpoint's hyperparameters: the config
        and the command line stay the truth here (a resumed run may get a longer run length),
        and a checkpoint that does not fit them is named in `check_checkpoint`."""
        self._checkpoint: tuple[Path, dict] | None = None
        subcommand = self.config.get("subcommand")
        if subcommand:  # for this process only: the saved config.yaml must not carry it on
            trust_checkpoints(bool(self.config[subcommand].get("trust_checkpoint")))
            self.config[subcommand].trust_checkpoint = False
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file() and rank_zero_only.rank == 0:
            self._checkpoint = (Path(ckpt_path), check_loadable(Path(ckpt_path)))

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(LastAndBestCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{iteration}",
                "checkpoint.save_top_k": 1,
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        # `--ckpt_path last` finds last.ckpt only if the folder is the same in every run.
        parser.link_arguments(
            "trainer.default_root_dir", "checkpoint.dirpath", compute_fn=_checkpoint_dir
        )
        parser.add_lightning_class_args(SampleGrid, "samples")
        parser.add_lightning_class_args(GracefulShutdown, "shutdown")
        parser.add_lightning_class_args(GANMetrics, "metrics")
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="fit: start afresh in a folder that holds another run, deleting its checkpoints, "
            "samples and config.yaml (to continue that run instead: --ckpt_path last)",
        )
        parser.add_argument(
            TRUST_FLAG,
            action="store_true",
            help="--ckpt_path: unpickle the checkpoint in full, even if it refers to code "
            "(refused by default: a checkpoint from a stranger can run code when loaded)",
        )
        parser.add_argument(
            "--real",
            action="store_true",
            help="test, labels -> photo with metrics.segmenter: also segment the real validation "
            "photos (real_miou, real_pixel_accuracy: the ceiling every paper prints)",
        )

    # ---- before anything is instantiated: where the logs go ---------------------------------

    def _sub_config(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        """The logger writes under trainer.default_root_dir, unless its save_dir is given on the
        command line: a run's files never land in a folder the config hard-codes."""
        config = self._sub_config()
        root = config.trainer.default_root_dir
        if root is None or any("logger" in a and "save_dir" in a for a in self.argv):
            return
        loggers = config.trainer.logger
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init_args = getattr(logger, "init_args", None)
            if init_args is not None and "save_dir" in init_args:
                init_args.save_dir = str(root)

    # ---- before the trainer (and any process group) exists: data and accelerator ------------

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        # The task says how many batches one training step consumes; the datamodule's loader
        # yields that many (CoModGAN: 2, its G and D steps each take their own reals).
        if hasattr(self.datamodule, "batches_per_step"):
            self.datamodule.batches_per_step = self.model.batches_per_step
        if self.subcommand is not None and rank_zero_only.rank == 0:
            self.preflight()
        # Checkpoints are written atomically, whatever plugins the user adds.
        config = self._get(self.config_init, "trainer", default={})
        plugins = checkpoint_plugins(config.get("plugins"), config.get("strategy"))
        trainer = super().instantiate_trainer(**{"plugins": plugins, **kwargs})
        # Lightning's default bar (Rich when rich is installed, as gradio pulls it in) becomes
        # ours, which counts iterations; a bar the user configured is kept.
        for i, callback in enumerate(trainer.callbacks):
            if type(callback) in (TQDMProgressBar, RichProgressBar):
                trainer.callbacks[i] = IterationProgressBar()
        trainer.callbacks.append(RunRecord(self.model_config()))
        return trainer

    def model_config(self) -> dict:
        """The resolved model config as plain data (callables by their import path), so that
        checkpoints that record it still load with `weights_only=True`."""
        model = self._sub_config().model
        config = model.as_dict() if hasattr(model, "as_dict") else dict(model or {})
        return json.loads(json.dumps(config, default=_import_path))

    def config_files(self) -> str:
        files = self._sub_config().get("config") or []
        return ", ".join(str(getattr(f, "relative", f)) for f in files) or "the configuration"

    def preflight(self) -> None:
        """Data first (a missing dataset is downloaded or named here, once, in this process),
        then the accelerator: both before Lightning builds a process group or launches ranks."""
        trainer = self._sub_config().trainer
        accelerator_problem = accelerator_problem_of(trainer, self.config_files()) or (
            strategy_problem_of(trainer, self.model) if self.subcommand == "fit" else None
        )
        prepare = getattr(self.datamodule, "prepare_data", None)
        if callable(prepare) and self.subcommand in ("fit", "validate", "test", "predict"):
            try:
                prepare()
            except USER_ERRORS:
                if accelerator_problem:
                    print(f"i2i: error: {accelerator_problem}", file=sys.stderr, flush=True)
                raise
        if accelerator_problem:
            raise RunError(accelerator_problem)

    # ---- the subcommands -----------------------------------------------------------------

    def resolve_checkpoint(self, ckpt_path: str | None) -> Path | None:
        if ckpt_path is None or ckpt_path in ("best", "hpc", "registry") or "://" in ckpt_path:
            return None
        if ckpt_path == "last":
            path = Path(self.trainer.checkpoint_callback.dirpath or "") / LAST
            if path.exists():
                return path
            others = sorted(path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
            if others:  # Lightning would start afresh and replace them: refuse
                newest = max(others, key=lambda p: p.stat().st_mtime)
                raise RunError(
                    f"--ckpt_path last: there is no {path}, but {path.parent} holds "
                    f"{'; '.join(describe_checkpoint(p) for p in others)}. To resume from one "
                    f"of them: --ckpt_path=<file> (e.g. --ckpt_path={newest}); nothing was changed"
                )
            return None
        path = Path(ckpt_path)
        if not path.is_file():
            beside = sorted(path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
            listed = ", ".join(str(p) for p in beside) or "none"
            raise RunError(f"no checkpoint at {path} (checkpoints in {path.parent}: {listed})")
        return path

    def check_checkpoint(self, ckpt_path: str | None) -> dict | None:
        """Damaged, or another task or size: a few lines instead of Lightning's traceback."""
        path = self.resolve_checkpoint(ckpt_path)
        if path is None or rank_zero_only.rank != 0:
            return None
        if self._checkpoint is not None and self._checkpoint[0] == path:
            checkpoint, self._checkpoint = self._checkpoint[1], None
        else:
            checkpoint = check_loadable(path)
        check_compatible(path, checkpoint, self.model, self.model_config())
        return checkpoint

    def fit(self, model, ckpt_path: str | None = None, **kwargs) -> None:
        if rank_zero_only.rank != 0:  # Lightning's launched ranks re-run this command
            return self._fit(model, ckpt_path, **kwargs)
        # A folder that cannot be written is named first; then the run folder is this run's
        # until it ends, before anything of the run is read or written.
        probe_writable(self.trainer.checkpoint_callback.dirpath)
        with locked_run_folder(self.trainer.default_root_dir):
            try:
                self._fit(model, ckpt_path, **kwargs)
            except Exception as e:
                self._end_launched_ranks(e)
                raise

    def _end_launched_ranks(self, error: Exception) -> None:
        """After an error on rank 0, end the ranks Lightning launched (they would wait in a
        collective until its timeout). When one of them failed first, its error is the cause
        and it has said so: this process ends without a second message."""
        procs = getattr(self.trainer.strategy.launcher, "procs", None) or []
        if find_user_error(error) is None and error_message(error) is None:
            # A broken collective: the rank that failed first closes its connections in its
            # exit handlers, a moment before it has exited. Give it that moment.
            deadline = time.monotonic() + LAUNCHED_RANK_EXIT_WAIT
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        failed = [p for p in procs if p.poll() not in (None, 0)]
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        if failed and find_user_error(error) is None and error_message(error) is None:
            raise SystemExit(1) from error

    def _fit(self, model, ckpt_path: str | None = None, **kwargs) -> None:
        checkpoint = self.check_checkpoint(ckpt_path)
        if checkpoint is not None and self._already_finished(model, checkpoint):
            return
        if rank_zero_only.rank == 0:
            if ckpt_path is None:
                self._check_run_folder()
            # Done: the saved config.yaml must not delete the next run's folder when reused.
            self._sub_config().overwrite = False
            ckpt_dir = Path(self.trainer.checkpoint_callback.dirpath)
            if removed := remove_stale_temporaries(ckpt_dir, STARTED):
                print(
                    f"i2i: removed {len(removed)} stale temporary file(s) of an interrupted "
                    f"checkpoint save in {ckpt_dir}: {', '.join(p.name for p in removed)}",
                    flush=True,
                )
            probe_writable(ckpt_dir)
        self.trainer.fit(model, ckpt_path=ckpt_path, **kwargs)

    def validate(self, model, ckpt_path: str | None = None, **kwargs):
        self.check_checkpoint(ckpt_path)
        return self.trainer.validate(model, ckpt_path=ckpt_path, **kwargs)

    def test(self, model, ckpt_path: str | None = None, **kwargs):
        self.check_checkpoint(ckpt_path)
        if self._sub_config().get("real"):
            for callback in self.trainer.callbacks:
                if isinstance(callback, GANMetrics):
                    callback.real = True
        return self.trainer.test(model, ckpt_path=ckpt_path, **kwargs)

    def predict(self, model, ckpt_path: str | None = None, **kwargs):
        self.check_checkpoint(ckpt_path)
        # Predictions are files, as `i2i inpaint` writes them: a writer unless one is given.
        if not any(isinstance(cb, BasePredictionWriter) for cb in self.trainer.callbacks):
            self.trainer.callbacks.append(PredictionWriter())
        return self.trainer.predict(model, ckpt_path=ckpt_path, **kwargs)

    def _already_finished(self, model: L.LightningModule, checkpoint: dict) -> bool:
        """A resumed run already at its length: say so and touch nothing."""
        finished = getattr(model, "finished", None)
        state = checkpoint.get("state_dict") or {}
        if not callable(finished) or "iteration" not in state:
            return False
        saved = {k: getattr(model, k).clone() for k in ("iteration", "images_seen") if k in state}
        with torch.no_grad():
            for k in saved:
                getattr(model, k).copy_(state[k])
            done = bool(finished())
            iteration = int(model.iteration)
            ended = limits_reached(model)
            for k, v in saved.items():
                getattr(model, k).copy_(v)
        if not done:
            return False
        self.skipped_reason = (
            f"i2i: nothing to do: the checkpoint is at iteration {iteration}, the end of this "
            f"run ({', '.join(text for _, text in ended)}); no file was changed. To train "
            f"further, raise {' and '.join(f'--model.init_args.{name}' for name, _ in ended)}."
        )
        return True

    def _check_run_folder(self) -> None:
        """Refuse to start a new run over another one (mixed checkpoints, overwritten config)."""
        root = Path(self.trainer.default_root_dir)
        ckpt_dir = Path(self.trainer.checkpoint_callback.dirpath)
        checkpoints = sorted(ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
        config = root / "config.yaml"
        if not checkpoints:  # a run that saved nothing (it failed early) claims nothing
            if config.is_file():
                print(f"i2i: note: replacing {config}, left by a run that saved no checkpoint")
            return
        found = [config.name] if config.is_file() else []
        found.append(f"{len(checkpoints)} checkpoint(s) in {ckpt_dir.name}/")
        if not self._sub_config().get("overwrite"):
            raise RunError(
                f"{root} already holds a run ({', '.join(found)}). To continue it: "
                "--ckpt_path last; to start afresh there, deleting its checkpoints, samples and "
                "config.yaml: --overwrite; or choose another --trainer.default_root_dir"
            )
        samples = [cb for cb in self.trainer.callbacks if isinstance(cb, SampleGrid)]
        for path in [ckpt_dir, *(cb.folder(self.trainer) for cb in samples)]:
            shutil.rmtree(path, ignore_errors=True)
        for name in ("config.yaml", "test_results.json"):
            (root / name).unlink(missing_ok=True)
        print(f"i2i: --overwrite: deleted the previous run's files in {root}", flush=True)

    def resume_command(self, checkpoint: Path) -> str:
        args, skip = [], False
        for arg in self.argv:
            if skip:
                skip = False
            elif arg == "--ckpt_path":
                skip = True
            elif not arg.startswith("--ckpt_path=") and arg != "--overwrite":
                args.append(arg)
        return shlex.join(["i2i", *args, f"--ckpt_path={checkpoint}"])

    def _time_limit_lines(self) -> list[str]:
        """Say so when `trainer.max_time` ended the run before its length, and how to go on."""
        timer = next((cb for cb in self.trainer.callbacks if isinstance(cb, Timer)), None)
        finished = getattr(self.model, "finished", None)
        if timer is None or not callable(finished) or finished():
            return []
        remaining = timer.time_remaining()
        if remaining is None or remaining > 0:
            return []
        hp = self.model.hparams
        length = getattr(hp, "max_iterations", None)
        of = f" of {length}" if length is not None else ""
        limit = time.strftime("%H:%M:%S", time.gmtime(timer.time_elapsed() + remaining))
        return [
            f"  time limit  : trainer.max_time ({limit}) stopped it at iteration "
            f"{int(self.model.iteration)}{of}; to train on: "
            f"{self.resume_command(Path('last'))} --trainer.max_time=null"
        ]

    def after_fit(self) -> None:
        trainer = self.trainer
        shutdown = next((cb for cb in trainer.callbacks if isinstance(cb, GracefulShutdown)), None)
        if self.skipped_reason is not None:
            print(self.skipped_reason, flush=True)
            return
        if shutdown is not None and shutdown.stopped_at is not None:  # a signal stopped it
            self.exit_code = 128 + int(shutdown.signal)
            if trainer.is_global_zero:
                name = signal.Signals(shutdown.signal).name
                print(
                    f"\ni2i: interrupted at iteration {shutdown.stopped_at} ({name}); saved "
                    f"{shutdown.saved}; resume with: {self.resume_command(shutdown.saved)}",
                    flush=True,
                )
            return
        if not trainer.is_global_zero:
            return
        lines = ["", "i2i: training finished", *self._time_limit_lines()]
        ckpt = trainer.checkpoint_callback
        if ckpt is not None:
            # Ranks forked or spawned by Lightning (ddp_fork, ddp_notebook, ddp_spawn) send back
            # the best path only: the last one is read from the folder.
            on_disk = last_checkpoint_path(trainer)
            last = ckpt.last_model_path or (on_disk if on_disk.is_file() else "-")
            best = ckpt.best_model_path or "-"
            lines.append(f"  checkpoints : {ckpt.dirpath} (last: {last}, best: {best})")
        for cb in trainer.callbacks:
            if isinstance(cb, SampleGrid) and cb.last_path is not None:
                lines.append(f"  sample grid : {cb.last_path}")
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                run_dir = Path(logger.experiment.dir).parent
                offline = os.environ.get("WANDB_MODE", "online") == "offline"
                hint = f" (offline: upload with `wandb sync {run_dir}`)" if offline else ""
                lines.append(f"  W&B run     : {run_dir}{hint}")
            elif getattr(logger, "log_dir", None):
                lines.append(f"  logs        : {logger.log_dir}")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if metrics:
            lines.append("  validation  : " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        print("\n".join(lines), flush=True)


def error_message(error: BaseException) -> str | None:
    """The one message for an error the user can act on, or None for a bug (a traceback)."""
    if find_user_error(error) is not None:
        return None  # its own message, with the notes of what was saved (errors.report)
    if isinstance(error, FileNotFoundError):
        return str(error)
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS and error.filename:
        # a full disk or a read-only folder outside checkpoints (logs, samples)
        return write_error(Path(error.filename), error, "the file")
    if "parameters that were not used in producing the loss" in str(error):
        # a strategy object that preflight could not judge: DDP without find_unused_parameters
        return (
            "DDP without find_unused_parameters cannot train a GAN (each phase leaves the other "
            "networks' parameters unused): use --trainer.strategy=ddp_find_unused_parameters_true"
        )
    return None
