"""The published segmenters: their files' key names and shapes (read from the public code, as a
table), loading exactly (a wrong, missing or reshaped key fails with its name), the missing-file
message, output shapes at a small input, and the real files when they are present."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.metrics.semantic import SemanticConsistency
from i2i.networks.segmenters import DeepLabV2Segmenter, DRNSegmenter, UperNetSegmenter
from i2i.networks.segmenters.drn import bilinear_kernel
from i2i.weights.registry import find, path_of, weights_dir
from tests.conftest import shared_data

# Key -> shape, from the published code: fyu/drn drn.py (drn_d_105) + segment.py (DRNSeg),
# kazuto1011/deeplab-pytorch libs/models (MSC(DeepLabV2) ResNet-101), CSAILVision
# semantic-segmentation-pytorch mit_semseg/models (resnet101 encoder, upernet decoder, fpn_dim 512).
DRN_KEYS = {
    "base.0.0.weight": (16, 3, 7, 7),
    "base.0.1.running_var": (16,),
    "base.1.0.weight": (16, 16, 3, 3),
    "base.2.0.weight": (32, 16, 3, 3),
    "base.3.0.conv1.weight": (64, 32, 1, 1),
    "base.3.0.downsample.0.weight": (256, 32, 1, 1),
    "base.3.2.conv3.weight": (256, 64, 1, 1),
    "base.4.0.conv2.weight": (128, 128, 3, 3),
    "base.5.0.downsample.1.weight": (1024,),
    "base.5.22.conv3.weight": (1024, 256, 1, 1),
    "base.6.2.bn3.running_mean": (2048,),
    "base.7.0.weight": (512, 2048, 3, 3),
    "base.8.1.bias": (512,),
    "seg.weight": (19, 512, 1, 1),
    "seg.bias": (19,),
    "up.weight": (19, 1, 16, 16),
}
DEEPLAB_KEYS = {
    "base.layer1.conv1.conv.weight": (64, 3, 7, 7),
    "base.layer1.conv1.bn.running_mean": (64,),
    "base.layer2.block1.reduce.conv.weight": (64, 64, 1, 1),
    "base.layer2.block1.shortcut.conv.weight": (256, 64, 1, 1),
    "base.layer3.block1.reduce.conv.weight": (128, 256, 1, 1),
    "base.layer3.block4.increase.bn.weight": (512,),
    "base.layer4.block23.conv3x3.conv.weight": (256, 256, 3, 3),
    "base.layer5.block1.shortcut.bn.running_var": (2048,),
    "base.layer5.block3.increase.conv.weight": (2048, 512, 1, 1),
    "base.aspp.c0.weight": (182, 2048, 3, 3),
    "base.aspp.c3.bias": (182,),
}
UPERNET_ENCODER_KEYS = {
    "conv1.weight": (64, 3, 3, 3),
    "bn1.weight": (64,),
    "conv3.weight": (128, 64, 3, 3),
    "layer1.0.conv1.weight": (64, 128, 1, 1),
    "layer1.0.downsample.0.weight": (256, 128, 1, 1),
    "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer3.22.conv3.weight": (1024, 256, 1, 1),
    "layer4.2.bn3.running_var": (2048,),
}
UPERNET_DECODER_KEYS = {
    "ppm_conv.0.0.weight": (512, 2048, 1, 1),
    "ppm_conv.3.1.running_mean": (512,),
    "ppm_last_conv.0.weight": (512, 4096, 3, 3),
    "fpn_in.0.0.weight": (512, 256, 1, 1),
    "fpn_in.2.0.weight": (512, 1024, 1, 1),
    "fpn_out.1.0.0.weight": (512, 512, 3, 3),
    "fpn_out.2.0.1.bias": (512,),
    "conv_last.0.0.weight": (512, 2048, 3, 3),
    "conv_last.1.weight": (150, 512, 1, 1),
    "conv_last.1.bias": (150,),
}
# Tensors per file: ResNet-style counts (every conv one weight, every BN five tensors).
KEY_COUNTS = {"drn": 651, "deeplab": 632, "encoder": 636, "decoder": 74}


@pytest.fixture(scope="module")
def segmenters():
    torch.manual_seed(0)
    return {
        "drn": DRNSegmenter(weights=None).eval(),
        "deeplab": DeepLabV2Segmenter(weights=None, input_size=None).eval(),
        "upernet": UperNetSegmenter(weights=None, sizes=(64,)).eval(),
    }


def _check_table(state: dict, table: dict) -> None:
    for key, shape in table.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key


def test_state_dicts_have_the_published_names_and_shapes(segmenters):
    drn, deeplab, upernet = (segmenters[k].state_dict() for k in ("drn", "deeplab", "upernet"))
    _check_table(drn, DRN_KEYS)
    _check_table(deeplab, DEEPLAB_KEYS)
    encoder, decoder = (
        segmenters["upernet"].encoder.state_dict(),
        segmenters["upernet"].decoder.state_dict(),
    )
    _check_table(encoder, UPERNET_ENCODER_KEYS)
    _check_table(decoder, UPERNET_DECODER_KEYS)
    counts = {
        "drn": len(drn),
        "deeplab": len(deeplab),
        "encoder": len(encoder),
        "decoder": len(decoder),
    }
    assert counts == KEY_COUNTS
    assert set(upernet) == {f"encoder.{k}" for k in encoder} | {f"decoder.{k}" for k in decoder}
    # Normalisation constants are buffers outside the state dict: the files have none.
    assert not any("mean" == k or k.endswith(".mean") or k.endswith("std") for k in drn)
    # The identity shortcuts of the Caffe ResNet have no parameters: only block1 projects.
    assert "base.layer2.block2.shortcut.conv.weight" not in deeplab


def test_drn_upsampling_is_bilinear():
    """The fixed x8 transposed convolution of DRNSeg is bilinear interpolation: a constant map
    stays constant away from the border."""
    k = bilinear_kernel(1)
    assert k.shape == (1, 1, 16, 16) and torch.allclose(k[0, 0], k[0, 0].T)
    up = torch.nn.functional.conv_transpose2d(torch.ones(1, 1, 6, 6), k, stride=8, padding=4)
    assert up.shape[-2:] == (48, 48)
    assert torch.allclose(up[0, 0, 8:40, 8:40], torch.ones(32, 32))


def _published_files(tmp_path, monkeypatch, segmenter):
    """Write the segmenter's state dict(s) under the published file names, every tensor a
    different constant (expanded from one element: files of kilobytes, not 200 MB)."""
    monkeypatch.setenv("I2I_WEIGHTS", str(tmp_path))
    parts = [segmenter.encoder, segmenter.decoder] if len(segmenter.published) == 2 else [segmenter]
    states = []
    for name, part in zip(segmenter.published, parts, strict=True):
        state = {
            k: torch.full((1,) * v.ndim, 0.5 + i / 1000).expand(v.shape)
            if v.is_floating_point()
            else v
            for i, (k, v) in enumerate(part.state_dict().items())
        }
        torch.save(state, tmp_path / name)
        states.append(state)
    return states


def _unbuilt(cls, **kwargs):
    """A segmenter built on the meta device (milliseconds instead of seconds of random init), for
    the loading paths; `.to_empty(device="cpu")` gives it storage for a file to load into."""
    with torch.device("meta"):
        return cls(**kwargs)


@pytest.mark.parametrize("kind", ["drn", "deeplab", "upernet"])
def test_published_files_load_unchanged(kind, segmenters, tmp_path, monkeypatch):
    reference = segmenters[kind]
    states = _published_files(tmp_path, monkeypatch, reference)
    model = _unbuilt(type(reference)).to_empty(device="cpu")  # weights="published"
    model.load_weights()
    parts = [model.encoder, model.decoder] if kind == "upernet" else [model]
    for state, part in zip(states, parts, strict=True):
        loaded = part.state_dict()
        assert loaded.keys() == state.keys()
        for key, value in state.items():  # each tensor its own constant: its first and last
            ends = loaded[key].reshape(-1)[[0, -1]]
            assert torch.equal(ends, value.reshape(-1)[[0, -1]]), key
    files = model.protocol()["weights"]
    assert [f["file"] for f in files] == list(model.published)
    assert all(len(f["sha256"]) == 64 for f in files)


def test_files_saved_without_num_batches_tracked_load(segmenters, tmp_path, monkeypatch):
    """Files saved before PyTorch 0.4.1 have no BatchNorm counters: they still load."""
    (state,) = _published_files(tmp_path, monkeypatch, segmenters["drn"])
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    model = _unbuilt(DRNSegmenter, weights=str(tmp_path / "old.pth")).to_empty(device="cpu")
    model.load_weights()
    assert torch.equal(model.state_dict()["seg.weight"], state["seg.weight"])


def test_wrong_missing_and_reshaped_keys_are_named(segmenters, tmp_path, monkeypatch):
    (state,) = _published_files(tmp_path, monkeypatch, segmenters["deeplab"])
    path = tmp_path / DeepLabV2Segmenter.published[0]
    renamed = dict(state)
    renamed["base.aspp.c9.weight"] = renamed.pop("base.aspp.c0.weight")
    torch.save(renamed, path)
    # One model: a failed load leaves it unloaded, to try again.
    model = _unbuilt(DeepLabV2Segmenter).to_empty(device="cpu")
    with pytest.raises(ValueError) as err:
        model.load_weights()
    message = str(err.value)
    assert "missing keys: base.aspp.c0.weight" in message
    assert "unexpected keys: base.aspp.c9.weight" in message and str(path) in message

    missing = {k: v for k, v in state.items() if k != "base.layer4.block7.conv3x3.bn.running_mean"}
    torch.save(missing, path)
    with pytest.raises(
        ValueError, match=r"missing keys: base\.layer4\.block7\.conv3x3\.bn\.running_mean"
    ):
        model.load_weights()

    reshaped = dict(state, **{"base.aspp.c1.bias": torch.zeros(21)})  # a VOC model's head
    torch.save(reshaped, path)
    with pytest.raises(
        ValueError, match=r"base\.aspp\.c1\.bias: file \(21,\), DeepLabV2Segmenter \(182,\)"
    ):
        model.load_weights()

    torch.save(state, path)
    model.load_weights()  # the right file loads into the same model
    assert torch.equal(model.state_dict()["base.aspp.c1.bias"], state["base.aspp.c1.bias"])


def test_a_missing_file_names_itself_its_source_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("I2I_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(FileNotFoundError) as err:
        _unbuilt(UperNetSegmenter)(torch.zeros(1, 3, 32, 32))
    message = str(err.value)
    entry = find(UperNetSegmenter.published[0])
    assert entry.name in message and entry.url in message and str(tmp_path / "weights") in message
    assert "i2i-weights" in message
    with pytest.raises(FileNotFoundError, match="drn-d-105_ms_cityscapes.pth.*fyu/drn"):
        _unbuilt(DRNSegmenter).load_weights()
    with pytest.raises(ValueError, match="give 2 comma-separated files"):
        _unbuilt(UperNetSegmenter, weights=str(tmp_path / "one.pth")).load_weights()
    with pytest.raises(FileNotFoundError, match=f"no weights file at {tmp_path / 'none.pth'}"):
        _unbuilt(DRNSegmenter, weights=str(tmp_path / "none.pth")).load_weights()
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / DRNSegmenter.published[0]).write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="cannot read the weights file .*drn-d-105_ms_cityscapes"):
        _unbuilt(DRNSegmenter).load_weights()


def test_output_shapes_at_a_small_input(segmenters, one_torch_thread):
    x = torch.rand(2, 3, 65, 65) * 2 - 1
    with torch.no_grad():
        drn = segmenters["drn"](x)
        deeplab = segmenters["deeplab"](x)
        upernet = segmenters["upernet"](x)
    # DRN: output stride 8 and x8 back: 65 -> 9 -> 72; DeepLab: stride 8 (ceil): 9;
    # UperNet: shorter side 64 (a multiple of 32), output at 1/4: 16.
    assert drn.shape == (2, 19, 72, 72)
    assert deeplab.shape == (2, 182, 9, 9)
    assert upernet.shape == (2, 150, 16, 16)
    assert all(torch.isfinite(t).all() for t in (drn, deeplab, upernet))
    # The metric takes any of them: logits resized to the labels' size.
    metric = SemanticConsistency(182, segmenters["deeplab"])
    metric.update(x, torch.randint(0, 182, (2, 65, 65)))
    assert int(metric.confmat.sum()) == 2 * 65 * 65


def test_input_sizes_and_scales(segmenters, one_torch_thread):
    """DeepLab warps to its input size and takes the max over scales; UperNet rounds each
    scale's sides up to a multiple and averages probabilities at the input's size."""
    up = UperNetSegmenter(weights=None)
    assert up.scaled_size(512, 683, 300) == (320, 416)  # 300 x 400.2 -> multiples of 32
    assert up.scaled_size(100, 2000, 600) == (64, 1024)  # the longer side capped at 1000
    deeplab = segmenters["deeplab"]
    x = torch.rand(1, 3, 40, 48) * 2 - 1
    with torch.no_grad():
        deeplab.input_size, deeplab.multi_scale = (33, 33), False
        single = deeplab(x)
        deeplab.multi_scale = True
        multi = deeplab(x)
        deeplab.input_size = None
    assert single.shape == multi.shape == (1, 182, 5, 5)
    assert (multi >= single - 1e-5).all() and not torch.allclose(multi, single)
    assert deeplab.protocol()["scales"] == [1.0, 0.5, 0.75]


# ---- the real published files (skipped where they are absent) -------------------------------


def _present(*names: str) -> bool:
    return all(path_of(find(n)).is_file() for n in names)


needs_drn = pytest.mark.skipif(
    not _present(*DRNSegmenter.published), reason=f"real DRN weights not in {weights_dir()}"
)
needs_deeplab = pytest.mark.skipif(
    not _present(*DeepLabV2Segmenter.published),
    reason=f"real DeepLab weights not in {weights_dir()}",
)
needs_upernet = pytest.mark.skipif(
    not _present(*UperNetSegmenter.published), reason=f"real UperNet weights not in {weights_dir()}"
)


def _image(path) -> torch.Tensor:
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1


@needs_drn
def test_real_drn_segments_real_cityscapes_photos():
    root = shared_data("cityscapes", "val_frankfurt")
    metric = SemanticConsistency.for_class_set("cityscapes", DRNSegmenter())
    for photo in sorted((root / "img_1024x512").glob("*.jpg")):
        name = photo.name.replace("leftImg8bit.jpg", "gtFine_labelIds.png")
        label = torch.from_numpy(
            np.asarray(Image.open(root / "label_1024x512" / name), dtype=np.int64)
        )
        with torch.no_grad():
            metric.update(_image(photo), label[None])
    scores = metric.compute()
    assert float(scores["pixel_accuracy"]) > 0.85 and float(scores["miou"]) > 0.4


@needs_deeplab
def test_real_deeplab_segments_real_coco_stuff_photos():
    root = shared_data("coco_stuff", "spade")
    metric = SemanticConsistency.for_class_set("coco_stuff", DeepLabV2Segmenter())
    for photo in sorted((root / "val_img").glob("*.jpg"))[:4]:
        raw = np.asarray(Image.open(root / "val_label" / f"{photo.stem}.png"), dtype=np.int64)
        label = torch.from_numpy(np.where(raw == 255, 182, raw))  # the dataset's class ids
        with torch.no_grad():
            metric.update(_image(photo), label[None])
    assert float(metric.compute()["pixel_accuracy"]) > 0.5


@needs_upernet
def test_real_upernet_loads_and_segments():
    model = UperNetSegmenter(sizes=(300,))
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, 256, 256))
    assert logits.shape == (1, 150, 80, 80) and torch.isfinite(logits).all()
