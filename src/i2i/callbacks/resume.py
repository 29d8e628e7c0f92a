"""Checkpoints that are never half-written, a stop on Ctrl-C or SIGTERM that leaves one, and a
crash that leaves one too.

Write failures (a full disk, a folder that cannot be written) become one line naming the file and
the free space; stale temporaries of a killed save are found and removed at the next start.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import CheckpointIO, TorchCheckpointIO
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO

from i2i.errors import CheckpointWriteError, RunError
from i2i.io import atomic_write
from i2i.safe_load import load_checkpoint

try:
    import fcntl
except ImportError:  # Windows: runs are not locked there
    fcntl = None

log = logging.getLogger(__name__)

LAST = ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def free_space(path: str | Path) -> str:
    """Free space on the filesystem that holds `path` (or its nearest existing parent)."""
    try:
        free = shutil.disk_usage(_nearest_existing(Path(path).absolute())).free
    except OSError:
        return "unknown free space"
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if free >= size:
            return f"{free / size:.1f} {unit} free"
    return f"{free} bytes free"


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "the disk is full"
    if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write ({error.strerror})"
    if isinstance(error, NotADirectoryError):
        return "a part of the path is a file, not a folder"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__


def _is_write_failure(error: BaseException) -> bool:
    # torch.save reports a failed write to a file it opened itself as "unexpected pos N vs M".
    return isinstance(error, OSError) or (
        isinstance(error, RuntimeError) and "unexpected pos" in str(error)
    )


def write_error(path: Path, error: BaseException, what: str = "the checkpoint") -> str:
    return f"could not write {what} {path}: {_reason(error)} ({free_space(path.parent)} there)"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint file, written atomically (`i2i.io.atomic_write`): a crash mid-write
    leaves the previous file intact. The `i2i` command gives it to every Trainer it builds
    (`checkpoint_plugins`).

    (Lightning's own save goes through a temporary file in the system temp folder, which is not
    an atomic rename when that folder is on another filesystem.) A failed write raises
    CheckpointWriteError naming the file and the free space.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: self.write(checkpoint, tmp))
        except (OSError, RuntimeError) as e:
            if not _is_write_failure(e):
                raise
            raise CheckpointWriteError(write_error(path, e)) from e

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        """Lightning's load for `--ckpt_path`: weights-only with i2i's allow-list, in full only
        with --trust-checkpoint (`i2i.safe_load`); tensors land on the CPU, as Lightning's."""
        if "://" not in str(path):
            if not Path(path).exists():
                raise FileNotFoundError(f"Checkpoint file not found: {path}")
            return load_checkpoint(path)
        fs = get_filesystem(path)  # a remote file (s3://...): read whole, then loaded alike
        with fs.open(str(path), "rb") as f:
            return load_checkpoint(io.BytesIO(f.read()), name=str(path))

    def write(self, checkpoint: dict[str, Any], tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())


def checkpoint_plugins(plugins: Any, strategy: Any = None) -> list[Any]:
    """The Trainer's `plugins` with AtomicCheckpointIO for its checkpoints, composed with the
    user's `--trainer.plugins`: added beside precision, cluster or sync plugins; put inside a
    wrapping CheckpointIO that has none (AsyncCheckpointIO), which Lightning would otherwise fill
    with its plain TorchCheckpointIO; and in place of a plain TorchCheckpointIO, the default it
    extends. Any other CheckpointIO the user chose, on its own or on a strategy object, is kept
    (a Trainer takes one)."""
    if plugins is None:
        plugins = []
    plugins = list(plugins) if isinstance(plugins, list | tuple) else [plugins]
    if getattr(strategy, "_checkpoint_io", None) is not None:
        return plugins
    for i, plugin in enumerate(plugins):
        if type(plugin) is TorchCheckpointIO:
            plugins[i] = AtomicCheckpointIO()
        elif isinstance(plugin, _WrappingCheckpointIO) and plugin.checkpoint_io is None:
            plugin.checkpoint_io = AtomicCheckpointIO()
        if isinstance(plugin, CheckpointIO):
            return plugins
    return [*plugins, AtomicCheckpointIO()]


def probe_writable(folder: str | Path) -> None:
    """Create `folder` and write, sync and remove a small file in it: a folder that cannot hold
    checkpoints fails at start-up, not at the first save hours later."""
    folder = Path(folder)
    probe = folder / f".i2i-write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as e:
        raise CheckpointWriteError(
            f"cannot write checkpoints in {folder}: {_reason(e)} ({free_space(folder)} there); "
            "choose another --trainer.default_root_dir"
        ) from e


LOCK = ".i2i-run.lock"


def _lock_holder(fd: int) -> str:
    """The pid holding a flock on the file open as `fd`, from /proc/locks (Linux), or "unknown".
    (Read there, not written in the file: a refused run changes no file.)"""
    inode = os.fstat(fd).st_ino
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        fields = line.split()  # "1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return fields[4]
    return "unknown"


@contextlib.contextmanager
def locked_run_folder(folder: str | Path) -> Iterator[None]:
    """An exclusive lock on the run folder while the block runs, so that two runs never write
    into one folder; the operating system releases it when the process ends, however it ends
    (no stale lock after kill -9)."""
    fd = lock_run_folder(folder)
    try:
        yield
    finally:
        os.close(fd)


def lock_run_folder(folder: str | Path) -> int:
    """Take the run folder's lock (RunError naming the holder's pid when another process has
    it); the lock file's descriptor: closing it releases the lock."""
    folder = Path(folder)
    path = folder / LOCK
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        if fcntl is None:
            return fd
    except OSError as e:
        raise CheckpointWriteError(
            f"cannot write in the run folder {folder}: {_reason(e)} ({free_space(folder)} "
            "there); choose another --trainer.default_root_dir"
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            os.close(fd)
            raise
        holder = _lock_holder(fd)
        os.close(fd)
        raise RunError(
            f"{folder} is in use by another i2i run (pid {holder}); wait for it to end, or "
            "choose another --trainer.default_root_dir"
        ) from None
    return fd


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(folder: str | Path, started: float | None = None) -> list[Path]:
    """Delete the temporaries that a save killed mid-write left in `folder` (`.{name}.tmp{pid}`
    as `i2i.io.atomic_write` names them, or `.{name}.tmp-{pid}` as earlier versions did): those
    whose process is gone, or that are older than `started` (this process's start)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    started = time.time() if started is None else started
    removed = []
    for tmp in sorted(folder.glob(".*.tmp*")):
        pid_text = tmp.name.rpartition(".tmp")[2].removeprefix("-")
        pid = int(pid_text) if pid_text.isdigit() else None
        try:
            stale = pid is None or pid == os.getpid() or not _pid_alive(pid)
            stale = stale or tmp.stat().st_mtime < started
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


class GracefulShutdown(Callback):
    """On SIGINT (Ctrl-C) or SIGTERM (SLURM, Kubernetes), finish the current iteration, write
    `last.ckpt` and stop, so that `i2i fit ... --ckpt_path last` continues exactly. A second
    signal falls through to the previous handler (an immediate stop). A signal the process was
    started to ignore stays ignored, as Python leaves it: a script's `i2i fit ... &` runs on
    through the Ctrl-C that stops the script.

    On an exception during training it writes `last.ckpt` too when the state is consistent, that
    is when the failure came between iterations (data loading, validation, a callback) or in an
    iteration before it changed anything: the checkpoint then holds the last completed iteration.
    An exception in the middle of an iteration (after a network's training forward, which may
    already have moved w_avg or an optimizer) leaves the previous last.ckpt as it is.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._requested = False
        self._previous: dict[int, Any] = {}
        self._hooks: list[Any] = []
        self._dirty_at: int | None = None  # the iteration an unfinished step started from
        self._training = False
        self.signal: int | None = None  # the signal that stopped the run
        self.stopped_at: int | None = None  # the iteration saved by the stop
        self.saved: Path | None = None  # the checkpoint written by a stop or after an error

    def _handler(self, signum, frame) -> None:
        log.warning(
            "Received signal %s: stopping after this iteration and saving last.ckpt", signum
        )
        self._requested = True
        self.signal = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._requested, self.signal, self.stopped_at, self.saved = False, None, None, None
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.getsignal(sig)
                if self._previous[sig] is not signal.SIG_IGN:
                    signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        self._training, self._dirty_at = True, None
        for module in _trained_networks(pl_module):
            self._hooks.append(module.register_forward_pre_hook(self._mark_dirty(pl_module)))

    def _mark_dirty(self, pl_module):
        def hook(module, args):
            if self._dirty_at is None and pl_module.trainer.training:
                self._dirty_at = int(pl_module.iteration)

        return hook

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._dirty_at = None  # the iteration is complete
        # Any rank's signal stops all of them, at the same iteration.
        if not trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            return
        self.signal = self.signal or signal.SIGTERM  # another rank's signal
        self.saved = save_last(trainer)
        self.stopped_at = int(pl_module.iteration)
        trainer.should_stop = True

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not self._training or isinstance(exception, CheckpointWriteError | KeyboardInterrupt):
            return
        self._training = False
        iteration = int(pl_module.iteration)
        if self._dirty_at is not None and iteration == self._dirty_at:
            last = last_checkpoint_path(trainer)
            kept = f"{last} was left as it was" if last.is_file() else f"no {last.name} was saved"
            exception.add_note(
                f"i2i: the error came in the middle of iteration {iteration + 1}; {kept} (a "
                "half-done iteration is not a state to resume from)"
            )
            return
        if trainer.world_size > 1:  # saving is a collective: the other ranks may be gone
            return
        try:
            self.saved = save_last(trainer)
        except Exception as e:  # never hide the original error
            exception.add_note(f"i2i: could not save last.ckpt after this error: {e}")
            return
        # A note ends the traceback: the last lines say what was saved.
        exception.add_note(
            f"i2i: saved {self.saved} (iteration {iteration}, the last completed one) before "
            "this error; resume with --ckpt_path last"
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training = False
        for sig, previous in self._previous.items():
            try:
                signal.signal(sig, previous)
            except (ValueError, TypeError):
                pass
        self._previous.clear()
        self.teardown(trainer, pl_module, "fit")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()


def _trained_networks(pl_module: L.LightningModule) -> list[torch.nn.Module]:
    """The modules whose training forward starts changing the state (w_avg, optimizers)."""
    named = [getattr(pl_module, n, None) for n in ("generator", "discriminator")]
    named = [m for m in named if isinstance(m, torch.nn.Module)]
    if named:
        return named
    containers = (torch.nn.ModuleDict, torch.nn.ModuleList)
    children = [
        (f"{n}.{k}", c)
        for n, m in pl_module.named_children()
        for k, c in (m.named_children() if isinstance(m, containers) else [("", m)])
    ]
    return [m for n, m in children if "ema" not in n.lower()]


def save_last(trainer: L.Trainer) -> Path:
    """Write last.ckpt now, through the checkpoint callback when there is one, so that it stays
    the one `last.ckpt` (a save behind its back makes it write `last-v1.ckpt` next time)."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, LastAndBestCheckpoint):
        callback.save_last_now(trainer)
        return Path(callback.last_model_path)
    path = last_checkpoint_path(trainer)
    trainer.save_checkpoint(path)
    return path


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where `--ckpt_path last` looks: the ModelCheckpoint folder's last.ckpt."""
    callback = trainer.checkpoint_callback
    dirpath = getattr(callback, "dirpath", None) or Path(trainer.default_root_dir) / "checkpoints"
    return Path(dirpath) / LAST


class LastAndBestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `last.ckpt` is really the last state, and the only one.

    Lightning 2.6 writes last.ckpt only together with a new top-k checkpoint, so a run whose final
    validation is not its best would `--ckpt_path last` into the past. This one also writes it
    after every validation, at the end of training and when GracefulShutdown stops the run, and
    it never writes `last-v1.ckpt` beside an existing last.ckpt (the version counter is off).
    Its overrides decide which file is written when, which a CheckpointIO plugin (it writes the
    file it is handed) cannot; how each file is written is AtomicCheckpointIO's.
    """

    def __init__(self, *args, enable_version_counter: bool = False, **kwargs):
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)
        self._last_written_step = -1

    def _monitor_candidates(self, trainer: L.Trainer) -> dict[str, torch.Tensor]:
        # `{iteration}` in a filename: the task's count, which users see; Lightning's `{step}`
        # counts optimizer steps (two or three per GAN iteration).
        candidates = super()._monitor_candidates(trainer)
        iteration = getattr(trainer.lightning_module, "iteration", None)
        if isinstance(iteration, torch.Tensor | int):
            candidates["iteration"] = torch.tensor(int(iteration))
        return candidates

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step

    def save_last_now(self, trainer: L.Trainer) -> None:
        """Write last.ckpt for the current state, unless it already holds this step."""
        saved = self.save_last
        self.save_last = saved or True
        try:
            if self._last_written_step != trainer.global_step or not self.last_model_path:
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        finally:
            self.save_last = saved

    def _refresh_last(self, trainer: L.Trainer) -> None:
        if (
            self.save_last
            and not self._should_skip_saving_checkpoint(trainer)
            and self._last_written_step != trainer.global_step
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self._refresh_last(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._refresh_last(trainer)


class RunRecord(Callback):
    """Records the model's resolved config (task class, injected networks and their arguments)
    in every checkpoint under `i2i`, so that resuming with another task or size can name the
    difference (Lightning's `hyper_parameters` lack the injected networks)."""

    KEY = "i2i"

    def __init__(self, model_config: dict) -> None:
        self.model_config = model_config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[self.KEY] = {"model": self.model_config}
