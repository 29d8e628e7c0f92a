"""The `i2i` console script. Commands that read and write files (inpaint, translate, export, ...)
are dispatched here, before Lightning's CLI is imported: that import costs seconds that a user
running `i2i inpaint` on one photo should not pay. Everything else is Lightning's (`i2i.cli`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from i2i.allocator import keep_freed_memory
from i2i.errors import find_user_error, report

# `i2i NAME ...` commands that are not Lightning's: NAME -> ("module:function(argv) -> exit
# code", what it does, for `i2i --help`).
FILE_COMMANDS = {
    "inpaint": ("i2i.inference.files:inpaint_main", "a model fills the holes of image files"),
    "translate": ("i2i.inference.files:translate_main", "a model on edge or label maps"),
    "demo": ("i2i.inference.demo:main", "the web demo (Gradio)"),
    "export": ("i2i.inference.export:main", "ONNX / torch.export of a generator"),
    "convert": ("i2i.weights.comodgan:main", "published CoModGAN weights -> an i2i model"),
    "compare": ("i2i.compare:main", "every system side by side on the demo data"),
    "dip": ("i2i.dip:main", "deep image prior: one optimisation per image, no dataset"),
    "data": ("i2i.data.shard_optimize:main", "`i2i data optimize`: streaming shards (LitData)"),
}
HELP_FLAGS = ("-h", "--help")


def file_commands_help() -> str:
    """The file commands, a line each, as `i2i --help` lists them after Lightning's."""
    width = max(map(len, FILE_COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in FILE_COMMANDS.items()]
    return "\n".join(["", "file commands (i2i NAME --help for each):", *lines])


def run_file_command(argv: Sequence[str]) -> int:
    """Run a file command; an error meant for the user is its one `i2i: error:` message."""
    module_name, function = FILE_COMMANDS[argv[0]][0].split(":")
    try:
        return getattr(importlib.import_module(module_name), function)(list(argv[1:]))
    except Exception as e:
        if find_user_error(e) is None:
            raise
        return report(e)


def run(args: Sequence[str] | None = None) -> int:
    """`i2i ARGS` (None: this process's command line) in this process, as `main` runs it but
    leaving the allocator as it is (what tests run in-process): a file command, else Lightning's."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] and argv[0] in FILE_COMMANDS:
        return run_file_command(argv)
    # Lightning: seconds of imports, so only here
    from i2i.lightning_command import main as lightning_main

    try:
        # None: Lightning reads sys.argv itself (given args, it warns that they are for notebooks).
        return lightning_main(None if args is None else argv)
    except SystemExit:
        if argv[:1] and argv[0] in HELP_FLAGS:  # Lightning's help names only its own commands
            print(file_commands_help())
        raise


def main(args: Sequence[str] | None = None) -> int:
    """The console script (`i2i`, `python -m i2i`): the one place every command starts."""
    try:
        keep_freed_memory()  # faster large CPU steps; I2I_MALLOC=system opts out (i2i.allocator)
    except ValueError as e:
        print(f"i2i: error: {e}", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
