"""Image tensors as bytes: the one conversion from the [-1, 1] float images that datasets,
networks and tasks share to the uint8 arrays that image files hold."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, C) uint8, or (H, W) for one channel (a grey image).
    Rounded, so a pixel read by `i2i.data.datasets.image_to_tensor` comes back as its own byte;
    values outside [-1, 1] saturate."""
    x = x.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round()
    return x.to(torch.uint8).permute(1, 2, 0).squeeze(-1).numpy()
