"""`i2i inpaint` and `i2i translate`: a model on image files of any size.

    i2i inpaint MODEL --image PATH --mask PATH|random --mask-polarity white_is_hole --out DIR
    i2i translate MODEL --input PATH [--edges-from-photo] --out DIR

MODEL is a `.ckpt`, a `.safetensors` model (its `.json` card beside it) or an `.onnx` export.
PATH is a file or a folder (recursive); mask files are matched to images by their path relative
to the folder, without extension (`photos/a/b.jpg` <- `masks/a/b.png`; one mask file serves every
image); masks and label maps are turned upright by their EXIF orientation, as images are.
Outputs are PNG files named after the inputs (sub-folders kept), `_k` per sample k when
--num-samples > 1, and `_panel.png` side by side with --panel. A corrupt input is named and
skipped (exit status 1 at the end).

Inputs are never lost: an --out that is an input (or holds the inputs' folder) and two inputs
that would write the same output (`x.jpg` and `x.png`) are refused before anything is written;
nothing is overwritten without --overwrite. Each output is written atomically (a temporary file
renamed), so Ctrl-C (exit status 130) leaves only complete files, and a rerun with
--skip-existing writes the missing ones. Seeding: see `i2i.inference.run`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from i2i.data.datasets import load_image
from i2i.data.folders import list_images, walk_files
from i2i.data.label_maps import read_label_map
from i2i.data.mask_drawing import random_known
from i2i.data.mask_sets import MAX_MEAN_HOLE, POLARITIES
from i2i.data.masks import MASK_EXTENSIONS, load_known, rotation_hint
from i2i.errors import CorruptImageError
from i2i.inference.outputs import check_outputs, output_paths, save_png
from i2i.safe_load import TRUST_FLAG, TRUST_HELP
from i2i.seeding import numpy_rng

PROG = "i2i"


def collect(path: Path, what: str) -> list[tuple[Path, str]]:
    """The inputs under a path: the file itself, or every image under a folder (recursive,
    sorted).

    Args:
        path: an image file or a folder.
        what: what the path is ("image", "input"), for the error message.

    Returns:
        (file, name) pairs; the name is the path relative to the folder without extension (a
            file's own stem).

    Raises:
        FileNotFoundError: the path does not exist.
    """
    if path.is_file():
        return [(path, path.stem)]
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist: give an image file or a folder")
    return [(f, f.relative_to(path).with_suffix("").as_posix()) for f in list_images(path)]


def match_masks(mask: Path, inputs: list[tuple[Path, str]]) -> list[Path]:
    """The mask file of each input: one file for all, or the mask with the input's path
    relative to its folder (extension aside) under a folder; never a mask of another path.

    Args:
        mask: a mask file or a folder of masks.
        inputs: the (file, name) pairs of `collect`.

    Returns:
        One mask file per input, in the inputs' order.

    Raises:
        FileNotFoundError: the mask path does not exist, or an input has no mask.
        ValueError: two masks of one name (`a.png` and `a.jpg`).
    """
    if mask.is_file():
        return [mask] * len(inputs)
    if not mask.is_dir():
        raise FileNotFoundError(
            f"mask {mask} does not exist: give a mask file, a folder, or random"
        )
    by_name: dict[str, list[Path]] = {}
    for f in walk_files(mask, MASK_EXTENSIONS):
        by_name.setdefault(f.relative_to(mask).with_suffix("").as_posix(), []).append(f)
    twins = [files for _, name in inputs if len(files := by_name.get(name, [])) > 1]
    if twins:
        raise ValueError(
            f"{len(twins[0])} masks for one image: {', '.join(map(str, twins[0]))}: keep one "
            "of them (masks are matched by the path without extension)"
        )
    missing = [(f, name) for f, name in inputs if name not in by_name]
    if missing:
        listed = "; ".join(
            f"{f} needs {mask / name}.* ({'|'.join(e[1:] for e in MASK_EXTENSIONS)})"
            for f, name in missing[:5]
        ) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        elsewhere = {Path(k).name: v[0] for k, v in by_name.items()}
        hint = next(
            (
                f" ({elsewhere[Path(n).name]} has the name of {f} but another folder: "
                "it is not used for it)"
                for f, n in missing
                if Path(n).name in elsewhere
            ),
            "",
        )
        raise FileNotFoundError(
            f"no mask in {mask} for {len(missing)} image(s): {listed}.{hint} Masks are matched "
            "by the path relative to their folder without extension (photos/a/b.jpg <- "
            "masks/a/b.png): add them, or give one mask file for every image"
        )
    return [by_name[name][0] for _, name in inputs]


def common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments both commands take (model, --out, --seed, --num-samples, --truncation,
    --panel, --overwrite/--skip-existing, --batch-size, --device, the trust flag).

    Args:
        parser: the command's parser, changed in place.
    """
    parser.add_argument(
        "model",
        help="a .ckpt, a .safetensors model (its .json beside it), or .onnx; "
        "inpaint also takes classical:harmonic, classical:biharmonic, classical:telea, "
        "classical:navier_stokes or classical:mean (a fill with no training)",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNG outputs")
    parser.add_argument("--seed", type=int, default=0, help="seeds the latents (default 0)")
    parser.add_argument("--num-samples", type=int, default=1, help="outputs per input (default 1)")
    parser.add_argument(
        "--truncation",
        type=float,
        default=1.0,
        help="truncation psi toward the average w (1 = none, default)",
    )
    parser.add_argument("--panel", action="store_true", help="also write a side-by-side panel")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep existing outputs, write the missing ones (resume an interrupted run)",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="inputs per model call")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument(TRUST_FLAG, action="store_true", help=TRUST_HELP)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return 1


def run_files(
    args: argparse.Namespace,
    inputs: list[tuple[Path, str]],
    sources: list[Path],  # the inputs' paths as given, and the mask files: never written
    kinds: tuple[str, ...],
    load: Callable[[int, Any], Any],  # (input index, model) -> what `process` takes
    process: Callable[[Any, list], list[list[np.ndarray]]],  # -> per input, its output images
) -> int:
    """The loop both commands share: refuse to replace inputs or existing outputs, load the
    model, then per batch: read (skipping and naming corrupt inputs), run, write.

    Args:
        args: the parsed arguments of `common_arguments` (and the command's own).
        inputs: the (file, name) pairs of `collect`.
        sources: the inputs' paths as given, and the mask files: never written.
        kinds: the model kinds the command takes ("inpainting"; "edges", "labels").
        load: (input index, model) -> what `process` takes; raises OSError or ValueError for
            an input to skip.
        process: (model, [(input index, loaded)]) -> per input, its output images (H, W, 3)
            uint8, in the order of `output_paths`.

    Returns:
        The exit status: 0; 1 after an error or when an input failed; 130 on Ctrl-C.
    """
    if args.num_samples < 1 or args.batch_size < 1:
        return _fail("--num-samples and --batch-size must be at least 1")
    if str(args.model).startswith("classical:") and args.num_samples > 1:
        return _fail(
            f"{args.model} is deterministic: --num-samples {args.num_samples} would write "
            f"{args.num_samples} identical images per input; use --num-samples 1"
        )
    planned = [output_paths(args.out, name, args.num_samples, args.panel) for _, name in inputs]
    try:
        check_outputs(args.out, inputs, sources, planned)
    except ValueError as e:
        return _fail(str(e))
    existing = {p for paths in planned for p in paths if p.exists()}
    if existing and not (args.overwrite or args.skip_existing):
        first = next(p for paths in planned for p in paths if p in existing)
        return _fail(
            f"{first} already exists ({len(existing)} of the {sum(map(len, planned))} outputs "
            "do): pass --skip-existing to keep them and write the missing ones (an interrupted "
            "run), --overwrite to replace them, or choose another --out"
        )
    keep = existing if args.skip_existing else set()
    failed, written, bar = 0, 0, None
    try:
        from i2i.inference.model import load_model  # torch and the networks: after the checks

        try:
            model = load_model(args.model, args.device, args.trust_checkpoint)
        except (OSError, ValueError, RuntimeError) as e:
            return _fail(str(e))
        if model.kind not in kinds:
            return _fail(
                f"{args.model} is a model for {model.kind}; this command takes "
                f"{' or '.join(kinds)} models"
            )
        bar = tqdm(total=len(inputs), unit="image", file=sys.stderr, disable=None)
        for start in range(0, len(inputs), args.batch_size):
            chunk = list(range(start, min(start + args.batch_size, len(inputs))))
            # Batches as a full run makes them, so that a resumed run writes the same bytes.
            if all(p in keep for i in chunk for p in planned[i]):
                bar.update(len(chunk))
                continue
            items = []
            for i in chunk:
                try:
                    items.append((i, load(i, model)))
                except (OSError, ValueError, Image.DecompressionBombError) as e:
                    failed += 1
                    # The decoder's own words: the data side's message suggests a config setting.
                    reason = e.__cause__ if isinstance(e, CorruptImageError) and e.__cause__ else e
                    tqdm.write(f"{PROG}: skipped {inputs[i][0]}: {reason}", file=sys.stderr)
            if items:
                for i, images in zip([i for i, _ in items], process(model, items), strict=True):
                    for path, image in zip(planned[i], images, strict=False):
                        if path not in keep:
                            save_png(path, image)
                            written += 1
            bar.update(len(chunk))
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(
            f"\n{PROG}: interrupted: wrote {written} file(s) to {args.out}, each complete. Run "
            "the same command with --skip-existing to write the rest",
            file=sys.stderr,
            flush=True,
        )
        return 130
    bar.close()
    summary = f"{PROG}: wrote {written} file(s) to {args.out}"
    if keep:
        summary += f", kept {len(keep)} existing"
    print(summary + (f"; {failed} input(s) failed (named above)" if failed else ""), flush=True)
    return 1 if failed else 0


# ---- i2i inpaint ---------------------------------------------------------------------------


def inpaint_main(argv: Sequence[str] | None = None) -> int:
    """`i2i inpaint`: fill the holes of image files with a model.

    Args:
        argv: the command's arguments (None: `sys.argv[1:]`).

    Returns:
        The exit status (see `run_files`).
    """
    parser = argparse.ArgumentParser(
        prog=f"{PROG} inpaint",
        description="Fill the holes of images with a model.",
        epilog="Known pixels are returned unchanged; see i2i.inference.run for --fit.",
    )
    common_arguments(parser)
    parser.add_argument("--image", required=True, type=Path, help="an image file or a folder")
    parser.add_argument(
        "--mask",
        required=True,
        help="a mask file, a folder (matched by relative path), or 'random'",
    )
    parser.add_argument(
        "--mask-polarity",
        choices=POLARITIES,
        help="which colour of the mask files is the hole (required with files)",
    )
    parser.add_argument(
        "--fit",
        choices=("crop", "resize"),
        default="crop",
        help="crop around the hole (default) or resize the whole image",
    )
    parser.add_argument(
        "--hole-range",
        type=float,
        nargs=2,
        default=(0.1, 0.5),
        metavar=("LO", "HI"),
        help="hole ratio of --mask random (default 0.1 0.5)",
    )
    parser.add_argument(
        "--allow-large-holes",
        action="store_true",
        help=f"accept masks over {MAX_MEAN_HOLE * 100:.0f}%% hole (else: inverted polarity?)",
    )
    args = parser.parse_args(argv)
    from i2i.inference.panels import overlay, panel_image
    from i2i.inference.run import inpaint_batch

    try:
        inputs = collect(args.image, "image")
        if args.mask == "random":
            masks: list[Path | None] = [None] * len(inputs)
        else:
            if args.mask_polarity is None:
                return _fail(
                    "mask files need --mask-polarity: white_is_hole (NVIDIA irregular masks, "
                    "DeepFill: the hole painted white) or white_is_known (CoModGAN, MAT)"
                )
            masks = list(match_masks(Path(args.mask), inputs))
    except (OSError, ValueError) as e:
        return _fail(str(e))
    limit = None if args.allow_large_holes else MAX_MEAN_HOLE

    def load(i: int, model) -> tuple[np.ndarray, np.ndarray]:
        path = inputs[i][0]
        image = np.asarray(load_image(path))
        if masks[i] is None:  # the project's free-form masks, seeded per image
            try:
                known = random_known(
                    image.shape[:2], tuple(args.hole_range), numpy_rng(args.seed, i)
                )
            except (ValueError, RuntimeError) as e:
                raise ValueError(
                    f"--mask random on this {image.shape[0]}x{image.shape[1]} "
                    f"(HxW) image: {e}; give a mask file, or change "
                    "--hole-range"
                ) from None
        else:
            known = load_known(masks[i], polarity=args.mask_polarity, max_hole_ratio=limit)
        if known.shape != image.shape[:2]:
            raise ValueError(
                f"its mask {masks[i]} is {known.shape[0]}x{known.shape[1]} (HxW) but the image "
                f"is {image.shape[0]}x{image.shape[1]}: give a mask of the image's size."
                + rotation_hint(known.shape, image.shape[:2])
            )
        return image, known

    def process(model, items) -> list[list[np.ndarray]]:
        outputs = inpaint_batch(
            model,
            [(image, known, i) for i, (image, known) in items],
            seed=args.seed,
            num_samples=args.num_samples,
            truncation_psi=args.truncation,
            fit=args.fit,
        )
        if not args.panel:
            return outputs
        for (_, (image, known)), outs in zip(items, outputs, strict=True):
            outs.append(panel_image([image, overlay(image, known), *outs]))
        return outputs

    sources = [args.image, *([] if args.mask == "random" else [Path(args.mask), *set(masks)])]
    return run_files(args, inputs, sources, ("inpainting",), load, process)


# ---- i2i translate -------------------------------------------------------------------------


def translate_main(argv: Sequence[str] | None = None) -> int:
    """`i2i translate`: turn edge maps, label maps or photos (their edges) into photos.

    Args:
        argv: the command's arguments (None: `sys.argv[1:]`).

    Returns:
        The exit status (see `run_files`).
    """
    parser = argparse.ArgumentParser(
        prog=f"{PROG} translate",
        description="Turn edge maps or label maps (or photos, via their Canny edges) into photos.",
    )
    common_arguments(parser)
    parser.add_argument(
        "--input",
        required=True,
        type=Path,
        help="an edge map, a label map (class ids), or a photo; file or folder",
    )
    parser.add_argument(
        "--edges-from-photo",
        action="store_true",
        help="the inputs are photos: the condition is their Canny edges",
    )
    parser.add_argument(
        "--edge-polarity",
        choices=("black_on_white", "white_on_black"),
        default="black_on_white",
        help="lines of 1-channel edge maps (default black_on_white, as pix2pix)",
    )
    args = parser.parse_args(argv)
    from i2i.inference.panels import condition_rgb, panel_image
    from i2i.inference.run import translate_batch

    try:
        inputs = collect(args.input, "input")
    except (OSError, ValueError) as e:
        return _fail(str(e))

    def load(i: int, model) -> np.ndarray:
        path = inputs[i][0]
        if model.kind == "labels" and not args.edges_from_photo:
            label = read_label_map(path, exif=True)  # upright, as photos
            high = int(label.max(initial=0))
            if high >= model.num_classes:
                raise ValueError(
                    f"class id {high} is outside 0..{model.num_classes - 1} of this model: give "
                    "a label map of its classes"
                )
            return label
        if model.kind == "labels":
            raise ValueError("--edges-from-photo needs an edges model; this one takes label maps")
        return np.asarray(load_image(path))

    def process(model, items) -> list[list[np.ndarray]]:
        outputs = translate_batch(
            model,
            [(cond, i) for i, cond in items],
            seed=args.seed,
            num_samples=args.num_samples,
            truncation_psi=args.truncation,
            edge_polarity=args.edge_polarity,
            edges_from_photo=args.edges_from_photo,
        )
        if args.panel:
            for (_, cond), outs in zip(items, outputs, strict=True):
                outs.append(panel_image([condition_rgb(model, cond), *outs]))
        return outputs

    return run_files(args, inputs, [args.input], ("edges", "labels"), load, process)
