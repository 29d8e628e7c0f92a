"""The order in which training reads streaming shards: `ShardStream` is the project's
deterministic stream with an order that suits streaming: per epoch the chunks are
shuffled by (seed, epoch), samples inside each chunk by (seed, epoch, chunk), and process r of
W (all nodes' GPUs) takes the r-th contiguous W-th of that sequence, so each process reads about
1/W of the chunks and none shares a sample. Crops, flips and masks are seeded by the global
stream position as in `TrainStream`, so batch s holds the same samples, crops and masks whatever
the number of loader workers, and a resumed run continues the exact sequence. (LitData's own
shuffle depends on the number of loader workers and the batch size, and resumes from its
loader's state; the position-seeded order keeps the project's one resume mechanism.) Unpaired
(CycleGAN) shards stream each domain so, with orders of their own (`ShardUnpairedStream`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from i2i.data.stream import TrainStream
from i2i.data.unpaired import UnpairedTrainStream
from i2i.errors import DataError
from i2i.seeding import numpy_rng

SHARD_STREAM = 0x5A4D  # a key of the shard order's seeds, apart from the folder stream's


def epoch_order(
    chunk_sizes: Sequence[int],
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    domain: int | None = None,  # unpaired data: 0 (A) or 1 (B), each with orders of its own
) -> np.ndarray:
    """The shard indices process `rank` of `world_size` reads in `epoch`: the chunks shuffled by
    (seed, epoch), each chunk's samples by (seed, epoch, chunk), and the rank's contiguous
    share of that sequence (n // world_size samples; the last n mod world_size are left out
    of this epoch).

    Args:
        chunk_sizes: samples per chunk, in the shards' order.
        seed: the run's seed.
        epoch: the epoch.
        rank: the process's rank.
        world_size: the number of processes.
        domain: unpaired data: 0 (A) or 1 (B), each with orders of its own; None: paired.
    """
    sizes = np.asarray(chunk_sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    key = (seed, SHARD_STREAM) if domain is None else (seed, SHARD_STREAM + 1 + domain)
    chunks = numpy_rng(*key, epoch).permutation(len(sizes))
    seq = np.concatenate(
        [starts[c] + numpy_rng(*key, epoch, c).permutation(sizes[c]) for c in chunks]
    )
    share = len(seq) // world_size
    return seq[rank * share : (rank + 1) * share]


class ShardStream(TrainStream):
    """The training stream over shards: `TrainStream`'s batching, worker split and
    position-seeded crops and masks, with the order of `epoch_order` for the run's first
    shape (`layout`: processes, loader batch), which a resumed run of any shape keeps, so that it
    reads the same samples at the same positions (`i2i.data.elastic`).

    Args:
        *args: `TrainStream`'s arguments.
        chunk_sizes: samples per chunk of the training shards.
        layout: the first run's (processes, loader batch); None: this stream's
            (world_size, batch_size).
        **kwargs: `TrainStream`'s arguments.

    Raises:
        DataError: fewer samples than processes.
    """

    def __init__(
        self,
        *args: Any,
        chunk_sizes: Sequence[int],
        layout: tuple[int, int] | None = None,  # None: this stream's (world_size, batch_size)
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.chunk_sizes = list(chunk_sizes)
        self.layout = tuple(layout or (self.world_size, self.batch_size))
        self.per_rank = sum(self.chunk_sizes) // self.layout[0]
        if self.per_rank == 0:
            raise DataError(
                f"{sum(self.chunk_sizes)} training samples cannot feed {self.layout[0]} "
                "processes; shard more images or use fewer devices"
            )

    def dataset_index(self, position: int) -> int:
        """The shard index of a stream position, in the layout's order.

        Args:
            position: the position in the global stream.
        """
        rank, q = layout_sample(position, *self.layout)
        epoch, k = divmod(q, self.per_rank)
        if epoch != self._perm_epoch:  # the whole epoch: any process may read any share
            self._perm = epoch_order(self.chunk_sizes, self.seed, epoch)
            self._perm_epoch = epoch
        return int(self._perm[rank * self.per_rank + k])


def layout_sample(position: int, world_size: int, batch_size: int) -> tuple[int, int]:
    """(rank, q): the process of the layout that a global stream position belongs to, and
    which of its own samples it is (its q-th).

    Args:
        position: (step * world_size + rank) * batch_size + j.
        world_size: the layout's processes.
        batch_size: the layout's loader batch.
    """
    rank = position // batch_size % world_size
    return rank, position // batch_size // world_size * batch_size + position % batch_size


class ShardUnpairedStream(UnpairedTrainStream):
    """The unpaired training stream over shards: `UnpairedTrainStream`'s batches, crops and
    flips, with each domain's order from `epoch_order` (its own key, so that equal chunk
    sizes do not pair A and B up) and each process of the layout reading its own share of each
    domain (see `ShardStream`).

    Args:
        *args: `UnpairedTrainStream`'s arguments.
        chunk_sizes: per domain (A, B), samples per chunk of its training shards.
        layout: the first run's (processes, loader batch); None: this stream's.
        **kwargs: `UnpairedTrainStream`'s arguments.

    Raises:
        DataError: a domain with fewer samples than processes.
    """

    def __init__(
        self,
        *args: Any,
        chunk_sizes: Sequence[Sequence[int]],
        layout: tuple[int, int] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.chunk_sizes = [list(sizes) for sizes in chunk_sizes]
        self.layout = tuple(layout or (self.world_size, self.batch_size))
        self.per_rank = [sum(sizes) // self.layout[0] for sizes in self.chunk_sizes]
        if min(self.per_rank) == 0:
            raise DataError(
                f"domains of {[sum(s) for s in self.chunk_sizes]} training images cannot feed "
                f"{self.layout[0]} processes; shard more images or use fewer devices"
            )

    def index(self, domain: int, position: int) -> int:
        """A domain's shard index at a stream position, in the layout's order.

        Args:
            domain: 0 (A) or 1 (B).
            position: the position in the global stream.
        """
        rank, q = layout_sample(position, *self.layout)
        epoch, k = divmod(q, self.per_rank[domain])
        if self._perms[domain][0] != epoch:
            order = epoch_order(self.chunk_sizes[domain], self.seed, epoch, domain=domain)
            self._perms[domain] = (epoch, order)
        return int(self._perms[domain][1][rank * self.per_rank[domain] + k])
