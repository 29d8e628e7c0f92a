"""Tests for i2i.data.download against a loopback HTTP server started here (no network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from i2i.data.download import PIX2PIX_DATASETS, download_and_extract, ensure_pix2pix
from i2i.errors import ArchiveError, DownloadError
from tests.helpers import free_port

# Random bytes do not compress: the archive is big enough to cut in the middle and to resume.
PAYLOAD = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()


def make_tar(
    members: dict[str, bytes],
    symlinks: dict[str, str] | None = None,
    others: dict[str, tuple[bytes, str]] | None = None,  # name -> (tar member type, link name)
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        links = {name: (tarfile.SYMTYPE, target) for name, target in (symlinks or {}).items()}
        for name, (kind, target) in {**links, **(others or {})}.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return buf.getvalue()


GOOD = {"ds/train/a.bin": PAYLOAD, "ds/val/b.txt": b"hello"}
ARCHIVE = make_tar(GOOD)


class Server:
    """A tiny HTTP server on 127.0.0.1 whose handler honours Range requests (or not)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.honour_range = True
        self.drop_after: int | None = None  # cut the next response after this many bytes
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.drop_after is not None:
                    body, server.drop_after = body[: server.drop_after], None
                self.wfile.write(body)  # HTTP/1.0: the connection closes after the handler

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    s.files["/ds.tar.gz"] = ARCHIVE
    yield s
    s.close()


def check_extracted(root: Path) -> None:
    assert (root / "ds" / "train" / "a.bin").read_bytes() == PAYLOAD
    assert (root / "ds" / "val" / "b.txt").read_bytes() == b"hello"
    leftovers = [p.name for p in root.iterdir() if p.name.endswith((".part", ".extracting"))]
    assert not leftovers


def test_full_download_with_size_and_sha(server: Server, tmp_path: Path) -> None:
    sha = hashlib.sha256(ARCHIVE).hexdigest()
    archive = download_and_extract(
        f"{server.url}/ds.tar.gz", tmp_path, sha256=sha, expected_size=len(ARCHIVE)
    )
    assert archive == tmp_path / "ds.tar.gz" and archive.read_bytes() == ARCHIVE
    check_extracted(tmp_path)
    assert server.requests == [("/ds.tar.gz", None)]


def test_resume_from_partial_file(server: Server, tmp_path: Path) -> None:
    half = len(ARCHIVE) // 2
    (tmp_path / "ds.tar.gz.part").write_bytes(ARCHIVE[:half])
    download_and_extract(f"{server.url}/ds.tar.gz", tmp_path)
    assert server.requests == [("/ds.tar.gz", f"bytes={half}-")]
    assert (tmp_path / "ds.tar.gz").read_bytes() == ARCHIVE
    check_extracted(tmp_path)


def test_complete_part_file_is_not_downloaded_again(server: Server, tmp_path: Path) -> None:
    (tmp_path / "ds.tar.gz.part").write_bytes(ARCHIVE)
    download_and_extract(f"{server.url}/ds.tar.gz", tmp_path)  # the server answers 416
    check_extracted(tmp_path)


def test_server_ignoring_range_restarts_cleanly(server: Server, tmp_path: Path) -> None:
    server.honour_range = False
    (tmp_path / "ds.tar.gz.part").write_bytes(b"stale bytes of something else")
    download_and_extract(f"{server.url}/ds.tar.gz", tmp_path)
    assert (tmp_path / "ds.tar.gz").read_bytes() == ARCHIVE


def test_dropped_connection_resumes(server: Server, tmp_path: Path) -> None:
    server.drop_after = 70_000
    download_and_extract(f"{server.url}/ds.tar.gz", tmp_path)
    assert server.requests == [("/ds.tar.gz", None), ("/ds.tar.gz", "bytes=70000-")]
    check_extracted(tmp_path)


def test_dropped_connection_without_retries_keeps_part(server: Server, tmp_path: Path) -> None:
    url = f"{server.url}/ds.tar.gz"
    server.drop_after = 70_000
    with pytest.raises(DownloadError, match="run again to resume") as info:
        download_and_extract(url, tmp_path, retries=0)
    assert url in str(info.value)
    assert (tmp_path / "ds.tar.gz.part").stat().st_size == 70_000
    download_and_extract(url, tmp_path)  # the retry continues the partial file
    assert server.requests[-1] == ("/ds.tar.gz", "bytes=70000-")
    check_extracted(tmp_path)


@pytest.mark.parametrize("check", ["size", "sha"])
def test_mismatch_rejected_and_removed(server: Server, tmp_path: Path, check: str) -> None:
    url = f"{server.url}/ds.tar.gz"
    kwargs = {"expected_size": len(ARCHIVE) + 1} if check == "size" else {"sha256": "0" * 64}
    with pytest.raises(ArchiveError, match="expected") as info:
        download_and_extract(url, tmp_path, **kwargs)
    assert url in str(info.value)
    assert not any(tmp_path.iterdir()), "the rejected file must be removed"
    # A retry with the right checksum starts clean and succeeds.
    download_and_extract(url, tmp_path, sha256=hashlib.sha256(ARCHIVE).hexdigest())
    check_extracted(tmp_path)


def test_placed_archive_with_wrong_size_is_removed(tmp_path: Path) -> None:
    (tmp_path / "ds.tar.gz").write_bytes(ARCHIVE)
    with pytest.raises(ArchiveError, match="bytes, expected"):
        download_and_extract("http://127.0.0.1:9/ds.tar.gz", tmp_path, expected_size=5)
    assert not (tmp_path / "ds.tar.gz").exists()


def _flip_middle(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda a: a[: len(a) // 2],  # truncated
        lambda a: b"<html>not an archive</html>" * 50,  # an error page saved as the archive
        _flip_middle,  # one damaged byte inside the compressed data
    ],
    ids=["truncated", "garbage", "flipped"],
)
def test_corrupt_archive_rejected_and_removed(server: Server, tmp_path: Path, corrupt) -> None:
    server.files["/bad.tar.gz"] = corrupt(ARCHIVE)
    url = f"{server.url}/bad.tar.gz"
    with pytest.raises(ArchiveError, match="corrupt") as info:
        download_and_extract(url, tmp_path)
    assert url in str(info.value) and "deleted" in str(info.value)
    assert not any(tmp_path.iterdir()), "archive, staging and partial output must be gone"


def test_file_url(tmp_path: Path) -> None:
    src = tmp_path / "src" / "ds.tar.gz"
    src.parent.mkdir()
    src.write_bytes(ARCHIVE)
    root = tmp_path / "root"
    download_and_extract(src.as_uri(), root, expected_size=len(ARCHIVE))
    check_extracted(root)

    missing = (tmp_path / "src" / "nope.tar.gz").as_uri()
    with pytest.raises(DownloadError, match="save it as"):
        download_and_extract(missing, tmp_path / "other")


def test_unreachable_host_fails_fast_with_instructions(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/pix2pix/datasets/edges2shoes.tar.gz"
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download_and_extract(url, tmp_path, timeout=3, layout_hint="data/edges2shoes/train exists")
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert url in msg and "edges2shoes.tar.gz" in msg
    assert f"save it as {tmp_path / 'edges2shoes.tar.gz'}" in msg
    assert f"extract it yourself into {tmp_path} so that data/edges2shoes/train exists" in msg


def test_http_error_names_url(server: Server, tmp_path: Path) -> None:
    url = f"{server.url}/missing.tar.gz"
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download_and_extract(url, tmp_path)
    assert url in str(info.value)


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, data",
    [
        ("evil.tar.gz", make_tar({"../escaped.txt": b"x"})),
        ("abs.tar.gz", make_tar({"/tmp/i2i_abs_escape.txt": b"x"})),
        ("link.tar.gz", make_tar({"ds/a.txt": b"x"}, symlinks={"ds/link": "../../outside"})),
        ("evil_dir.tar.gz", make_tar({"ds/../../evil": b"x"})),
        ("hard.tar.gz", make_tar({}, others={"ds/hard": (tarfile.LNKTYPE, "../evil")})),
        ("evil.zip", _zip_bytes({"ok.txt": b"x", "../escaped.txt": b"x"})),
    ],
    # Named by the archive: ids from the bytes would carry the gzip header's time, and the
    # pytest-xdist workers (`make test`) must collect the same ids.
    ids=["evil.tar.gz", "abs.tar.gz", "link.tar.gz", "evil_dir.tar.gz", "hard.tar.gz", "evil.zip"],
)
def test_members_escaping_root_rejected(
    server: Server, tmp_path: Path, name: str, data: bytes
) -> None:
    server.files[f"/{name}"] = data
    root = tmp_path / "root"
    with pytest.raises(ArchiveError, match="outside"):
        download_and_extract(f"{server.url}/{name}", root)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "outside").exists()
    assert not Path("/tmp/i2i_abs_escape.txt").exists()
    assert not any(root.iterdir()) and not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    "member, why",
    [
        (("ds/null", tarfile.CHRTYPE, ""), "special file"),
        (("ds/abs", tarfile.SYMTYPE, "/x"), "absolute"),
    ],
)
def test_device_and_absolute_link_rejected(server: Server, tmp_path: Path, member, why) -> None:
    name, kind, target = member
    server.files["/odd.tar.gz"] = make_tar({}, others={name: (kind, target)})
    with pytest.raises(ArchiveError, match=why):
        download_and_extract(f"{server.url}/odd.tar.gz", tmp_path / "root")
    assert not any((tmp_path / "root").iterdir())


def test_zip_extracts(server: Server, tmp_path: Path) -> None:
    server.files["/ds.zip"] = _zip_bytes(GOOD)
    download_and_extract(f"{server.url}/ds.zip", tmp_path, keep_archive=False)
    check_extracted(tmp_path)
    assert not (tmp_path / "ds.zip").exists()


def test_existing_destination_is_not_overwritten(server: Server, tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="remove or rename"):
        download_and_extract(f"{server.url}/ds.tar.gz", tmp_path)
    assert (tmp_path / "ds" / "mine.txt").read_text() == "keep me"


def test_unknown_archive_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="archive_name"):
        download_and_extract("http://127.0.0.1:9/data.rar", tmp_path)


# ----------------------------------------------------------------------------- pix2pix


def test_pix2pix_table() -> None:
    assert set(PIX2PIX_DATASETS) == {"edges2shoes", "edges2handbags", "facades", "cityscapes"}
    for name, info in PIX2PIX_DATASETS.items():
        assert info.url == f"http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
        assert info.sha256 is None  # unknown offline: documented, not invented
    assert PIX2PIX_DATASETS["edges2shoes"].approx_size_gb == 2.0
    assert PIX2PIX_DATASETS["edges2handbags"].approx_size_gb == 8.0
    # The labels archives hold the photo on the left: their messages say so.
    facades = PIX2PIX_DATASETS["facades"]
    assert facades.halves == "photo left, label map right"
    assert (facades.num_train, facades.num_val) == (400, 100)
    assert PIX2PIX_DATASETS["cityscapes"].num_train == 2_975


def test_ensure_pix2pix_missing_without_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        ensure_pix2pix("edges2shoes", tmp_path, download=False)
    msg = str(info.value)
    assert PIX2PIX_DATASETS["edges2shoes"].url in msg
    assert str(tmp_path / "edges2shoes") in msg and "val" in msg
    with pytest.raises(ValueError, match="edges2handbags"):
        ensure_pix2pix("night2day", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"photo left, label map right.*~0\.03 GB"):
        ensure_pix2pix("facades", tmp_path, download=False)


def test_ensure_pix2pix_downloads_once(server: Server, tmp_path: Path) -> None:
    server.files["/mirror/edges2shoes.tar.gz"] = make_tar(
        {"edges2shoes/train/1_AB.jpg": b"j", "edges2shoes/val/1_AB.jpg": b"j"}
    )
    url = f"{server.url}/mirror/edges2shoes.tar.gz"
    folder = ensure_pix2pix("edges2shoes", tmp_path, url=url)
    assert folder == tmp_path / "edges2shoes" and (folder / "val" / "1_AB.jpg").exists()
    assert not (tmp_path / "edges2shoes.tar.gz").exists()  # deleted after extraction
    assert ensure_pix2pix("edges2shoes", tmp_path, url=url) == folder
    assert len(server.requests) == 1
