"""`python -m benchmarks.port` without the port's checkout: it says where to get it, and
`--if-present` (what `make bench` runs) skips it with exit 0."""

from __future__ import annotations

import pytest
from benchmarks.port import ENV, main


def run(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `main(ARGS)`, the module's entry, in this process."""
    monkeypatch.delenv(ENV, raising=False)  # main sets it for its process: not for the tests'
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    out, err = capsys.readouterr()
    return stop.value.code, out, err


def test_a_missing_port_checkout_names_the_folder_and_the_clone_command(
    tmp_path, capsys, monkeypatch
):
    missing = tmp_path / "nowhere"
    code, _, err = run(capsys, monkeypatch, "--port", str(missing))
    assert code == 1
    assert f"no CoModGAN port at {missing}" in err
    assert f"git clone https://github.com/zengxianyu/co-mod-gan-pytorch {missing}" in err
    assert "Traceback" not in err
    code, out, _ = run(capsys, monkeypatch, "--port", str(missing), "--if-present")
    assert code == 0 and f"no CoModGAN port at {missing}" in out
