"""Every pretrained file i2i knows: where it is published, where it goes, what uses it.

Two homes: files that torchvision/torch-fidelity architectures load live in the torch hub cache
(`$TORCH_HOME/hub/checkpoints`, the torch convention, hash prefix in the name); everything else
(published CoModGAN models, segmenters) lives in `weights_dir()` (`$I2I_WEIGHTS`, default
`~/.cache/i2i/weights`). Nothing downloads at run time: `i2i-weights` fetches or lists them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class WeightFile:
    name: str  # file name in its home folder
    url: str  # where it is published ("" when it must be fetched by hand; see `how`)
    use: str  # what in i2i reads it
    home: str = "i2i"  # "hub" (torch hub cache) or "i2i" (weights_dir())
    sha256: str = ""  # full digest where known; hub files check the prefix in their name
    size: str = ""  # published size, for the table
    how: str = ""  # how to obtain it when a plain download does not work


def weights_dir() -> Path:
    return Path(os.environ.get("I2I_WEIGHTS", Path.home() / ".cache" / "i2i" / "weights"))


def hub_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def path_of(entry: WeightFile) -> Path:
    return (hub_dir() if entry.home == "hub" else weights_dir()) / entry.name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_digest(entry: WeightFile) -> str:
    """The full digest if known, else the torch hub prefix in the name, else "" (unchecked)."""
    if entry.sha256:
        return entry.sha256
    if entry.home == "hub":
        return Path(entry.name).stem.rsplit("-", 1)[-1]
    return ""


def file_ok(entry: WeightFile, path: Path | None = None) -> bool:
    path = path or path_of(entry)
    if not path.is_file():
        return False
    expected = expected_digest(entry)
    return not expected or sha256_of(path).startswith(expected)


def find(name: str) -> WeightFile:
    for entry in all_files():
        if entry.name == name:
            return entry
    raise KeyError(f"no weights file named {name!r} in i2i.weights.registry")


# --- metrics and losses (torchvision / torch-fidelity architectures) ---------------------------
METRIC_FILES = (
    WeightFile(
        "weights-inception-2015-12-05-6726825d.pth",
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth",
        "P-IDS / U-IDS / FID (Inception-v3 of the FID network)",
        home="hub",
    ),
    WeightFile(
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "LPIPS (torchmetrics, AlexNet)",
        home="hub",
    ),
    WeightFile(
        "vgg16-397923af.pth",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "the perceptual loss (VGG-16)",
        home="hub",
    ),
)

# --- published CoModGAN models (i2i.weights.comodgan) ------------------------------------------
COMODGAN_FILES: tuple[WeightFile, ...] = ()

# --- segmenters for semantic consistency (i2i.metrics.semantic) --------------------------------
SEGMENTER_FILES: tuple[WeightFile, ...] = ()


def all_files() -> tuple[WeightFile, ...]:
    return METRIC_FILES + COMODGAN_FILES + SEGMENTER_FILES
