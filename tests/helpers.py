"""Test-only callbacks, importable by `i2i` subprocesses started from the repository root."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.callbacks import Callback


def free_port() -> int:
    """A loopback port that nothing listens on (the socket that found it is closed): for a
    server or a process group to take, or for a connection that must be refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fork_gloo_ranks(fn: Callable[..., None], *args, world_size: int = 2) -> None:
    """Run `fn(rank, *args)` on `world_size` ranks of a gloo process group, each a process forked
    from this one: they start without importing torch or i2i again. An error in a rank is
    raised here."""
    mp.start_processes(
        _gloo_rank,
        args=(fn, world_size, free_port(), args),
        nprocs=world_size,
        join=True,
        start_method="fork",
    )


def _gloo_rank(rank: int, fn: Callable[..., None], world_size: int, port: int, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


def state_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RankDigest(Callback):
    """Writes, per rank, a digest of G_ema and its w_avg at the end of training."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        G_ema = pl_module.generator_ema
        record = {
            "draw": torch.randn(4).tolist(),  # the rank's training stream after its last step
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "g_ema": state_digest(G_ema),
            "w_avg": G_ema.w_avg.tolist(),
            "iteration": int(pl_module.iteration),
            "images_seen": int(pl_module.images_seen),
        }
        (Path(self.out_dir) / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class SampleLog(Callback):
    """Writes, per rank, the dataset index of every training sample the rank took."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.indices: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.indices += [int(i) for i in batch["index"]]

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        record = {"world_size": trainer.world_size, "indices": self.indices}
        (Path(self.out_dir) / f"samples{trainer.global_rank}.json").write_text(json.dumps(record))


class SignalAt(Callback):
    """Sends this process a signal after a given training iteration (as Ctrl-C or SLURM would)."""

    def __init__(self, iteration: int, signum: int = 15):  # SIGTERM; a plain int for the CLI
        self.iteration, self.signum = iteration, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if int(pl_module.iteration) == self.iteration:
            os.kill(os.getpid(), self.signum)


class TinyFeatures(torch.nn.Module):
    """A fixed random projection of pooled pixels: a stand-in for Inception in tests (no
    download). It receives images unchanged, as a custom feature module does."""

    def __init__(self, num_features: int = 16, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(3 * 4 * 4, num_features, generator=g))
        self.num_features = num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.float(), 4).flatten(1)
        return pooled @ self.projection


class Heartbeat(Callback):
    """Writes the last completed iteration to a file, and slows iterations down by `delay`
    seconds, so that a test can signal a subprocess in the middle of training."""

    def __init__(self, path: str, delay: float = 0.0):
        self.path, self.delay = path, delay

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        Path(self.path).write_text(str(int(pl_module.iteration)))
        time.sleep(self.delay)


class RaiseAt(Callback):
    """Raises in training iteration `iteration` (1-based): iterations 1 .. iteration - 1 are
    complete. `where`: "start" (before the iteration's step, as a failing data pipeline would)
    or "optimizer" (before its first optimizer step: the G forward has run)."""

    def __init__(self, iteration: int, where: str = "start"):
        self.iteration, self.where = iteration, where

    def _raise(self, pl_module, where: str) -> None:
        if where == self.where and int(pl_module.iteration) == self.iteration - 1:
            raise RuntimeError(f"test failure at the {where} of iteration {self.iteration}")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._raise(pl_module, "start")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._raise(pl_module, "optimizer")


class FullDisk(Callback):
    """Makes every checkpoint write fail as on a full disk (ENOSPC)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        from i2i.callbacks import AtomicCheckpointIO

        class FullDiskIO(AtomicCheckpointIO):
            def write(self, checkpoint, tmp) -> None:
                with open(tmp, "wb") as f:
                    f.write(b"partial")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        trainer.strategy.checkpoint_io = FullDiskIO()


class UserErrorOnRank(Callback):
    """Raises an error meant for the user (a RunError) on one rank only, at the start of
    training iteration `iteration` (1-based), as a bad file read by that rank would."""

    def __init__(self, rank: int = 1, iteration: int = 1):
        self.rank, self.iteration = rank, iteration

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        from i2i.errors import RunError

        if trainer.global_rank == self.rank and int(pl_module.iteration) == self.iteration - 1:
            raise RunError(f"test: a bad file read by rank {self.rank} only")


def _loud():
    from i2i.networks import CoModGenerator

    class LoudCoModGenerator(CoModGenerator):
        """CoModGenerator whose output is 16x larger, as an untrained 256 px one reaches about
        16: outputs far out of the image range."""

        def forward(self, *args, **kwargs):
            return 16 * super().forward(*args, **kwargs)

    return LoudCoModGenerator


LoudCoModGenerator = _loud()
