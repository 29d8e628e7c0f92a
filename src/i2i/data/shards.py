"""Streaming shards (LitData) for millions of images: `i2i data optimize` and ShardDataModule.

`i2i data optimize --config CONFIG --out DIR` builds the config's datamodule exactly as training
would (its split, its setup checks: the files it keeps are the files the folder loader would
use) and writes each sample's files, their ORIGINAL encoded bytes, into LitData chunks
(`DIR/train`, `DIR/val`; unpaired data one folder per domain: `DIR/train_a`, `DIR/train_b`,
`DIR/val_a`, `DIR/val_b`), in parallel, with a progress bar; with `--compression zstd` each
chunk file is one zstd frame, which readers inflate once into LitData's cache. Beside them it
records what it wrote: `manifest.json` (counts, the source config, the datamodule's settings
and their fingerprint, the chunk sizes, the compression), `files.txt` (every sample's files, in
shard order), `config.yaml` (a copy of the config) and `datasets.json` (the datasets' settings:
the decoding and transforms of the folder datasets themselves, without their file lists, as
JSON data: `i2i.data.shard_templates`; a shard folder is never unpickled, so shards from a
shared bucket cannot run code).

:class:`ShardDataModule` reads them from a local folder or an object-store URL (s3://, gs://...,
through LitData's downloaders and cache) and decodes each record with the folder dataset's own
code (the bytes are opened in place of the files: `i2i.data.datasets.file_source`), so batches
hold the same keys, preprocessing, crops and masks. Its training stream (:class:`ShardStream`) is
the project's deterministic stream with an order that suits streaming: per epoch the chunks are
shuffled by (seed, epoch), samples inside each chunk by (seed, epoch, chunk), and process r of
W (all nodes' GPUs) takes the r-th contiguous W-th of that sequence, so each process reads about
1/W of the chunks and none shares a sample. Crops, flips and masks are seeded by the global
stream position as in `TrainStream`, so batch s holds the same samples, crops and masks whatever
the number of loader workers, and a resumed run continues the exact sequence. (LitData's own
shuffle depends on the number of loader workers and the batch size, and resumes from its
loader's state; the position-seeded order keeps the project's one resume mechanism.) Unpaired
(CycleGAN) shards stream each domain so, with orders of their own (:class:`ShardUnpairedStream`).
"""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import json
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import yaml
from torch.utils.data import Dataset, Subset

from i2i.config_files import load_config
from i2i.data import datasets as D
from i2i.data import shard_templates
from i2i.data.download import DownloadError
from i2i.data.elastic import Shape
from i2i.data.stream import FixedMaskDataset, StreamDataModule, TrainStream
from i2i.data.unpaired import UnpairedEvalDataset, UnpairedTrainStream
from i2i.errors import DataError
from i2i.safe_load import RefusedFileError
from i2i.seeding import numpy_rng

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
SHARD_STREAM = 0x5A4D  # a key of the shard order's seeds, apart from the folder stream's


class ShardMismatchError(FileNotFoundError):
    """The shards this config needs are not in the folder (missing, or written from another
    config). A FileNotFoundError, so that the CLI prints it as one line."""


# --------------------------------------------------------------------------------------------
# The config's datamodule


def load_datamodule(config: str | Path) -> StreamDataModule:
    """The datamodule of a training config, instantiated as `i2i fit` would."""
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config {path} does not exist; give the YAML you train with")
    section = load_config(path).get("data")
    if not section:
        raise DataError(f"{path} has no data: section; give the YAML you train with")
    datamodule = instantiate_datamodule(section)
    if isinstance(datamodule, ShardDataModule):
        raise DataError(f"{path} already reads shards; give the config of the folder datamodule")
    return datamodule


def instantiate_datamodule(section: dict[str, Any]) -> StreamDataModule:
    """A datamodule from a config's `data:` section ({"class_path", "init_args"})."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    cfg = parser.parse_object({"data": section})
    # A fresh context: inside `i2i fit`, Lightning's CLI hands the outer datamodule's config to
    # the first save_hyperparameters() it meets, which would be this one's.
    return contextvars.Context().run(lambda: parser.instantiate(cfg).data)


def dataset_settings(datamodule: L.LightningDataModule) -> dict[str, Any]:
    """What decides the shards' content: the datamodule's class and its settings, less those
    of the loader and of the masks (drawn when reading)."""
    init = json.loads(json.dumps(dict(datamodule.hparams), default=str))
    keep = {k: v for k, v in sorted(init.items()) if k not in LOADER_ONLY | MASK_SETTINGS}
    cls = type(datamodule)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": keep}


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _parts(split: str, dataset: Dataset) -> list[tuple[str, Dataset]]:
    """The shard folders of a split: (name, dataset) for the split itself, or for each of its
    domains when the data is unpaired (`split`_a and `split`_b)."""
    inner = dataset.dataset if isinstance(dataset, FixedMaskDataset) else dataset
    if isinstance(inner, UnpairedEvalDataset):
        domains = (inner.domain_a, inner.domain_b)
        return [(f"{split}_{d}", data) for d, data in zip(DOMAINS, domains, strict=True)]
    return [(split, dataset)]


def _unwrap(dataset: Dataset) -> tuple[Dataset, list[Any]]:
    """(the folder dataset, its per-sample file entries) of a train or val dataset."""
    indices = None
    if isinstance(dataset, FixedMaskDataset):
        dataset = dataset.dataset
    if isinstance(dataset, Subset):
        dataset, indices = dataset.dataset, list(dataset.indices)
    attr = next((a for a in ENTRY_LISTS if isinstance(getattr(dataset, a, None), list)), None)
    if attr is None:
        raise DataError(
            f"{type(dataset).__name__} has no files to shard (supported: image folders, "
            "pix2pix pairs, label maps with instances, unpaired domains; the embedded demo "
            "data is generated)"
        )
    entries = getattr(dataset, attr)
    return dataset, entries if indices is None else [entries[i] for i in indices]


def _entry_paths(entry: Any) -> list[str | None]:
    if isinstance(entry, tuple):  # a pair, or a LabelRecord (a NamedTuple)
        return [None if p is None else str(p) for p in entry]
    return [str(entry)]


def _rebuild(example: Any, names: Sequence[str | None]) -> Any:
    """An entry of `example`'s kind from the names stored in a record."""
    paths = [None if n is None else Path(n) for n in names]
    if isinstance(example, tuple):
        return type(example)(*paths) if hasattr(example, "_fields") else tuple(paths)
    return paths[0]


def _template(dataset: Dataset, example: Any) -> Dataset:
    """A copy of the folder dataset without its file list (it comes from the shards), keeping
    one entry to tell their kind."""
    attr = next(a for a in ENTRY_LISTS if isinstance(getattr(dataset, a, None), list))
    saved = getattr(dataset, attr)
    setattr(dataset, attr, [example])
    try:
        template = pickle.loads(pickle.dumps(dataset))
    finally:
        setattr(dataset, attr, saved)
    if getattr(template, "cache", None) is not None:
        template.cache = None  # a Canny edge cache is keyed by the files on disk
    return template


# --------------------------------------------------------------------------------------------
# Writing


def _record(item: tuple[int, list[str | None]]) -> dict[str, Any]:
    """One LitData record: the sample's index, its files' names and their bytes as stored."""
    index, names = item
    record: dict[str, Any] = {"index": index, "names": json.dumps(names)}
    for k, name in enumerate(names):
        record[f"file{k}"] = Path(name).read_bytes() if name is not None else b""
    return record


def check_compression(compression: str | None) -> str | None:
    """The LitData codec of `--compression` (zstd, or zstd:LEVEL with LEVEL 1-22), or a
    ValueError naming the value and what is accepted.

    Always whole-chunk (LitData's compression_level="chunk": each chunk file is one zstd
    frame, inflated once into the reader's cache): LitData's default in-file framing ("batch")
    and per-sample frames ("sample") did not read back with the LitData this was written
    against ("missing LDFZ01 magic", "missing content size in frame header"; docs/shards.md)."""
    if compression is None:
        return None
    from litdata.streaming.compression import _COMPRESSORS

    if compression not in _COMPRESSORS:
        known = "zstd or zstd:LEVEL (LEVEL 1-22)" if _COMPRESSORS else "none installed"
        raise DataError(
            f"compression {compression!r} is not one LitData can write ({known}); use "
            "--compression zstd, or leave it out"
            + ("" if _COMPRESSORS else " (install the zstd package: `uv pip install zstd`)")
        )
    return compression


def optimize_shards(
    config: str | Path,
    out: str | Path,
    num_workers: int = 1,
    chunk_bytes: str = "64MB",
    compression: str | None = None,
) -> dict[str, Any]:
    """Write the shards of `config`'s datamodule to `out` (see the module doc); the manifest."""
    import litdata

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; give a new folder or remove it first")
    compression = check_compression(compression)
    datamodule = load_datamodule(config)
    datamodule.setup("fit")  # the split and the setup checks: the files training would use
    settings = dataset_settings(datamodule)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "source_config": str(Path(config).resolve()),
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": settings,
        "fingerprint": fingerprint(settings),
        "litdata": litdata.__version__,
        "compression": compression,
        "count": {},
        "chunk_sizes": {},
    }
    out.mkdir(parents=True, exist_ok=True)
    templates, lines = {}, []
    splits = (datamodule.train_dataset, datamodule.val_dataset)
    parts = [p for split, d in zip(SPLITS, splits, strict=True) for p in _parts(split, d)]
    for split, dataset in parts:
        folder, entries = _unwrap(dataset)
        names = [_entry_paths(e) for e in entries]
        if len({len(n) for n in names}) > 1:
            raise DataError(f"{split}: samples differ in their number of files; cannot shard")
        print(f"i2i data optimize: {split}: {len(names)} samples -> {out / split}", flush=True)
        litdata.optimize(
            fn=_record,
            inputs=list(enumerate(names)),
            output_dir=str(out / split),
            num_workers=max(1, num_workers),
            chunk_bytes=chunk_bytes,
            compression=compression,
            compression_level="chunk" if compression else None,
            keep_data_ordered=True,
            reorder_files=False,
            start_method="fork",
            verbose=True,
        )
        index = json.loads((out / split / "index.json").read_text())
        manifest["count"][split] = len(names)
        manifest["chunk_sizes"][split] = [c["chunk_size"] for c in index["chunks"]]
        templates[split] = _template(folder, entries[0])
        lines += [f"{split}\t{i}\t" + "\t".join(n or "-" for n in ns) for i, ns in enumerate(names)]
    (out / TEMPLATES).write_text(shard_templates.encode(templates))
    (out / FILES).write_text("\n".join(lines) + "\n")
    # A config that names bases is written merged: its bases do not travel with it.
    resolved = load_config(config)
    if resolved == yaml.safe_load(Path(config).read_text()):
        shutil.copyfile(config, out / "config.yaml")
    else:
        (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")  # last: marks it complete
    return manifest


def main(argv: list[str]) -> int:
    """`i2i data optimize --config CONFIG --out DIR [--num-workers N] [--chunk-bytes 64MB]
    [--compression zstd]`: the exit status."""
    parser = argparse.ArgumentParser(prog="i2i data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    opt = sub.add_parser("optimize", help="write a config's dataset into LitData shards")
    opt.add_argument("--config", required=True, help="the YAML you train with")
    opt.add_argument("--out", required=True, help="a new local folder (sync it to a bucket after)")
    opt.add_argument("--num-workers", type=int, default=os.cpu_count() or 1)
    opt.add_argument("--chunk-bytes", default="64MB", help="chunk size (LitData: 64MB, 256MB...)")
    opt.add_argument(
        "--compression",
        default=None,
        help="zstd or zstd:LEVEL: each chunk one zstd frame, inflated into the reader's cache",
    )
    args = parser.parse_args(argv)
    try:
        manifest = optimize_shards(
            args.config, args.out, args.num_workers, args.chunk_bytes, args.compression
        )
    except (FileNotFoundError, FileExistsError, ValueError, DownloadError) as e:
        print(f"i2i: error: {e}", file=sys.stderr, flush=True)
        return 1
    counts = ", ".join(f"{k} {v}" for k, v in manifest["count"].items())
    print(f"i2i data optimize: wrote {counts} samples to {args.out} ({MANIFEST}, {FILES})")
    return 0


# --------------------------------------------------------------------------------------------
# Reading


def local_folder(shards: str) -> Path | None:
    """The folder of a local shard location (a path or file://), None for an object store."""
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
    workers it forks."""
    endpoint = (storage_options or {}).get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
    if not str(endpoint or "").startswith("http://"):
        return
    from litdata.streaming import downloader

    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if isinstance(options, dict):
        options["allow_http"] = True


def read_manifest(shards: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a shard folder, or FileNotFoundError naming the folder and the fix."""
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
    shared bucket must not run code), or ShardMismatchError naming the file and the fix."""
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
    """ShardMismatchError naming the settings that differ when the shards were written from
    another config than the one whose `dataset_settings` are `want`."""
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
    record j, whose bytes are then what the readers open for its paths. Opened lazily, once per
    process (loader workers each open their own)."""

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

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None, "_pid": -1}

    def record(self, j: int) -> dict[str, Any]:
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
        D.MEMORY_FILES.clear()  # one sample's files at a time
        for k, name in enumerate(names):
            if name is not None:
                D.MEMORY_FILES[Path(name)] = bytes(record[f"file{k}"])
        return _rebuild(self.example, names)


def check_serializers(input_dir: str, storage_options: dict[str, Any] | None = None) -> None:
    """Our records hold ints, strings and bytes; LitData decodes each field with the serializer
    its index.json names, and its "pickle" serializer unpickles (runs code): shards naming any
    other serializer are refused before LitData reads a record."""
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
    """The folder dataset of `split` (from `templates`, the shards' datasets.json) reading its
    files from the shards."""
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
    return dataset


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
    of this epoch)."""
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
    position-seeded crops and masks, with the order of :func:`epoch_order` for the run's first
    shape (`layout`: processes, loader batch), which a resumed run of any shape keeps, so that it
    reads the same samples at the same positions (:mod:`i2i.data.elastic`)."""

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
        rank, q = layout_sample(position, *self.layout)
        epoch, k = divmod(q, self.per_rank)
        if epoch != self._perm_epoch:  # the whole epoch: any process may read any share
            self._perm = epoch_order(self.chunk_sizes, self.seed, epoch)
            self._perm_epoch = epoch
        return int(self._perm[rank * self.per_rank + k])


def layout_sample(position: int, world_size: int, batch_size: int) -> tuple[int, int]:
    """(rank, q): the process of the layout that global stream position `position`
    ((step * world_size + rank) * batch_size + j) belongs to, and which of its own samples it
    is (its q-th)."""
    rank = position // batch_size % world_size
    return rank, position // batch_size // world_size * batch_size + position % batch_size


class ShardUnpairedStream(UnpairedTrainStream):
    """The unpaired training stream over shards: `UnpairedTrainStream`'s batches, crops and
    flips, with each domain's order from :func:`epoch_order` (its own key, so that equal chunk
    sizes do not pair A and B up) and each process of the layout reading its own share of each
    domain (see :class:`ShardStream`)."""

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
        rank, q = layout_sample(position, *self.layout)
        epoch, k = divmod(q, self.per_rank[domain])
        if self._perms[domain][0] != epoch:
            order = epoch_order(self.chunk_sizes[domain], self.seed, epoch, domain=domain)
            self._perms[domain] = (epoch, order)
        return int(self._perms[domain][1][rank * self.per_rank[domain] + k])


class ShardDataModule(StreamDataModule):
    """A folder datamodule's data read from its shards (`i2i data optimize`): the same batches'
    keys, decoding, crops and masks (the folder datamodule's `data:` section is given whole as
    `data`, checked against the shards' manifest), streamed from a local folder or a URL."""

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

    def __getattr__(self, name: str) -> Any:
        # What tasks and callbacks ask of a datamodule (resolution, spec, cond_channels,
        # mask_generator...) is the folder datamodule's.
        data = self.__dict__.get("data")
        if data is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(data, name)

    def prepare_data(self) -> None:
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
        return self.data.train_masks()

    def val_masks(self):
        return self.data.val_masks()

    def setup(self, stage: str | None = None) -> None:
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
        same = tuple(layout) == (shape.world_size, shape.loader_batch)
        if same or shape.world_size == 1:  # one process reads every chunk anyway
            return ""
        return (
            f"The shards keep the order of the run's first shape ({layout[0]} processes of "
            f"{layout[1]} samples per batch), so every sample still comes once per epoch, but "
            "the processes no longer each read their own chunks: each downloads more of them "
            "(a new run restores one share of the chunks per process)."
        )
