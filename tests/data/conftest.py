"""Data-test fixtures: setup checks cache label statistics in a temporary folder, never in ~."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _label_stats_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("I2I_CACHE_DIR", str(tmp_path_factory.mktemp("i2i_cache")))
