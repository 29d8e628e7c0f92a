"""Unpaired data for CycleGAN: two image domains drawn independently.

Batches are {"image_a", "image_b", "index"} (the batch contract). In training, position p of the
deterministic stream holds image permA_e[p mod n_A] of domain A (e = p // n_A, a permutation
seeded by (seed, 0, e)) and image permB_f[p mod n_B] of domain B (f = p // n_B, seeded by
(seed, 1, f)): each domain runs through its own epochs, so A and B are drawn independently and
never pair up in a fixed way, and a resumed run continues the exact sequence, with any number of
processes and batch size (see `i2i.data.stream`). Crops and flips are seeded per position.

Geometry as the official code (`--preprocess resize_and_crop`): training images are resized to
`load_size` x `load_size` (aspect ratio ignored, bicubic), then a random `resolution` crop is
taken and flipped with probability 1/2; evaluation images are resized to `resolution` (the
official test options set load_size = crop_size), no crop, no flip.

Layouts:
- `UnpairedDataModule` reads the CycleGAN datasets' layout, ``root/trainA``,
  ``root/trainB``, ``root/testA``, ``root/testB`` (any image files, any sub-folder depth), and
  downloads an official archive (horse2zebra, ...) when `dataset` names one.
- ``root: null`` uses the embedded shapes scenes: domain A the photos, domain B edge maps as
  3-channel images (white lines on black), from scenes of a different seed, so no training photo
  has its own edge map in B. The evaluation set is paired (the edge map of the same scene) so
  that a translation can also be compared with its truth.

The evaluation set holds max(n_A, n_B) samples: sample i is A[i mod n_A] with B[i mod n_B];
`val_sizes` = (n_A, n_B) tells a metric which of them are repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from i2i.data import batch as B
from i2i.data.crop import CropPlan, apply_crop, check_resolution, crop_window
from i2i.data.datasets import (
    FileDataset,
    image_to_tensor,
    load_image,
    load_skipping_corrupt,
    scan_headers,
)
from i2i.data.download import CYCLEGAN_DATASETS, ensure_cyclegan
from i2i.data.folders import list_images
from i2i.data.image_options import FLIPS, ON_CORRUPT, TRAIN_CROPS, ImageOptions, take_images
from i2i.data.scan import Findings
from i2i.data.stream import StreamDataModule, TrainStream
from i2i.errors import DataError
from i2i.seeding import numpy_rng, seeded_torch_cpu


class DomainFolder(FileDataset):
    """The images of one domain as (3, H, W) tensors in [-1, 1], resized as the official code:
    training resizes to a `load_size` square, then crops and flips; evaluation resizes to the
    resolution.

    Args:
        files: the domain's image files.
        resolution: the output (crop) size (H, W).
        load_size: training resizes to this square first (at least the resolution's sides);
            None: to the resolution, no crop.
        train: random crop and flip; False: resize to the resolution only.
        images: resize, crop, filter, flips (in training only) and what small or unreadable
            files do (`ImageOptions`; a dataset refuses an option it cannot honour).
        where: the domain's folder, named in messages.

    Raises:
        DataError: no files.
    """

    def __init__(
        self,
        files: Sequence[Path],
        resolution: tuple[int, int],  # the output (crop) size
        load_size: int | None = 286,  # train: resize to this square first (None: resolution)
        train: bool = True,  # random crop and flip; False: resize to the resolution only
        images: ImageOptions = ImageOptions(),  # reads train_crop, hflip and on_corrupt
        where: str = "the domain folder",
    ):
        if not files:
            raise DataError(f"{where} holds no images")
        self.files, self.resolution, self.where = [Path(f) for f in files], resolution, where
        # Plain attributes: a shard folder's datasets.json stores them, and reads them back.
        self.load_size, self.train, self.crop = load_size, train, images.train_crop
        self.hflip, self.on_corrupt = images.hflip, images.on_corrupt
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> torch.Tensor:
        """File i, resized (bicubic, antialiased), cropped and flipped: (3, H, W) in [-1, 1].

        Args:
            i: the file's index.

        Raises:
            CorruptImageError: the file cannot be decoded.
        """
        x = tv_tensors.Image(image_to_tensor(load_image(self.files[i], open_file=self.open_file)))
        th, tw = self.resolution
        plan, flip = CropPlan((th, tw), 0, 0, th, tw), False
        if self.train and self.load_size is not None:
            resized = (max(self.load_size, th), max(self.load_size, tw))
            plan = crop_window(resized, (th, tw), self.crop == "random")
            flip = self.hflip and torch.rand(()).item() < 0.5
        return apply_crop(plan, flip, x)[0].clamp_(-1, 1)  # bicubic overshoots

    def __getitem__(self, i: int) -> torch.Tensor:
        _, image = load_skipping_corrupt(
            i,
            len(self.files),
            self.load,
            self._bad,
            self.on_corrupt,
            describe=lambda k: str(self.files[k]),
            where=self.where,
        )
        return image

    def scan(self, findings: Findings, indices: Sequence[int] | None = None) -> None:
        """Headers checked at setup: unreadable files are dropped (skip) or reported (raise).

        Args:
            findings: where problems are collected, to be raised together.
            indices: unused: every file is checked.
        """
        sizes = scan_headers(self.files, self.on_corrupt, findings, self.where)
        self.files = [f for f in self.files if f in sizes]


class ShapesDomain(Dataset):
    """One domain of the embedded shapes scenes: "photo" or "edges" (as 3-channel images);
    `domain[i]` is (3, H, W) in [-1, 1] (edges: +1 on the lines, -1 elsewhere).

    Args:
        domain: "photo" or "edges"; any other value is read as "edges".
        resolution: (H, W).
        length: the number of scenes.
        seed: seeds the scenes.
    """

    def __init__(self, domain: str, resolution: tuple[int, int], length: int, seed: int):
        from i2i.data.synthetic import ShapesDataset  # the demo's data only: imported here

        self.scenes, self.domain = ShapesDataset(resolution, length=length, seed=seed), domain

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> torch.Tensor:
        item = self.scenes[i]
        if self.domain == "photo":
            return item[B.IMAGE]
        return item[B.EDGES].expand(3, -1, -1).contiguous()


class UnpairedTrainStream(TrainStream):
    """An endless stream of collated unpaired batches for one process (see the module doc): the
    training stream's batching and worker split, with two domains drawn independently.
    Samples are {"image_a", "image_b": (3, H, W) in [-1, 1], "index": the stream position}.

    Args:
        domain_a: the A images.
        domain_b: the B images.
        batch_size: samples per batch and process.
        seed: seeds each domain's order and the augmentation.
        rank: this process's rank.
        world_size: the number of processes.
        start_batch: the first batch this process yields.
        offset: the global stream position of batch 0 (see `TrainStream`).
    """

    def __init__(
        self,
        domain_a: Dataset,
        domain_b: Dataset,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        offset: int = 0,  # the global stream position of batch 0 (see TrainStream)
    ):
        self.domains, self.batch_size, self.seed = (domain_a, domain_b), batch_size, seed
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch
        self.offset = offset
        self._perms: list[tuple[int, np.ndarray]] = [(-1, np.arange(0)), (-1, np.arange(0))]

    def index(self, domain: int, position: int) -> int:
        """A domain's dataset index at a stream position: a permutation per epoch of that
        domain, seeded by (seed, domain, epoch).

        Args:
            domain: 0 (A) or 1 (B).
            position: the position in the global stream.
        """
        n = len(self.domains[domain])
        epoch, k = divmod(position, n)
        if self._perms[domain][0] != epoch:
            perm = numpy_rng(self.seed, domain, epoch).permutation(n)
            self._perms[domain] = (epoch, perm)
        return int(self._perms[domain][1][k])

    def sample(self, position: int) -> dict[str, Any]:
        """The A and B images at a stream position, their augmentation seeded by it.

        Args:
            position: the position in the global stream.
        """
        a, b = self.index(0, position), self.index(1, position)
        with seeded_torch_cpu(self.seed, position):
            image_a = self.domains[0][a]
            image_b = self.domains[1][b]
        return {B.IMAGE_A: image_a, B.IMAGE_B: image_b, B.INDEX: position}


class UnpairedEvalDataset(Dataset):
    """Sample i: {"image_a": A[i mod n_A], "image_b": B[i mod n_B], "index": i}, for
    i < max(n_A, n_B).

    Args:
        domain_a: the A images.
        domain_b: the B images.
    """

    def __init__(self, domain_a: Dataset, domain_b: Dataset):
        self.domain_a, self.domain_b = domain_a, domain_b

    @property
    def sizes(self) -> tuple[int, int]:
        """(n_A, n_B)."""
        return len(self.domain_a), len(self.domain_b)

    def __len__(self) -> int:
        return max(self.sizes)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n_a, n_b = self.sizes
        return {B.IMAGE_A: self.domain_a[i % n_a], B.IMAGE_B: self.domain_b[i % n_b], B.INDEX: i}

    def scan(self, findings: Findings, indices: Sequence[int] | None = None) -> None:
        """Check both domains' files at setup (those that can be checked).

        Args:
            findings: where problems are collected, to be raised together.
            indices: unused: every file of both domains is checked.
        """
        for domain in (self.domain_a, self.domain_b):
            if hasattr(domain, "scan"):
                domain.scan(findings)


class UnpairedDataModule(StreamDataModule):
    """Two domains, A and B, for CycleGAN: a folder in the CycleGAN layout (root/trainA, trainB,
    testA, testB), an official archive (`dataset`), or the embedded shapes (root: null).
    Batches: "image_a" and "image_b" (N, 3, H, W) in [-1, 1], and "index".

    Args:
        root: the folder holding trainA/ trainB/ testA/ testB/; None: the embedded shapes
            (photos and their edges), or data/<dataset> with `dataset`.
        dataset: an official archive (horse2zebra, ...: `CYCLEGAN_DATASETS`) to download into
            root's parent when root lacks the folders; root must then end in that name. None:
            none.
        download: with `dataset`: fetch the archive when the folders are absent.
        url: a mirror of the archive; None: the official CycleGAN URL.
        resolution: the crop (training) and evaluation size.
        load_size: training resizes to this square, then crops (the official recipe); None:
            resize to the resolution, no crop.
        images: resize, crop, filter, flips (in training only) and what small or unreadable
            files do (`ImageOptions`; a dataset refuses an option it cannot honour).
        batch_size: samples per batch and process (the paper: 1).
        val_batch_size: samples per evaluation batch.
        num_workers: loader worker processes.
        max_val_images: at most this many evaluation images per domain; None: all.
        synthetic_length: embedded data: training scenes per domain.
        seed: seeds the stream, the permutations and the augmentation.

    Raises:
        DataError: an unknown crop, dataset or option, or a load_size under the resolution.
    """

    keys = (B.IMAGE_A, B.IMAGE_B, B.INDEX)
    # Geometry is the official recipe's (a load_size square, then the crop): no cover-resize.
    IMAGE_CHOICES = {"train_crop": TRAIN_CROPS, "hflip": FLIPS, "on_corrupt": ON_CORRUPT}
    IMAGE_OLD_NAMES = {"train_crop": "crop"}  # its argument's name before `images`

    def __init__(
        self,
        root: str | None = None,  # holds trainA/ trainB/ testA/ testB/; None: embedded shapes
        dataset: str | None = None,  # an official archive to download into root's parent when
        # root lacks the folders (horse2zebra, ...); root must then end in that name
        download: bool = True,  # with `dataset`: fetch the archive when the folders are absent
        url: str | None = None,  # a mirror of the archive; None: the official CycleGAN URL
        resolution: int | tuple[int, int] = 256,  # the crop (training) and evaluation size
        load_size: int | None = 286,  # training: resize to this square, then crop (official)
        images: ImageOptions = ImageOptions(),  # training crop and flips (official), bad files
        batch_size: int = 1,  # per process (the paper: 1)
        val_batch_size: int = 8,
        num_workers: int = 2,
        max_val_images: int | None = None,  # cap per domain on evaluation images (None: all)
        synthetic_length: int = 1024,  # embedded data: training scenes per domain
        seed: int = 0,  # stream, permutation and augmentation seed
    ):
        super().__init__(batch_size, val_batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.resolution = check_resolution(resolution)
        self.images = take_images(self, images)
        if load_size is not None and load_size < max(self.resolution):
            raise DataError(
                f"load_size {load_size} is smaller than the resolution {self.resolution}: "
                "images are resized to load_size and then cropped to the resolution"
            )
        if dataset is not None and dataset not in CYCLEGAN_DATASETS:
            raise DataError(f"unknown dataset {dataset!r}; known: {sorted(CYCLEGAN_DATASETS)}")
        if dataset is not None and root is None:
            self.hparams.root = f"data/{dataset}"

    @property
    def val_sizes(self) -> tuple[int, int]:
        """(n_A, n_B) of the evaluation set: its samples from max(n_A, n_B) on are repeats."""
        if self.val_dataset is None:
            self.setup("validate")
        return self.val_dataset.dataset.sizes

    def folder(self) -> Path:
        """root, downloading the archive first when `dataset` names one and root lacks it."""
        hp = self.hparams
        root = Path(hp.root)
        if all((root / split).is_dir() for split in ("trainA", "trainB", "testA", "testB")):
            return root
        if hp.dataset is None:
            raise FileNotFoundError(
                f"{root} must hold trainA/, trainB/, testA/ and testB/ folders of images (the "
                "CycleGAN layout); or set dataset: horse2zebra (or another official archive) to "
                "download one"
            )
        if root.name != hp.dataset:  # the archive always extracts to a folder named so
            info = CYCLEGAN_DATASETS[hp.dataset]
            raise FileNotFoundError(
                f"{root} has no trainA/ trainB/ testA/ testB/ folders. Download "
                f"{hp.url or info.url} (~{info.approx_size_mb:.0f} MB), extract it and move the "
                f"folders of {hp.dataset}/ into {root}; or set root to a path ending in "
                f"'{hp.dataset}' so that download=True can place them."
            )
        return ensure_cyclegan(hp.dataset, root.parent, download=hp.download, url=hp.url)

    def prepare_data(self) -> None:
        """Download the archive when `dataset` names one and root lacks it."""
        # Lightning calls this once per node before setup(): the download happens here, once.
        if self.hparams.root is not None:
            self.folder()

    def domains(self, train: bool) -> tuple[Dataset, Dataset]:
        """The A and B datasets of one split: the folder's trainA/trainB or testA/testB (capped
        by max_val_images for evaluation), or the embedded shapes (photo and edges).

        Args:
            train: the training split; False: the evaluation split.
        """
        hp = self.hparams
        if hp.root is None:
            if train:
                return (
                    ShapesDomain("photo", self.resolution, hp.synthetic_length, hp.seed),
                    ShapesDomain("edges", self.resolution, hp.synthetic_length, hp.seed + 2),
                )
            n = hp.max_val_images or 64
            return (
                ShapesDomain("photo", self.resolution, n, hp.seed + 1),
                ShapesDomain("edges", self.resolution, n, hp.seed + 1),
            )
        folder = self.folder()
        out = []
        for side in ("A", "B"):
            where = folder / f"{'train' if train else 'test'}{side}"
            files = list_images(where)
            if not train and hp.max_val_images is not None:
                files = files[: hp.max_val_images]
            out.append(
                DomainFolder(
                    files,
                    self.resolution,
                    hp.load_size,
                    train=train,
                    images=self.images,
                    where=str(where),
                )
            )
        return out[0], out[1]

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """(train, val) as `UnpairedEvalDataset`s of the two domains."""
        return UnpairedEvalDataset(*self.domains(train=True)), UnpairedEvalDataset(
            *self.domains(train=False)
        )

    def train_stream(
        self,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        offset: int = 0,
        layout: tuple[int, int] | None = None,
    ) -> UnpairedTrainStream:
        """The unpaired training stream of one process.

        Args:
            rank: the process's rank.
            world_size: the number of processes.
            start_batch: the first batch it yields.
            offset: the stream position the run starts at.
            layout: unused here (the streaming shards' order).
        """
        train = self.train_dataset
        return UnpairedTrainStream(
            train.domain_a,
            train.domain_b,
            self._batches_per_step() * self.batch_size,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            start_batch=start_batch,
            offset=offset,
        )
