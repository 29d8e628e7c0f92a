"""`i2i-weights`: the pretrained files i2i uses, where they are published and where they go.

Online, it downloads each missing file that has a plain URL and checks its SHA-256 (the full
digest where the registry knows it, else the torch hub prefix in the name). Offline, or for files
that must be fetched by hand, it prints each file, its source and where it goes, and exits 1.
Nothing else in i2i downloads weights: everything loads from these folders.

    i2i-weights                  # download what is missing, check what is there
    i2i-weights --list           # only print the table
    i2i-weights --only metrics   # one group: metrics, comodgan, segmenters
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from i2i.weights.registry import (
    COMODGAN_FILES,
    METRIC_FILES,
    SEGMENTER_FILES,
    WeightFile,
    expected_digest,
    file_ok,
    hub_dir,
    weights_dir,
)

GROUPS = {"metrics": METRIC_FILES, "comodgan": COMODGAN_FILES, "segmenters": SEGMENTER_FILES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--list", action="store_true", help="print the files and exit")
    parser.add_argument("--only", choices=sorted(GROUPS), help="one group of files")
    parser.add_argument(
        "--dir", default=None, help="one target folder for every file (default: their homes)"
    )
    args = parser.parse_args(argv)
    groups = {args.only: GROUPS[args.only]} if args.only else GROUPS
    missing: list[tuple[WeightFile, Path]] = []
    for group, entries in groups.items():
        for entry in entries:
            folder = (
                Path(args.dir)
                if args.dir
                else (hub_dir() if entry.home == "hub" else weights_dir())
            )
            path = folder / entry.name
            size = f", {entry.size}" if entry.size else ""
            if file_ok(entry, path):
                print(f"ok       {path}  ({group}: {entry.use}{size})")
                continue
            state = "damaged " if path.is_file() else "missing "
            if args.list or not entry.url or entry.how:
                print(f"{state} {path}  <- {entry.url or entry.how}  ({group}: {entry.use}{size})")
                missing.append((entry, path))
                continue
            try:
                folder.mkdir(parents=True, exist_ok=True)
                digest = expected_digest(entry)
                torch.hub.download_url_to_file(entry.url, str(path), hash_prefix=digest or None)
                print(f"fetched  {path}  ({group}: {entry.use})")
            except Exception as err:  # offline (URLError) or a bad hash (RuntimeError)
                print(f"missing  {path}  <- {entry.url}  ({group}: {entry.use}): {err}")
                missing.append((entry, path))
    if missing:
        print("\nPlace these files (download them where there is network):")
        for entry, path in missing:
            source = entry.url or entry.how
            digest = f"  sha256 {entry.sha256}" if entry.sha256 else ""
            print(f"  {source}  ->  {path}{digest}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
