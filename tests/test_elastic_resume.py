"""Resume on another machine shape: a run resumed with another number of processes or another
batch size reads every sample of the stream once, as an unbroken run does (i2i.data.elastic).

Each run logs the dataset index of every training sample it took (tests.helpers.SampleLog);
the tiny data has 64 training images, so the 24 samples of these runs are all in the first
epoch and each index names one stream position."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.clirun import fit_args, iteration, run_i2i

DDP = ("--trainer.accelerator=cpu", "--trainer.strategy=ddp_find_unused_parameters_true")
SAMPLES = 24  # the unbroken run: 6 iterations x 2 batches (G, D) x batch 2, one process


def fit(root: Path, log: Path, *args: str, processes: int = 1) -> str:
    """What `i2i fit` printed: one process runs in this one, DDP as the processes it launches."""
    argv = [
        *fit_args(root, *args),
        f"--trainer.devices={processes}",
        *DDP,
        "--trainer.callbacks+=tests.helpers.SampleLog",
        f"--trainer.callbacks.out_dir={log}",
    ]
    mode = "in_process" if processes == 1 else "subprocess"
    code, text = run_i2i(mode, *argv, OMP_NUM_THREADS="1")
    assert code == 0, text[-3000:]
    return text


def taken(log: Path) -> list[int]:
    """Every rank's samples of a run, in one list."""
    files = sorted(log.glob("samples*.json"))
    return [i for f in files for i in json.loads(f.read_text())["indices"]]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> list[int]:
    root = tmp_path_factory.mktemp("unbroken")
    fit(root / "run", root / "log", "--model.init_args.max_iterations=6")
    samples = taken(root / "log")
    assert len(samples) == len(set(samples)) == SAMPLES
    return samples


@pytest.fixture(scope="module")
def half(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """The first half of the unbroken run, on one process: (its run folder, its samples)."""
    root = tmp_path_factory.mktemp("half")
    fit(root / "run", root / "log", "--model.init_args.max_iterations=2")
    return root / "run", taken(root / "log")


def resume(half: tuple[Path, list[int]], tmp_path: Path, *args: str, processes: int = 1):
    """Resume a copy of the half run: (what it printed, the samples of both parts)."""
    run = tmp_path / "run"
    shutil.copytree(half[0], run)
    text = fit(run, tmp_path / "log", "--ckpt_path=last", *args, processes=processes)
    return text, half[1] + taken(tmp_path / "log")


def assert_same_samples(seen: list[int], unbroken: list[int]) -> None:
    assert len(seen) == len(set(seen)), "a sample was read twice"
    assert sorted(seen) == sorted(unbroken), "the samples differ from an unbroken run's"


@pytest.mark.parametrize("batch,iterations", [(1, 10), (4, 4)])
def test_a_run_resumed_with_another_batch_size_reads_each_sample_once(
    unbroken, half, tmp_path, batch, iterations
):
    """Batch 2 -> 1 (old code: the second part re-read samples 4-19) and 2 -> 4 (old code:
    skipped 8-15, read 16-31); the change is said at resume with its consequences."""
    text, seen = resume(
        half,
        tmp_path,
        f"--data.init_args.batch_size={batch}",
        f"--model.init_args.max_iterations={iterations}",
    )
    assert_same_samples(seen, unbroken)
    assert (
        f"i2i: resuming at iteration 2, sample 8 of the stream: batch per process 2 -> {batch} "
        f"(global batch 2 -> {batch}). The learning rate is not rescaled"
    ) in text
    assert "G_ema's half-life is 0.05 thousand images" in text
    assert iteration(tmp_path / "run" / "checkpoints" / "last.ckpt") == iterations


def test_a_run_resumed_on_two_processes_and_then_on_one_reads_each_sample_once(
    unbroken, half, tmp_path
):
    """1 -> 2 gloo processes (old code: both ranks started at sample 16, skipping 8-15), then
    2 -> 1 (old code: the one process re-read samples 12-15 and never reached 20-23). One DDP
    run serves both changes of shape: a DDP launch costs seconds of imports per process."""
    text, seen = resume(half, tmp_path, "--model.init_args.max_iterations=3", processes=2)
    assert "resuming at iteration 2, sample 8 of the stream: processes 1 -> 2 (global " in text
    assert text.count("i2i: resuming at") == 1  # rank 0 says it, once
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    record = torch.load(last, weights_only=False)["InpaintingDataModule"]
    assert record["samples_consumed"] == 16 and record["world_size"] == 2
    args = ("--ckpt_path=last", "--model.init_args.max_iterations=5")
    text = fit(tmp_path / "run", tmp_path / "on_one", *args)
    assert "resuming at iteration 3, sample 16 of the stream: processes 2 -> 1 (global " in text
    assert_same_samples(seen + taken(tmp_path / "on_one"), unbroken)


def test_a_checkpoint_without_the_record_resumes_as_before_and_says_so(unbroken, half, tmp_path):
    """Checkpoints written before the record: the stream continues as if the shape were the
    same, and the run says that it assumes so."""
    run = tmp_path / "run"
    shutil.copytree(half[0], run)
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    del ckpt["InpaintingDataModule"]
    torch.save(ckpt, last)
    text = fit(run, tmp_path / "log", "--ckpt_path=last", "--model.init_args.max_iterations=6")
    assert_same_samples(half[1] + taken(tmp_path / "log"), unbroken)
    assert "the checkpoint does not record how many samples the run consumed" in text


def test_a_damaged_record_is_refused_with_the_file_named(half, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(half[0], run)
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    ckpt["InpaintingDataModule"]["samples_consumed"] = -8
    torch.save(ckpt, last)
    args = fit_args(run, "--ckpt_path=last", "--model.init_args.max_iterations=4")
    code, text = run_i2i("in_process", *args)
    assert code != 0
    assert "its training-stream record has samples_consumed=-8" in text
    assert "last.ckpt" in text
