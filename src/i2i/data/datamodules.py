"""Datamodules. Training data is an infinite, deterministic stream of batches.

Batch number s of a run always holds the same samples, crops, flips and masks, whatever the number
of loader workers or processes: sample p of the global stream is image perm_e[p mod n] of epoch
e = p // n (a permutation seeded by (seed, e)), with its random augmentation and mask seeded by
(seed, p). A resumed run starts the stream at the iteration it stopped at, so it continues the
exact sequence (Lightning alone restarts an interrupted epoch from its first batch).

Each training batch holds 2 x `batch_size` samples per process: the G step takes the first half
and the D step the second, so each has its own reals and masks, as in the official recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate, get_worker_info

from i2i.data import batch as B
from i2i.data.datasets import (
    ImageFolderDataset,
    check_resolution,
    find_split_folders,
    list_images,
    split_files,
)
from i2i.data.masks import MaskFolder, RandomMaskGenerator
from i2i.data.synthetic import ShapesDataset

MaskSource = Callable[[np.random.Generator], torch.Tensor]


class FolderMasks:
    """Draws training masks from a MaskFolder with the stream's rng."""

    def __init__(self, folder: MaskFolder):
        self.folder = folder

    def __call__(self, rng: np.random.Generator) -> torch.Tensor:
        return self.folder[int(rng.integers(len(self.folder)))]


class TrainStream(IterableDataset):
    """An endless stream of collated training batches for one process (see the module doc)."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,  # samples per batch and process (G half + D half)
        masks: MaskSource | None,
        keys: tuple[str, ...],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ):
        self.dataset, self.batch_size, self.masks, self.keys = dataset, batch_size, masks, keys
        self.seed, self.rank, self.world_size, self.start_batch = (
            seed,
            rank,
            world_size,
            start_batch,
        )
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
        first = (step * self.world_size + self.rank) * self.batch_size
        return default_collate([self.sample(p) for p in range(first, first + self.batch_size)])

    def sample(self, position: int) -> dict[str, Any]:
        epoch, k = divmod(position, len(self.dataset))
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
            self._perm_epoch = epoch
        # Crops and flips draw from torch's RNG: seed it per sample, and leave the caller's alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, position)) & 0x7FFF_FFFF)
            item = self.dataset[int(self._perm[k])]
        item = {key: item[key] for key in self.keys if key in item}
        if self.masks is not None:
            item[B.MASK] = self.masks(np.random.default_rng([self.seed, 1, position]))
        return item


class FixedMaskDataset(Dataset):
    """Validation samples with a mask FIXED per sample (seeded by its index), so that numbers
    compare across epochs and runs."""

    def __init__(
        self,
        dataset: Dataset,
        masks: RandomMaskGenerator | MaskFolder | None,
        keys: tuple[str, ...],
        seed: int = 0,
    ):
        self.dataset, self.masks, self.keys, self.seed = dataset, masks, keys, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.dataset[i]
        item = {key: item[key] for key in self.keys if key in item}
        if isinstance(self.masks, MaskFolder):
            item[B.MASK] = self.masks[i % len(self.masks)]
        elif self.masks is not None:
            item[B.MASK] = self.masks.sample(self.seed * 1_000_003 + int(item[B.INDEX]))
        return item


class InpaintingDataModule(L.LightningDataModule):
    """Any folder of images (recursive; jpg/png/webp/bmp; grayscale and RGBA converted), or the
    embedded procedural shapes when `data_dir` is None. Masks: the official free-form generator,
    or mask files with an explicit polarity."""

    def __init__(
        self,
        data_dir: str | None = None,  # None: the embedded shapes data, no download
        resolution: int | tuple[int, int] = 256,  # (H, W) or H = W; powers of two
        batch_size: int = 4,  # per process and step, for G and for D (the loader yields 2x)
        val_batch_size: int = 8,
        num_workers: int = 2,
        val_fraction: float = 0.05,  # used when data_dir has no train/ and val/ sub-folders
        max_val_images: int | None = 2000,  # cap on validation images (None = all)
        hflip: bool = True,
        hole_range: tuple[float, float] = (0.0, 1.0),
        mask_variant: str = "large",  # the official masks; "small": MAT's lighter variant
        mask_dir: str | None = None,  # training masks from files instead of the generator
        val_mask_dir: str | None = None,  # validation masks from files (index i -> file i mod n)
        mask_polarity: str | None = None,  # required with mask files: white_is_known|white_is_hole
        on_corrupt: str = "skip",  # a corrupt image: "skip" with a warning naming it, or "raise"
        small_images: str = "error",  # an image smaller than the resolution: "error" | "upscale"
        synthetic_length: int = 4096,  # images in the embedded training set
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.resolution = check_resolution(resolution)
        if (mask_dir or val_mask_dir) and mask_polarity is None:
            raise ValueError(
                "mask_dir/val_mask_dir need mask_polarity: 'white_is_hole' (NVIDIA irregular "
                "masks, DeepFill) or 'white_is_known' (CoModGAN, MAT)"
            )
        self.mask_generator = RandomMaskGenerator(self.resolution, tuple(hole_range), mask_variant)
        self.keys = (B.IMAGE, B.INDEX)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None

    def _mask_folder(self, root: str) -> MaskFolder:
        return MaskFolder(root, polarity=self.hparams.mask_polarity, size=self.resolution)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if hp.data_dir is None:
            train = ShapesDataset(self.resolution, length=hp.synthetic_length, seed=hp.seed)
            val = ShapesDataset(self.resolution, length=hp.max_val_images or 256, seed=hp.seed + 1)
        else:
            root = Path(hp.data_dir)
            folders = find_split_folders(root)
            if folders is not None:
                train_files, val_files = list_images(folders[0]), list_images(folders[1])
            else:
                train_files, val_files = split_files(list_images(root), hp.val_fraction, hp.seed)
            if hp.max_val_images is not None:
                val_files = val_files[: hp.max_val_images]
            common = dict(on_corrupt=hp.on_corrupt, small_images=hp.small_images)
            train = ImageFolderDataset(
                root, self.resolution, files=train_files, train=True, hflip=hp.hflip, **common
            )
            val = ImageFolderDataset(
                root, self.resolution, files=val_files, train=False, hflip=False, **common
            )
        self.train_dataset = train
        val_masks = self._mask_folder(hp.val_mask_dir) if hp.val_mask_dir else self.mask_generator
        self.val_dataset = FixedMaskDataset(val, val_masks, self.keys, seed=hp.seed)

    def _start_batch(self) -> int:
        # A resumed run has restored the task's iteration counter before loaders are built.
        module = self.trainer.lightning_module if self.trainer is not None else None
        return int(getattr(module, "iteration", 0))

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        masks = FolderMasks(self._mask_folder(hp.mask_dir)) if hp.mask_dir else self.mask_generator
        trainer = self.trainer
        stream = TrainStream(
            self.train_dataset, 2 * hp.batch_size, masks, self.keys, seed=hp.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            start_batch=self._start_batch(),
        )  # fmt: skip
        return self._loader(stream, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, batch_size=self.hparams.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def _loader(self, dataset: Dataset, batch_size: int | None) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            # Its own generator: building a loader must not consume the global RNG, or a resumed
            # run would draw different latents than an uninterrupted one.
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def sample_batch(self, n: int) -> dict[str, torch.Tensor]:
        """The first n validation samples, collated: the fixed batch of the sample grids."""
        if self.val_dataset is None:
            self.setup("validate")
        return default_collate([self.val_dataset[i] for i in range(min(n, len(self.val_dataset)))])
