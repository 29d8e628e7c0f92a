"""Running `i2i` as the user does: a subprocess of the console script or `python -m i2i`."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"
SCRIPT = Path(sys.executable).parent / "i2i"  # the console script of this environment


# A test's command starts as from a shell: without the DDP variables of a rank, and without the
# variables of the `make test` around the suite (a `make` inside would take its flags and print
# the folders it enters).
NOT_INHERITED = (
    *("MASTER_PORT", "LOCAL_RANK", "MASTER_ADDR", "WORLD_SIZE", "RANK", "NODE_RANK"),
    *("MAKEFLAGS", "MAKELEVEL", "MFLAGS"),
)


def env(**extra: str) -> dict[str, str]:
    """No W&B, none of `NOT_INHERITED`; `tests.helpers` importable by the subprocess."""
    out = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    out["PYTHONPATH"] = str(REPO) + os.pathsep + out.get("PYTHONPATH", "")
    out["WANDB_MODE"] = "disabled"
    out.update(extra)
    return out


def command(*args: str, module: bool = False) -> list[str]:
    return [sys.executable, "-m", "i2i", *args] if module else [str(SCRIPT), *args]


def i2i(*args: str, module: bool = False, timeout: float = 300, how: str = "fresh", **extra_env):
    """Run `i2i ARGS` from the repository root as a process, `how` `start` says; the
    CompletedProcess (text, both streams)."""
    if how == "fresh":
        return run(command(*args, module=module), timeout, **extra_env)
    process = start(how, *args, module=module, merge_stderr=False, **extra_env)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


# A command that a test needs as a process (signals, locks, loader workers, servers) is one,
# in both ways: "warm" forks it from an interpreter that has done the imports (tests.warm), in the
# fast suite; "fresh" starts a new interpreter, as a user's shell does, under `make test-full`.
PROCESSES = ["warm", pytest.param("fresh", marks=pytest.mark.slow)]


def start(
    how: str,
    *args: str,
    module: bool = False,
    cwd: Path = REPO,
    log: Path | None = None,
    merge_stderr: bool = True,
    new_session: bool = False,
    **extra_env: str,
):
    """Start `i2i ARGS` as a process in `cwd`, with a terminal's SIGINT: a `subprocess.Popen`
    ("fresh") or a `tests.warm.WarmProcess` ("warm"). Its output goes to the file `log` (both
    streams), or else is read as text by `communicate()`: (stdout, stderr), stderr None when
    `merge_stderr`."""
    argv = command(*args, module=module)
    if how == "warm":
        from tests import warm

        argv = ["-m", *argv[2:]] if module else argv
        return warm.spawn(argv, cwd, env(**extra_env), log, merge_stderr, new_session)
    assert how == "fresh", how
    with contextlib.ExitStack() as files:
        stdout = files.enter_context(log.open("w")) if log else subprocess.PIPE
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env(**extra_env),
            stdout=stdout,
            stderr=subprocess.STDOUT if merge_stderr or log else subprocess.PIPE,
            text=True,
            start_new_session=new_session,
            preexec_fn=as_from_a_terminal,
        )


@contextlib.contextmanager
def serving(how: str, *args: str, log: Path, timeout: float = 600, **options) -> Iterator[str]:
    """`i2i ARGS --port PORT` (a server: `i2i demo`) on a free loopback port, started as `start`
    says (`options`: its keywords and environment), until the block ends; its URL once the page
    answers (200). The server is stopped, and reaped, whatever happens."""
    from tests.helpers import free_port

    port = free_port()
    process = start(how, *args, "--port", str(port), log=log, **options)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited ({process.returncode}): {log.read_text()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"no page within {timeout} s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(argv: list[str], timeout: float = 300, **extra_env: str):
    """Run `argv` as `i2i` is run: from the repository root, in `env()`."""
    return subprocess.run(
        argv,
        cwd=REPO,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def as_from_a_terminal() -> None:
    """`preexec_fn` of the commands `start` begins: SIGINT as a terminal leaves it.
    A process inherits an ignored SIGINT (`make test &` from a script ignores it in the whole
    suite), and Python then installs no KeyboardInterrupt handler: the Ctrl-C would not land."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def fit_args(root: Path, *args: str, config: Path = TINY) -> list[str]:
    return ["fit", "--config", str(config), f"--trainer.default_root_dir={root}", *args]


def iteration(checkpoint: Path) -> int:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return int(state["iteration"])


def output(result) -> str:
    return result.stdout + result.stderr


# A command's behaviour is tested in this process by default; the same test as a subprocess of
# the console script runs under `make test-full` (each process pays seconds of imports).
MODES = ["in_process", pytest.param("subprocess", marks=pytest.mark.slow)]


def run_i2i(mode: str, *args: str, cwd: Path = REPO, **extra_env: str) -> tuple[int, str]:
    """(exit status, stdout + stderr) of `i2i ARGS`, in this process or as a subprocess. In this
    process it runs `i2i.commands.run` (what the console script runs) in `cwd` (the repository
    root), with `extra_env` set for the call; an argument error's SystemExit gives its status,
    an uncaught exception its traceback and status 1, as in a process."""
    if mode == "subprocess":
        assert cwd == REPO, "subprocesses run in the repository root"
        result = i2i(*args, **extra_env)
        return result.returncode, output(result)
    from i2i.commands import run as run_command

    return in_process(lambda: run_command(list(args)), cwd, extra_env)


def run_python_module(argv: list[str], cwd: Path = REPO, **extra_env: str) -> tuple[int, str]:
    """(exit status, stdout + stderr) of `python -m MODULE ARGS` (argv as a recipe writes it),
    in this process: i2i's runnable modules end in `raise SystemExit(main())`, so this calls
    `MODULE.main(ARGS)`."""
    python, flag, module, *args = argv
    assert Path(python).name.startswith("python") and flag == "-m", argv
    if module == "i2i":
        return run_i2i("in_process", *args, cwd=cwd, **extra_env)
    main = importlib.import_module(module).main
    return in_process(lambda: main(args), cwd, extra_env)


def in_process(call: Callable[[], int], cwd: Path, extra_env: dict[str, str]) -> tuple[int, str]:
    """(exit status, stdout + stderr) of `call()` run as a process would run it: in `cwd`, with
    `extra_env` set; SystemExit gives its status, an uncaught exception its traceback and 1."""
    out, err = _shared_text_file(), _shared_text_file()
    saved = {k: os.environ.get(k) for k in extra_env}
    os.environ.update(extra_env)
    try:
        with (
            contextlib.chdir(cwd),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                code = call()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception as e:  # what Python does with it: the traceback, status 1
                traceback.print_exception(e)
                code = 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        # urllib keeps the opener (and the proxies) of its first download for the rest of a
        # process: drop it, so that proxies set for this command do not outlive it.
        urllib.request.install_opener(None)
    return code, _read_and_close(out) + _read_and_close(err)


def make_dry_run(*args: str, cwd: Path = REPO, **extra_env: str) -> list[list[str]]:
    """The commands that `make ARGS` would run, as `make -n` prints them: one argv per command,
    its continuation lines joined."""
    result = subprocess.run(
        ["make", "-n", *args], cwd=cwd, env=env(**extra_env), capture_output=True, text=True
    )
    assert result.returncode == 0, output(result)
    return [shlex.split(line) for line in result.stdout.replace("\\\n", " ").splitlines()]


def _shared_text_file() -> io.TextIOWrapper:
    """An unbuffered temporary text file: processes forked while it stands for stdout (DDP's
    fork strategies) write to the same file, at its end, so their output is read back too."""
    raw = tempfile.TemporaryFile(buffering=0)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", write_through=True)


def _read_and_close(stream: io.TextIOWrapper) -> str:
    with stream:
        stream.seek(0)
        return stream.read()
