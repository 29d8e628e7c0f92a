"""The documentation's examples, run: every shell block and Python snippet of the pages below
(sybil reads the Markdown), so that a renamed flag breaks a test instead of a reader.

Shell blocks run their commands in a folder laid out as a clone (the Makefile, `configs/`,
`.venv`), never in the checkout; each exit status is checked. `make ...` runs as a subprocess,
except `make train`: the clone's first one is a process, the pages' others run the command their
recipe names (`make -n`) in this process. Servers (`i2i demo`) are processes forked from the warm
interpreter (tests.warm). `i2i ...` runs in this process as the
console script runs it (`i2i.commands.run`). Both spare each command seconds of imports; the
console script itself is tested as a process in tests/test_cli.py.
Where the real command would take minutes, SUBSTITUTIONS says what runs instead, and why. A block
that cannot run here says so in the Markdown, `<!-- skip: next "the reason" -->` above it.
Python snippets run in this process, in the same folder; a page's snippets share one namespace.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sybil import Document, Example
from sybil.evaluators.skip import Skipper
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

from tests.clirun import REPO, env, make_dry_run, output, run_i2i, serving

PAGES = ["README.md", "docs/getting-started.md", "docs/inference.md", "docs/demo.md"]
OVERLAY = REPO / "tests" / "configs" / "examples.yaml"
RUNNABLE = {"bash", "python"}
NOT_RUN = {"text", "yaml"}  # printed output and config files: read, not run


@dataclass
class Clone:
    """The folder the examples run in, laid out as a clone after `make install`, and the
    commands already run there (a command that two pages show runs once, as a reader runs it)."""

    root: Path
    done: set[tuple[str, ...]] = field(default_factory=set)


# ---- what runs instead of the slow commands ------------------------------------------------


def dry_run(argv: list[str]) -> list[str]:
    return ["make", "-n", *argv[1:]]


def make_args_with_overlay(argv: list[str]) -> list[str]:
    """`make train [TASK=..] [ARGS=..]` with the overlay's --config first in ARGS (after the
    experiment's --config, before the reader's overrides)."""
    args = [a.removeprefix("ARGS=") for a in argv if a.startswith("ARGS=")]
    rest = [a for a in argv if not a.startswith("ARGS=")]
    return [*rest, f"ARGS=--config {OVERLAY} {' '.join(args)}".rstrip()]


def fit_with_overlay(argv: list[str]) -> list[str]:
    """`i2i fit --config X ...` with the overlay's --config right after the last one."""
    last = max(i for i, a in enumerate(argv) if a == "--config" or a.startswith("--config="))
    at = last + (2 if argv[last] == "--config" else 1)
    return [*argv[:at], "--config", str(OVERLAY), *argv[at:]]


TINY = "the experiment at 32 px, narrow networks, 2 iterations (tests/configs/examples.yaml)"
# (a command's first words, what runs instead, why). Everything else runs as written.
SUBSTITUTIONS: list[tuple[list[str], Callable[[list[str]], list[str]], str]] = [
    (["make", "install"], dry_run, "the suite runs inside the .venv it makes: a dry run"),
    (["make", "test"], dry_run, "the suite is what it runs: a dry run"),
    (["make", "train"], make_args_with_overlay, f"{TINY}: the real one trains for minutes"),
    # Four processes, half a minute of CPU: tests/test_try.py runs it for real after a tiny fit.
    (["make", "try"], dry_run, "tests/test_try.py runs it in full: a dry run"),
    (["i2i", "fit"], fit_with_overlay, f"{TINY}: the real one trains for minutes or days"),
]
# Commands that serve until stopped: started on a free port, stopped once their page answers.
SERVERS = [["i2i", "demo"]]
# Blocks with these commands are marked slow (`make test-full` runs them), and why.
SLOW = [
    (
        ["i2i", "export"],
        "the ONNX exporter traces the graph for about half a minute of CPU even on a tiny model;"
        " tests/inference/test_export.py runs the command in the fast suite",
    ),
]


def substitute(argv: list[str]) -> list[str]:
    for words, rewrite, _why in SUBSTITUTIONS:
        if argv[: len(words)] == words:
            return rewrite(argv)
    return argv


def commands(source: str) -> list[list[str]]:
    """The simple commands of a bash block in order: lines joined at a trailing backslash,
    comments dropped, `&&` chains split. Pipes, redirections and `;` are refused: a block is a
    list of commands a reader types one by one."""
    out = []
    for line in source.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        bad = [t for t in tokens if t in {"|", "||", ">", "<", "&"} or t.endswith(";")]
        assert not bad, f"not a list of commands: {line!r}"
        while tokens:
            at = tokens.index("&&") if "&&" in tokens else len(tokens)
            out.append(tokens[:at])
            tokens = tokens[at + 1 :]
    return out


def clone_env(clone: Clone) -> dict[str, str]:
    """Caches, Gradio's uploads and W&B inside the clone; W&B off."""
    return {
        "HOME": str(clone.root / "home"),
        "I2I_CACHE_DIR": str(clone.root / "cache"),
        "GRADIO_TEMP_DIR": str(clone.root / "gradio"),
        "WANDB_MODE": "disabled",
    }


def shell_env(clone: Clone) -> dict[str, str]:
    """`clone_env`, this environment's `i2i` first on the PATH, no display (make try opens
    none)."""
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    variables = env(**clone_env(clone), PATH=path, OMP_NUM_THREADS="1")
    variables.pop("DISPLAY", None)
    return variables


def serve(argv: list[str], clone: Clone, timeout: float = 600) -> None:
    """Start a server command (`i2i demo`: a process forked from the warm interpreter,
    tests.warm) and stop it once its page answers (tests.clirun.serving)."""
    assert argv[0] == "i2i", argv
    variables = {**clone_env(clone), "PATH": shell_env(clone)["PATH"], "OMP_NUM_THREADS": "1"}
    log = clone.root / "server.log"
    with serving("warm", *argv[1:], cwd=clone.root, log=log, timeout=timeout, **variables):
        pass


def make_recipe(argv: list[str], clone: Clone) -> list[str]:
    """The arguments of the `i2i` command that `make ARGV` would run (`make -n` prints it)."""
    recipe = make_dry_run(*argv[1:], cwd=clone.root, **clone_env(clone))
    lines = [line for line in recipe if line[1:3] == ["-m", "i2i"]]
    assert len(lines) == 1, recipe
    return lines[0][3:]


def run_command(written: list[str], clone: Clone, as_process: bool = False) -> None:
    """Run a page's command in the clone. `make train` runs the `i2i fit` its recipe names in
    this process, unless `as_process` (the clone's own `make train` is a real one)."""
    argv = substitute(written)
    if tuple(argv) in clone.done:
        return
    ran = shlex.join(argv) if argv != written else "as written"
    in_process = argv[0] == "i2i" or (argv[:2] == ["make", "train"] and not as_process)
    if any(argv[: len(words)] == words for words in SERVERS):
        serve(argv, clone)
    elif in_process:
        args = argv[1:] if argv[0] == "i2i" else make_recipe(argv, clone)
        code, text = run_i2i("in_process", *args, cwd=clone.root, **clone_env(clone))
        assert code == 0, f"`{shlex.join(written)}` (ran: {ran}) exited {code}:\n{text[-3000:]}"
    else:
        result = subprocess.run(
            argv, cwd=clone.root, env=shell_env(clone), capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, (
            f"`{shlex.join(written)}` (ran: {ran}) exited {result.returncode}:\n"
            + output(result)[-3000:]
        )
    clone.done.add(tuple(argv))


def evaluate_bash(example: Example) -> None:
    for argv in commands(example.parsed):
        run_command(argv, example.namespace["clone"])


PARSERS = [
    SkipParser(),
    PythonCodeBlockParser(),
    CodeBlockParser(language="bash", evaluator=evaluate_bash),
]


def cases() -> list[pytest.param]:
    """One case per runnable block, in page order, each with the skip directive above it."""
    out = []
    for page in PAGES:
        document = Document.parse(str(REPO / page), *PARSERS)
        pending: list[Example] = []
        for example in document.examples():
            pending.append(example)
            if not isinstance(example.region.evaluator, Skipper):
                slow = example.region.evaluator is evaluate_bash and any(
                    argv[: len(words)] == words
                    for argv in commands(example.parsed)
                    for words, _why in SLOW
                )
                marks = [pytest.mark.slow] if slow else []
                out.append(pytest.param(pending, id=f"{page}:{example.line}", marks=marks))
                pending = []
    return out


# ---- the clone ---------------------------------------------------------------------------------


def write_inputs(root: Path) -> None:
    """The files the pages name: a photo and its mask (white = hole) of an odd size; folders of
    photos and masks matched by name (also a folder to train on); edge maps; and, standing in
    for a converted published model (a download), a tiny untrained edges model file."""
    from i2i.data import batch
    from i2i.data.synthetic import ShapesDataset
    from i2i.images import to_uint8
    from i2i.inference.model import build_task, write_model
    from tests.conftest import TINY_G

    scenes = ShapesDataset(64, length=13, seed=11)
    for folder in ("photos", "masks", "edges"):
        (root / folder).mkdir()
    for i in range(12):
        image = to_uint8(scenes[i][batch.IMAGE])
        Image.fromarray(image).save(root / "photos" / f"scene_{i:02d}.jpg", quality=95)
        hole = np.zeros(image.shape[:2], np.uint8)
        hole[16 + i : 40 + i, 12:44] = 255
        Image.fromarray(hole).save(root / "masks" / f"scene_{i:02d}.png")
    for i in range(2):
        edges = to_uint8(scenes[i][batch.EDGES])
        Image.fromarray(edges).save(root / "edges" / f"scene_{i:02d}.png")
    photo = Image.fromarray(to_uint8(scenes[12][batch.IMAGE])).resize((93, 70))
    photo.save(root / "photo.jpg", quality=95)
    hole = np.zeros((70, 93), np.uint8)
    hole[20:45, 30:70] = 255
    Image.fromarray(hole).save(root / "mask.png")
    task_class = "i2i.tasks.EdgesToPhotoTask"
    generator = {"img_resolution": 32, "cond_channels": 1, **TINY_G}
    init_args = {"generator": {"class_path": "i2i.networks.CoModGenerator", "init_args": generator}}
    write_model(
        root / "edges2shoes",
        task_class_path=task_class,
        task_init_args=init_args,
        network_state=build_task(task_class, init_args).sampling_network.state_dict(),
        resolution=32,
        kind="edges",
        source="tests: untrained",
    )


@pytest.fixture(scope="session")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Clone:
    """A clone-like folder with the inputs the pages name and one tiny `make train` run
    (runs/demo), shared by every block: the pages' `make train` is that command."""
    root = tmp_path_factory.mktemp("clone")
    shutil.copy(REPO / "Makefile", root / "Makefile")
    (root / "configs").symlink_to(REPO / "src" / "i2i" / "configs")
    (root / ".venv").symlink_to(Path(sys.prefix))
    write_inputs(root)
    made = Clone(root)
    run_command(["make", "train"], made, as_process=True)
    return made


# ---- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("examples", cases())
def test_example(examples: list[Example], clone: Clone, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(clone.root)
    for example in examples:
        example.namespace["clone"] = clone
        example.evaluate()


def test_every_code_block_is_run_or_says_why_not():
    """A block in another language (`sh`, `console`, none) would be skipped silently."""
    for page in PAGES:
        text = (REPO / page).read_text()
        for language in re.findall(r"^```(\S*)", text, flags=re.M)[::2]:
            assert language in RUNNABLE | NOT_RUN, (page, language)


def test_the_readme_names_existing_configs():
    """The systems table's config names are files in configs/ (the rest is `i2i dip`)."""
    text = (REPO / "README.md").read_text()
    table = re.search(r"^\| system \|.*?\n\n", text, flags=re.M | re.S)
    assert table is not None, "README.md: no table of systems"
    names = set(re.findall(r"`([a-z0-9_]+)`", table.group()))
    assert len(names) >= 20, names
    missing = sorted(n for n in names if not (REPO / "configs" / f"{n}.yaml").is_file())
    assert missing == [], missing


def test_substitutions_keep_the_readers_arguments():
    written = ["make", "train", "TASK=demo", "ARGS=--data.init_args.data_dir=photos"]
    assert substitute(written) == [
        "make",
        "train",
        "TASK=demo",
        f"ARGS=--config {OVERLAY} --data.init_args.data_dir=photos",
    ]
    fit = ["i2i", "fit", "--config", "demo", "--ckpt_path", "last"]
    assert substitute(fit) == [*fit[:4], "--config", str(OVERLAY), *fit[4:]]
    assert substitute(["make", "test"]) == ["make", "-n", "test"]
    assert substitute(["make", "help"]) == ["make", "help"]
    assert commands("a x \\\n  y  # why\nb && c 'd e'\n") == [["a", "x", "y"], ["b"], ["c", "d e"]]


def test_the_readme_is_a_front_page_not_a_notebook():
    """Issue 28: under 200 lines, no dates and no CPU names (they live in docs/benchmarks.md),
    and the three commands come before everything else but the introduction."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) < 200
    assert re.findall(r"\b20\d\d-\d\d-\d\d\b", text) == []
    assert re.findall(r"EPYC|Xeon|Sapphire|Zen \d|AVX", text) == []
    commands = ["make install && make train", "make try", "make test"]
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    assert [c for c in commands if c in first_block] == commands
