"""The stream: what every datamodule shares. Training data is an infinite, deterministic stream
of batches.

Batch number s of a run always holds the same samples, crops, flips and masks, whatever the number
of loader workers or processes: sample p of the global stream is image perm_e[p mod n] of epoch
e = p // n (a permutation seeded by (seed, e)), with its random augmentation and mask seeded by
(seed, p). Process r of W reads batch s as positions (s*W + r)*b ... + b from the run's first
position. The checkpoint records how many positions the run consumed, and a resumed run starts
the stream there, so it continues the exact sequence (Lightning alone restarts an interrupted
epoch from its first batch), also with another number of processes or batch size
(`i2i.data.elastic`).

Each training batch holds `batches_per_step` x `batch_size` samples per process: the task says
how many batches one training step consumes (CoModGAN: 2, the G step takes the first half and
the D step the second, so each has its own reals and masks, as in the official recipe). The CLI
sets the datamodule's `batches_per_step` from the task; left None, the loader asks the trainer's
task.
"""

from __future__ import annotations

import signal
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    Subset,
    default_collate,
    get_worker_info,
)

from i2i.data import batch as B
from i2i.data.elastic import Shape, StreamState, describe_change
from i2i.data.masks import MaskSource
from i2i.data.scan import Findings, scan_enabled
from i2i.errors import CorruptImageError
from i2i.seeding import numpy_rng, seeded_torch_cpu


class TrainStream(IterableDataset):
    """An endless stream of collated training batches for one process (see the module doc).

    Args:
        dataset: the map-style training dataset of batch-contract dicts.
        batch_size: samples per batch and process (all the batches of one step, e.g. the G
            half and the D half).
        masks: rng -> a mask (1, H, W), 1 = known, drawn per sample; None: no masks.
        keys: the sample keys kept in the batches.
        seed: seeds the order, the augmentation and the masks.
        rank: this process's rank.
        world_size: the number of processes.
        start_batch: the first batch this process yields.
        offset: the global stream position of batch 0 (where a resumed run starts).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,  # samples per batch and process (G half + D half)
        masks: MaskSource | None,
        keys: tuple[str, ...],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,  # the first batch this process yields
        offset: int = 0,  # the global stream position of batch 0 (where a resumed run starts)
    ):
        self.dataset, self.batch_size, self.masks, self.keys = dataset, batch_size, masks, keys
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.start_batch, self.offset = start_batch, offset
        self._perm_epoch, self._perm = -1, np.arange(0)

    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        # DataLoader takes batches from its workers in turn, so worker w makes batches w, w + W...
        step = self.start_batch + worker
        while True:
            yield self.batch(step)
            step += num_workers

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """This process's collated batch number `step` of the run.

        Args:
            step: the batch's number, counted from the run's start (`offset`).
        """
        first = self.offset + (step * self.world_size + self.rank) * self.batch_size
        return default_collate([self.sample(p) for p in range(first, first + self.batch_size)])

    def sample(self, position: int) -> dict[str, Any]:
        """The sample at a global stream position, with its augmentation and mask.

        Args:
            position: the position in the global stream (all processes).
        """
        return self.make_item(self.dataset_index(position), position)

    def dataset_index(self, position: int) -> int:
        """The dataset index of a stream position: a permutation per epoch, seeded by (seed,
        epoch) (the streaming shards order it by chunks instead:
        `i2i.data.shard_order.ShardStream`).

        Args:
            position: the position in the global stream.
        """
        epoch, k = divmod(position, len(self.dataset))
        if epoch != self._perm_epoch:
            self._perm = numpy_rng(self.seed, epoch).permutation(len(self.dataset))
            self._perm_epoch = epoch
        return int(self._perm[k])

    def make_item(self, index: int, position: int) -> dict[str, Any]:
        """A dataset sample with the crop, flip and mask of a stream position: decoded and
        transformed by the dataset's own code.

        Args:
            index: the dataset index.
            position: the stream position, which seeds the augmentation and the mask.

        Returns:
            The sample's `keys`, plus "mask" (1, H, W) with 1 = known when there are masks.
        """
        # Crops and flips draw from torch's RNG: seed it per sample, and leave the caller's alone.
        with seeded_torch_cpu(self.seed, position):
            item = self.dataset[index]
        item = {key: item[key] for key in self.keys if key in item}
        if self.masks is not None:
            item[B.MASK] = self.masks(numpy_rng(self.seed, 1, position))
        return item


class FixedMaskDataset(Dataset):
    """Validation samples with a mask FIXED per sample (seeded by its index), so that numbers
    compare across epochs and runs.

    Args:
        dataset: the validation dataset of batch-contract dicts.
        masks: the source of the masks, bound to the resolution (`MaskSource.fixed`: generated
            ones seeded by seed and the sample's "index", files by its position), or None.
        keys: the sample keys kept.
        seed: seeds the generated masks.
    """

    def __init__(
        self,
        dataset: Dataset,
        masks: MaskSource | None,
        keys: tuple[str, ...],
        seed: int = 0,
    ):
        self.dataset, self.masks, self.keys, self.seed = dataset, masks, keys, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.dataset[i]
        item = {key: item[key] for key in self.keys if key in item}
        if self.masks is not None:
            item[B.MASK] = self.masks.fixed(i, int(item[B.INDEX]), self.seed)
        return item


def ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave Ctrl-C and SIGTERM to the main process: a terminal, `timeout` or
    SLURM signals the whole process group, and a worker that died of it would turn the graceful
    stop (finish the iteration, save last.ckpt) into a crash. The main process ends them.

    Args:
        worker_id: the loader's worker number (DataLoader's worker_init_fn argument; unused).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class StreamDataModule(L.LightningDataModule):
    """The shared machinery of every i2i datamodule: the deterministic training stream, the fixed
    validation set and the loaders. A subclass says which keys its task needs and builds its
    train and validation datasets (map-style, returning dicts of the batch contract); tasks with
    masks also give the mask sources.

    Args:
        batch_size: samples per batch, per process and use (a step takes `batches_per_step`).
        val_batch_size: samples per validation batch.
        num_workers: loader worker processes (0: in the main process).
        seed: seeds the training stream and the validation masks.
    """

    keys: tuple[str, ...] = (B.IMAGE, B.INDEX)
    #: Batches of `batch_size` per training step, set from the task (see the module doc).
    batches_per_step: int | None = None

    def __init__(self, batch_size: int, val_batch_size: int, num_workers: int, seed: int):
        super().__init__()
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.seed = num_workers, seed
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        # Where the training stream stands: the checkpoint's record, then this run's start.
        self._resumed: StreamState | None = None
        self._started: StreamState | None = None

    # ---- what a subclass provides ------------------------------------------------------------

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """(train, val) map-style datasets of batch-contract dicts."""
        raise NotImplementedError

    def train_masks(self) -> MaskSource | None:
        """The training mask source, rng -> (1, H, W) with 1 = known; None: no masks."""
        return None

    def val_masks(self) -> MaskSource | None:
        """The validation masks, fixed per sample; None: no masks."""
        return None

    # ---- the machinery ----------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets once, check their files (unless I2I_SKIP_SCAN), fix the
        validation masks."""
        if self.train_dataset is not None:
            return
        train, val = self.build_datasets()
        if scan_enabled():
            check_files((train, val), type(self).__name__)
        self.train_dataset = train
        self.val_dataset = FixedMaskDataset(val, self.val_masks(), self.keys, seed=self.seed)

    def _batches_per_step(self) -> int:
        if self.batches_per_step is not None:
            return self.batches_per_step
        module = self.trainer.lightning_module if self.trainer is not None else None
        return int(getattr(module, "batches_per_step", 1))

    def _iteration(self) -> int:
        # A resumed run has restored the task's iteration counter before loaders are built.
        module = self.trainer.lightning_module if self.trainer is not None else None
        return int(getattr(module, "iteration", 0))

    # ---- elastic resume: the stream's record in checkpoints (i2i.data.elastic) ---------------

    def state_dict(self) -> dict[str, Any]:
        """Lightning saves this in every checkpoint: the stream positions consumed so far."""
        state = self._started
        if state is not None:
            iteration = self._iteration()
            state = StreamState(state.at(iteration), iteration, state.shape, state.layout)
        state = state or self._resumed
        return state.to_dict() if state is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning restores this from a checkpoint: the stream record a resumed run starts at."""
        path = getattr(self.trainer, "ckpt_path", None) if self.trainer is not None else None
        self._resumed = StreamState.from_dict(state_dict, str(path or "the checkpoint"))

    def _stream_start(self, shape: Shape) -> StreamState:
        """Where this run's stream starts: the checkpoint's record, with any shape."""
        iteration = self._iteration()
        if self._started is not None:  # loaders built again in the same run
            old = self._started
            return StreamState(old.at(iteration), iteration, shape, old.layout)
        if self._resumed is not None:
            old = self._resumed
            start = StreamState(old.at(iteration), iteration, shape, old.layout)
            if old.shape != shape:
                change = describe_change(old.shape, shape)
                note = self._consequences(old.shape, shape, old.layout)
                self._say(
                    f"resuming at iteration {iteration}, sample {start.samples} of the stream: "
                    f"{change}. {note}"
                )
            return start
        layout = (shape.world_size, shape.loader_batch)
        start = StreamState(iteration * shape.per_iteration, iteration, shape, layout)
        if iteration > 0:  # a checkpoint written before i2i recorded the stream
            self._say(
                f"resuming at iteration {iteration}: the checkpoint does not record how many "
                f"samples the run consumed (written before i2i recorded it, or with another "
                f"datamodule), so the stream continues at sample {start.samples}, assuming "
                f"the run had the same shape as now "
                f"({shape.world_size} processes of batch {shape.batch_size}); with another "
                "shape some samples of this epoch are repeated or skipped"
            )
        return start

    def _consequences(self, old: Shape, new: Shape, layout: tuple[int, int]) -> str:
        """What a change of shape means for training: the task says it (lr, EMA, lengths)."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        note = getattr(module, "shape_change_note", None)
        notes = [note(old.global_batch, new.global_batch) if callable(note) else ""]
        return " ".join(filter(None, [*notes, self.layout_note(layout, new)]))

    def layout_note(self, layout: tuple[int, int], shape: Shape) -> str:
        """What a shape other than the first run's means for reading (the shards: locality).

        Args:
            layout: the first run's (processes, loader batch).
            shape: this run's shape.

        Returns:
            A sentence, or "" (here: nothing changes).
        """
        return ""

    def _say(self, message: str) -> None:
        if self.trainer is None or self.trainer.global_rank == 0:
            print(f"i2i: {message}", flush=True)

    def train_dataloader(self) -> DataLoader:
        """The loader of this process's training stream, from where the run stands."""
        trainer = self.trainer
        rank = trainer.global_rank if trainer else 0
        world_size = trainer.world_size if trainer else 1
        shape = Shape(world_size, self.batch_size, self._batches_per_step())
        self._started = start = self._stream_start(shape)
        stream = self.train_stream(rank, world_size, offset=start.samples, layout=start.layout)
        return self._loader(stream, batch_size=None)

    def train_stream(
        self,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        offset: int = 0,
        layout: tuple[int, int] | None = None,
    ) -> TrainStream:
        """The training stream of one process.

        Args:
            rank: the process's rank.
            world_size: the number of processes.
            start_batch: the first batch it yields.
            offset: the stream position the run starts at.
            layout: the first run's (processes, loader batch), which orders the streaming
                shards; unused here.
        """
        return TrainStream(
            self.train_dataset,
            self._batches_per_step() * self.batch_size,
            self.train_masks(),
            self.keys,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            start_batch=start_batch,
            offset=offset,
        )

    def val_dataloader(self) -> DataLoader:
        """The loader of the fixed validation set, in order."""
        return self._loader(self.val_dataset, batch_size=self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        """The validation loader."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """The validation loader."""
        return self.val_dataloader()

    def _loader(self, dataset: Dataset, batch_size: int | None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # Its own generator: building a loader must not consume the global RNG, or a resumed
            # run would draw different latents than an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
            worker_init_fn=ignore_stop_signals if self.num_workers > 0 else None,
        )

    def sample_batch(self, n: int) -> dict[str, torch.Tensor]:
        """The first n validation samples, collated: the fixed batch of the sample grids.

        Args:
            n: how many (fewer when the validation set is smaller).
        """
        if self.val_dataset is None:
            self.setup("validate")
        return default_collate([self.val_dataset[i] for i in range(min(n, len(self.val_dataset)))])


def check_files(datasets: tuple[Dataset, ...], where: str) -> None:
    """Run the setup check (`scan`) of each dataset that has one and raise ONE error listing
    every problem (see `i2i.data.scan`); a Subset checks only its samples.

    Args:
        datasets: the datasets to check.
        where: the datamodule, named in the error.

    Raises:
        CorruptImageError: only unreadable files were found.
        ValueError: any other problem.
    """
    findings = Findings()
    for ds in datasets:
        indices = None
        if isinstance(ds, Subset):
            ds, indices = ds.dataset, list(ds.indices)
        if hasattr(ds, "scan"):
            ds.scan(findings, indices)
    if findings:
        error = CorruptImageError if findings.corrupt_only else ValueError
        raise error(findings.message(where))
