"""Errors meant for users, and how the `i2i` command prints them.

An error whose message names the file, the value and the fix derives from `UserError`: the
command prints it alone, `i2i: error: <message>`, and exits with status 1. `I2I_DEBUG=1` prints
the traceback too. A leaf module: it imports nothing of i2i, so every layer may raise these.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TextIO

DEBUG_VARIABLE = "I2I_DEBUG"


class UserError(Exception):
    """A problem that the message fully explains (what, where, and what to do about it)."""


class DataError(UserError, ValueError):
    """A dataset, a data file or a data setting that cannot be used (still a ValueError for
    callers that catch one)."""


class ConversionError(UserError, ValueError):
    """A published weights file that does not map onto i2i's networks; the message lists every
    offending name."""


class ModelFileError(UserError, ValueError):
    """A model file that cannot be used; the message names the file and the fix."""


class ConfigFileError(UserError):
    """A config that names a base that does not exist, or bases that name each other."""


class RunError(UserError, RuntimeError):
    """A problem with a run's files or settings that the message fully explains: the `i2i`
    command prints it as is, without a traceback."""


class CheckpointWriteError(RunError):
    """A checkpoint (or the start-up probe) could not be written: full disk, permissions, a path
    through a file."""


class RefusedFileError(UserError, ValueError):
    """A file names code to run (a foreign pickle global, a class outside the allow-list): it
    was refused before anything ran. The message names the file, what was refused and the fix."""


class CorruptImageError(UserError, ValueError):
    """An image file that cannot be decoded (truncated, wrong format, random bytes)."""


class ShardMismatchError(UserError, FileNotFoundError):
    """The shards this config needs are not in the folder (missing, or written from another
    config); still a FileNotFoundError for callers that catch one."""


class DownloadError(UserError, RuntimeError):
    """A download that could not complete; the message says how to install the data by hand."""


class ArchiveError(DownloadError):
    """A downloaded or placed archive that is corrupt, unsafe or not the expected file."""


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def find_user_error(error: BaseException | None) -> UserError | None:
    """The user error behind `error`: itself, or what it was raised from or while handling
    (a library may wrap it)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def user_message(error: BaseException) -> str:
    """The error's own message, with the notes added to it (what a crash saved)."""
    text = str(error).strip()
    # A DataLoader worker's error arrives re-raised in the main process with the worker's
    # traceback as its message: "Caught DataError in DataLoader worker process 0. Original
    # Traceback ... i2i.errors.DataError: <message>". Keep the message.
    if text.startswith("Caught ") and "Original Traceback" in text:
        name = f"\n{type(error).__module__}.{type(error).__qualname__}: "
        at = text.rfind(name)
        if at >= 0:
            text = text[at + len(name) :].strip()
    notes = [n for n in getattr(error, "__notes__", []) if n.strip() not in text]
    return "\n".join([text, *notes])


def report(error: BaseException, message: str | None = None, file: TextIO | None = None) -> int:
    """Print `i2i: error: <message>` (after the traceback with I2I_DEBUG=1): the message of the
    user error behind `error` unless one is given. The exit status: 1."""
    file = file or sys.stderr
    if debugging():
        traceback.print_exception(error, file=file)
    if message is None:
        message = user_message(find_user_error(error) or error)
        outer = [n for n in getattr(error, "__notes__", []) if n.strip() not in message]
        message = "\n".join([message, *outer])
    print(f"i2i: error: {message}", file=file, flush=True)
    return 1
