"""`i2i` as a process that starts with its imports done: a warm interpreter imports what `i2i
fit` and the file commands import (torch, Lightning, i2i: seconds on these cores) once per test
worker, then forks one child per command.

Each child is a process of its own, as the console script is: its own arguments, environment,
folder, output files, session, signals and exit status. It runs the console script's file
(`.venv/bin/i2i`, or `python -m MODULE`) through `runpy`, and ends as that process would: a
SystemExit's status, an uncaught exception's traceback and 1, the interpreter's exit handlers.
What differs from a fresh interpreter is only that the modules are loaded before the arguments
and the environment are set, so the tests with a fresh interpreter per command (`FRESH` in
tests.clirun) run under `make test-full`, and the console script's own start is tested fresh
in the fast suite (tests/test_cli.py, tests/test_import_graph.py).

The warm interpreter answers one request per line on its stdin (JSON): `spawn` forks a child and
answers its pid; `poll` answers its wait status once it has ended, else null.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What `i2i fit` on the test configs and the file commands import; anything else a child
# imports itself, as a fresh process would.
PRELOAD = (
    "i2i.lightning_command",
    "i2i.tasks",
    "i2i.callbacks",
    "i2i.inference.files",
    "i2i.dip",
    "lightning.pytorch.loggers",
)


# ---- the warm interpreter (its own process) -----------------------------------------------------


def serve() -> None:
    """Import PRELOAD, say `ready`, then answer requests until stdin closes. A forked child leaves
    this loop by the exception that ends its command, as its interpreter then exits."""
    for name in PRELOAD:
        importlib.import_module(name)
    requests = os.fdopen(os.dup(0), "r")
    replies = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)  # anything the interpreter itself prints goes to its log
    ended: dict[int, int] = {}
    replies.write("ready\n")
    replies.flush()
    for line in requests:
        request = json.loads(line)
        if request["op"] == "spawn":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                requests.close()
                replies.close()
                _run_command(request)
            answer: dict = {"pid": pid}
        else:
            pid = request["pid"]
            if pid not in ended:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    ended[pid] = status
            answer = {"status": ended.get(pid)}
        replies.write(json.dumps(answer) + "\n")
        replies.flush()


def _run_command(request: dict) -> None:
    """In the forked child: become the command's process and run it. Never returns: the command
    ends with SystemExit (its status) or an exception (the interpreter prints it, status 1)."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if request["session"]:
        os.setsid()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    out = os.open(request["stdout"], flags, 0o644)
    err = os.open(request["stderr"], flags, 0o644) if request["stderr"] else out
    os.dup2(out, 1)
    os.dup2(err, 2)
    program, *args = request["argv"]
    if program == "-m":
        module, *args = args
        sys.argv = ["-m", *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [program, *args]
        runpy.run_path(program, run_name="__main__")
    raise SystemExit(0)


# ---- the test process's side --------------------------------------------------------------------


class WarmProcess:
    """A command forked by the warm interpreter, with the part of `subprocess.Popen` the tests use
    (pid, poll, wait, send_signal, terminate, kill, communicate, returncode). Its output goes to
    files, read when it has ended."""

    def __init__(self, args: list[str], pid: int, stdout: Path, stderr: Path | None, own: bool):
        self.args, self.pid, self.returncode = args, pid, None
        self._stdout, self._stderr, self._own_files = stdout, stderr, own

    def poll(self) -> int | None:
        if self.returncode is None:
            status = _interpreter().ask({"op": "poll", "pid": self.pid})["status"]
            if status is not None:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # its pid is not another process's yet
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        """(stdout, stderr) as text once it has ended; stderr None when it went to stdout."""
        self.wait(timeout)
        read = lambda path: path.read_text(errors="replace")  # noqa: E731
        out = read(self._stdout), None if self._stderr is None else read(self._stderr)
        if self._own_files:
            shutil.rmtree(self._stdout.parent)
        return out


def spawn(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    stdout: Path | None = None,
    merge_stderr: bool = True,
    new_session: bool = False,
) -> WarmProcess:
    """Fork `argv` (a script path and its arguments, or `-m MODULE ARGS`) as a process. Its output
    goes to `stdout` (stderr too), or else to files of a temporary folder that `communicate`
    reads and removes (the interpreter's `close` removes what is left)."""
    own = stdout is None
    folder = Path(tempfile.mkdtemp(dir=_interpreter().files.name)) if own else None
    stdout = folder / "stdout" if own else stdout
    stderr = folder / "stderr" if own and not merge_stderr else None
    request = {
        "op": "spawn",
        "argv": [str(a) for a in argv],
        "cwd": str(cwd),
        "env": env,
        "stdout": str(stdout),
        "stderr": str(stderr) if stderr else None,
        "session": new_session,
    }
    pid = _interpreter().ask(request)["pid"]
    return WarmProcess(list(argv), pid, stdout, stderr, own)


class _Interpreter:
    def __init__(self, env: dict[str, str], cwd: Path, preexec_fn) -> None:
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - the interpreter's, to its end
        # The commands' output files, removed with the interpreter (a killed command's too).
        self.files = tempfile.TemporaryDirectory(prefix="i2i-warm-")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import tests.warm; tests.warm.serve()"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            preexec_fn=preexec_fn,
        )
        self.ready = False

    def ask(self, request: dict) -> dict:
        if not self.ready:
            self.ready = self._read() == "ready"
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self._read())

    def _read(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            self.log.seek(0)
            raise RuntimeError(f"the warm interpreter ended: {self.log.read()[-3000:]}")
        return line.strip()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.files.cleanup()


_started: list[_Interpreter] = []


def _interpreter() -> _Interpreter:
    """This test process's warm interpreter, started on first use (one per pytest-xdist worker),
    in the environment the tests give commands, with a terminal's SIGINT."""
    if not _started:
        from tests.clirun import REPO, as_from_a_terminal, env

        _started.append(_Interpreter(env(), REPO, as_from_a_terminal))
        atexit.register(_started[0].close)
    return _started[0]
