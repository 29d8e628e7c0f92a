"""Label sets for labels -> photo: class names, colours and the raw-value -> class-id mapping;
and LABEL_DATASETS, the published datasets as rows of one table (label set, folder layouts,
file suffixes) that the named datasets and datamodules read.

A `LabelSpec` says how the integers stored in a dataset's label files become contiguous
class ids 0..num_classes-1 (the channels of the one-hot condition), following SPADE's conventions:

| spec         | raw values in the files              | classes | mapping                       |
|--------------|--------------------------------------|--------:|-------------------------------|
| "coco_stuff" | 0..181, 255 = unlabeled              |     183 | identity, 255 -> 182          |
| "cityscapes" | raw labelIds 0..33 (not trainIds)    |      35 | identity, id 34 reserved      |
| "ade20k"     | ADEChallengeData2016: 0 = other, 1.. |     151 | identity                      |
| generic      | 0..n-1 (+ an optional ignore value)  | n (+1)  | identity, ignore -> class n   |

Names come from the official lists: the COCO-Stuff labels.txt (whose ids are 1-based with
0 = unlabeled; the label PNGs store id - 1, so PNG value 0 is "person"), the Cityscapes labels
table (labels.py of cityscapesScripts) and the SceneParsing objectInfo150 list (first synonym).
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from i2i.errors import DataError

# ---------------------------------------------------------------------------------------------
# Name tables. Stored as comma-separated text so that a formatter keeps them compact; the spec
# constructors check the counts.

# COCO-Stuff PNG values 0..90: the 91 COCO thing ids of the original paper, 11 of which have no
# annotations in COCO 2017 ("street sign", "hat", "shoe", "eye glasses", "plate", "mirror",
# "window", "desk", "door", "blender", "hair brush") and so never occur in the label maps.
_COCO_THINGS = """
person, bicycle, car, motorcycle, airplane, bus, train, truck, boat, traffic light,
fire hydrant, street sign, stop sign, parking meter, bench, bird, cat, dog, horse, sheep, cow,
elephant, bear, zebra, giraffe, hat, backpack, umbrella, shoe, eye glasses, handbag, tie,
suitcase, frisbee, skis, snowboard, sports ball, kite, baseball bat, baseball glove, skateboard,
surfboard, tennis racket, bottle, plate, wine glass, cup, fork, knife, spoon, bowl, banana,
apple, sandwich, orange, broccoli, carrot, hot dog, pizza, donut, cake, chair, couch,
potted plant, bed, mirror, dining table, window, desk, toilet, door, tv, laptop, mouse, remote,
keyboard, cell phone, microwave, oven, toaster, sink, refrigerator, blender, book, clock, vase,
scissors, teddy bear, hair drier, toothbrush, hair brush
"""
# COCO-Stuff PNG values 91..181: the 91 stuff classes.
_COCO_STUFF = """
banner, blanket, branch, bridge, building-other, bush, cabinet, cage, cardboard, carpet,
ceiling-other, ceiling-tile, cloth, clothes, clouds, counter, cupboard, curtain, desk-stuff,
dirt, door-stuff, fence, floor-marble, floor-other, floor-stone, floor-tile, floor-wood, flower,
fog, food-other, fruit, furniture-other, grass, gravel, ground-other, hill, house, leaves,
light, mat, metal, mirror-stuff, moss, mountain, mud, napkin, net, paper, pavement, pillow,
plant-other, plastic, platform, playingfield, railing, railroad, river, road, rock, roof, rug,
salad, sand, sea, shelf, sky-other, skyscraper, snow, solid-other, stairs, stone, straw,
structural-other, table, tent, textile-other, towel, tree, vegetable, wall-brick,
wall-concrete, wall-other, wall-panel, wall-stone, wall-tile, wall-wood, water-other,
waterdrops, window-blind, window-other, wood
"""

# ADE20K SceneParsing classes 1..150 (objectInfo150, first synonym of each entry; 21 is "car").
_ADE20K = """
wall, building, sky, floor, tree, ceiling, road, bed, windowpane, grass, cabinet, sidewalk,
person, earth, door, table, mountain, plant, curtain, chair, car, water, painting, sofa, shelf,
house, sea, mirror, rug, field, armchair, seat, fence, desk, rock, wardrobe, lamp, bathtub,
railing, cushion, base, box, column, signboard, chest of drawers, counter, sand, sink,
skyscraper, fireplace, refrigerator, grandstand, path, stairs, runway, case, pool table, pillow,
screen door, stairway, river, bridge, bookcase, blind, coffee table, toilet, flower, book, hill,
bench, countertop, stove, palm, kitchen island, computer, swivel chair, boat, bar,
arcade machine, hovel, bus, towel, light, truck, tower, chandelier, awning, streetlight, booth,
television receiver, airplane, dirt track, apparel, pole, land, bannister, escalator, ottoman,
bottle, buffet, poster, stage, van, ship, fountain, conveyer belt, canopy, washer, plaything,
swimming pool, stool, barrel, basket, waterfall, tent, bag, minibike, cradle, oven, ball, food,
step, tank, trade name, microwave, pot, animal, bicycle, lake, dishwasher, screen, blanket,
sculpture, hood, sconce, vase, traffic light, tray, ashcan, fan, pier, crt screen, plate,
monitor, bulletin board, shower, radiator, glass, clock, flag
"""

# Cityscapes raw label ids 0..33 with their official colours. License plate (id -1) is not
# stored in labelIds PNGs; id 34 is kept as a reserved class because SPADE uses 35 channels.
_CITYSCAPES = (
    ("unlabeled", (0, 0, 0)),
    ("ego vehicle", (0, 0, 0)),
    ("rectification border", (0, 0, 0)),
    ("out of roi", (0, 0, 0)),
    ("static", (0, 0, 0)),
    ("dynamic", (111, 74, 0)),
    ("ground", (81, 0, 81)),
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("parking", (250, 170, 160)),
    ("rail track", (230, 150, 140)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("guard rail", (180, 165, 180)),
    ("bridge", (150, 100, 100)),
    ("tunnel", (150, 120, 90)),
    ("pole", (153, 153, 153)),
    ("polegroup", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("caravan", (0, 0, 90)),
    ("trailer", (0, 0, 110)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
    ("reserved", (0, 0, 0)),
)


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def distinct_palette(num_classes: int, black: Sequence[int] = ()) -> np.ndarray:
    """Deterministic, well-spread colours (num_classes, 3) uint8; the classes in `black` (e.g.
    "unlabeled") are drawn black so that they read as "no class" in sample grids.

    Hues step by the golden ratio (neighbouring ids get far-apart hues); saturation and value
    cycle with co-prime periods so that classes sharing a hue still differ.

    Args:
        num_classes: how many colours.
        black: class ids drawn black; () for none.
    """
    golden = 0.6180339887498949
    rows = []
    for i in range(num_classes):
        s = (0.95, 0.7, 0.5)[i % 3]
        v = (0.95, 0.75, 0.55, 0.85)[i % 4]
        rgb = colorsys.hsv_to_rgb((i * golden) % 1.0, s, v)
        rows.append([round(c * 255) for c in rgb])
    palette = np.array(rows, dtype=np.uint8).reshape(num_classes, 3)
    for i in black:
        palette[i] = 0
    return palette


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LabelSpec:
    """A label set: names and colours of the classes, and how raw file values map onto them.

    Raw values 0..`identity_range`-1 keep their value; `special` maps further raw values (such
    as 255 = unlabeled) onto class ids; any other value is an error.

    Attributes:
        name: the set's name, in messages.
        num_classes: how many classes (ids 0..num_classes - 1).
        class_names: one name per class.
        palette: uint8 (num_classes, 3), for sample grids and W&B overlays.
        identity_range: raw values below it are class ids as they are; -1: num_classes.
        special: raw value -> class id, for raw values >= identity_range.
        hint: appended to out-of-range errors: what usually causes them for this set.

    Raises:
        ValueError: names or palette of the wrong length, or a bad identity_range or mapping.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    palette: np.ndarray  # uint8 (num_classes, 3), for sample grids and W&B overlays
    identity_range: int = -1  # raw values below it are class ids as they are; -1: num_classes
    special: Mapping[int, int] = field(default_factory=dict)  # raw value -> class id
    hint: str = ""  # appended to out-of-range errors: what usually causes them for this set

    def __post_init__(self) -> None:
        if self.identity_range < 0:
            object.__setattr__(self, "identity_range", self.num_classes)
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"label set {self.name!r}: {len(self.class_names)} class names for "
                f"{self.num_classes} classes"
            )
        palette = np.asarray(self.palette)
        if palette.shape != (self.num_classes, 3) or palette.dtype != np.uint8:
            raise ValueError(
                f"label set {self.name!r}: palette must be uint8 ({self.num_classes}, 3), got "
                f"{palette.dtype} {palette.shape}"
            )
        if not 0 < self.identity_range <= self.num_classes:
            raise ValueError(f"label set {self.name!r}: bad identity_range {self.identity_range}")
        for raw, cls in self.special.items():
            if raw < self.identity_range or not 0 <= cls < self.num_classes:
                raise ValueError(
                    f"label set {self.name!r}: special mapping {raw} -> {cls} must map a value "
                    f">= {self.identity_range} onto a class in 0..{self.num_classes - 1}"
                )

    def valid_values(self) -> str:
        """The accepted raw values, in words (for error messages)."""
        text = f"0..{self.identity_range - 1}"
        for raw, cls in sorted(self.special.items()):
            text += f", {raw} (-> class {cls} {self.class_names[cls]!r})"
        return text

    def to_class_ids(self, raw: np.ndarray, path: str | Path = "label map") -> np.ndarray:
        """Map the raw values of one label file to int64 class ids 0..num_classes-1.

        Args:
            raw: the file's values, (H, W) of an integer (or bool) dtype.
            path: the file, named in errors.

        Returns:
            (H, W) int64 class ids.

        Raises:
            DataError: (a ValueError) values that are not integers, or not part of the label
                set (usually a wrong number of classes or the wrong dataset); the message names
                `path`, the offending values and the valid range.
        """
        raw = np.asarray(raw)
        if raw.dtype.kind not in "iub":
            raise DataError(
                f"Label map {path}: values must be integers, got dtype {raw.dtype}; save label "
                "maps as single-channel PNGs of class ids"
            )
        ids = raw.astype(np.int64)
        out = ids.copy()
        valid = (ids >= 0) & (ids < self.identity_range)
        for value, cls in self.special.items():
            hit = ids == value
            out[hit] = cls
            valid |= hit
        if not valid.all():
            bad = np.unique(ids[~valid])
            shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
            raise DataError(
                f"Label map {path} has value(s) {shown} outside the {self.name} label set "
                f"(valid raw values: {self.valid_values()}; {self.num_classes} classes). "
                f"{self.hint or 'Check the dataset choice or num_classes.'}"
            )
        return out


def coco_stuff_spec() -> LabelSpec:
    """COCO-Stuff 2017 as SPADE uses it: 182 classes + 255 = unlabeled as class 182."""
    names = _names(_COCO_THINGS) + _names(_COCO_STUFF) + ("unlabeled",)
    return LabelSpec(
        "coco_stuff",
        183,
        names,
        distinct_palette(183, black=(182,)),
        identity_range=182,
        special={255: 182},
        hint="COCO-Stuff label maps are the stuffthingmaps PNGs (0..181, 255 = unlabeled).",
    )


def cityscapes_spec() -> LabelSpec:
    """Cityscapes raw labelIds (35 classes as in SPADE: ids 0..33, 34 reserved)."""
    names = tuple(n for n, _ in _CITYSCAPES)
    palette = np.array([c for _, c in _CITYSCAPES], dtype=np.uint8)
    return LabelSpec(
        "cityscapes",
        35,
        names,
        palette,
        hint="Use the *_gtFine_labelIds.png files (raw ids 0..33), not trainIds or colour maps.",
    )


def ade20k_spec() -> LabelSpec:
    """ADE20K SceneParsing (ADEChallengeData2016): 0 = other, 1..150 the classes."""
    return LabelSpec(
        "ade20k",
        151,
        ("other",) + _names(_ADE20K),
        distinct_palette(151, black=(0,)),
        hint="Expected ADEChallengeData2016 annotations (0..150); full-format ADE20K _seg.png "
        "files need decode_ade20k_full_seg and a mapping to these 150 classes first.",
    )


def generic_spec(
    num_classes: int,
    class_names: Sequence[str] | None = None,
    ignore_value: int | None = None,
) -> LabelSpec:
    """A user label set: raw values 0..num_classes-1 are the classes.

    Args:
        num_classes: the classes, raw values 0..num_classes-1.
        class_names: one name per class; None: class_0, class_1, ...
        ignore_value: a raw value (>= num_classes, e.g. 255) whose pixels become one more
            class, id num_classes, named "unlabeled" (as COCO-Stuff's 255), so the spec then
            has num_classes + 1 classes; None: no such value.

    Raises:
        DataError: num_classes not a positive int, names of another count, or an ignore_value
            that is one of the classes.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise DataError(f"num_classes must be a positive int, got {num_classes!r}")
    if class_names is None:
        class_names = tuple(f"class_{i}" for i in range(num_classes))
    if len(class_names) != num_classes:
        raise DataError(f"{len(class_names)} class_names given for num_classes={num_classes}")
    names = tuple(str(n) for n in class_names)
    if ignore_value is None:
        return LabelSpec("generic", num_classes, names, distinct_palette(num_classes))
    if ignore_value < num_classes:
        raise DataError(
            f"ignore_value {ignore_value} is one of the classes 0..{num_classes - 1}; use a value "
            f">= num_classes (typically 255) or no ignore_value"
        )
    n = num_classes + 1
    return LabelSpec(
        "generic",
        n,
        names + ("unlabeled",),
        distinct_palette(n, black=(num_classes,)),
        identity_range=num_classes,
        special={ignore_value: num_classes},
    )


# ---------------------------------------------------------------------------------------------
# The published label datasets: one table of label sets, folder layouts and file suffixes

CITYSCAPES_SUFFIXES = ("_leftImg8bit", "_gtFine_labelIds", "_gtFine_instanceIds")

URL_COCO_STUFF = "https://github.com/nightrome/cocostuff"
URL_CITYSCAPES = "https://www.cityscapes-dataset.com (login required)"
URL_ADE20K = "http://sceneparsing.csail.mit.edu"


def _first_layout(root: Path, layouts: list[tuple[Path, ...]], what: str, url: str):
    """The first layout whose photo and label folders exist, else FileNotFoundError."""
    for folders in layouts:
        if folders[0].is_dir() and folders[1].is_dir():
            return folders
    expected = "; or ".join(f"{f[0]} + {f[1]}" for f in layouts)
    state = "does not exist" if not root.is_dir() else "does not have the expected layout"
    raise FileNotFoundError(
        f"{what} folder {root} {state}. Expected photo + label folders: {expected}. "
        f"Download from {url}."
    )


def coco_stuff_folders(root: str | Path, split: str) -> tuple[Path, Path, Path | None]:
    """(photos, labels, instances or None) of a COCO-Stuff split: SPADE's root/{split}_img,
    {split}_label, {split}_inst, or the cocostuff release's root/images/{split}2017 +
    root/annotations/{split}2017 (stuffthingmaps, no instances).

    Args:
        root: the COCO-Stuff folder.
        split: "train" or "val".

    Raises:
        FileNotFoundError: neither layout's photo and label folders exist.
    """
    root = Path(root)
    spade = (root / f"{split}_img", root / f"{split}_label", root / f"{split}_inst")
    release = (root / "images" / f"{split}2017", root / "annotations" / f"{split}2017")
    img, lab, *inst = _first_layout(root, [spade, release], "COCO-Stuff", URL_COCO_STUFF)
    return img, lab, (inst[0] if inst and inst[0].is_dir() else None)


def cityscapes_folders(root: str | Path, split: str) -> tuple[Path, Path, Path | None]:
    """(photos, labels, instances or None) of a Cityscapes split: the official
    root/leftImg8bit/{split}/<city>/ + root/gtFine/{split}/<city>/, or pix2pixHD's
    root/{split}_img, {split}_label, {split}_inst (pix2pixHD names the val split "test").

    Args:
        root: the Cityscapes folder.
        split: "train" or "val".

    Raises:
        FileNotFoundError: no layout's photo and label folders exist.
    """
    root = Path(root)
    layouts = [(root / "leftImg8bit" / split, root / "gtFine" / split, root / "gtFine" / split)]
    for s in (split, "test") if split == "val" else (split,):
        layouts.append((root / f"{s}_img", root / f"{s}_label", root / f"{s}_inst"))
    img, lab, inst = _first_layout(root, layouts, "Cityscapes", URL_CITYSCAPES)
    return img, lab, (inst if inst.is_dir() else None)


def ade20k_folders(root: str | Path, split: str) -> tuple[Path, Path, None]:
    """(photos, labels, None) of ADEChallengeData2016: {root}/images/{training,validation} and
    {root}/annotations/...

    Args:
        root: ADEChallengeData2016, or the folder that contains it.
        split: "train" or "val" (or the folder's own name).

    Raises:
        FileNotFoundError: neither place has the photo and label folders.
    """
    root = Path(root)
    name = {"train": "training", "val": "validation"}.get(split, split)
    layouts = [
        (r / "images" / name, r / "annotations" / name)
        for r in (root, root / "ADEChallengeData2016")
    ]
    img, lab = _first_layout(root, layouts, "ADE20K (ADEChallengeData2016)", URL_ADE20K)
    return img, lab, None


@dataclass(frozen=True)
class LabelDatasetRow:
    """A published label dataset: its label set, its folder layouts and how its files pair.

    Attributes:
        title: the name error messages use.
        spec: builds its label set.
        folders: (root, split) -> (photos, labels, instances or None).
        suffixes: removed from photo, label and instance stems before pairing.
        has_instances: False: the release has no instance maps.
    """

    title: str  # the name error messages use
    spec: Callable[[], LabelSpec]  # its label set
    folders: Callable[[str | Path, str], tuple[Path, Path, Path | None]]  # (root, split) -> dirs
    suffixes: tuple[str, str, str] = ("", "", "")  # removed from photo/label/instance stems
    has_instances: bool = True  # False: the release has no instance maps

    def check_instances(self, root: str | Path) -> None:
        """Check that both splits have instance maps, before any file is listed.

        Args:
            root: the dataset's folder.

        Raises:
            FileNotFoundError: a split without an instance folder.
        """
        for split in ("train", "val"):
            if self.folders(root, split)[2] is None:
                raise FileNotFoundError(
                    f"instance_edges=true but {self.title} in {root} has no instance maps for "
                    f"the {split!r} split; add them (see the layout in the docs) or set "
                    "instance_edges: false"
                )


LABEL_DATASETS = {
    "coco_stuff": LabelDatasetRow("COCO-Stuff", coco_stuff_spec, coco_stuff_folders),
    "cityscapes": LabelDatasetRow(
        "Cityscapes", cityscapes_spec, cityscapes_folders, CITYSCAPES_SUFFIXES
    ),
    "ade20k": LabelDatasetRow(
        "ADEChallengeData2016", ade20k_spec, ade20k_folders, has_instances=False
    ),
}


def get_spec(name: str) -> LabelSpec:
    """The label set of a row of LABEL_DATASETS.

    Args:
        name: "coco_stuff", "cityscapes" or "ade20k".

    Raises:
        DataError: another name.
    """
    if name not in LABEL_DATASETS:
        raise DataError(
            f"unknown label set {name!r}; choose one of {sorted(LABEL_DATASETS)} or 'generic'"
        )
    return LABEL_DATASETS[name].spec()
