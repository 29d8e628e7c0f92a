"""Streaming shards (LitData) for millions of images: ShardDataModule reads them.

`ShardDataModule` reads the shards that `i2i data optimize` wrote
(`i2i.data.shard_optimize`: the chunks, manifest.json, datasets.json) from a local folder
or an object-store URL (s3://, gs://..., through LitData's downloaders and cache) and decodes
each record with the folder dataset's own code (the dataset's `open_file` opens a record's bytes
in place of the files), so batches hold the same keys, preprocessing, crops and masks; its
training streams read in the order of `i2i.data.shard_order`.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from typing import Any

import lightning as L
from torch.utils.data import Dataset

from i2i.data.elastic import Shape
from i2i.data.image_options import flat_settings
from i2i.data.shard_files import (
    open_split,
    read_manifest,
    read_templates,
)
from i2i.data.shard_order import ShardStream, ShardUnpairedStream
from i2i.data.stream import FixedMaskDataset, StreamDataModule
from i2i.data.unpaired import UnpairedEvalDataset
from i2i.errors import ShardMismatchError

FILES = "files.txt"
SPLITS = ("train", "val")
DOMAINS = ("a", "b")  # unpaired data: one shard folder per split and domain, train_a ... val_b
FORMAT = 1
# Settings that change how batches are loaded, not which files or how they decode: they may
# differ between the config that wrote the shards and the one that reads them.
LOADER_ONLY = frozenset({"batch_size", "val_batch_size", "num_workers"})
# The masks are drawn when reading: they are no part of the shards either.
MASK_SETTINGS = frozenset({"masks", "val_masks"})


# --------------------------------------------------------------------------------------------
# The config's datamodule


def instantiate_datamodule(section: dict[str, Any]) -> StreamDataModule:
    """A datamodule from a config's `data:` section, as the CLI parses it.

    Args:
        section: {"class_path", "init_args"}.
    """
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    cfg = parser.parse_object({"data": section})
    # A fresh context: inside `i2i fit`, Lightning's CLI hands the outer datamodule's config to
    # the first save_hyperparameters() it meets, which would be this one's.
    return contextvars.Context().run(lambda: parser.instantiate(cfg).data)


def dataset_settings(datamodule: L.LightningDataModule) -> dict[str, Any]:
    """What decides the shards' content: the datamodule's class and its settings, less those
    of the loader and of the masks (drawn when reading).

    Args:
        datamodule: a datamodule with saved hyper-parameters.

    Returns:
        {"class_path", "init_args"}, JSON-ready.
    """
    # The image options spread out as before they were grouped: shards written then still match.
    init = json.loads(json.dumps(flat_settings(datamodule), default=str))
    keep = {k: v for k, v in sorted(init.items()) if k not in LOADER_ONLY | MASK_SETTINGS}
    cls = type(datamodule)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": keep}


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of the settings (16 hex digits): the manifest's key for its config.

    Args:
        settings: from `dataset_settings`.
    """
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def check_manifest(manifest: dict[str, Any], want: dict[str, Any], shards: str) -> None:
    """Check that the shards were written from this config.

    Args:
        manifest: the shards' manifest.
        want: the config's `dataset_settings`.
        shards: the shards' folder or URL, named in the error.

    Raises:
        ShardMismatchError: the fingerprints differ; the message names the settings that do.
    """
    if manifest.get("fingerprint") == fingerprint(want):
        return
    have = manifest.get("settings", {})
    diff = []
    if have.get("class_path") != want["class_path"]:
        diff.append(f"class_path: shards {have.get('class_path')}, config {want['class_path']}")
    hi, wi = have.get("init_args", {}), want["init_args"]
    for key in sorted(set(hi) | set(wi)):
        if hi.get(key) != wi.get(key):
            diff.append(f"{key}: shards {hi.get(key)!r}, config {wi.get(key)!r}")
    raise ShardMismatchError(
        f"the shards in {shards} were written from another config "
        f"({manifest.get('source_config')}): {'; '.join(diff) or 'settings differ'}. Rewrite "
        f"them with `i2i data optimize --config <this config> --out <new folder>` and point "
        "shards at it, or use the config they were written from"
    )


def _folder_attribute(name: str) -> property:
    return property(lambda self: getattr(self.data, name), doc=f"The folder datamodule's {name}")


class ShardDataModule(StreamDataModule):
    """A folder datamodule's data read from its shards (`i2i data optimize`): the same batches'
    keys, decoding, crops and masks (the folder datamodule's `data:` section is given whole as
    `data`, checked against the shards' manifest), streamed from a local folder or a URL.

    Args:
        shards: the folder `i2i data optimize --out` wrote, or its URL (s3://...).
        data: the folder datamodule's section, {class_path, init_args}: its batch size,
            workers and seed are this datamodule's.
        cache_dir: LitData's cache of downloaded and inflated chunks; None: LitData's default.
        storage_options: the object store's client settings, as LitData takes them (S3:
            {"endpoint_url": "http://minio:9000"}, ...); None: none. They are saved with the
            run's config: keep secrets in the environment (AWS_ACCESS_KEY_ID, ...), not here.
    """

    def __init__(
        self,
        shards: str,  # the folder `i2i data optimize --out` wrote, or its URL (s3://...)
        data: dict[str, Any],  # the folder datamodule's section: {class_path, init_args}
        cache_dir: str | None = None,  # LitData's cache: downloaded and inflated chunks
        # The object store's client settings, as LitData takes them (S3: {"endpoint_url":
        # "http://minio:9000"}, ...). Saved with the run's config: keep secrets in the
        # environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), not here.
        storage_options: dict[str, Any] | None = None,
    ):
        folder = instantiate_datamodule(data)  # the datamodule the shards were written from
        super().__init__(folder.batch_size, folder.val_batch_size, folder.num_workers, folder.seed)
        self.save_hyperparameters()
        self.data, self.shards, self.cache_dir = folder, str(shards), cache_dir
        self.storage_options = storage_options
        self.keys = folder.keys
        self.manifest: dict[str, Any] | None = None

    # What tasks and callbacks ask of a datamodule is the folder datamodule's (AttributeError
    # where it has none, so that getattr(datamodule, name, default) reads the same).
    resolution = _folder_attribute("resolution")
    spec = _folder_attribute("spec")  # labels: the label set
    cond_channels = _folder_attribute("cond_channels")  # labels and edges
    attribute_names = _folder_attribute("attribute_names")  # CelebA attributes
    mask_generator = _folder_attribute("mask_generator")  # inpainting: the free-form masks

    def prepare_data(self) -> None:
        """Read the manifest and the templates once in the main process: one clear error."""
        # In the main process, before any process group: one clear error.
        self._manifest()
        read_templates(self.shards, self.storage_options)

    def _manifest(self) -> dict[str, Any]:
        if self.manifest is None:
            manifest = read_manifest(self.shards, self.storage_options)
            check_manifest(manifest, dataset_settings(self.data), self.shards)
            self.manifest = manifest
        return self.manifest

    def train_masks(self):
        """The folder datamodule's training masks."""
        return self.data.train_masks()

    def val_masks(self):
        """The folder datamodule's validation masks."""
        return self.data.val_masks()

    def setup(self, stage: str | None = None) -> None:
        """Open the train and val datasets on the shards (no file scan: the shards hold the
        checked files)."""
        if self.train_dataset is not None:
            return
        manifest = self._manifest()  # no file scan: the shards hold the checked files
        templates = read_templates(self.shards, self.storage_options)
        where = (templates, self.cache_dir, self.storage_options)

        def dataset(split: str) -> Dataset:
            if not self.unpaired:
                return open_split(self.shards, split, manifest, *where)
            domains = [open_split(self.shards, f"{split}_{d}", manifest, *where) for d in DOMAINS]
            return UnpairedEvalDataset(*domains)

        self.train_dataset = dataset("train")
        val = dataset("val")
        self.val_dataset = FixedMaskDataset(val, self.val_masks(), self.keys, seed=self.seed)

    @property
    def unpaired(self) -> bool:
        """Whether the shards hold two domains (CycleGAN data)."""
        return "train_a" in self._manifest()["count"]

    @property
    def val_sizes(self) -> tuple[int, int]:
        """Unpaired data: (n_A, n_B) of the evaluation set, as the folder datamodule's."""
        if not self.unpaired:
            raise AttributeError("val_sizes: the shards hold no unpaired data")
        count = self._manifest()["count"]
        return count["val_a"], count["val_b"]

    def train_stream(
        self,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        offset: int = 0,
        layout: tuple[int, int] | None = None,
    ) -> ShardStream | ShardUnpairedStream:
        """The training stream of one process, in the shards' chunk order.

        Args:
            rank: the process's rank.
            world_size: the number of processes.
            start_batch: the first batch it yields.
            offset: the stream position the run starts at.
            layout: the first run's (processes, loader batch), which orders the shards; None:
                this run's.
        """
        sizes = self._manifest()["chunk_sizes"]
        batch_size = self._batches_per_step() * self.batch_size
        where = dict(
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            start_batch=start_batch,
            offset=offset,
            layout=layout,
        )
        if self.unpaired:
            return ShardUnpairedStream(
                self.train_dataset.domain_a,
                self.train_dataset.domain_b,
                batch_size,
                chunk_sizes=(sizes["train_a"], sizes["train_b"]),
                **where,
            )
        return ShardStream(
            self.train_dataset,
            batch_size,
            self.train_masks(),
            self.keys,
            chunk_sizes=sizes["train"],
            **where,
        )

    def layout_note(self, layout: tuple[int, int], shape: Shape) -> str:
        """What reading in the first run's order means when the shape changed (more downloads).

        Args:
            layout: the first run's (processes, loader batch).
            shape: this run's shape.

        Returns:
            A sentence, or "" when the layout is this shape's or there is one process.
        """
        same = tuple(layout) == (shape.world_size, shape.loader_batch)
        if same or shape.world_size == 1:  # one process reads every chunk anyway
            return ""
        return (
            f"The shards keep the order of the run's first shape ({layout[0]} processes of "
            f"{layout[1]} samples per batch), so every sample still comes once per epoch, but "
            "the processes no longer each read their own chunks: each downloads more of them "
            "(a new run restores one share of the chunks per process)."
        )
