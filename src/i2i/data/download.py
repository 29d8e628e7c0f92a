"""Resumable dataset downloads and safe archive extraction (standard library only).

`download_and_extract` fetches an HTTP(S) or file:// URL into ``root/<archive>.part``,
continuing a partial file with an HTTP Range request, checks the size (and the SHA-256 when one is
known), renames the finished file atomically to ``root/<archive>`` and extracts it (.tar.gz, .tgz,
.tar or .zip) into ``root``. Extraction goes to a hidden staging folder first, rejects any member
that would land outside it (absolute paths, ``..``, links pointing out, device files), and only
then moves the top-level entries into ``root``: an interrupted extraction never leaves a
half-filled dataset folder that looks complete.

A corrupt or mismatched archive raises `ArchiveError` and is deleted, so a retry starts
clean. A network failure raises `DownloadError` whose message names the URL, the archive
file and where to put the archive (or the extracted folder) by hand; a partial ``.part`` file is
kept so that the next call resumes it.

`PIX2PIX_DATASETS` lists the pix2pix archives: edges -> photo pairs, and facades and
cityscapes (photo left, label map right: see `halves`). Their SHA-256 checksums are not known
offline, so they are None: those downloads are checked by size (the server's Content-Length) and
by a full decompression (gzip CRC), not by hash.

`CYCLEGAN_DATASETS` lists the CycleGAN unpaired archives (.zip files holding
``<name>/trainA``, ``trainB``, ``testA``, ``testB``); `ensure_cyclegan` fetches one. They
are checked by size and by the zip's per-member CRCs during extraction.

Why not torchvision's `download_url` and `extract_archive`: the download writes straight into
the archive's final name (a killed download leaves a partial file that the next call, with no
checksum known, takes as complete), never resumes, and retries a failed https URL over plain
http; the extraction calls `extractall` without a filter, which on Python 3.11 writes members
outside the target folder.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from http.client import HTTPException
from pathlib import Path, PureWindowsPath

from i2i.errors import ArchiveError, DownloadError
from i2i.io import sha256_of

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_ZIP_SUFFIXES = (".zip",)
# What a damaged archive raises while it is read (gzip.BadGzipFile: bad header or CRC).
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error)


@dataclasses.dataclass(frozen=True)
class Pix2PixArchive:
    """One pix2pix dataset archive (files are 256x512 JPEGs, two halves side by side)."""

    url: str
    approx_size_gb: float  # informational only: the exact byte count is not known offline
    num_train: int
    num_val: int
    sha256: str | None = None  # unknown offline; see the module docstring
    halves: str = "edges left, photo right"  # what the two halves of each file hold

    # What ensure_dataset says of the family, formatted with the fields and `folder`.
    family, splits, suffix = "pix2pix", ("train", "val"), ".tar.gz"
    size = "~{approx_size_gb:g} GB"
    contents = "{folder}/train/ and {folder}/val/ holding 256x512 JPEGs ({halves})"
    layout = "{folder}/train/*.jpg and {folder}/val/*.jpg exist"


_PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{}.tar.gz"

PIX2PIX_DATASETS: dict[str, Pix2PixArchive] = {
    "edges2shoes": Pix2PixArchive(_PIX2PIX_URL.format("edges2shoes"), 2.0, 49_825, 200),
    "edges2handbags": Pix2PixArchive(_PIX2PIX_URL.format("edges2handbags"), 8.0, 138_567, 200),
    # CMP Facades as pix2pix packed it (also a test/ split of 106); labels -> photo is BtoA.
    "facades": Pix2PixArchive(
        _PIX2PIX_URL.format("facades"), 0.03, 400, 100, halves="photo left, label map right"
    ),
    # Cityscapes train / val at 256x256, colour label maps; labels -> photo is BtoA.
    "cityscapes": Pix2PixArchive(
        _PIX2PIX_URL.format("cityscapes"), 0.1, 2_975, 500, halves="photo left, label map right"
    ),
}


# --------------------------------------------------------------------------------------------
# Public entry points


def download_and_extract(
    url: str,
    root: str | Path,
    archive_name: str | None = None,
    sha256: str | None = None,
    expected_size: int | None = None,
    timeout: float = 30,
    *,
    retries: int = 3,
    keep_archive: bool = True,
    layout_hint: str | None = None,
) -> Path:
    """Download `url` into `root`, verify it and extract it into `root`.

    An archive already at ``root/archive_name`` is verified and extracted without downloading.

    Args:
        url: an http(s) or file:// URL.
        root: the folder the archive is saved and extracted into (created if missing).
        archive_name: the archive's file name; None: the last part of the URL path. Its suffix
            picks the format (.tar.gz, .tgz, .tar, .zip).
        sha256: the archive's hex digest, checked when given.
        expected_size: the archive's exact byte count, checked when given.
        timeout: seconds that bound connecting and each read.
        retries: resumptions after a connection that drops mid-transfer (a refused connection
            fails at once).
        keep_archive: keep the archive after extracting; False deletes it to save disk.
        layout_hint: completes the "extract it yourself" instruction (e.g. "data/x/train/
            exists"); None: none.

    Returns:
        The archive's path (deleted already when not `keep_archive`).

    Raises:
        ValueError: an archive name whose format cannot be told.
        DownloadError: a network failure (a partial .part file is kept for resuming).
        ArchiveError: a corrupt, unsafe or unexpected archive (deleted).
        FileExistsError: an extracted entry would overwrite a non-empty folder.
    """
    root = Path(root)
    name = archive_name or Path(urllib.parse.urlparse(url).path).name
    if not name or not name.lower().endswith(_TAR_SUFFIXES + _ZIP_SUFFIXES):
        raise ValueError(
            f"Cannot tell the archive format of {name!r} (from {url}); pass archive_name ending "
            f"in one of {_TAR_SUFFIXES + _ZIP_SUFFIXES}"
        )
    root.mkdir(parents=True, exist_ok=True)
    archive = root / name
    manual = _manual_steps(url, archive, layout_hint)

    if not archive.exists():
        part = archive.with_name(name + ".part")
        if url.startswith("file:"):
            _copy_file_url(url, part, manual)
        else:
            _http_download(url, part, expected_size, timeout, retries, manual)
        _verify(part, url, expected_size, sha256, manual)
        os.replace(part, archive)  # atomic: a file named like the archive is always complete
    else:
        log.info("Using the existing archive %s", archive)
        _verify(archive, url, expected_size, sha256, manual)

    _extract(archive, root, url, manual)
    if not keep_archive:
        archive.unlink()
    return archive


@dataclasses.dataclass(frozen=True)
class CycleGANArchive:
    """One CycleGAN unpaired dataset archive: a .zip of <name>/{trainA,trainB,testA,testB}."""

    url: str
    approx_size_mb: float  # informational only: the exact byte count is not known offline
    sha256: str | None = None  # unknown offline

    family, splits, suffix = "CycleGAN", ("trainA", "trainB", "testA", "testB"), ".zip"
    size = "~{approx_size_mb:.0f} MB"  # formatted as Pix2PixArchive's texts
    contents = "{folder}/ with trainA, trainB, testA, testB folders of images"
    layout = "{folder}/trainA/, {folder}/trainB/, {folder}/testA/, {folder}/testB/ exist"

    @property
    def approx_size_gb(self) -> float:
        """The approximate size in GB (`ensure_dataset` warns about free disk with it)."""
        return self.approx_size_mb / 1000


_CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{}.zip"
# The archives of the official download script; sizes are approximate.
CYCLEGAN_DATASETS: dict[str, CycleGANArchive] = {
    name: CycleGANArchive(_CYCLEGAN_URL.format(name), size)
    for name, size in (
        ("apple2orange", 75),
        ("summer2winter_yosemite", 126),
        ("horse2zebra", 111),
        ("monet2photo", 291),
        ("cezanne2photo", 267),
        ("ukiyoe2photo", 279),
        ("vangogh2photo", 292),
        ("maps", 1400),
        ("iphone2dslr_flower", 324),
        ("ae_photos", 10),
    )
}


def ensure_dataset(
    archives: dict[str, Pix2PixArchive] | dict[str, CycleGANArchive],
    name: str,
    root: str | Path,
    download: bool = True,
    url: str | None = None,
) -> Path:
    """``root/<name>`` with its split folders, downloading the archive `archives[name]` if needed.

    The archive is deleted after a successful extraction (pix2pix archives are 2-8 GB).

    Args:
        archives: the family's table (`PIX2PIX_DATASETS`, `CYCLEGAN_DATASETS`).
        name: the dataset's name in the table.
        root: the folder that holds (or will hold) `<name>/`.
        download: fetch a missing dataset; False raises instead.
        url: a mirror or a file:// URL in place of the official address; None: the official.

    Returns:
        ``root/<name>``.

    Raises:
        ValueError: a name not in the table.
        FileNotFoundError: a missing dataset with download=False (naming the URL and layout).
        DownloadError: the download failed (see `download_and_extract`).
        ArchiveError: the archive lacks the split folders.
    """
    if name not in archives:
        family = next(iter(archives.values())).family
        raise ValueError(f"Unknown {family} dataset {name!r}; known: {sorted(archives)}")
    info = archives[name]
    url = url or info.url
    root = Path(root)
    folder = root / name
    if all((folder / split).is_dir() for split in info.splits):
        return folder
    fields = {**dataclasses.asdict(info), "folder": folder}
    layout, size = info.layout.format(**fields), info.size.format(**fields)
    if not download:
        raise FileNotFoundError(
            f"{info.family} dataset {name!r} not found: expected {info.contents.format(**fields)}. "
            f"Download {url} ({size}) and extract it into {root} so that {layout}; or "
            f"save it as {root / (name + info.suffix)} and set download=True (then it is only "
            "verified and extracted); or set download=True to fetch it."
        )
    free = shutil.disk_usage(_existing_parent(root)).free
    if free < 2.2 * info.approx_size_gb * 1e9:  # archive + extracted files, briefly both
        log.warning(
            "Only %.1f GB free under %s; %s needs about %.1f GB while extracting",
            free / 1e9,
            root,
            name,
            2.2 * info.approx_size_gb,
        )
    log.info("Downloading %s (%s) from %s into %s", name, size, url, root)
    filename = name + info.suffix
    download_and_extract(
        url, root, filename, sha256=info.sha256, keep_archive=False, layout_hint=layout
    )
    missing = [f"{split}/" for split in info.splits if not (folder / split).is_dir()]
    if missing:
        raise ArchiveError(
            f"The archive from {url} was extracted into {root} but {folder} lacks "
            f"{', '.join(missing)}; check {root} and place the folders by hand ({layout})."
        )
    return folder


ensure_pix2pix = functools.partial(ensure_dataset, PIX2PIX_DATASETS)
ensure_cyclegan = functools.partial(ensure_dataset, CYCLEGAN_DATASETS)


# --------------------------------------------------------------------------------------------
# Download


def _manual_steps(url: str, archive: Path, layout_hint: str | None) -> str:
    where = f"extract it yourself into {archive.parent}"
    if layout_hint:
        where += f" so that {layout_hint}"
    return (
        f"To install it by hand: download {url} (file name: {archive.name}) and save it as "
        f"{archive}, then run again to verify and extract it; or {where}."
    )


def _copy_file_url(url: str, part: Path, manual: str) -> None:
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    try:
        shutil.copyfile(source, part)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"Could not copy {url} ({type(e).__name__}: {e}). {manual}") from e


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) from 'bytes 100-199/200' or 'bytes */200'; None where absent."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    first = int(span.split("-")[0]) if span and span != "*" else None
    return first, int(total) if total.strip().isdigit() else None


def _http_download(
    url: str, part: Path, expected_size: int | None, timeout: float, retries: int, manual: str
) -> None:
    """Fill `part` with the whole resource, resuming what is already there."""
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if expected_size is not None and have > expected_size:
            part.unlink()  # longer than the real file: a leftover of something else
            have = 0
        headers = {"User-Agent": "i2i-downloader"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            response = urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=timeout
            )
        except urllib.error.HTTPError as e:
            total = _content_range(e.headers.get("Content-Range"))[1] if e.headers else None
            if e.code == 416 and have and total == have:
                return  # the partial file already holds every byte
            if e.code == 416 and have:
                part.unlink()  # the server's file is shorter than our part: start over
                continue
            raise DownloadError(
                f"Could not download {url}: HTTP {e.code} {e.reason}. {manual}"
            ) from e
        except (urllib.error.URLError, OSError, HTTPException) as e:
            reason = getattr(e, "reason", e)
            kept = f" The partial file {part} is kept; run again to resume." if have else ""
            raise DownloadError(
                f"Could not download {url} ({type(e).__name__}: {reason}).{kept} {manual}"
            ) from e

        with response:
            if response.status == 206:
                first, total = _content_range(response.headers.get("Content-Range"))
                if first != have:
                    part.unlink()  # a range we did not ask for: do not splice, start over
                    continue
                mode = "ab"
            else:  # 200: the server ignored the Range header (or there was none)
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                mode, have = "wb", 0
            if expected_size is not None and total is not None and total != expected_size:
                part.unlink(missing_ok=True)
                raise ArchiveError(
                    f"{url} is {total} bytes, expected {expected_size}: not the expected file "
                    f"(a changed or wrong URL). {manual}"
                )
            received, error = _copy_stream(response, part, mode, have, total, url)

        if received == total or (total is None and error is None):
            return  # complete; with no announced length, the extraction checks the archive
        if total is not None and received > total:
            part.unlink()
            raise ArchiveError(
                f"{url} sent {received} bytes, more than the announced {total}; "
                f"the partial file was removed. {manual}"
            )
        attempt += 1
        made_progress = received > have
        if attempt <= retries and made_progress and total is not None:
            msg = "Connection to %s dropped at %d of %d bytes (%s); resuming"
            log.warning(msg, url, received, total, error)
            continue
        why = f"{type(error).__name__}: {error}" if error else "the connection closed early"
        raise DownloadError(
            f"Download of {url} stopped at {received} of {total or '?'} bytes ({why}). The "
            f"partial file {part} is kept; run again to resume. {manual}"
        )


def _copy_stream(
    response, part: Path, mode: str, have: int, total: int | None, url: str
) -> tuple[int, BaseException | None]:
    """Append the response body to `part`; return (bytes in part, the network error if any).

    Only reading the response is guarded: a local write error (disk full) propagates as is.
    """
    received, step = have, max((total or 0) // 20, 256 * _CHUNK)
    next_log = have + step
    with open(part, mode) as f:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, HTTPException) as e:  # timeouts and resets are OSErrors
                return received, e
            if not chunk:
                return received, None
            f.write(chunk)
            received += len(chunk)
            if received >= next_log:
                share = f" ({received / total:.0%})" if total else ""
                log.info("%s: %.0f MB%s", url, received / 1e6, share)
                next_log = received + step


def _verify(
    path: Path, url: str, expected_size: int | None, sha256: str | None, manual: str
) -> None:
    """Size and checksum checks; a failing file is deleted."""
    size = path.stat().st_size
    problem = None
    if expected_size is not None and size != expected_size:
        problem = f"is {size} bytes, expected {expected_size}"
    elif sha256 is not None and (digest := sha256_of(path)) != sha256.lower():
        problem = f"has SHA-256 {digest}, expected {sha256.lower()}"
    if problem:
        path.unlink()
        raise ArchiveError(
            f"The archive {path} (from {url}) {problem}; it was deleted, so a retry downloads it "
            f"again. {manual}"
        )


# --------------------------------------------------------------------------------------------
# Extraction


def _safe_target(staging: Path, name: str, archive: Path) -> Path:
    """The extraction path of member `name`, or ArchiveError when it would escape `staging`."""
    target = (staging / name).resolve()
    if (
        name.startswith(("/", "\\"))
        or PureWindowsPath(name).drive
        or not target.is_relative_to(staging.resolve())
    ):
        raise ArchiveError(f"{archive}: member {name!r} would be written outside {staging.parent}")
    return target


def _extract(archive: Path, root: Path, url: str, manual: str) -> None:
    """Extract via a staging folder, then move the top-level entries into `root`."""
    staging = root / f".{archive.name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)  # leftovers of an interrupted run
    staging.mkdir()
    try:
        if archive.name.lower().endswith(_ZIP_SUFFIXES):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _safe_target(staging, info.filename, archive)
                    zf.extract(info, staging)  # reads and checks each member's CRC
        else:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:  # one sequential pass: no re-reading of a huge archive
                    # The "data" filter refuses links out of staging and device files but would
                    # strip an absolute path's "/" and extract it: such a member is refused too.
                    _safe_target(staging, member.name, archive)
                    tar.extract(member, staging, filter="data")
                if tar.fileobj is not None:
                    # tarfile stops at the end-of-archive block; reading on to EOF makes gzip
                    # check its CRC, which catches damage inside file contents.
                    while tar.fileobj.read(_CHUNK):
                        pass
    except (*_CORRUPT, ArchiveError, tarfile.FilterError) as e:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)
        detail = e if isinstance(e, ArchiveError) else f"{type(e).__name__}: {e}"
        raise ArchiveError(
            f"The archive {archive} (from {url}) is corrupt or unsafe ({detail}); it was deleted, "
            f"so a retry downloads it again. {manual}"
        ) from e

    for entry in sorted(staging.iterdir()):
        dest = root / entry.name
        if dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
            dest.rmdir()  # an empty placeholder folder (e.g. created by a config) is replaced
        if dest.exists() or dest.is_symlink():
            raise FileExistsError(
                f"Extracting {archive} would overwrite {dest}; remove or rename {dest} and run "
                f"again (the extracted copy is in {staging})."
            )
        os.replace(entry, dest)
    staging.rmdir()


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path
