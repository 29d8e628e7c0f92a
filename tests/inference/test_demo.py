"""`i2i demo`: the real Gradio server, a process (forked from the warm interpreter, tests.warm) on
a loopback port, driven by gradio_client as a browser's page would call it. The browser tests
start it from a fresh interpreter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.clirun import serving
from tests.helpers import free_port

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

H, W = 45, 61  # odd and non-square: the demo works at the upload's size


@contextmanager
def serve(model: Path, tmp: Path, timeout: float = 1200, how: str = "warm") -> Iterator[str]:
    """`i2i demo --model MODEL` until the block ends (tests.clirun.serving); its URL."""
    with serving(
        how,
        *("demo", "--model", str(model)),
        log=tmp / "demo.log",
        timeout=timeout,
        GRADIO_TEMP_DIR=str(tmp / "gradio"),
        OMP_NUM_THREADS="1",
    ) as url:
        yield url


def read(tmp: Path) -> str:
    return (tmp / "demo.log").read_text()


@pytest.fixture(scope="module")
def demo(model_files, tmp_path_factory) -> Iterator[tuple[Client, Path]]:
    tmp = tmp_path_factory.mktemp("demo")
    with serve(model_files["inpainting"], tmp) as url:
        yield Client(url, verbose=False, download_files=str(tmp / "downloads")), tmp


def write_inputs(tmp: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """An image, the hole painted on a layer (as the brush leaves it), the editor's value."""
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    layer = np.zeros((H, W, 4), np.uint8)
    layer[10:25, 20:41] = (255, 0, 255, 255)
    layer[30:40, 3:9] = (255, 0, 255, 255)
    Image.fromarray(image).save(tmp / "image.png")
    Image.fromarray(layer).save(tmp / "layer.png")
    editor = {
        "background": handle_file(str(tmp / "image.png")),
        "layers": [handle_file(str(tmp / "layer.png"))],
        "composite": None,
    }
    return image, layer[..., 3] == 0, editor


def inpaint(client: Client, editor: dict, mask=None, polarity="white_is_hole", seed=3, n=2):
    return client.predict(editor, mask, polarity, seed, 1.0, n, "crop", api_name="/inpaint")


def test_inpainting_keeps_known_pixels_at_the_uploads_size(demo, model_files, one_torch_thread):
    client, tmp = demo
    image, known, editor = write_inputs(tmp)
    gallery, preview = inpaint(client, editor)
    outputs = [np.asarray(Image.open(item["image"])) for item in gallery]
    assert [item["caption"] for item in gallery] == ["seed 3, sample 0", "seed 3, sample 1"]
    for out in outputs:
        assert out.shape == (H, W, 3) and out.dtype == np.uint8
        assert np.array_equal(out[known], image[known])  # bit for bit
        assert not np.array_equal(out[~known], image[~known])
    assert not np.array_equal(outputs[0], outputs[1])
    # The page serves what the library computes: the same bytes for the same seed.
    from i2i.inference.model import load_model
    from i2i.inference.run import inpaint_image

    model = load_model(model_files["inpainting"])
    expected = inpaint_image(model, image, known, seed=3, num_samples=2)
    assert all(np.array_equal(o, e) for o, e in zip(outputs, expected, strict=True))
    assert np.asarray(Image.open(preview)).shape == (H, W, 3)


def test_an_uploaded_mask_with_its_polarity(demo):
    client, tmp = demo
    image, _, editor = write_inputs(tmp)
    white_is_hole = np.zeros((H, W), np.uint8)
    white_is_hole[5:20, 30:50] = 255
    Image.fromarray(white_is_hole).save(tmp / "mask.png")
    gallery, _ = inpaint(client, {**editor, "layers": []}, handle_file(str(tmp / "mask.png")), n=1)
    out = np.asarray(Image.open(gallery[0]["image"]))
    known = white_is_hole == 0
    assert np.array_equal(out[known], image[known])
    assert not np.array_equal(out[~known], image[~known])


def test_no_hole_is_refused_with_a_message(demo):
    client, tmp = demo
    _, _, editor = write_inputs(tmp)
    with pytest.raises(AppError, match="No hole: paint the region to fill"):
        inpaint(client, {**editor, "layers": []})


def test_bad_mask_uploads_are_refused_with_a_message(demo):
    client, tmp = demo
    _, _, editor = write_inputs(tmp)
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(tmp / "small.png")
    with pytest.raises(AppError, match=r"46x61 \(HxW\) but 45x61 was expected.*image's size"):
        inpaint(client, editor, handle_file(str(tmp / "small.png")))
    (tmp / "junk.png").write_bytes(b"this is not an image")
    with pytest.raises(AppError, match="cannot read mask file .*junk.png"):
        inpaint(client, editor, handle_file(str(tmp / "junk.png")))
    with pytest.raises(AppError, match="Upload an image first"):
        inpaint(client, {"background": None, "layers": [], "composite": None})


def test_a_non_image_upload_gets_one_line_without_the_servers_paths(demo):
    client, tmp = demo
    _, _, editor = write_inputs(tmp)
    (tmp / "junk.png").write_bytes(b"this is not an image")
    junk = handle_file(str(tmp / "junk.png"))
    for background, mask, expected in [
        (junk, None, "The upload junk.png cannot be read as an image: upload a PNG, JPEG or WebP"),
        (editor["background"], junk, "cannot read mask file junk.png: cannot identify image"),
    ]:
        with pytest.raises(AppError) as error:
            inpaint(client, {**editor, "background": background}, mask)
        message = str(error.value)
        assert message.startswith(expected) and "\n" not in message, message
        assert str(tmp) not in message and "gradio" not in message  # the server's temp folder


def test_uploads_over_the_limit_are_refused_and_the_page_says_it(demo):
    import httpx

    client, tmp = demo
    config = httpx.get(client.src.rstrip("/") + "/config", timeout=30).json()
    assert config["max_file_size"] == 50 * 2**20
    assert any(
        "uploads up to 50 MB" in str(c.get("props", {}).get("value")) for c in config["components"]
    )
    big = tmp / "big.png"
    big.write_bytes(b"\0" * (50 * 2**20 + 1))
    with big.open("rb") as f:
        response = httpx.post(
            client.src.rstrip("/") + "/gradio_api/upload",
            files={"files": ("big.png", f)},
            timeout=120,
        )
    assert response.status_code == 413, response.text
    small = tmp / "small.png"
    small.write_bytes(b"\0" * 1000)
    with small.open("rb") as f:
        response = httpx.post(
            client.src.rstrip("/") + "/gradio_api/upload",
            files={"files": ("small.png", f)},
            timeout=120,
        )
    assert response.status_code == 200, response.text


def test_a_missing_model_exits_1_without_serving(tmp_path):
    from tests.clirun import i2i, output

    result = i2i(
        "demo", "--model", str(tmp_path / "nope.ckpt"), "--port", str(free_port()), timeout=1200
    )
    assert result.returncode == 1, output(result)
    assert "no checkpoint at" in result.stderr and "nope.ckpt" in result.stderr


def test_translation_handlers(model_files, tmp_path, one_torch_thread):
    """The edges and labels pages' handler, called as the server calls it (no server: the
    inpainting tests above cover the transport)."""
    import gradio as gr

    from i2i.inference.demo import make_translate
    from i2i.inference.model import load_model

    edges_model = load_model(model_files["edges"])
    translate = make_translate(edges_model)
    canvas = np.full((40, 56, 3), 255, np.uint8)
    with pytest.raises(gr.Error, match="The canvas is empty"):
        translate({"composite": canvas}, None, "black_on_white", False, 0, 1.0, 1)
    canvas[10:30, 20] = 0  # a drawn line
    gallery, condition = translate({"composite": canvas}, None, "black_on_white", False, 0, 1.0, 2)
    assert [out.shape for out, _ in gallery] == [(40, 56, 3)] * 2
    assert not np.array_equal(gallery[0][0], gallery[1][0])

    labels_model = load_model(model_files["labels"])
    translate = make_translate(labels_model)
    label = np.zeros((33, 47), np.uint8)
    label[5:20, 10:30] = 3
    Image.fromarray(label).save(tmp_path / "label.png")
    gallery, condition = translate(None, str(tmp_path / "label.png"), "", False, 1, 1.0, 1)
    assert gallery[0][0].shape == (33, 47, 3) and condition.shape == (33, 47, 3)
    label[0, 0] = 9  # the model has 5 classes
    Image.fromarray(label).save(tmp_path / "bad.png")
    with pytest.raises(gr.Error, match="label value 9 is outside 0..4"):
        translate(None, str(tmp_path / "bad.png"), "", False, 1, 1.0, 1)
    with pytest.raises(gr.Error, match="Upload a label map"):
        translate(None, None, "", False, 1, 1.0, 1)
