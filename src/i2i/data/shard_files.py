"""Reading a shard folder's files, from a local folder or an object-store URL through LitData's
downloaders: its manifest and its datasets.json (never a pickle), the check that its records
hold only plain fields, and a split's folder dataset rebuilt to read each sample's files from
its records (`ShardFiles`) instead of the disk. `i2i.data.shards` checks them
against the config and streams them.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from i2i.data import shard_templates
from i2i.errors import RefusedFileError, ShardMismatchError

MANIFEST = "manifest.json"
TEMPLATES = "datasets.json"
OLD_TEMPLATES = "datasets.pkl"  # i2i before datasets.json: a pickle, never read
RECORD_SERIALIZERS = frozenset({"int", "str", "bytes"})  # LitData's, for _record's fields
# Where a dataset keeps its per-sample files: ImageFolderDataset, SideBySideDataset and
# CannyEdgesDataset a list of paths, TwoFolderDataset (condition, photo) pairs, the label
# datasets LabelRecords (photo, label map, instance map or None).
ENTRY_LISTS = ("files", "pairs", "records")


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
