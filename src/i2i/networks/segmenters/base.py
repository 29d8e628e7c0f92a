"""What the three published segmenters share: the [-1, 1] input contract, lazy loading of the
published files from the weights folder (no download), exact state-dict matching with errors that
name the keys, and the protocol record (input size, scales, file and its SHA-256).

A segmenter maps images in [-1, 1] to logits (N, num_classes, H', W'); H', W' need not be the
input's size: `SemanticConsistency` resizes the logits to the label map's size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from i2i.io import sha256_of
from i2i.weights.registry import expected_digest, find, path_of


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped: generator outputs may overshoot.

    Args:
        images: (N, 3, H, W) in [-1, 1] (values outside are clamped after the shift).

    Returns:
        float32 (N, 3, H, W) in [0, 1].
    """
    return ((images.float() + 1) / 2).clamp(0, 1)


def bn(channels: int) -> nn.BatchNorm2d:
    """A BatchNorm2d over `channels`, as the published files name their norms.

    Args:
        channels: the number of channels.
    """
    return nn.BatchNorm2d(channels)


def conv(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """A bias-free k x k convolution that keeps the size at stride 1 ('same' padding).

    Args:
        cin: input channels.
        cout: output channels.
        k: odd kernel side.
        stride: stride along H and W.
        dilation: dilation along H and W (the padding grows with it).
    """
    return nn.Conv2d(
        cin, cout, k, stride, padding=dilation * (k // 2), dilation=dilation, bias=False
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth file (a plain dict, or one under "state_dict").

    Args:
        path: the .pth file; loaded with `weights_only=True` onto the CPU.

    Returns:
        The parameter and buffer tensors by name.

    Raises:
        ValueError: the file cannot be read, or does not hold a state dict of tensors.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, pickle of arbitrary objects, not a torch file
        raise ValueError(f"cannot read the weights file {path}: {err}") from err
    if (
        isinstance(state, Mapping)
        and "state_dict" in state
        and isinstance(state["state_dict"], Mapping)
    ):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(f"the weights file {path} does not hold a state dict of tensors")
    return dict(state)


def load_exact(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state` into `module` with every key and shape matching.

    BatchNorm's `num_batches_tracked` (absent from files saved before PyTorch 0.4.1) is the only
    key allowed to be missing.

    Args:
        module: the network to load into.
        state: the tensors by name, as `read_state_dict` returns them.
        source: how to name where `state` comes from in the error message.

    Raises:
        ValueError: naming the missing keys, the unexpected ones and the shape mismatches.
    """
    own = module.state_dict()
    state = dict(state)
    for key in own:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = own[key]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(state[k].shape)}, {type(module).__name__} {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:

        def listed(items: Sequence[str]) -> str:
            more = f" (+{len(items) - 10} more)" if len(items) > 10 else ""
            return ", ".join(items[:10]) + more

        parts = [
            f"{name} {listed(items)}"
            for name, items in (
                ("missing keys:", missing),
                ("unexpected keys:", unexpected),
                ("shape mismatches:", shapes),
            )
            if items
        ]
        raise ValueError(
            f"{source} does not fit {type(module).__name__}: " + "; ".join(parts) + ". Use the "
            "published file named in `i2i-weights --only segmenters`, unchanged."
        )
    module.load_state_dict(state, strict=True)


class Segmenter(nn.Module):
    """Base of the published segmenters: images in [-1, 1] -> class logits.

    Args:
        num_classes: the number of classes C of the logits.
        weights: `"published"` (the registry's file(s) in the weights folder, loaded at the first
            `load_weights()` or forward), a path (one file; UperNet:
            `"encoder.pth,decoder.pth"`), or None (random initialisation: tests, fine-tuning).
    """

    #: registry names of the published files, in the order `_load_files` takes them
    published: tuple[str, ...] = ()

    def __init__(self, num_classes: int, weights: str | None = "published"):
        super().__init__()
        self.num_classes = int(num_classes)
        self.weights = weights
        self._files: list[dict[str, Any]] = []  # what was loaded: name, path, sha256, source
        self._loaded = weights is None

    # ---- weights -----------------------------------------------------------------------------

    def weight_paths(self) -> list[tuple[Path, str]]:
        """(path, where it comes from) per file, checked to exist: a missing published file stops
        here with its name, its source and the folder it goes in."""
        if self.weights == "published":
            out = []
            for name in self.published:
                entry = find(name)
                path = path_of(entry)
                if not path.is_file():
                    raise FileNotFoundError(
                        f"{type(self).__name__} needs the published weights file {path.name} "
                        f"({entry.use}), not found in {path.parent}. It is published at "
                        f"{entry.url or entry.how}: download it where there is network and place "
                        f"it at {path} (or point I2I_WEIGHTS at the folder that holds it; "
                        "`i2i-weights --only segmenters` lists every file)."
                    )
                out.append((path, entry.url or entry.how))
            return out
        paths = [Path(p.strip()).expanduser() for p in str(self.weights).split(",")]
        if len(paths) != max(len(self.published), 1):
            raise ValueError(
                f"{type(self).__name__} weights={self.weights!r}: give {len(self.published)} "
                f"comma-separated files ({', '.join(self.published)}), or 'published'"
            )
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{type(self).__name__}: no weights file at {path} (weights={self.weights!r})"
                )
        return [(p, "given by the user") for p in paths]

    def load_weights(self) -> None:
        """Load the weights once (idempotent); checks the SHA-256 where the registry knows it and
        records every file's digest for the protocol."""
        if self._loaded:
            return
        files = []
        states = []
        for (path, source), name in zip(self.weight_paths(), self.published or ("",), strict=False):
            digest = sha256_of(path)
            expected = expected_digest(find(name)) if self.weights == "published" else ""
            if expected and not digest.startswith(expected):
                raise ValueError(
                    f"the weights file {path} is damaged or another file: SHA-256 {digest}, "
                    f"expected {expected} (published at {source}); download it again"
                )
            files.append({"file": path.name, "path": str(path), "sha256": digest, "source": source})
            states.append((read_state_dict(path), f"the weights file {path} ({source})"))
        self._load_files(states)
        self._files, self._loaded = files, True

    def _load_files(self, states: list[tuple[dict[str, torch.Tensor], str]]) -> None:
        ((state, source),) = states
        load_exact(self, state, source)

    # ---- the contract ------------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> logits (N, num_classes, H', W').

        Loads the weights first if they are not loaded yet.

        Args:
            images: (N, 3, H, W) RGB in [-1, 1].

        Returns:
            Logits (N, num_classes, H', W'); H', W' depend on the segmenter (see `segment`).

        Raises:
            ValueError: `images` is not (N, 3, H, W), or a weights file does not fit.
            FileNotFoundError: a weights file is missing.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{type(self).__name__} takes (N, 3, H, W) images, got {tuple(images.shape)}"
            )
        self.load_weights()
        return self.segment(images)

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """The network itself, once the weights are loaded: what each segmenter implements.

        Args:
            images: (N, 3, H, W) RGB in [-1, 1].

        Returns:
            Logits (N, num_classes, H', W').
        """
        raise NotImplementedError

    def protocol(self) -> dict[str, Any]:
        """How this segmenter scores: recorded in `i2i test`'s JSON."""
        return {
            "segmenter": type(self).__name__,
            "num_classes": self.num_classes,
            "weights": self._files if self.weights is not None else "random initialisation",
        }


class Bottleneck(nn.Module):
    """The ResNet bottleneck of torchvision, DRN and CSAIL's encoder alike.

    1x1 reduce, 3x3 (strided, dilated), 1x1 expand x4; projection shortcut where the shape
    changes. The stride sits on the 3x3 convolution. Their state dicts share these names.

    Args:
        cin: input channels.
        width: channels of the 1x1 and 3x3 convolutions; the output has 4 x width.
        stride: stride of the 3x3 convolution and of the shortcut.
        dilation: dilation of the 3x3 convolution.
    """

    def __init__(self, cin: int, width: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1, self.bn1 = conv(cin, width, 1), bn(width)
        self.conv2, self.bn2 = conv(width, width, 3, stride, dilation), bn(width)
        self.conv3, self.bn3 = conv(width, 4 * width, 1), bn(4 * width)
        self.downsample = (
            nn.Sequential(conv(cin, 4 * width, 1, stride), bn(4 * width))
            if stride != 1 or cin != 4 * width
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: (N, cin, H, W).

        Returns:
            (N, 4 * width, H / stride, W / stride) (rounded up).
        """
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))
