"""Every pretrained file i2i knows: where it is published, where it goes, what uses it.

Two homes: files that torchvision/torch-fidelity architectures load live in the torch hub cache
(`$TORCH_HOME/hub/checkpoints`, the torch convention, hash prefix in the name); everything else
(published CoModGAN models, segmenters) lives in `weights_dir()` (`$I2I_WEIGHTS`, default
`~/.cache/i2i/weights`). Nothing downloads at run time: `i2i-weights` fetches or lists them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from i2i.io import sha256_of


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
# `i2i convert FILE --out PATH` turns each into an i2i model. The official pickles are shared
# from the official README's Google Drive folder and the port's G_ema files from the SharePoint
# links of its download scripts: both need a browser, and no public source gives their sizes or
# SHA-256 (unchecked here).
_DRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"
_OFFICIAL_HOW = (
    "by hand from the official Google Drive folder "
    "(https://drive.google.com/drive/folders/1zSJj1ichgSA-4sECGm-fQ0Ww8aiwpkoO): {}"
)
_PORT = (
    "https://maildluteducn-my.sharepoint.com/:u:/g/personal/zengyu_mail_dlut_edu_cn/{}?download=1"
)
_PORT_HOW = "by hand from co-mod-gan-pytorch's SharePoint link (its download/*.sh): {}"


def _official(name: str, drive_id: str, use: str) -> WeightFile:
    url = _DRIVE.format(drive_id)
    return WeightFile(name, url, f"i2i convert: {use}", how=_OFFICIAL_HOW.format(url))


def _port(name: str, link_id: str, use: str) -> WeightFile:
    url = _PORT.format(link_id)
    return WeightFile(name, url, f"i2i convert: {use}", how=_PORT_HOW.format(url))


COMODGAN_FILES: tuple[WeightFile, ...] = (
    _official(
        "co-mod-gan-ffhq-9-025000.pkl",
        "1b3XxfAmJ9k2vd73j-3nPMr_lvNMQOFGE",
        "FFHQ 512 inpainting (official G, D, G_ema)",
    ),
    _official(
        "co-mod-gan-ffhq-10-025000.pkl",
        "1M2dSxlJnCFNM6LblpB2nQCnaimgwaaKu",
        "FFHQ 1024 inpainting (official G, D, G_ema)",
    ),
    _official(
        "co-mod-gan-places2-050000.pkl",
        "1dJa3DRWIkx6Ebr8Sc0v1FdvWf6wkd010",
        "Places2 512 inpainting (official G, D, G_ema)",
    ),
    _official(
        "co-mod-gan-coco-stuff-025000.pkl",
        "1Ol9_pKMpfIHHwbdE7RFmJcCAzfj8hqxQ",
        "COCO-Stuff 512 labels -> photo (official G, D, G_ema)",
    ),
    _official(
        "co-mod-gan-edges2shoes-025000.pkl",
        "155p-_zAtL8RJSsKHAWrRaGxJVzT4NZKg",
        "edges2shoes 256 edges -> photo (official G, D, G_ema)",
    ),
    _official(
        "co-mod-gan-edges2handbags-025000.pkl",
        "1nBIQaUs6fXRpEt1cweqQKtWVw5UZAqLi",
        "edges2handbags 256 edges -> photo (official G, D, G_ema)",
    ),
    _port(
        "co-mod-gan-ffhq-9-025000_net_G_ema.pth",
        "Ee1YPJG2Y7NDnUjJBf-SipoBBSlbv8QfFy6K7lsiiiiFHg",
        "FFHQ 512 inpainting (the port's G_ema, converted from the official pickle)",
    ),
    _port(
        "co-mod-gan-ffhq-10-025000_net_G_ema.pth",
        "EXcZ9OHEFQFAqhe1GQVFZ_4BwWoTvWyDM429gP5XrPAdaQ",
        "FFHQ 1024 inpainting (the port's G_ema, converted from the official pickle)",
    ),
    _port(
        "co-mod-gan-places2-050000_net_G_ema.pth",
        "EQG9jJzkFLJDsOWmVJJSoqQB2jRDkXlYt3wnt9Fb9dJDsQ",
        "Places2 512 inpainting (the port's G_ema, converted from the official pickle)",
    ),
)

# --- segmenters for semantic consistency (i2i.metrics.semantic) --------------------------------
# No public source gives their SHA-256 or sizes: unchecked here, and `i2i test` records the
# digest of the file it loaded in its JSON protocol. UperNet's two files are published as
# encoder_epoch_50.pth / decoder_epoch_50.pth in a folder per model: here they carry its name.
SEGMENTER_FILES: tuple[WeightFile, ...] = (
    WeightFile(
        "drn-d-105_ms_cityscapes.pth",
        "",
        "semantic consistency on Cityscapes (DRN-D-105, 19 train ids; pix2pixHD, SPADE)",
        how="the DRN-D-105 Cityscapes model of the DRN authors (github.com/fyu/drn), the file "
        "pix2pixHD / SPADE / GAN Compression evaluations load under this name",
    ),
    WeightFile(
        "deeplabv2_resnet101_msc-cocostuff164k-100000.pth",
        "https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/"
        "deeplabv2_resnet101_msc-cocostuff164k-100000.pth",
        "semantic consistency on COCO-Stuff (DeepLab-v2 ResNet-101, 182 classes; SPADE)",
    ),
    WeightFile(
        "ade20k-resnet101-upernet-encoder_epoch_50.pth",  # the release's encoder_epoch_50.pth
        "http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet101-upernet/"
        "encoder_epoch_50.pth",
        "semantic consistency on ADE20K (UperNet ResNet-101 encoder, 150 classes; SPADE)",
    ),
    WeightFile(
        "ade20k-resnet101-upernet-decoder_epoch_50.pth",  # the release's decoder_epoch_50.pth
        "http://sceneparsing.csail.mit.edu/model/pytorch/ade20k-resnet101-upernet/"
        "decoder_epoch_50.pth",
        "semantic consistency on ADE20K (UperNet ResNet-101 decoder)",
    ),
)


def all_files() -> tuple[WeightFile, ...]:
    return METRIC_FILES + COMODGAN_FILES + SEGMENTER_FILES
