"""`i2i-weights`: put the pretrained weights the metrics and losses use into the torch hub cache.

Online, it downloads each missing file and checks its SHA-256 against the prefix in its name (the
torch hub convention). Offline, it prints the files needed, their URLs and where they go, and
exits with status 1. Nothing else in i2i downloads weights: everything loads from this cache.

    i2i-weights              # download what is missing, check what is there
    i2i-weights --list       # only print the table
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

from i2i.metrics.features import INCEPTION_FILENAME, INCEPTION_URL

# (file, URL, what uses it); the hash prefix is the last '-' part of the file name.
WEIGHTS = (
    (INCEPTION_FILENAME, INCEPTION_URL, "P-IDS / U-IDS / FID (Inception-v3 of the FID network)"),
    (
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "LPIPS diversity (torchmetrics, AlexNet)",
    ),
    (
        "vgg16-397923af.pth",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "the optional perceptual loss (VGG-16)",
    ),
)


def hash_prefix(filename: str) -> str:
    return Path(filename).stem.rsplit("-", 1)[-1]


def file_ok(path: Path) -> bool:
    if not path.is_file():
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(hash_prefix(path.name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--list", action="store_true", help="print the files and exit")
    parser.add_argument("--dir", default=None, help="target folder (default: the torch hub cache)")
    args = parser.parse_args(argv)
    folder = Path(args.dir) if args.dir else Path(torch.hub.get_dir()) / "checkpoints"
    missing = []
    for name, url, use in WEIGHTS:
        path = folder / name
        if file_ok(path):
            print(f"ok       {path}  ({use})")
            continue
        if args.list:
            print(f"missing  {path}  <- {url}  ({use})")
            missing.append((name, url))
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix(name))
            print(f"fetched  {path}  ({use})")
        except Exception as err:  # offline (URLError) or a bad hash (RuntimeError)
            print(f"missing  {path}  <- {url}  ({use}): {err}")
            missing.append((name, url))
    if missing:
        print(f"\nPlace these files in {folder} (download them where there is network):")
        for name, url in missing:
            print(f"  {url}  ->  {folder / name}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
