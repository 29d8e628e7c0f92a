"""`i2i-weights`: offline it names every file, its source and where it goes; hashes are checked."""

import hashlib

from i2i import weights
from i2i.weights.registry import WeightFile, all_files, file_ok


def test_offline_list_names_files_urls_and_folder(tmp_path, capsys):
    assert weights.main(["--list", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for entry in all_files():
        assert (entry.url or entry.how) in out and str(tmp_path / entry.name) in out


def test_the_console_script_lists_offline(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tests.clirun import env

    script = Path(sys.executable).parent / "i2i-weights"
    args = [str(script), "--list", "--only", "metrics", "--dir", str(tmp_path)]
    result = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "vgg16-397923af.pth" in result.stdout and "Place these files" in result.stdout


def test_a_file_with_the_right_hash_counts_as_present(tmp_path):
    data = b"weights"
    digest = hashlib.sha256(data).hexdigest()
    good = tmp_path / f"net-{digest[:8]}.pth"
    good.write_bytes(data)
    assert file_ok(WeightFile(good.name, "", "", home="hub"), good)
    bad = tmp_path / "net-00000000.pth"
    bad.write_bytes(data)
    assert not file_ok(WeightFile(bad.name, "", "", home="hub"), bad)
    absent = tmp_path / "absent-12345678.pth"
    assert not file_ok(WeightFile(absent.name, "", "", home="hub"), absent)
    # A full digest in the registry is checked whatever the name.
    named = tmp_path / "model.pkl"
    named.write_bytes(data)
    assert file_ok(WeightFile("model.pkl", "", "", sha256=digest), named)
    assert not file_ok(WeightFile("model.pkl", "", "", sha256="0" * 64), named)
