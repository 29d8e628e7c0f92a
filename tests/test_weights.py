"""`i2i-weights`: offline it names every file, its URL and where it goes."""

import hashlib

from i2i import weights


def test_offline_list_names_files_urls_and_folder(tmp_path, capsys):
    assert weights.main(["--list", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for name, url, _ in weights.WEIGHTS:
        assert url in out and str(tmp_path / name) in out


def test_a_file_with_the_right_hash_counts_as_present(tmp_path):
    data = b"weights"
    prefix = hashlib.sha256(data).hexdigest()[:8]
    good = tmp_path / f"net-{prefix}.pth"
    good.write_bytes(data)
    assert weights.file_ok(good)
    bad = tmp_path / "net-00000000.pth"
    bad.write_bytes(data)
    assert not weights.file_ok(bad)
    assert not weights.file_ok(tmp_path / "absent-12345678.pth")
