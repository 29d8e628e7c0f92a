"""Tests for the built-in procedural ShapesDataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i2i.data import batch
from i2i.data.batch import validate_sample
from i2i.data.synthetic import CLASS_NAMES, NUM_CLASSES, PALETTE, ShapesDataset


def _naive_edges(label: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """Reference: a pixel is an edge if any in-image 4-neighbour has a different label."""
    h, w = label.shape
    out = np.zeros((size, size), dtype=bool)
    for y in range(top, top + size):
        for x in range(left, left + size):
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ny, nx = y + dy, x + dx
                if 0 <= ny < h and 0 <= nx < w and label[ny, nx] != label[y, x]:
                    out[y - top, x - left] = True
    return out


def test_constants() -> None:
    assert len(CLASS_NAMES) == NUM_CLASSES and CLASS_NAMES[0] == "background"
    assert PALETTE.shape == (NUM_CLASSES, 3) and PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in PALETTE.tolist()}) == NUM_CLASSES  # distinguishable


def test_deterministic_in_seed_and_index() -> None:
    a, b = ShapesDataset(32, 16, seed=0), ShapesDataset(32, 16, seed=0)
    for i in (0, 5, 15):
        x, y = a[i], b[i]
        for key in (batch.IMAGE, batch.EDGES, batch.LABEL):
            assert torch.equal(x[key], y[key])
        assert x[batch.INDEX] == i
    assert not torch.equal(a[0][batch.IMAGE], a[1][batch.IMAGE])
    assert not torch.equal(a[0][batch.IMAGE], ShapesDataset(32, 16, seed=1)[0][batch.IMAGE])
    assert torch.equal(a[-1][batch.IMAGE], a[15][batch.IMAGE])
    with pytest.raises(IndexError):
        a[16]


def test_shapes_dtypes_ranges() -> None:
    ds = ShapesDataset(64, 32)
    assert len(ds) == 32
    for i in range(8):
        s = ds[i]
        validate_sample(s, f"ShapesDataset[{i}]")
        img, edges, label = s[batch.IMAGE], s[batch.EDGES], s[batch.LABEL]
        assert img.shape == (3, 64, 64) and img.dtype == torch.float32
        assert img.min() >= -1 and img.max() <= 1
        assert img.std() > 0.05  # not a flat image
        assert edges.shape == (1, 64, 64) and edges.dtype == torch.float32
        assert set(edges.unique().tolist()) <= {-1.0, 1.0}
        assert label.shape == (64, 64) and label.dtype == torch.int64
        assert label.min() >= 0 and label.max() < NUM_CLASSES
        assert (label == 0).any() and (label > 0).any()  # background and at least one shape


def test_edges_match_naive_reference() -> None:
    ds = ShapesDataset(64, 64)
    checked = 0
    for i in range(12):
        s = ds[i]
        label = s[batch.LABEL].numpy()
        edges = s[batch.EDGES][0].numpy() > 0
        for top, left in ((0, 0), (20, 30), (48, 48)):
            ref = _naive_edges(label, top, left, 16)
            assert np.array_equal(edges[top : top + 16, left : left + 16], ref), (i, top, left)
            checked += int(ref.any())
    assert checked > 5  # the crops did contain edges


def test_every_class_appears() -> None:
    ds = ShapesDataset(32, 200)
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    for i in range(len(ds)):
        counts += np.bincount(ds[i][batch.LABEL].numpy().ravel(), minlength=NUM_CLASSES)
    assert (counts > 0).all(), dict(zip(CLASS_NAMES, counts.tolist(), strict=True))
    assert counts[0] == counts.max()  # background dominates


def test_colour_predictable_from_class() -> None:
    # Mean colour per class must differ between classes, otherwise labels->photo is hopeless.
    ds = ShapesDataset(32, 120)
    sums = np.zeros((NUM_CLASSES, 3))
    n = np.zeros(NUM_CLASSES)
    for i in range(len(ds)):
        s = ds[i]
        img = s[batch.IMAGE].numpy().reshape(3, -1)
        lab = s[batch.LABEL].numpy().ravel()
        for c in range(NUM_CLASSES):
            sel = lab == c
            sums[c] += img[:, sel].sum(1)
            n[c] += sel.sum()
    means = sums / n[:, None]
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert dist[~np.eye(NUM_CLASSES, dtype=bool)].min() > 0.15


def test_rectangular_size() -> None:
    s = ShapesDataset((32, 64), 4)[0]
    validate_sample(s, "rect")
    assert s[batch.IMAGE].shape == (3, 32, 64)
    assert s[batch.EDGES].shape == (1, 32, 64)
    assert s[batch.LABEL].shape == (32, 64)


def test_fewer_classes_and_bad_args() -> None:
    ds = ShapesDataset(32, 50, num_classes=3)
    assert max(int(ds[i][batch.LABEL].max()) for i in range(len(ds))) <= 2
    with pytest.raises(ValueError, match="num_classes"):
        ShapesDataset(num_classes=NUM_CLASSES + 1)
    with pytest.raises(ValueError, match="size"):
        ShapesDataset(size=4)
    with pytest.raises(ValueError, match="length"):
        ShapesDataset(length=0)


def test_collates_into_a_batch() -> None:
    loader = torch.utils.data.DataLoader(ShapesDataset(32, 8), batch_size=4)
    b = next(iter(loader))
    assert b[batch.IMAGE].shape == (4, 3, 32, 32)
    assert b[batch.LABEL].shape == (4, 32, 32)
    assert b[batch.INDEX].dtype == torch.int64 and b[batch.INDEX].tolist() == [0, 1, 2, 3]
