"""`i2i data optimize`: a training config's dataset written into streaming shards (LitData).

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
shared bucket cannot run code). `i2i.data.shards.ShardDataModule` reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from torch.utils.data import Dataset, Subset

from i2i.config_files import load_config
from i2i.data import shard_templates
from i2i.data.shard_files import ENTRY_LISTS, MANIFEST, TEMPLATES
from i2i.data.shards import (
    DOMAINS,
    FILES,
    FORMAT,
    SPLITS,
    ShardDataModule,
    dataset_settings,
    fingerprint,
    instantiate_datamodule,
)
from i2i.data.stream import FixedMaskDataset, StreamDataModule
from i2i.data.unpaired import UnpairedEvalDataset
from i2i.errors import DataError, DownloadError


def load_datamodule(config: str | Path) -> StreamDataModule:
    """The datamodule of a training config, instantiated as `i2i fit` would.

    Args:
        config: the training YAML.

    Raises:
        FileNotFoundError: no file at config.
        DataError: no data: section, or a datamodule that already reads shards.
    """
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
    """The LitData codec of `--compression` (zstd, or zstd:LEVEL with LEVEL 1-22).

    Always whole-chunk (LitData's compression_level="chunk": each chunk file is one zstd
    frame, inflated once into the reader's cache): LitData's default in-file framing ("batch")
    and per-sample frames ("sample") did not read back with the LitData this was written
    against ("missing LDFZ01 magic", "missing content size in frame header"; docs/shards.md).

    Args:
        compression: the value given; None: no compression (None is returned).

    Raises:
        DataError: (a ValueError) a codec LitData cannot write here, naming what is accepted.
    """
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
    """Write the shards of a config's datamodule (see the module doc).

    Args:
        config: the training YAML whose datamodule is sharded (after its setup).
        out: a new or empty folder.
        num_workers: LitData's writer processes (at least 1).
        chunk_bytes: the chunk size, e.g. "64MB".
        compression: "zstd" or "zstd:LEVEL"; None: none.

    Returns:
        The manifest written to `out` (written last: it marks the shards complete).

    Raises:
        FileExistsError: `out` is not empty.
        FileNotFoundError: no config.
        DataError: see `load_datamodule` and `check_compression`, or a dataset without files.
    """
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
    [--compression zstd]`.

    Args:
        argv: the command's arguments, after `i2i data`.

    Returns:
        The exit status: 0, or 1 after a one-line error.
    """
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
