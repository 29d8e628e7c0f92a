"""Inception-v3 pool3 features of the FID network, loaded offline; the official uint8 quantisation.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` ("inception-v3-compat"): the
2015-12-05 TensorFlow Inception graph of FID, converted to PyTorch, the same weights file that
torchmetrics' FID uses. Its forward takes uint8 images of any size, resizes them to 299 x 299 with
the TF1-compatible bilinear resize of the original graph (no antialiasing, unlike torchmetrics'
FID default) and returns the 2048-d average-pooled features ("pool3").

Nothing is downloaded implicitly: the weights file is looked up in torch hub's cache,
``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), or given explicitly, and its
SHA-256 is checked against the prefix in its name (torch hub's convention).
``download_inception_weights`` fetches it when online.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from i2i.io import sha256_of

__all__ = [
    "INCEPTION_FILENAME",
    "INCEPTION_HASH_PREFIX",
    "INCEPTION_URL",
    "InceptionFeatures",
    "build_inception",
    "default_weights_dir",
    "download_inception_weights",
    "find_inception_weights",
    "inception_feature_extractor",
    "quantize_images",
]

INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_HASH_PREFIX = "6726825d"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILENAME
)


def default_weights_dir() -> Path:
    """Where torch hub (and torchmetrics' FID) caches the file: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_inception_weights(
    weights_path: str | os.PathLike | None = None, check_hash: bool = True
) -> Path:
    """The Inception weights file to load, checked to exist (and by hash).

    Args:
        weights_path: a file, or a folder holding the official file name; None looks in the torch
            hub cache (`default_weights_dir()`).
        check_hash: require the file's SHA-256 to start with ``6726825d`` (the prefix in the
            official name).

    Returns:
        The file's path.

    Raises:
        FileNotFoundError: no file there (the message says where to download it).
        ValueError: the hash does not match.
    """
    if weights_path is None:
        path = default_weights_dir() / INCEPTION_FILENAME
    else:
        path = Path(weights_path).expanduser()
        if path.is_dir():
            path = path / INCEPTION_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"Inception weights file {path.name!r} not found at {path}. Download {INCEPTION_URL} "
            f"(about 95 MB) and place it in {path.parent}/, or call "
            "i2i.metrics.features.download_inception_weights() on a machine with network, "
            "or pass weights_path= to its location."
        )
    if check_hash:
        found = sha256_of(path)
        if not found.startswith(INCEPTION_HASH_PREFIX):
            raise ValueError(
                f"Inception weights file {path} has SHA-256 starting with {found[:8]!r}, expected "
                f"{INCEPTION_HASH_PREFIX!r} (the prefix in the official name): the file is corrupt "
                f"or not the FID network. Re-download {INCEPTION_URL}, or pass check_hash=False "
                "to load it anyway (numbers are then not comparable with published ones)."
            )
    return path


class _FidelityInceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's network built without its own loader, which downloads when given no path.

    Its constructor loads whatever file it is given: it gets an empty in-memory placeholder, skipped
    here, and the real weights are loaded after construction (strictly) by ``build_inception``.
    """

    def __init__(self) -> None:
        placeholder = io.BytesIO()
        torch.save({}, placeholder)
        placeholder.seek(0)
        super().__init__(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=placeholder
        )

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        if not state_dict:  # the constructor's placeholder
            return None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def build_inception(state_dict: dict[str, Tensor] | None = None) -> FeatureExtractorInceptionV3:
    """torch-fidelity's Inception-v3 (features ["2048"]), frozen in eval mode.

    Args:
        state_dict: the weights, loaded strictly; None leaves the network randomly initialised
            (tests, shapes, timing).

    Returns:
        The network, without gradients, in eval mode.

    Raises:
        ValueError: `state_dict` is empty.
    """
    net = _FidelityInceptionV3()
    if state_dict is not None:
        if not state_dict:
            raise ValueError("the Inception state dict is empty")
        net.load_state_dict(state_dict, strict=True)
    return net.requires_grad_(False).eval()


class InceptionFeatures(nn.Module):
    """uint8 images (N, 3, H, W), any H and W, -> (N, 2048) float32 pool3 features.

    Always in eval mode (batch norm must use its stored statistics) and without gradients.

    Args:
        net: the network from `build_inception`.
    """

    num_features = 2048

    def __init__(self, net: FeatureExtractorInceptionV3) -> None:
        super().__init__()
        self.net = net.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Stay in eval mode whatever `mode` asks: batch norm must use its stored statistics.

        Args:
            mode: ignored.

        Returns:
            This module, in eval mode.
        """
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        """The pool3 features of uint8 images.

        Args:
            images: uint8 (N, 3, H, W) in 0..255, any H and W (resized to 299 x 299 inside); see
                `quantize_images` for float images.

        Returns:
            float32 (N, 2048).

        Raises:
            ValueError: `images` is not uint8 (N, 3, H, W).
        """
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                "Inception features need uint8 images (N, 3, H, W), got "
                f"{images.dtype} {tuple(images.shape)}; quantise floats in [-1, 1] with "
                "quantize_images()"
            )
        with torch.no_grad():
            return self.net(images)[0]


def inception_feature_extractor(
    weights_path: str | os.PathLike | None = None, check_hash: bool = True
) -> InceptionFeatures:
    """The FID Inception-v3 pool3 extractor, loaded offline (see `find_inception_weights`).

    Args:
        weights_path: the weights file or its folder; None looks in the torch hub cache.
        check_hash: check the file's SHA-256 prefix.

    Returns:
        The extractor: uint8 (N, 3, H, W) -> float32 (N, 2048).

    Raises:
        FileNotFoundError: the weights file is missing.
        ValueError: the hash does not match, or the file holds no state dict.
    """
    path = find_inception_weights(weights_path, check_hash=check_hash)
    # weights_only: the official file is a plain state dict, no need to unpickle arbitrary objects.
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state_dict).__name__})")
    return InceptionFeatures(build_inception(state_dict))


def quantize_images(x: Tensor) -> Tensor:
    """Float images in [-1, 1] -> uint8 as the official (TensorFlow) evaluation does.

    floor(x * 127.5 + 128), clipped to [0, 255]. That is round-half-UP of x * 127.5 + 127.5
    (a value k + 0.5 goes to k + 1), not torch.round's round-half-to-even.

    Args:
        x: float images (any shape) in [-1, 1]; values outside are clipped.

    Returns:
        uint8 of the same shape, in 0..255.

    Raises:
        ValueError: `x` is not a floating-point tensor.
    """
    if not x.is_floating_point():
        raise ValueError(f"quantize_images expects float images in [-1, 1], got dtype {x.dtype}")
    return (x * 127.5 + 128).floor().clamp(0, 255).to(torch.uint8)


def download_inception_weights(dest_dir: str | os.PathLike | None = None) -> Path:
    """Download the weights into ``dest_dir`` and check the hash.

    A file already there with the right hash is kept.

    Args:
        dest_dir: the folder; None is the torch hub cache (`default_weights_dir()`).

    Returns:
        The file's path.

    Raises:
        RuntimeError: the download failed (no network).
        ValueError: the downloaded file's hash does not match; nothing is written.
    """
    folder = Path(dest_dir).expanduser() if dest_dir is not None else default_weights_dir()
    target = folder / INCEPTION_FILENAME
    if target.is_file() and sha256_of(target).startswith(INCEPTION_HASH_PREFIX):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(
            INCEPTION_URL, str(target), hash_prefix=INCEPTION_HASH_PREFIX, progress=True
        )
    except OSError as err:  # URLError, socket errors: no network
        raise RuntimeError(
            f"Could not download {INCEPTION_URL} to {target} ({err}). Without network, download "
            f"it on another machine and copy it to {target}."
        ) from err
    except RuntimeError as err:  # torch hub's hash check
        raise ValueError(
            f"Downloaded {INCEPTION_URL} but its SHA-256 does not start with "
            f"{INCEPTION_HASH_PREFIX!r} ({err}); nothing was written to {target}."
        ) from err
    return target
