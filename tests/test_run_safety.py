"""Run safety, as the user meets it: `i2i fit` runs that are signalled, crash, resume, meet a
used, unwritable or full folder, or a damaged or foreign checkpoint. Signals, locks and loader
workers need processes (forked from a warm interpreter, and fresh ones under `make test-full`); the
other cases run in this process, and as subprocesses under `make test-full`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from i2i.callbacks.resume import remove_stale_temporaries
from tests.clirun import MODES, PROCESSES, fit_args, i2i, iteration, output, run_i2i, start


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 4-iteration tiny run (tiny.yaml hard-codes its logger's save_dir elsewhere)."""
    root = tmp_path_factory.mktemp("finished") / "run"
    code, text = run_i2i("in_process", *fit_args(root))
    assert code == 0, text[-3000:]
    return root


def copy_run(finished: Path, tmp_path: Path) -> Path:
    root = tmp_path / "run"
    shutil.copytree(finished, root)  # copy2: modification times are kept
    return root


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def error_block(text: str) -> list[str]:
    lines = text.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("i2i: error"))
    return lines[start:]


@pytest.mark.parametrize("how", PROCESSES)
def test_sigterm_stops_with_one_last_checkpoint_and_a_command_that_resumes(tmp_path, how):
    # SIGINT, a terminal's Ctrl-C, goes to the whole process group: the test after this one.
    signum = signal.SIGTERM
    root, beat = tmp_path / "run", tmp_path / "beat"
    args = fit_args(
        root,
        "--model.init_args.max_iterations=1000",
        "--trainer.callbacks+=tests.helpers.Heartbeat",
        f"--trainer.callbacks.path={beat}",
        "--trainer.callbacks.delay=3",
    )
    proc = start(how, *args)
    deadline = time.time() + 240
    while not beat.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert beat.exists(), "training never started"
    proc.send_signal(signum)  # during iteration 1's callbacks: before the first validation
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == 128 + signum, out[-3000:]
    assert "training finished" not in out
    lasts = sorted(p.name for p in (root / "checkpoints").glob("last*.ckpt"))
    assert lasts == ["last.ckpt"], lasts  # not a stale last.ckpt beside last-v1.ckpt
    line = next(line for line in out.splitlines() if "interrupted at iteration" in line)
    stopped = int(line.split("interrupted at iteration ")[1].split()[0])
    assert iteration(root / "checkpoints" / "last.ckpt") == stopped >= 1
    resume = line.split("resume with: ")[1]
    assert resume.startswith("i2i fit ") and f"--ckpt_path={root}/checkpoints/last.ckpt" in resume
    # The printed command resumes (one more iteration).
    args = resume.split()[1:] + [f"--model.init_args.max_iterations={stopped + 1}"]
    code, text = run_i2i("in_process", *args)
    assert code == 0, text[-3000:]
    assert iteration(root / "checkpoints" / "last.ckpt") == stopped + 1


@pytest.mark.parametrize("mode", MODES)
def test_a_folder_holding_another_run_is_refused_unless_resumed_or_overwritten(
    finished, tmp_path, mode
):
    root = copy_run(finished, tmp_path)
    before = snapshot(root)
    code, text = run_i2i(mode, *fit_args(root, "--model.init_args.max_iterations=2"))
    assert code == 1
    block = error_block(text)
    assert "already holds a run" in block[0] and "--ckpt_path last" in block[0]
    assert "--overwrite" in block[0] and len(block) <= 3
    assert snapshot(root) == before
    started = time.time()
    code, text = run_i2i(mode, *fit_args(root, "--model.init_args.max_iterations=2", "--overwrite"))
    assert code == 0, text[-3000:]
    ckpts = list((root / "checkpoints").glob("*.ckpt"))
    assert ckpts and all(p.stat().st_mtime >= started for p in ckpts)  # no old checkpoint left
    assert iteration(root / "checkpoints" / "last.ckpt") == 2
    assert "overwrite: false" in (root / "lightning_logs" / "version_1" / "config.yaml").read_text()


@pytest.mark.parametrize("mode", MODES)
def test_resuming_a_finished_run_does_nothing(finished, tmp_path, mode):
    # The CSV logs follow trainer.default_root_dir, not the save_dir tiny.yaml hard-codes.
    assert (finished / "lightning_logs" / "version_0" / "metrics.csv").is_file()
    root = copy_run(finished, tmp_path)
    before = snapshot(root)
    code, text = run_i2i(mode, *fit_args(root, "--ckpt_path=last"))
    assert code == 0, text[-3000:]
    assert "nothing to do" in text and "iteration 4" in text
    assert snapshot(root) == before


@pytest.mark.parametrize("mode", MODES)
def test_a_damaged_checkpoint_is_named_with_the_ones_that_load(finished, tmp_path, mode):
    root = copy_run(finished, tmp_path)
    last = root / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a killed copy
    code, text = run_i2i(mode, *fit_args(root, f"--ckpt_path={last}"))
    assert code == 1
    assert "Traceback" not in text and "PytorchStreamReader" not in text.split("(")[0]
    block = error_block(text)
    assert len(block) <= 4, block
    assert str(last) in block[0] and "damaged" in block[0]
    assert "best-" in "\n".join(block[1:])  # the best checkpoint beside it loads


@pytest.mark.parametrize("mode", MODES)
def test_a_checkpoint_of_another_size_names_the_difference(finished, tmp_path, mode):
    root = copy_run(finished, tmp_path)
    last = root / "checkpoints" / "last.ckpt"
    other = "--model.init_args.generator.init_args.cond_channels=2"
    code, text = run_i2i(mode, *fit_args(root, other, f"--ckpt_path={last}"))
    assert code == 1
    assert "Traceback" not in text and "size mismatch" not in text
    assert "generator.init_args.cond_channels: checkpoint 4, config 2" in text
    # A checkpoint without the record: the first mismatching tensors are named.
    old = root / "old.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    del checkpoint["i2i"]
    torch.save(checkpoint, old)
    code, text = run_i2i(mode, *fit_args(root, other, f"--ckpt_path={old}"))
    assert code == 1
    assert "Traceback" not in text and "size mismatch" not in text
    assert "generator." in error_block(text)[1] and "checkpoint [" in error_block(text)[1]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_are_found_by_either_name_and_live_ones_kept(tmp_path):
    dead = _dead_pid()
    # `.{name}.tmp{pid}` as i2i.io.atomic_write names them, `.{name}.tmp-{pid}` as before it.
    stale = [tmp_path / f".last.ckpt.tmp{dead}", tmp_path / f".best-3.ckpt.tmp-{dead}"]
    live = tmp_path / f".last.ckpt.tmp{os.getppid()}"  # a running save of another process
    for path in [*stale, live, tmp_path / "last.ckpt"]:
        path.write_bytes(b"partial")
    removed = remove_stale_temporaries(tmp_path, started=time.time() - 60)
    assert sorted(removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["last.ckpt", live.name])


@pytest.mark.parametrize("mode", MODES)
def test_a_crash_saves_last_and_the_run_resumes(tmp_path, mode):
    root = tmp_path / "run"
    last = root / "checkpoints" / "last.ckpt"
    args = fit_args(root, "--model.init_args.max_iterations=6")
    crash = ["--trainer.callbacks+=tests.helpers.RaiseAt", "--trainer.callbacks.iteration=4"]
    code, text = run_i2i(mode, *args, *crash)
    assert code == 1
    assert "test failure at the start of iteration 4" in text
    # Iterations 1-3 are complete and nothing of iteration 4 ran: last.ckpt holds iteration 3
    # (the last validation, at iteration 2, had written 2).
    assert f"saved {last} (iteration 3" in text
    assert iteration(last) == 3
    assert [p.name for p in last.parent.glob("last*.ckpt")] == ["last.ckpt"]
    # A save killed mid-write left temporaries; the next start removes them and says so.
    stale = [last.parent / f".last.ckpt.tmp-{_dead_pid()}", last.parent / ".best-9.ckpt.tmp-1"]
    for path in stale:
        path.write_bytes(b"partial")
    os.utime(stale[1], (1, 1))  # pid 1 is alive, but the file is older than the start
    code, text = run_i2i(mode, *args, "--ckpt_path=last")
    assert code == 0, text[-3000:]
    assert "removed 2 stale temporary file(s)" in text
    assert not any(p.exists() for p in stale)
    assert iteration(last) == 6


@pytest.mark.parametrize("mode", MODES)
def test_a_crash_in_the_middle_of_an_iteration_leaves_last_as_it_was(tmp_path, mode):
    root = tmp_path / "run"
    last = root / "checkpoints" / "last.ckpt"
    crash = ["--trainer.callbacks+=tests.helpers.RaiseAt", "--trainer.callbacks.iteration=4"]
    crash.append("--trainer.callbacks.where=optimizer")  # after iteration 4's G forward
    code, text = run_i2i(mode, *fit_args(root, "--model.init_args.max_iterations=6", *crash))
    assert code == 1
    assert "test failure at the optimizer of iteration 4" in text
    assert f"middle of iteration 4; {last} was left as it was" in text
    assert iteration(last) == 2  # the last validation wrote it; memory holds half of iteration 4


@pytest.mark.parametrize("mode", MODES)
def test_an_unwritable_folder_fails_at_start(tmp_path, mode):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the run folder should go")
    code, text = run_i2i(mode, *fit_args(blocker / "run"))
    assert code == 1
    block = error_block(text)
    assert "Traceback" not in text and len(block) == 1
    assert f"cannot write checkpoints in {blocker}/run/checkpoints" in block[0]
    assert "free" in block[0]


@pytest.mark.parametrize("mode", MODES)
def test_a_full_disk_is_one_line_naming_the_file_and_the_free_space(tmp_path, mode):
    root = tmp_path / "run"
    code, text = run_i2i(mode, *fit_args(root, "--trainer.callbacks+=tests.helpers.FullDisk"))
    assert code == 1
    assert "Traceback" not in text and "unexpected pos" not in text
    block = error_block(text)
    assert len(block) == 1 and f"could not write the checkpoint {root}/checkpoints/" in block[0]
    assert "the disk is full" in block[0] and "free there" in block[0]
    assert not list((root / "checkpoints").glob(".*tmp*"))


@pytest.mark.parametrize(
    "signum",
    [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
    ids=["SIGINT", "SIGTERM"],
)
@pytest.mark.parametrize("how", PROCESSES)
def test_a_signal_to_the_whole_process_group_stops_gracefully_with_loader_workers(
    tmp_path, signum, how
):
    # A terminal's Ctrl-C (SIGINT), `timeout` and SLURM (SIGTERM) signal every process of the
    # job, the loader's workers too: they must leave the stop to the main process (no crash,
    # one last checkpoint, exit 128 + the signal).
    root, beat = tmp_path / "run", tmp_path / "beat"
    args = fit_args(
        root,
        "--model.init_args.max_iterations=1000",
        "--data.init_args.num_workers=1",
        "--trainer.callbacks+=tests.helpers.Heartbeat",
        f"--trainer.callbacks.path={beat}",
        "--trainer.callbacks.delay=3",
    )
    proc = start(how, *args, new_session=True)
    deadline = time.time() + 240
    while not beat.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert beat.exists(), "training never started"
    os.killpg(proc.pid, signum)
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == 128 + signum, out[-3000:]
    assert "DataLoader worker" not in out and "training finished" not in out
    lasts = sorted(p.name for p in (root / "checkpoints").glob("last*.ckpt"))
    assert lasts == ["last.ckpt"], lasts  # not a stale last.ckpt beside last-v1.ckpt
    line = next(line for line in out.splitlines() if "interrupted at iteration" in line)
    stopped = int(line.split("interrupted at iteration ")[1].split()[0])
    assert iteration(root / "checkpoints" / "last.ckpt") == stopped >= 1


@pytest.mark.parametrize("how", PROCESSES)
def test_a_full_disk_with_a_loader_worker_exits_instead_of_hanging(tmp_path, how):
    # The worker ignores SIGTERM (stops are the main process's): the exit must not wait on it.
    root = tmp_path / "run"
    args = fit_args(root, "--trainer.callbacks+=tests.helpers.FullDisk")
    result = i2i(*args, "--data.init_args.num_workers=1", timeout=120, how=how)
    assert result.returncode == 1, output(result)[-3000:]
    block = error_block(output(result))
    assert len(block) == 1 and "the disk is full" in block[0]


@pytest.mark.parametrize("mode", MODES)
def test_resuming_last_without_a_last_checkpoint_names_those_there_and_changes_nothing(
    finished, tmp_path, mode
):
    root = copy_run(finished, tmp_path)
    (root / "checkpoints" / "last.ckpt").unlink()
    before = snapshot(root)
    code, text = run_i2i(mode, *fit_args(root, "--ckpt_path", "last"))
    assert code == 1, text[-3000:]
    block = error_block(text)
    assert len(block) == 1 and "no " in block[0] and "last.ckpt" in block[0]
    best = next((root / "checkpoints").glob("best-*.ckpt"))
    assert f"{best.name} (iteration" in block[0] and f"--ckpt_path={best}" in block[0]
    assert snapshot(root) == before


def test_checkpoints_are_named_by_the_iteration_users_count(finished):
    best = next((finished / "checkpoints").glob("best-*.ckpt"))
    assert best.name == f"best-{iteration(best)}.ckpt"  # not Lightning's optimizer steps


@pytest.mark.parametrize("mode", MODES)
def test_a_run_ended_by_max_kimg_says_so_when_resumed(tmp_path, mode):
    root = tmp_path / "run"
    # 2 images per iteration: 0.004 kimg ends it at iteration 2.
    length = ["--model.init_args.max_iterations=2000", "--model.init_args.max_kimg=0.004"]
    code, text = run_i2i(mode, *fit_args(root, *length))
    assert code == 0, text[-3000:]
    code, text = run_i2i(mode, *fit_args(root, *length, "--ckpt_path=last"))
    assert code == 0, text[-3000:]
    line = next(line for line in text.splitlines() if "nothing to do" in line)
    assert "at iteration 2," in line and "(max_kimg=0.004, at 4 images seen)" in line
    assert "max_iterations" not in line and "raise --model.init_args.max_kimg." in line


@pytest.mark.parametrize("how", PROCESSES)
def test_two_runs_into_one_folder_the_second_is_refused_and_a_killed_run_leaves_no_lock(
    tmp_path, how
):
    root, beat = tmp_path / "run", tmp_path / "beat"
    args = fit_args(
        root,
        "--model.init_args.max_iterations=1000",
        "--trainer.callbacks+=tests.helpers.Heartbeat",
        f"--trainer.callbacks.path={beat}",
        "--trainer.callbacks.delay=3",
    )
    first = start(how, *args)
    try:
        deadline = time.time() + 240
        while not beat.exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert beat.exists(), "training never started"
        # The second run in the test process: the lock is the first process's.
        code, text = run_i2i("in_process", *fit_args(root, "--model.init_args.max_iterations=1"))
        assert code == 1, text[-3000:]
        block = error_block(text)
        assert len(block) == 1
        assert f"{root} is in use by another i2i run (pid {first.pid})" in block[0]
    finally:
        first.kill()  # kill -9: the lock goes with the process
        first.wait(timeout=60)
    code, text = run_i2i(
        "in_process", *fit_args(root, "--model.init_args.max_iterations=1", "--overwrite")
    )
    assert code == 0, text[-3000:]


@pytest.mark.parametrize("mode", MODES)
def test_a_ddp_strategy_a_gan_cannot_use_is_one_line_and_claims_no_folder(tmp_path, mode):
    # Refused before any rank is launched, so the test process can run it too.
    root = tmp_path / "run"
    two = ["--trainer.accelerator=cpu", "--trainer.devices=2"]
    code, text = run_i2i(mode, *fit_args(root, *two, "--trainer.strategy=ddp"))
    assert code == 1, text[-3000:]
    assert "Traceback" not in text and text.count("i2i: error") == 1
    block = error_block(text)
    assert len(block) == 1 and "--trainer.strategy=ddp_find_unused_parameters_true" in block[0]
    code, text = run_i2i(mode, *fit_args(root, "--model.init_args.max_iterations=1"))
    assert code == 0, text[-3000:]  # no --overwrite needed: the refused run claimed nothing


@pytest.mark.parametrize("mode", MODES)
def test_a_run_that_failed_before_saving_says_so_and_claims_no_folder(tmp_path, mode):
    # Without a logger, config.yaml lands in the run folder itself.
    root = tmp_path / "run"
    crash = ["--trainer.callbacks+=tests.helpers.RaiseAt", "--trainer.callbacks.iteration=1"]
    crash.append("--trainer.callbacks.where=optimizer")
    code, text = run_i2i(mode, *fit_args(root, "--trainer.logger=false", *crash))
    assert code == 1
    assert "middle of iteration 1; no last.ckpt was saved" in text and "left as it was" not in text
    assert (root / "config.yaml").is_file() and not list(root.rglob("*.ckpt"))
    code, text = run_i2i(
        mode, *fit_args(root, "--trainer.logger=false", "--model.init_args.max_iterations=1")
    )
    assert code == 0, text[-3000:]
    assert iteration(root / "checkpoints" / "last.ckpt") == 1
