"""The any-size core: known pixels bit for bit at odd sizes for both fits, the crop against a
direct call of the model, seeding, and translation of edge maps, label maps and photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i2i.data.edge_maps import canny_edges
from i2i.images import to_uint8
from i2i.inference.model import load_model
from i2i.inference.panels import panel_image
from i2i.inference.run import (
    CONTEXT,
    Window,
    inpaint_batch,
    inpaint_image,
    inpainting_input,
    paste,
    plan_window,
    to_tensor,
    translate_image,
    translation_input,
)

R = (32, 32)


@pytest.fixture(scope="module")
def models(model_files):
    return {kind: load_model(path) for kind, path in model_files.items()}


def image_and_holes(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    known = np.ones((h, w), bool)
    for _ in range(3):  # several holes of odd sizes anywhere
        y, x = int(rng.integers(0, h - 9)), int(rng.integers(0, w - 11))
        known[y : y + int(rng.integers(1, 9)), x : x + int(rng.integers(1, 11))] = False
    return image, known


@pytest.mark.parametrize("size", [(301, 187), (1000, 333), (21, 45)])
@pytest.mark.parametrize("fit", ["crop", "resize"])
def test_known_pixels_are_returned_bit_for_bit(models, size, fit, one_torch_thread):
    image, known = image_and_holes(*size)
    outs = inpaint_image(models["inpainting"], image, known, seed=3, num_samples=2, fit=fit)
    assert len(outs) == 2
    for out in outs:
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out[known], image[known])
    assert (outs[0][~known] != outs[1][~known]).any()  # two samples differ in the hole
    again = inpaint_image(models["inpainting"], image, known, seed=3, num_samples=2, fit=fit)
    assert all(np.array_equal(a, b) for a, b in zip(outs, again, strict=True))
    other = inpaint_image(models["inpainting"], image, known, seed=4, fit=fit)[0]
    assert not np.array_equal(other, outs[0])


def test_a_small_hole_is_completed_at_the_model_resolution(models, one_torch_thread):
    """The crop of a hole that fits is the model's own input: the result in the hole is the
    model's output on that crop, byte for byte (the naive reference)."""
    model = models["inpainting"]
    image, _ = image_and_holes(301, 187, seed=1)
    known = np.ones(image.shape[:2], bool)
    known[200:207, 150:161] = False
    window = plan_window(known, R, "crop")
    assert (window.height, window.width) == R
    assert window.top <= 200 and window.top + 32 >= 207 and window.left + 32 <= 187
    out = inpaint_image(model, image, known, seed=5, index=2)[0]
    rows, cols = window.slices
    batch = {
        "image": to_tensor(image[rows, cols])[None],
        "mask": torch.from_numpy(known[rows, cols]).float()[None, None],
        "index": torch.tensor([2]),
    }
    direct = to_uint8(model.sample(batch, seed=5)[0])
    assert np.array_equal(out[rows, cols], direct)
    assert np.array_equal(out[~known], direct[~known[rows, cols]])


def test_windows_hold_the_holes_with_context():
    known = np.ones((1000, 333), bool)
    known[700:760, 10:50] = False  # a 60 x 40 box near the left edge
    w = plan_window(known, R, "crop")
    assert w.height >= CONTEXT * 60 and w.height == w.width  # the model's aspect, scaled
    assert 0 <= w.left <= 10 and w.left + w.width >= 50 and w.top <= 700 <= 760 <= w.top + w.height
    assert plan_window(known, R, "resize") == Window(0, 0, 1000, 333)
    assert plan_window(np.ones((40, 50), bool), R, "crop") == Window(0, 0, 40, 50)  # no hole
    with pytest.raises(ValueError, match="fit must be one of"):
        plan_window(known, R, "stretch")


def test_a_thin_hole_survives_the_resize():
    """A 1-pixel hole is still a hole at the model's resolution (a model pixel is a hole when
    any pixel under it is), and the file's content under the hole does not leak in."""
    image = np.full((300, 200, 3), 40, np.uint8)
    known = np.ones((300, 200), bool)
    known[150, 77] = False
    image[150, 77] = 255
    window = plan_window(known, R, "resize")
    x, mask = inpainting_input(image, known, window, R)
    assert mask.shape == (1, 32, 32) and int((mask == 0).sum()) == 1
    assert torch.allclose(x, torch.full_like(x, 40 / 127.5 - 1), atol=1e-5)


def test_the_channel_at_a_time_window_equals_the_whole_float_window():
    """inpainting_input and paste work one channel at a time, in bytes where they can (a
    12000x9000 window in float32 is 1.3 GB a copy): the same model input and the same bytes as
    the plain whole-window float computation."""
    import torch.nn.functional as F
    import torchvision.transforms.functional as TF

    rng = np.random.default_rng(5)
    for (h, w), window, resolution in [
        ((301, 187), Window(0, 0, 301, 187), (32, 32)),
        ((90, 70), Window(10, 5, 23, 41), (48, 32)),
        ((20, 17), Window(0, 0, 20, 17), (32, 32)),
    ]:
        image, known = image_and_holes(h, w, seed=int(rng.integers(100)))
        rows, cols = window.slices
        x = to_tensor(image[rows, cols])
        hole = torch.from_numpy(~known[rows, cols])[None].float()
        mean = (x * (1 - hole)).sum((1, 2), keepdim=True) / (1 - hole).sum().clamp(min=1)
        filled = x * (1 - hole) + mean * hole
        reference = TF.resize(
            filled, list(resolution), antialias=True, interpolation=TF.InterpolationMode.BICUBIC
        ).clamp(-1, 1)
        small_hole = (F.interpolate(hole[None], size=resolution, mode="area")[0] > 0).float()
        got, mask = inpainting_input(image, known, window, resolution)
        assert torch.equal(mask, 1 - small_hole)
        assert torch.allclose(got, reference, atol=1e-6)  # the mean: summed in int64, not float
        output = torch.rand(3, *resolution) * 2.2 - 1.1
        up = F.interpolate(
            output[None], size=(window.height, window.width), mode="bicubic", align_corners=False
        )[0]
        expected = image.copy()
        region = expected[rows, cols]
        region[~known[rows, cols]] = to_uint8(up.clamp(-1, 1))[~known[rows, cols]]
        assert np.array_equal(paste(image, known, window, output), expected)


def test_batches_repeat_and_keep_known_pixels(models, one_torch_thread):
    items = [(*image_and_holes(61, 97, seed=s), s) for s in range(3)]
    first = inpaint_batch(models["inpainting"], items, seed=2, num_samples=2)
    second = inpaint_batch(models["inpainting"], items, seed=2, num_samples=2)
    for (image, known, _), outs, again in zip(items, first, second, strict=True):
        for out, out2 in zip(outs, again, strict=True):
            assert np.array_equal(out, out2) and np.array_equal(out[known], image[known])


def test_translate_edge_maps_label_maps_and_photos(models, one_torch_thread):
    rng = np.random.default_rng(0)
    edges, labels = models["edges"], models["labels"]
    drawing = np.full((50, 71), 255, np.uint8)
    drawing[10:40, 20] = 0  # black lines on white
    drawing[25, 5:60] = 0
    for cond in (drawing, np.repeat(drawing[..., None], 3, axis=2)):
        outs = translate_image(edges, cond, seed=1, num_samples=2)
        assert [o.shape for o in outs] == [(50, 71, 3)] * 2 and outs[0].dtype == np.uint8
        assert not np.array_equal(outs[0], outs[1])
        assert np.array_equal(outs[0], translate_image(edges, cond, seed=1)[0])
    # The same lines drawn white on black give the same condition.
    _, a = translation_input(edges, drawing)
    _, b = translation_input(edges, 255 - drawing, edge_polarity="white_on_black")
    assert torch.equal(a, b) and a.shape == (1, 32, 32) and a.max() > 0  # lines, resized

    label = rng.integers(1, 4, (45, 60))
    key, cond = translation_input(labels, label)
    assert key == "label" and cond.dtype == torch.int64 and cond.shape == (32, 32)
    assert set(cond.unique().tolist()) <= {1, 2, 3}  # NEAREST: no new class ids
    out = translate_image(labels, label, seed=0)[0]
    assert out.shape == (45, 60, 3)
    with pytest.raises(ValueError, match="outside 0..4"):
        translate_image(labels, np.full((8, 8), 7))
    with pytest.raises(ValueError, match="integer class ids"):
        translate_image(labels, np.zeros((8, 8), np.float32))

    photo = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    key, cond = translation_input(edges, photo, edges_from_photo=True)
    resized = torch.nn.functional.interpolate(
        to_tensor(photo)[None], size=R, mode="bicubic", antialias=True
    )[0].clamp(-1, 1)
    assert key == "edges" and torch.equal(cond, canny_edges(resized))
    assert translate_image(edges, photo, edges_from_photo=True)[0].shape == (40, 52, 3)


def test_panel_and_conversions():
    x = torch.rand(3, 5, 7) * 2 - 1
    u = to_uint8(x)
    assert u.shape == (5, 7, 3) and np.array_equal(to_uint8(to_tensor(u)), u)
    panel = panel_image([u, u, u])
    assert panel.shape == (5 + 4, 3 * 7 + 4 * 2, 3) and np.array_equal(panel[2:7, 2:9], u)
