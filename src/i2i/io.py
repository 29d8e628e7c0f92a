"""Files: written atomically, and hashed.

Atomic writes go to a temporary beside the target, renamed over it once complete, with the mode
a plain `open()` gives (0666 less the umask). Temporaries from `tempfile.mkstemp`, and files
some libraries create (safetensors), are 0600: renamed as they are, a model or a cache shared on
a cluster would be unreadable to the group.
A leaf module: anything may import it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path


def umask() -> int:
    """This process's umask (read without changing it where the system tells it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (Python < 3.13 has no getter)
    os.umask(mask)
    return mask


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give the finished temporary `tmp` a plain file's mode and rename it to `path`."""
    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, path)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a temporary beside `path`, then publish it as `path`: a reader never
    sees half a file, and a failed write leaves the previous one."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp{os.getpid()}"
    try:
        write(tmp)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_of(path: str | Path) -> str:
    """The SHA-256 hex digest of a file, read in blocks (weights files are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
