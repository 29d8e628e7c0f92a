"""Datamodules for edges -> photo: batches of {"image", "edges", "index"} (the batch contract).

- `PairedDataModule`: your own pairs, either pix2pix side-by-side files or two folders.
- `Edges2ShoesDataModule`, `Edges2HandbagsDataModule`: the pix2pix archives
  (``root/train/*.jpg``, ``root/val/*.jpg``; 256x512 JPEGs, edges LEFT, photo RIGHT: AtoB),
  downloaded on first use when ``download=True`` (2 GB and 8 GB).
- `EdgesFromPhotosDataModule`: any photo folder, edges computed with Canny.
- `FacadesDataModule`, `CityscapesPix2PixDataModule`: pix2pix's labels -> photo
  archives (photo LEFT, colour label map RIGHT: BtoA). The label map is an image condition, 3
  channels as it is in the file (``edges_channels`` is 3), as pix2pix feeds it.

``edges_channels`` picks the condition: 1 (default) = the grey edge map, +1 on the lines; 3 = the
RGB condition image as it is in the file, in [-1, 1] (the official CoModGAN choice). The
generator's and discriminator's ``cond_channels`` must equal it (``.cond_channels`` here).
``images.resample`` picks the photo's resize filter ("bicubic_antialias" or the official tool's
"pil_bilinear"); the pix2pix archives are 256 px, so at 256 nothing is resized.

The training stream, validation set and loaders come from `StreamDataModule`; the pair
geometry (one crop and one flip for both halves) from `i2i.data.paired`. Constructor
arguments are plain types and the `images` group, so a LightningCLI YAML can set every one.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from i2i.data import batch as B
from i2i.data.batch import EDGES_CHANNELS
from i2i.data.crop import check_resolution
from i2i.data.datasets import check_choice
from i2i.data.download import PIX2PIX_DATASETS, ensure_pix2pix
from i2i.data.edge_maps import EDGE_POLARITIES, check_edge_maps, check_label_images
from i2i.data.folders import list_images, split_image_folder
from i2i.data.image_options import (
    FLIPS,
    ON_CORRUPT,
    RESAMPLES,
    SMALL_IMAGES,
    ImageOptions,
    take_images,
)
from i2i.data.paired import CannyEdgesDataset, SideBySideDataset, TwoFolderDataset
from i2i.data.pairing import DIRECTIONS, _two_folder_pairs
from i2i.data.stream import StreamDataModule
from i2i.errors import DataError

LAYOUTS = ("side_by_side", "two_folders")


class _EdgesDataModule(StreamDataModule):
    """Shared by the edges -> photo datamodules: the keys and argument checks."""

    keys = (B.IMAGE, B.EDGES, B.INDEX)
    # Pairs are cover-resized and cropped at random in training (one plan for both halves).
    IMAGE_CHOICES = {
        "hflip": FLIPS,
        "on_corrupt": ON_CORRUPT,
        "small_images": SMALL_IMAGES,
        "resample": RESAMPLES,
    }

    def _check_common(self, resolution, images: ImageOptions) -> tuple[int, int]:
        self.images = take_images(self, images)
        hp = self.hparams
        channels = hp.get("edges_channels", 1)
        if channels not in EDGES_CHANNELS:
            raise DataError(f"edges_channels must be one of {EDGES_CHANNELS}, got {channels!r}")
        return check_resolution(resolution)

    @property
    def cond_channels(self) -> int:
        """Channels of the "edges" condition: the networks' cond_channels must match."""
        return int(self.hparams.get("edges_channels", 1))

    def _side_by_side(
        self, train_root: Path, val_root: Path, train_files, val_files, **kwargs
    ) -> tuple[SideBySideDataset, SideBySideDataset]:
        """Train (random crop, flips) and val (centre crop) datasets of A|B files."""
        hp, images = self.hparams, self.images
        common = dict(edges_channels=hp.edges_channels, **kwargs)
        train = SideBySideDataset(
            train_root, self.resolution, train_files, hp.direction, True, images=images, **common
        )
        val = SideBySideDataset(
            val_root,
            self.resolution,
            val_files,
            hp.direction,
            False,
            images=images.for_validation(),
            **common,
        )
        return train, val


class PairedDataModule(_EdgesDataModule):
    """Your own edges -> photo pairs: pix2pix side-by-side files, or two folders of files
    matched by name. Splits: train/ and val/ sub-folders when present, else a seeded split.

    Args:
        data_dir: the dataset folder (see layout).
        layout: "side_by_side": A|B files; "two_folders": the folders a_subdir and b_subdir.
        direction: "AtoB": A (the left half, or a_subdir) is the edges and B the photo; "BtoA":
            swapped.
        resolution: (H, W) or H = W; powers of two.
        batch_size: samples per batch, per process and use (CoModGAN: G and D each; see
            `batches_per_step`).
        val_batch_size: samples per validation batch.
        num_workers: loader worker processes.
        val_fraction: the share held out when there are no train/ and val/ folders.
        max_val_images: at most this many validation pairs; None: all.
        a_subdir: two_folders: the folder of the A side (edges when AtoB).
        b_subdir: two_folders: the folder of the B side (photos when AtoB).
        edge_polarity: "black_on_white" (pix2pix edges) or "white_on_black".
        check_edges: stop when the validation edge maps look inverted, warn when they look
            like photos.
        edges_channels: 1: the grey edge map, +1 on the lines; 3: the RGB condition as it is.
        seed: seeds the split, the shuffling and the augmentation.

    Raises:
        DataError: an unknown layout, direction, edge_polarity, edges_channels or option.
    """

    def __init__(
        self,
        data_dir: str,  # the dataset folder (see layout)
        layout: str = "side_by_side",  # "side_by_side": A|B files; "two_folders": A/ and B/
        direction: str = "AtoB",  # AtoB: A (left half / a_subdir) = edges, B = photo; BtoA: swap
        resolution: int | tuple[int, int] = 256,  # (H, W) or H = W; powers of two
        batch_size: int = 4,  # per process, per use (CoModGAN: G and D each; see batches_per_step)
        val_batch_size: int = 8,  # validation batch size
        num_workers: int = 2,  # loader worker processes
        val_fraction: float = 0.05,  # share held out when there are no train/ and val/ folders
        max_val_images: int | None = 2000,  # cap on validation pairs (None = all)
        a_subdir: str = "A",  # two_folders: the folder of the A side (edges when AtoB)
        b_subdir: str = "B",  # two_folders: the folder of the B side (photos when AtoB)
        edge_polarity: str = "black_on_white",  # pix2pix edges; "white_on_black" otherwise
        check_edges: bool = True,  # stop if the edge maps look inverted, warn if photo-like
        edges_channels: int = 1,  # 1: grey edge map, +1 on lines; 3: the RGB condition as is
        images: ImageOptions = ImageOptions(),  # flips, bad or small files, photo filter
        seed: int = 0,  # split, shuffling and augmentation seed
    ) -> None:
        super().__init__(batch_size, val_batch_size, num_workers, seed)
        self.save_hyperparameters()
        check_choice("layout", layout, LAYOUTS)
        check_choice("direction", direction, DIRECTIONS)
        check_choice("edge_polarity", edge_polarity, EDGE_POLARITIES)
        self.resolution = self._check_common(resolution, images)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """(train, val) pair datasets of the layout, the edge maps checked on val."""
        hp = self.hparams
        root = Path(hp.data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"PairedDataModule: data_dir {root} does not exist")
        common = dict(edge_polarity=hp.edge_polarity)
        if hp.layout == "side_by_side":
            train_files, val_files = split_image_folder(
                root, hp.val_fraction, hp.seed, hp.max_val_images
            )
            train, val = self._side_by_side(root, root, train_files, val_files, **common)
            hint = f"left half of {root}'s files" if hp.direction == "AtoB" else "right half"
        else:
            a, b = hp.a_subdir, hp.b_subdir
            cond, photo = (a, b) if hp.direction == "AtoB" else (b, a)
            (tc, tp, tpairs), (vc, vp, vpairs) = _two_folder_pairs(
                root, cond, photo, hp.val_fraction, hp.seed, hp.max_val_images
            )
            common.update(edges_channels=hp.edges_channels)
            train = TwoFolderDataset(
                tc, tp, self.resolution, tpairs, train=True, images=self.images, **common
            )
            val = TwoFolderDataset(
                vc,
                vp,
                self.resolution,
                vpairs,
                train=False,
                images=self.images.for_validation(),
                **common,
            )
            hint = f"files of {vc}"
        if hp.check_edges:
            check_edge_maps(val, hint=f"{hint}, direction={hp.direction!r}")
        return train, val


class _Pix2PixDataModule(_EdgesDataModule):
    """A pix2pix edges archive (256x512 JPEGs, edges left, photo right); subclasses name it."""

    dataset_name = ""

    def __init__(
        self,
        root: str | None = None,  # holds train/ and val/; None = data/<dataset name>
        download: bool = True,  # fetch the archive when root lacks train/ and val/
        url: str | None = None,  # a mirror of the archive; None = the official pix2pix URL
        resolution: int | tuple[int, int] = 256,  # the data is 256; powers of two
        batch_size: int = 4,  # per process, per use (CoModGAN: G and D each; see batches_per_step)
        val_batch_size: int = 8,  # validation batch size
        num_workers: int = 2,  # loader worker processes
        direction: str = "AtoB",  # AtoB: the left half (edges) is the condition
        max_val_images: int | None = None,  # cap on validation pairs (None = all 200)
        check_edges: bool = True,  # stop if the edge maps look inverted, warn if photo-like
        edges_channels: int = 1,  # 1: grey edge map, +1 on lines; 3: the RGB half as it is
        images: ImageOptions = ImageOptions(),  # flips, bad or small files, photo filter
        seed: int = 0,  # shuffling and augmentation seed
    ) -> None:
        super().__init__(batch_size, val_batch_size, num_workers, seed)
        if root is None:
            root = f"data/{self.dataset_name}"
        self.save_hyperparameters()
        self.hparams.root = root
        check_choice("direction", direction, DIRECTIONS)
        self.resolution = self._check_common(resolution, images)

    def dataset_folder(self) -> Path:
        """The folder holding train/ and val/, downloading the archive first if allowed."""
        hp, name = self.hparams, self.dataset_name
        root = Path(hp.root)
        if (root / "train").is_dir() and (root / "val").is_dir():
            return root
        if root.name != name:  # the archive always extracts to a folder named `name`
            info = PIX2PIX_DATASETS[name]
            raise FileNotFoundError(
                f"{root} has no train/ and val/ folders. Download {hp.url or info.url} "
                f"(~{info.approx_size_gb:g} GB), extract it and move its {name}/train and "
                f"{name}/val folders into {root}; or set root to a path ending in '{name}' so "
                "that download=True can place them."
            )
        return ensure_pix2pix(name, root.parent, download=hp.download, url=hp.url)

    def prepare_data(self) -> None:
        """Download the archive if needed (once per node, before setup)."""
        # Lightning calls this once per node before setup(): the download happens here, once.
        self.dataset_folder()

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        hp = self.hparams
        folder = self.dataset_folder()
        val_files = list_images(folder / "val")
        if hp.max_val_images is not None:
            val_files = val_files[: hp.max_val_images]
        train, val = self._side_by_side(folder / "train", folder / "val", None, val_files)
        if hp.check_edges:
            check_edge_maps(val, hint=f"{folder / 'val'}, direction={hp.direction!r}")
        return train, val


class Edges2ShoesDataModule(_Pix2PixDataModule):
    """pix2pix edges2shoes (49,825 train / 200 val pairs, ~2.0 GB) at 256, edges -> photo;
    `root` defaults to data/edges2shoes.

    Args:
        root: the folder holding train/ and val/; None: data/edges2shoes. To download, its
            name must be edges2shoes.
        download: fetch the archive when root lacks train/ and val/.
        url: a mirror of the archive; None: the official pix2pix URL.
        resolution: (H, W) or H = W, powers of two; the data is 256.
        batch_size: samples per batch, per process and use (CoModGAN: G and D each; see
            `batches_per_step`).
        val_batch_size: samples per validation batch.
        num_workers: loader worker processes.
        direction: "AtoB": the left half (edges) is the condition; "BtoA": the right.
        max_val_images: at most this many validation pairs; None: all 200.
        check_edges: stop when the validation edge maps look inverted, warn when they look
            like photos.
        edges_channels: 1: the grey edge map, +1 on the lines; 3: the RGB half as it is.
        seed: seeds the shuffling and the augmentation.
    """

    dataset_name = "edges2shoes"


class Edges2HandbagsDataModule(_Pix2PixDataModule):
    """pix2pix edges2handbags (138,567 train / 200 val pairs, ~8.0 GB) at 256, edges -> photo;
    `root` defaults to data/edges2handbags.

    Args:
        root: where train/ and val/ are (or go: a folder named edges2handbags); None:
            data/edges2handbags.
        download: whether to fetch the archive when they are missing.
        url: where to fetch it from instead of pix2pix's server; None: there.
        resolution: as for `Edges2ShoesDataModule`.
        batch_size: as for `Edges2ShoesDataModule`.
        val_batch_size: the validation loader's batch size.
        num_workers: how many processes each loader reads with.
        direction: which half is the condition ("AtoB": the left, the edges).
        max_val_images: keep only the first this many validation pairs; None: all 200.
        check_edges: whether to check the validation edge maps (see `check_edge_maps`).
        edges_channels: the condition's channels, 1 (grey, +1 on the lines) or 3 (RGB).
        seed: what shuffling and augmentation are seeded with.
    """

    dataset_name = "edges2handbags"


class _Pix2PixLabelsDataModule(_Pix2PixDataModule):
    """A pix2pix labels archive (256x512 JPEGs, photo LEFT, colour label map RIGHT): the label
    map is the condition, RGB as it is in the file ("edges" with 3 channels), as pix2pix feeds
    it; subclasses name the archive. Batches: {"image", "edges", "index"}."""

    def __init__(
        self,
        root: str | None = None,  # holds train/ and val/; None = data/<dataset name>
        download: bool = True,  # fetch the archive when root lacks train/ and val/
        url: str | None = None,  # a mirror of the archive; None = the official pix2pix URL
        resolution: int | tuple[int, int] = 256,  # the data is 256; powers of two
        batch_size: int = 1,  # per process (pix2pix: 1 for facades and cityscapes)
        val_batch_size: int = 8,  # validation batch size
        num_workers: int = 2,  # loader worker processes
        direction: str = "BtoA",  # BtoA: the right half (label map) is the condition
        max_val_images: int | None = None,  # cap on validation pairs (None = all)
        check_labels: bool = True,  # stop if the condition looks more like a photo than the target
        images: ImageOptions = ImageOptions(),  # flips (the paper's mirroring), bad files, filter
        seed: int = 0,  # shuffling and augmentation seed
    ) -> None:
        super().__init__(
            root,
            download,
            url,
            resolution,
            batch_size,
            val_batch_size,
            num_workers,
            direction,
            max_val_images,
            check_edges=False,
            edges_channels=3,
            images=images,
            seed=seed,
        )

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        train, val = super().build_datasets()
        if self.hparams.check_labels:
            check_label_images(
                val, hint=f"{self.hparams.root}, direction={self.hparams.direction!r}"
            )
        return train, val


class FacadesDataModule(_Pix2PixLabelsDataModule):
    """pix2pix facades (CMP Facades: 400 train / 100 val pairs, ~30 MB; the archive's test/ split
    of 106 is not read) at 256, label map -> photo; `root` defaults to data/facades. The label
    map is the condition, RGB as in the file ("edges" with 3 channels).

    Args:
        root: the folder holding train/ and val/; None: data/facades. To download, its name
            must be facades.
        download: fetch the archive when root lacks train/ and val/.
        url: a mirror of the archive; None: the official pix2pix URL.
        resolution: (H, W) or H = W, powers of two; the data is 256.
        batch_size: samples per batch and process (pix2pix: 1).
        val_batch_size: samples per validation batch.
        num_workers: loader worker processes.
        direction: "BtoA": the right half (the label map) is the condition; "AtoB": the left.
        max_val_images: at most this many validation pairs; None: all 100.
        check_labels: stop when the condition is less flat than the photo (swapped halves?).
        seed: seeds the shuffling and the augmentation.
    """

    dataset_name = "facades"


class CityscapesPix2PixDataModule(_Pix2PixLabelsDataModule):
    """pix2pix cityscapes (2,975 train / 500 val pairs at 256x256, ~100 MB), colour label map ->
    photo; `root` defaults to data/cityscapes. (`CityscapesDataModule` reads the official
    Cityscapes release with label ids instead.)

    Args:
        root: the archive's train/ and val/ folders; None: data/cityscapes (a folder of
            another name cannot be downloaded into).
        download: as for `FacadesDataModule`.
        url: as for `FacadesDataModule`.
        resolution: as for `FacadesDataModule`.
        batch_size: as for `FacadesDataModule`.
        val_batch_size: as for `FacadesDataModule`.
        num_workers: as for `FacadesDataModule`.
        direction: "BtoA" takes the right half, the colour label map, as the condition.
        max_val_images: validation reads only the first this many pairs; None: all 500.
        check_labels: as for `FacadesDataModule`.
        seed: as for `FacadesDataModule`.
    """

    dataset_name = "cityscapes"


class EdgesFromPhotosDataModule(_EdgesDataModule):
    """Any folder of photos; the edge maps are computed with Canny (kornia) and can be cached.
    Splits: train/ and val/ sub-folders when present, else a seeded split.

    Args:
        data_dir: the folder of photos (recursive; jpg/png/webp/bmp).
        cache_dir: keep computed edge maps here (Canny is slow on a CPU); None: no cache.
        low_threshold: Canny's low hysteresis threshold on kornia's gradient magnitude of
            [0, 1] grayscale (see `i2i.data.paired`).
        high_threshold: its high threshold, >= low_threshold.
        sigma: the Gaussian blur before Canny; 0: none.
        resolution: (H, W) or H = W; powers of two.
        batch_size: as for `PairedDataModule`.
        val_batch_size: the validation loader's batch size.
        num_workers: the loaders' worker processes.
        val_fraction: the share held out when there are no train/ and val/ folders.
        max_val_images: at most this many validation images; None: all.
        seed: seeds the split, the shuffling and the augmentation.

    Raises:
        DataError: thresholds outside 0 < low <= high, or an unknown option.
    """

    # The edges are computed on the bicubic resize of the photo: no other filter.
    IMAGE_CHOICES = {k: v for k, v in _EdgesDataModule.IMAGE_CHOICES.items() if k != "resample"}

    def __init__(
        self,
        data_dir: str,  # folder of photos (recursive; jpg/png/webp/bmp)
        cache_dir: str | None = None,  # keep computed edge maps here (Canny is slow on CPU)
        low_threshold: float = 0.1,  # Canny hysteresis thresholds on kornia's gradient
        high_threshold: float = 0.2,  # magnitude of [0, 1] grayscale (see i2i.data.paired)
        sigma: float = 1.0,  # Gaussian blur before Canny; 0 = none
        resolution: int | tuple[int, int] = 256,  # (H, W) or H = W; powers of two
        batch_size: int = 4,  # per process, per use (CoModGAN: G and D each; see batches_per_step)
        val_batch_size: int = 8,  # validation batch size
        num_workers: int = 2,  # loader worker processes
        val_fraction: float = 0.05,  # share held out when there are no train/ and val/ folders
        max_val_images: int | None = 2000,  # cap on validation images (None = all)
        images: ImageOptions = ImageOptions(),  # flips, bad or small files (bicubic only)
        seed: int = 0,  # split, shuffling and augmentation seed
    ) -> None:
        super().__init__(batch_size, val_batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.resolution = self._check_common(resolution, images)
        if not 0 < low_threshold <= high_threshold:
            raise DataError(
                "Canny thresholds need 0 < low_threshold <= high_threshold, got "
                f"{low_threshold} and {high_threshold}"
            )

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """(train, val) photo datasets with their Canny edges."""
        hp = self.hparams
        train_files, val_files = split_image_folder(
            Path(hp.data_dir), hp.val_fraction, hp.seed, hp.max_val_images
        )
        common = dict(
            low_threshold=hp.low_threshold,
            high_threshold=hp.high_threshold,
            sigma=hp.sigma,
            cache_dir=hp.cache_dir,
        )
        train = CannyEdgesDataset(
            hp.data_dir, self.resolution, train_files, train=True, images=self.images, **common
        )
        val = CannyEdgesDataset(
            hp.data_dir,
            self.resolution,
            val_files,
            train=False,
            images=self.images.for_validation(),
            **common,
        )
        return train, val
