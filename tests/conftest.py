"""Shared fixtures: tiny networks and the optional real sample data."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Narrow channels so a 32-64 px generator builds and runs in milliseconds on CPU.
TINY_G = dict(z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32, global_dim=64)
TINY_D = dict(channel_base=256, channel_max=32)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs one worker per core) each worker owns one core: one
    torch thread, in this process and in the `i2i` processes it starts. More threads than free
    cores make tiny networks wait for each other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


# The files that take longest (processes, DDP runs, exports), started first. `make test` runs
# pytest-xdist with --no-loadscope-reorder, which hands files to the workers in collection
# order: a long file started last would leave one worker idle while the other finishes it.
# Only the order changes, so a stale list costs seconds, never a test.
LONGEST_FIRST = [
    "test_cli.py",
    "test_run_safety.py",
    "data/test_shards.py",
    "test_compare.py",
    "tasks/test_training.py",
    "test_elastic_resume.py",
    "test_examples.py",
    "test_try.py",
    "inference/test_export.py",
    "test_losses.py",
    "test_safe_load.py",
    "inference/test_demo.py",
    "tasks/test_evaluation.py",
    "tasks/test_vae.py",
    "inference/test_files_inputs.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {Path(__file__).parent / name: i for i, name in enumerate(LONGEST_FIRST)}
    # A stable sort: the order inside each file, and among the other files, is kept.
    items.sort(key=lambda item: rank.get(item.path, len(rank)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_process_group_left():
    """Lightning's DDP strategy on one device, in the test process, leaves its process group
    initialized; a later test would inherit it (metrics would take their distributed path, and
    forked ranks could not start their own group). Ended after each test."""
    yield
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@pytest.fixture(autouse=True)
def _signal_handlers_kept():
    """A run in the test process may leave its own Ctrl-C or SIGTERM handler (Lightning ignores
    SIGINT for good after a KeyboardInterrupt; LitData's optimize keeps its handler): restored
    after each test, so later tests, and the processes they start, meet the worker's own."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for tests of tiny networks: on a busy 2-core machine, more threads
    than free cores make them many times slower (the threads wait for each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _i2i_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """i2i's caches (label statistics, FID reference statistics) in a temporary folder, never
    in ~; subprocesses started by a test inherit it."""
    monkeypatch.setenv("I2I_CACHE_DIR", str(tmp_path_factory.mktemp("i2i_cache")))


def shared_data(*parts: str) -> Path:
    """A folder of ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample data not available at {path}")
    return path
