"""The configuration reference's option tables (docs/hooks/options.py, run by `make docs`): each
table lists exactly the options the CLI accepts for its class, with the code's defaults and
comments, so the pages cannot fall behind the code."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys

import pytest
from jsonargparse import ArgumentParser

from tests.clirun import REPO

OPTIONS_PAGES = REPO / "docs" / "options"
# Lightning's ModelCheckpoint: the table shows i2i's own option; the rest are Lightning's,
# linked from the page.
LIGHTNING_BASED = {"i2i.callbacks.resume.LastAndBestCheckpoint"}


def load_hook():
    spec = importlib.util.spec_from_file_location("options_hook", REPO / "docs/hooks/options.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


hook = load_hook()


def documented_classes() -> list[str]:
    found = []
    for page in sorted(OPTIONS_PAGES.glob("*.md")):
        found += hook.MARKER.findall(page.read_text())
    return found


def accepted_by_the_cli(path: str) -> set[str]:
    """The `init_args` keys jsonargparse (the Lightning CLI's parser) accepts for the class."""
    module, _, name = path.rpartition(".")
    parser = ArgumentParser()
    parser.add_class_arguments(getattr(importlib.import_module(module), name), "x")
    return {a.dest.split(".")[1] for a in parser._actions if a.dest.startswith("x.")}


def test_the_pages_document_every_configured_kind_of_class():
    classes = documented_classes()
    assert len(classes) == len(set(classes))
    for path in ["i2i.tasks.InpaintingTask", "i2i.data.inpainting.InpaintingDataModule"]:
        assert path in classes
    # Every class a packaged config names under model/data (tasks, networks, datamodules) has
    # a table, or a sibling's that the page says it shares.
    shares = {
        "i2i.data.translation.Edges2HandbagsDataModule",
        "i2i.data.translation.CityscapesPix2PixDataModule",
        "i2i.data.label_datamodules.CityscapesDataModule",
        "i2i.data.label_datamodules.ADE20KDataModule",
    }
    configs = (REPO / "src" / "i2i" / "configs").rglob("*.yaml")
    named = {m for c in configs for m in re.findall(r"class_path: (i2i\.\S+)", c.read_text())}
    named -= {n for n in named if ".segmenters." in n or n.startswith("i2i.losses")}
    resolved = {hook.resolve(n).path for n in named}
    documented = {hook.resolve(n).path for n in classes} | {hook.resolve(n).path for n in shares}
    assert resolved <= documented, sorted(resolved - documented)


@pytest.mark.parametrize("path", documented_classes())
def test_each_table_lists_what_the_cli_accepts(path):
    assert hook.table(path).startswith(f"`{path}`")  # renders, as the build will
    listed = [option.name for option in hook.options_of(hook.resolve(path))]
    assert len(listed) == len(set(listed))
    accepted = accepted_by_the_cli(path)
    if path in LIGHTNING_BASED:
        assert set(listed) <= accepted
    else:
        assert set(listed) == accepted


def test_an_option_has_its_default_and_its_comment_from_the_code():
    options = {o.name: o for o in hook.options_of(hook.resolve("i2i.tasks.InpaintingTask"))}
    assert options["r1_gamma"].default == "10.0"
    assert "R1 weight" in options["r1_gamma"].meaning
    assert options["r1_gamma"].owner == "CoModGANTask"
    # Declared by a base the task reaches through **kwargs, and documented in a comment block
    # of the constructor's body.
    assert options["max_iterations"].owner == "ImageTask"
    assert options["classical_reference"].meaning.startswith("the classical fill")
    assert options["generator"].default == ""  # required


def test_comment_lines_between_arguments_go_to_the_argument_without_its_own():
    options = {
        o.name: o for o in hook.options_of(hook.resolve("i2i.data.inpainting.InpaintingDataModule"))
    }
    assert options["attributes"].meaning.startswith("Per-image attributes")
    assert "Per-image" not in options["resolution_multiple"].meaning


def test_a_dataclass_lists_its_fields():
    names = [
        o.name for o in hook.options_of(hook.resolve("i2i.metrics.protocols.EvaluationOptions"))
    ]
    assert names[:2] == ["buckets", "official_num_pairs"]


def test_the_marker_becomes_a_table_and_a_pipe_stays_in_its_cell():
    page = "intro\n\n<!-- options i2i.callbacks.evaluation.GANMetrics -->\n"
    text = hook.on_page_markdown(page)
    assert "<!-- options" not in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert any(row.startswith("| `weights_path` | <code>str &#124; None</code> |") for row in rows)
    assert all(row.count(" | ") == 3 for row in rows), rows


def test_an_unknown_class_fails_the_build():
    with pytest.raises(KeyError):
        hook.on_page_markdown("<!-- options i2i.tasks.NoSuchTask -->")


GROUPED = """
from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    resize: str = "cover"  # how images meet the resolution
    hflip: bool = True


class Loader:
    def __init__(
        self,
        root: str,  # the folder
        images: Geometry = Geometry(),  # how images are read
    ):
        pass


class OtherLoader:
    def __init__(self, images: Geometry | None = None):  # the same group
        pass
"""


@pytest.fixture
def grouped_package(tmp_path, monkeypatch):
    """A package `i2i` of two classes that take one group of options (a dataclass)."""
    (tmp_path / "i2i").mkdir()
    (tmp_path / "i2i" / "__init__.py").write_text("")
    (tmp_path / "i2i" / "loaders.py").write_text(GROUPED)
    monkeypatch.setattr(hook, "SOURCE", tmp_path)
    hook.package.cache_clear()
    hook.parsed.cache_clear()
    yield
    hook.package.cache_clear()
    hook.parsed.cache_clear()


def test_a_group_of_options_gets_its_own_table_once_per_page(grouped_package):
    page = "<!-- options i2i.loaders.Loader -->\n\n<!-- options i2i.loaders.OtherLoader -->\n"
    text = hook.on_page_markdown(page)
    assert text.count("The options of `images`, written under `images:`") == 1
    assert text.count("`i2i.loaders.Geometry`") == 1
    assert "| `resize` | <code>str</code> | <code>&#x27;cover&#x27;</code> | how images" in text
    assert "| `root` | <code>str</code> | required | the folder |" in text
