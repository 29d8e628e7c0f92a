"""`i2i demo`: a Gradio web app over one model, loaded once at start.

- Inpainting: upload an image and paint the hole with the brush (or upload a mask file with its
  polarity); choose the seed, the truncation, the number of samples and the fit; the completions
  come as a gallery, every known pixel unchanged (`i2i.inference.run.inpaint_image`).
- Edges -> photo: draw black lines on the white canvas or upload an edge map (or a photo, whose
  Canny edges become the condition); labels -> photo: upload a label map (a single-channel PNG of
  class ids).
Bad uploads (no hole painted, a file that is not an image, a mask of another size) are refused
with a one-line message in the page (`gr.Error`) that names the upload by its own name, never by
the server's temporary path; an upload over --max-file-size (50 MB by default, said in the page)
is refused by Gradio before it is stored. Nothing reaches the network: no share link, no
analytics, no web fonts (the page uses the system's fonts).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from i2i.errors import ModelFileError
from i2i.safe_load import TRUST_FLAG, TRUST_HELP

# A mask drawn for inpainting is white where the hole is: that reading comes first, the default.
DEFAULT_POLARITY = "white_is_hole"
MAX_SAMPLES = 8
MAX_FILE_MB = 50  # default upload limit: a 12000x9000 JPEG photo is about 20-40 MB
NOT_AN_IMAGE = "cannot be read as an image: upload a PNG, JPEG or WebP file"


def _offline_environment() -> None:
    # Before gradio is imported: it reads these at import time.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _rgb(image: np.ndarray) -> np.ndarray:
    """An editor's image (H, W), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def _without_server_paths(error: Exception, path: str) -> str:
    """The message, ending in a full stop, with the upload's temporary path on the server cut to
    the file's name."""
    return str(error).replace(str(path), Path(path).name).rstrip(".") + "."


def checked_editor(**kwargs: Any):
    """A gr.ImageEditor whose upload that is not an image gets our one-line message, not
    Gradio's internal error (which shows the server's temporary path).

    Its preprocess is wrapped on the instance: a subclass of a Gradio component writes a .pyi
    file beside this module.

    Args:
        **kwargs: passed to `gr.ImageEditor` unchanged.
    """
    import gradio as gr
    from PIL import Image

    editor = gr.ImageEditor(**kwargs)
    read = editor.preprocess

    def preprocess(payload):
        try:
            return read(payload)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
            name = getattr(getattr(payload, "background", None), "orig_name", None)
            raise gr.Error(f"The upload {name or ''} {NOT_AN_IMAGE}.") from None

    editor.preprocess = preprocess
    return editor


def painted_known(editor: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The image and its known pixels from an image editor's value.

    The hole is wherever a layer has been painted (alpha > 0).

    Args:
        editor: the editor's value, a dict with `background` (the image) and `layers`; None or
            no background when nothing was uploaded.

    Returns:
        (image (H, W, 3) uint8, known (H, W) bool: True = known, False = hole).

    Raises:
        gr.Error: no image was uploaded, or a painted layer has another size than the image.
    """
    import gradio as gr

    if not editor or editor.get("background") is None:
        raise gr.Error("Upload an image first (drop a file on the editor, or click it).")
    image = _rgb(editor["background"])
    hole = np.zeros(image.shape[:2], dtype=bool)
    for layer in editor.get("layers") or []:
        layer = np.asarray(layer)
        if layer.shape[:2] != image.shape[:2]:
            raise gr.Error(
                f"A painted layer is {layer.shape[1]}x{layer.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]} (WxH): paint on the uploaded image."
            )
        alpha = layer[..., 3] if layer.ndim == 3 and layer.shape[2] == 4 else layer.max(axis=-1)
        hole |= alpha > 0
    return image, ~hole


def polarity_choices() -> list[str]:
    """The mask polarities the commands read (`i2i.data.masks`), the default first."""
    from i2i.data.mask_sets import POLARITIES  # the data modules: only once a mask is read

    return sorted(POLARITIES, key=lambda polarity: polarity != DEFAULT_POLARITY)


def uploaded_known(path: str, polarity: str, image: np.ndarray) -> np.ndarray:
    """The known pixels of an uploaded mask file, read as the commands read masks.

    Args:
        path: the uploaded mask file on the server.
        polarity: how to read it, one of `polarity_choices()`.
        image: the image it masks, (H, W, 3): the mask must have its size.

    Returns:
        (H, W) bool, True = known.

    Raises:
        gr.Error: an unknown polarity, or a file that is not an image of the image's size.
    """
    import gradio as gr

    from i2i.data.masks import load_mask

    if polarity not in polarity_choices():
        raise gr.Error(f"Choose the mask's polarity: {' or '.join(polarity_choices())}.")
    try:
        mask = load_mask(path, image.shape[:2], polarity=polarity, resize=False)
    except ValueError as e:
        message = _without_server_paths(e, path)
        raise gr.Error(f"{message} Upload a mask of the image's size, an image file.") from None
    return mask[0].numpy() > 0.5


def make_inpaint(model: Any):
    """The inpainting button's callback for a loaded model: a function (editor, mask_file,
    polarity, seed, truncation, num_samples, fit) -> (gallery of (completion, caption), the
    input with its hole tinted), which raises `gr.Error` when there is no hole or no known pixel.

    Args:
        model: an inpainting model from `load_model`.
    """

    def inpaint(
        editor: dict | None,
        mask_file: str | None,
        polarity: str,
        seed: float,
        truncation: float,
        num_samples: float,
        fit: str,
    ):
        import gradio as gr

        from i2i.inference.panels import overlay
        from i2i.inference.run import inpaint_image

        image, known = painted_known(editor)
        if mask_file:
            known = uploaded_known(mask_file, polarity, image)
        if known.all():
            raise gr.Error(
                "No hole: paint the region to fill with the brush, or upload a mask file."
            )
        if not known.any():
            raise gr.Error("All of the image is a hole: leave part of it known (see the polarity).")
        outputs = inpaint_image(
            model,
            image,
            known,
            seed=int(seed),
            num_samples=int(num_samples),
            truncation_psi=float(truncation),
            fit=fit,
        )
        gallery = [(out, f"seed {int(seed)}, sample {k}") for k, out in enumerate(outputs)]
        return gallery, overlay(image, known)

    return inpaint


def make_translate(model: Any):
    """The translation button's callback for a loaded edges or labels model: a function
    (editor, label_file, polarity, from_photo, seed, truncation, num_samples) -> (gallery of
    (output, caption), the condition as RGB), which raises `gr.Error` for an empty canvas or a
    missing or unreadable label map.

    Args:
        model: an edges -> photo or labels -> photo model from `load_model`.
    """

    def translate(
        editor: dict | None,
        label_file: str | None,
        polarity: str,
        from_photo: bool,
        seed: float,
        truncation: float,
        num_samples: float,
    ):
        import gradio as gr

        from i2i.inference.panels import condition_rgb
        from i2i.inference.run import translate_image

        if model.kind == "labels":
            from i2i.data.label_maps import read_label_map

            if not label_file:
                raise gr.Error("Upload a label map: a single-channel PNG of class ids.")
            try:
                condition = read_label_map(label_file, exif=True)
            except (OSError, ValueError) as e:
                message = _without_server_paths(e, label_file)
                raise gr.Error(f"{message} Upload a single-channel PNG of class ids.") from None
        else:
            composite = (editor or {}).get("composite")
            if composite is None:
                raise gr.Error("Draw an edge map on the canvas, or upload one.")
            condition = _rgb(composite)
            if condition.min() == condition.max():
                raise gr.Error("The canvas is empty: draw some lines, or upload an edge map.")
        try:
            outputs = translate_image(
                model,
                condition,
                seed=int(seed),
                num_samples=int(num_samples),
                truncation_psi=float(truncation),
                edge_polarity=polarity,
                edges_from_photo=bool(from_photo),
            )
        except ValueError as e:
            raise gr.Error(str(e)) from e
        gallery = [(out, f"seed {int(seed)}, sample {k}") for k, out in enumerate(outputs)]
        return gallery, condition_rgb(model, condition)

    return translate


def theme():
    """The app's Gradio theme: the default one with the system's fonts (no web fonts)."""
    import gradio as gr

    # System fonts: the default theme would fetch web fonts, and the machine may be offline.
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "monospace"],
    )


def build_app(model: Any, name: str, max_file_mb: float = MAX_FILE_MB):
    """The `gr.Blocks` app for a loaded model, not yet launched.

    Args:
        model: a model from `i2i.inference.model.load_model` (its `kind` picks the inputs).
        name: the model's name, shown in the title.
        max_file_mb: the largest upload, in MB, said in the page.
    """
    import gradio as gr

    h, w = model.resolution
    psi = float(getattr(model, "truncation_psi", None) or 1.0)
    how = {
        "inpainting": "Paint the hole with the brush (or upload a mask), then **Inpaint**: every "
        "pixel you did not paint is returned unchanged.",
        "edges": "Draw black lines on white (or upload an edge map or a photo), then "
        "**Translate**.",
        "labels": "Upload a label map (a PNG of class ids), then **Translate**.",
    }[model.kind]
    with gr.Blocks(title=f"i2i: {name}") as app:
        gr.Markdown(
            f"## i2i: {model.kind} with `{name}`\n"
            f"The model runs at {h}x{w}; any input size works, uploads up to {max_file_mb:g} MB. "
            f"{how}"
        )
        with gr.Row():
            with gr.Column():
                if model.kind == "inpainting":
                    editor = checked_editor(
                        label="image (paint the hole)",
                        type="numpy",
                        image_mode="RGBA",
                        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"),
                        sources=("upload", "clipboard"),
                        layers=False,
                        transforms=(),
                    )
                    with gr.Accordion("or upload a mask file", open=False):
                        mask_file = gr.File(label="mask", file_types=["image"])
                        polarity = gr.Radio(
                            polarity_choices(), value=DEFAULT_POLARITY, label="polarity"
                        )
                elif model.kind == "edges":
                    white = np.full((max(h, 256), max(w, 256), 3), 255, np.uint8)
                    editor = checked_editor(
                        value={"background": white, "layers": [], "composite": None},
                        label="edge map (draw, or upload)",
                        type="numpy",
                        image_mode="RGB",
                        brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=2),
                        sources=("upload", "clipboard"),
                        layers=False,
                        transforms=(),
                    )
                    polarity = gr.Radio(
                        ["black_on_white", "white_on_black"],
                        value="black_on_white",
                        label="lines",
                    )
                    from_photo = gr.Checkbox(False, label="the upload is a photo: use its edges")
                else:
                    editor = gr.State(None)
                    label_file = gr.File(label="label map (PNG of class ids)", file_types=["image"])
                with gr.Row():
                    seed = gr.Number(0, precision=0, label="seed")
                    truncation = gr.Slider(0.0, 1.0, psi, step=0.05, label="truncation psi")
                    samples = gr.Slider(1, MAX_SAMPLES, 3, step=1, label="samples")
                if model.kind == "inpainting":
                    fit = gr.Radio(["crop", "resize"], value="crop", label="fit")
                action = "Inpaint" if model.kind == "inpainting" else "Translate"
                run = gr.Button(action, variant="primary")
            with gr.Column():
                gallery = gr.Gallery(label="outputs", format="png", columns=2)
                preview = gr.Image(
                    label="input (hole tinted)" if model.kind == "inpainting" else "condition",
                    format="png",
                    interactive=False,
                )
        if model.kind == "inpainting":
            inputs = [editor, mask_file, polarity, seed, truncation, samples, fit]
            run.click(make_inpaint(model), inputs, [gallery, preview], api_name="inpaint")
        else:
            if model.kind == "labels":
                polarity, from_photo = gr.State("black_on_white"), gr.State(False)
            else:
                label_file = gr.State(None)
            inputs = [editor, label_file, polarity, from_photo, seed, truncation, samples]
            run.click(make_translate(model), inputs, [gallery, preview], api_name="translate")
    return app


def main(argv: list[str] | None = None) -> int:
    """`i2i demo`: load a model once and serve the app on this machine until Ctrl-C.

    Args:
        argv: the command's arguments (None: `sys.argv[1:]`).

    Returns:
        The exit status: 0, or 1 after a one-line error (a model that cannot be loaded, no
            CUDA device for --device cuda, a --max-file-size that is not positive).
    """
    parser = argparse.ArgumentParser(
        prog="i2i demo", description="A web demo of a model (Gradio), on this machine only."
    )
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        help="a .ckpt, an i2i model (.safetensors + .json) or an exported .onnx",
    )
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1: this machine only")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--max-file-size",
        type=float,
        default=MAX_FILE_MB,
        metavar="MB",
        help=f"the largest upload accepted, in MB (default {MAX_FILE_MB})",
    )
    parser.add_argument(
        "--share",
        choices=("off",),
        default="off",
        help="Gradio share links need the network: off is the only choice",
    )
    parser.add_argument(TRUST_FLAG, action="store_true", help=TRUST_HELP)
    args = parser.parse_args(argv)
    _offline_environment()
    from i2i.inference.model import load_model

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("i2i demo: error: --device cuda, but no CUDA device is visible", file=sys.stderr)
            return 1
    try:
        model = load_model(args.model, args.device, args.trust_checkpoint)  # once, for all
    except (FileNotFoundError, ModelFileError, ValueError) as e:
        print(f"i2i demo: error: {e}", file=sys.stderr)
        return 1
    if not args.max_file_size > 0:
        print("i2i demo: error: --max-file-size must be a positive number of MB", file=sys.stderr)
        return 1
    app = build_app(model, args.model.name, args.max_file_size)
    print(f"i2i demo: {model!r} at http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    app.queue(default_concurrency_limit=1).launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        show_error=True,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        theme=theme(),
        footer_links=["api"],
        max_file_size=int(args.max_file_size * 1024 * 1024),
    )
    return 0
