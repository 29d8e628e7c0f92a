"""Streaming shards (LitData) for millions of images: ShardDataModule reads them.

:class:`ShardDataModule` reads the shards that `i2i data optimize` wrote
(:mod:`i2i.data.shard_optimize`: the chunks, manifest.json, datasets.json) from a local folder
or an object-store URL (s3://, gs://..., through LitData's downloaders and cache) and decodes
each record with the folder dataset's own code (the dataset's `open_file` opens a record's bytes
in place of the files), so batches hold the same keys, preprocessing, crops and masks; its
training streams read in the order of :mod:`i2i.data.shard_order`.
"""

from __future__ import annotations

import contextvars
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import Dataset

from i2i.data import shard_templates
from i2i.data.elastic import Shape
from i2i.data.image_options import flat_settings
from i2i.data.shard_order import ShardStream, ShardUnpairedStream
from i2i.data.stream import FixedMaskDataset, StreamDataModule
from i2i.data.unpaired import UnpairedEvalDataset
from i2i.errors import RefusedFileError, ShardMismatchError

MANIFEST = "manifest.json"
TEMPLATES = "datasets.json"
OLD_TEMPLATES = "datasets.pkl"  # i2i before datasets.json: a pickle, never read
FILES = "files.txt"
RECORD_SERIALIZERS = frozenset({"int", "str", "bytes"})  # LitData's, for _record's fields
SPLITS = ("train", "val")
DOMAINS = ("a", "b")  # unpaired data: one shard folder per split and domain, train_a ... val_b
FORMAT = 1
# Where a dataset keeps its per-sample files: ImageFolderDataset, SideBySideDataset and
# CannyEdgesDataset a list of paths, TwoFolderDataset (condition, photo) pairs, the label
# datasets LabelRecords (photo, label map, instance map or None).
ENTRY_LISTS = ("files", "pairs", "records")
# Settings that change how batches are loaded, not which files or how they decode: they may
# differ between the config that wrote the shards and the one that reads them.
LOADER_ONLY = frozenset({"batch_size", "val_batch_size", "num_workers"})
MASK_SETTINGS = frozenset(
    {
        "hole_range",
        "mask_variant",
        "mask_shape",
        "rectangle_sides",
        "rectangle_sides_at",
        "mask_dir",
        "val_mask_dir",
        "mask_polarity",
        "check_mask_polarity",
        "mask_set",
    }
)


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


def _rebuild(example: Any, names: Sequence[str | None]) -> Any:
    """An entry of `example`'s kind from the names stored in a record."""
    paths = [None if n is None else Path(n) for n in names]
    if isinstance(example, tuple):
        return type(example)(*paths) if hasattr(example, "_fields") else tuple(paths)
    return paths[0]


def local_folder(shards: str) -> Path | None:
    """The folder of a local shard location, None for an object store.

    Args:
        shards: a path, a file:// URL, or an object store's URL (s3://...).
    """
    if "://" not in shards or shards.startswith("file://"):
        return Path(shards.removeprefix("file://"))
    return None


def _read_text(shards: str, name: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """A file beside the chunks, from a local folder or through LitData's downloaders (fetched
    afresh each time: shards rewritten at the same URL must not be read from a stale copy)."""
    if (folder := local_folder(shards)) is not None:
        return (folder / name).read_bytes()
    from litdata.streaming.downloader import get_downloader

    allow_plain_http(storage_options)
    with tempfile.TemporaryDirectory(prefix="i2i_shards_") as local:
        target = str(Path(local) / name)
        get_downloader(shards, local, [], storage_options or {}).download_file(
            f"{shards.rstrip('/')}/{name}", target
        )
        return Path(target).read_bytes()


def allow_plain_http(storage_options: dict[str, Any] | None) -> None:
    """Let LitData's object-store client reach an http:// endpoint (MinIO on a LAN, a test
    server), given as storage_options' endpoint_url or AWS_ENDPOINT_URL. LitData 0.2.76 fetches
    chunks with obstore, which refuses plain http unless told, and passes its own client options
    (so obstore's AWS_ALLOW_HTTP is ignored): this sets them, in this process and the loader
    workers it forks.

    Args:
        storage_options: LitData's client settings; their endpoint_url (or the environment's
            AWS_ENDPOINT_URL) decides. None: the environment's only.
    """
    endpoint = (storage_options or {}).get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
    if not str(endpoint or "").startswith("http://"):
        return
    from litdata.streaming import downloader

    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if isinstance(options, dict):
        options["allow_http"] = True


def read_manifest(shards: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a shard folder.

    Args:
        shards: the shards' folder or URL.
        storage_options: LitData's client settings; None: none.

    Raises:
        ShardMismatchError: (a FileNotFoundError) no readable manifest, naming the folder and
            the fix.
    """
    try:
        return json.loads(_read_text(shards, MANIFEST, storage_options))
    except (OSError, ValueError) as e:
        raise ShardMismatchError(
            f"no shards in {shards}: {MANIFEST} cannot be read ({type(e).__name__}: {e}). Write "
            f"them with `i2i data optimize --config CONFIG --out {shards}` (an interrupted run "
            "leaves no manifest: write them again into an empty folder)"
        ) from e


def read_templates(shards: str, storage_options: dict[str, Any] | None = None) -> dict:
    """The shards' folder datasets from datasets.json (a pickle is never read: a file in a
    shared bucket must not run code).

    Args:
        shards: the shards' folder or URL.
        storage_options: LitData's client settings; None: none.

    Returns:
        {split: template dataset}.

    Raises:
        ShardMismatchError: a missing or unreadable datasets.json, naming the file and the fix.
    """
    where = f"{shards.rstrip('/')}/{TEMPLATES}"
    rewrite = (
        "write the shards again with `i2i data optimize --config CONFIG --out NEW_FOLDER` "
        "(i2i writes only data there)"
    )
    try:
        text = _read_text(shards, TEMPLATES, storage_options)
    except (OSError, ValueError) as e:
        reason = f"no {where} ({type(e).__name__}: {e})"
        if _exists(shards, OLD_TEMPLATES, storage_options):
            reason = (
                f"no {where}: these shards were written by an older i2i, whose {OLD_TEMPLATES} "
                "is a pickle, which i2i no longer reads (a pickle can run code)"
            )
        raise ShardMismatchError(f"{reason}; {rewrite}") from None
    try:
        return shard_templates.decode(text, where)
    except RefusedFileError as e:
        raise ShardMismatchError(str(e)) from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ShardMismatchError(
            f"{where} cannot be read ({type(e).__name__}: {e}); {rewrite}"
        ) from None


def _exists(shards: str, name: str, storage_options: dict[str, Any] | None) -> bool:
    try:
        _read_text(shards, name, storage_options)  # only its presence is looked at
    except Exception:
        return False
    return True


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


class ShardFiles(Sequence):
    """The file entries of a folder dataset, read from its shards: entry j is rebuilt from
    record j, whose bytes are then what `open_file` opens for its paths (the dataset's
    `open_file`). Opened lazily, once per process (loader workers each open their own).

    Args:
        input_dir: the split's shard folder or URL.
        count: its number of samples.
        example: an entry of the folder dataset's kind (a path, a pair, a LabelRecord).
        cache_dir: LitData's cache for this split; None: LitData's default.
        compressed: the chunks are zstd-compressed (each read decodes a whole chunk).
        storage_options: LitData's client settings; None: none.
    """

    def __init__(
        self,
        input_dir: str,
        count: int,
        example: Any,
        cache_dir: str | None = None,
        compressed: bool = False,
        storage_options: dict[str, Any] | None = None,
    ):
        self.input_dir, self.count, self.example = input_dir, count, example
        self.cache_dir, self.compressed = cache_dir, compressed
        self.storage_options = storage_options
        self._dataset: Any = None
        self._pid = -1
        self._held: dict[Path, bytes] = {}  # the last sample's files, by path

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None, "_pid": -1, "_held": {}}

    def record(self, j: int) -> dict[str, Any]:
        """Record j of the shards: {"index", "names" (JSON), "file0", "file1", ...}.

        Args:
            j: the sample's index.

        Raises:
            ShardMismatchError: the record holds another sample (chunks out of order).
        """
        if self._dataset is None or self._pid != os.getpid():
            from litdata import StreamingDataset

            source, folder = self.input_dir, local_folder(self.input_dir)
            if self.compressed and folder is not None:
                # LitData inflates a local folder's compressed chunks in place and deletes the
                # .zstd.bin files it read, leaving the folder out of step with its index; as
                # "local:" it copies them to its cache and inflates them there (docs/shards.md).
                source = "local:" + str(folder.resolve())
            # How many records LitData decodes per read. Left to itself it guesses a window from
            # the sizes, so a shuffled read decoded a whole window of records to return one.
            # Plain chunks: the one record (its byte range). Compressed ones: the whole chunk,
            # held until the next chunk (a shard order reads each chunk's samples together); any
            # smaller window rereads the whole inflated file at every miss. Measured in
            # docs/benchmarks.md, Loading.
            allow_plain_http(self.storage_options)
            self._dataset = StreamingDataset(
                source,
                cache_dir=self.cache_dir,
                storage_options=self.storage_options or {},
                batch_decode=-1 if self.compressed else 1,
            )
            self._pid = os.getpid()
        record = self._dataset[int(j)]
        if record["index"] != j:
            raise ShardMismatchError(
                f"{self.input_dir}: record {j} holds sample {record['index']}; the chunks are "
                "out of order or mixed with another dataset's. Write the shards again"
            )
        return record

    def __getitem__(self, j: int) -> Any:  # type: ignore[override]
        if not 0 <= j < self.count:
            raise IndexError(f"sample {j} out of range for {self.count} shard samples")
        record = self.record(j)
        names = json.loads(record["names"])
        self._held = {  # one sample's files at a time
            Path(name): bytes(record[f"file{k}"])
            for k, name in enumerate(names)
            if name is not None
        }
        return _rebuild(self.example, names)

    def open_file(self, path: Path) -> io.BytesIO:
        """The bytes of a file of the sample last read.

        Args:
            path: one of that sample's paths.

        Raises:
            FileNotFoundError: a path that is not one of them.
        """
        data = self._held.get(Path(path))
        if data is None:
            raise FileNotFoundError(f"{path} is not a file of the shard sample last read")
        return io.BytesIO(data)


def check_serializers(input_dir: str, storage_options: dict[str, Any] | None = None) -> None:
    """Our records hold ints, strings and bytes; LitData decodes each field with the serializer
    its index.json names, and its "pickle" serializer unpickles (runs code): shards naming any
    other serializer are refused before LitData reads a record.

    Args:
        input_dir: the split's shard folder or URL (its index.json is read).
        storage_options: LitData's client settings; None: none.

    Raises:
        ShardMismatchError: an unreadable index.json, or a serializer outside ours.
    """
    where = f"{input_dir}/index.json"
    try:
        config = json.loads(_read_text(input_dir, "index.json", storage_options))["config"]
        formats = list(config["data_format"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ShardMismatchError(
            f"{where} cannot be read ({type(e).__name__}: {e}); write the shards again with "
            "`i2i data optimize`"
        ) from None
    foreign = sorted({str(f) for f in formats} - RECORD_SERIALIZERS)
    if foreign:
        raise ShardMismatchError(
            f"{where} decodes fields with {', '.join(foreign)}; i2i's shards hold only "
            f"{', '.join(sorted(RECORD_SERIALIZERS))} (a pickle field would run code when read): "
            "refused. Write the shards with `i2i data optimize`"
        )


def open_split(
    shards: str,
    split: str,
    manifest: dict[str, Any],
    templates: dict[str, Dataset],
    cache_dir: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Dataset:
    """The folder dataset of a split reading its files from the shards.

    Args:
        shards: the shards' folder or URL.
        split: "train", "val", or for unpaired data "train_a", "val_b", ...
        manifest: the shards' manifest (counts, compression).
        templates: the shards' datasets.json (`read_templates`); the split's is changed in place.
        cache_dir: LitData's cache (one sub-folder per split); None: LitData's default.
        storage_options: LitData's client settings; None: none.

    Raises:
        ShardMismatchError: see `check_serializers`.
    """
    dataset = templates[split]
    attr = next(a for a in ENTRY_LISTS if isinstance(getattr(dataset, a, None), list))
    example = getattr(dataset, attr)[0]
    input_dir = f"{shards.rstrip('/')}/{split}"
    check_serializers(input_dir, storage_options)
    sub_cache = None if cache_dir is None else str(Path(cache_dir) / split)
    compressed = bool(manifest.get("compression"))
    files = ShardFiles(
        input_dir, manifest["count"][split], example, sub_cache, compressed, storage_options
    )
    setattr(dataset, attr, files)
    dataset.open_file = files.open_file
    return dataset


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
