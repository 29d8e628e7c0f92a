"""FID statistics that add up across processes, and the reference-statistics cache."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from i2i.metrics.fid_stats import (
    FeatureStats,
    dataset_identity,
    deterministic_view,
    frechet_distance_from_moments,
    reference_statistics,
)
from i2i.metrics.ids import frechet_distance
from tests.helpers import TinyFeatures


class CountingImages(Dataset):
    """Deterministic images per index; counts every read."""

    def __init__(self, n: int, seed: int = 0, train: bool = True):
        self.files = [f"img{i:03d}.png" for i in range(n)]
        self.root = "/data/counting"
        self.resolution = (8, 8)
        self.seed, self.train = seed, train
        self._reads = 0  # private: not part of the dataset's identity

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        self._reads += 1
        g = torch.Generator().manual_seed(self.seed * 1000 + i)
        return {"image": torch.rand(3, 8, 8, generator=g) * 2 - 1, "index": i}


def _naive_features(dataset: CountingImages, net: torch.nn.Module) -> torch.Tensor:
    return net(torch.stack([dataset[i]["image"] for i in range(len(dataset))]))


def test_feature_stats_add_up_and_match_torch():
    feats = torch.randn(50, 6, dtype=torch.float64) * 3 + 1
    whole = FeatureStats.of(feats)
    a, b = FeatureStats.of(feats[:17]), FeatureStats.of(feats[17:])
    # reduce() with an all-reduce stand-in that adds the other share's tensors, in order.
    others = iter(b.as_tensors())
    total = a.reduce(lambda t: t + next(others))
    assert total.count == 50
    for stats in (whole, total):
        mean, cov = stats.mean_cov()
        torch.testing.assert_close(mean, feats.mean(0))
        torch.testing.assert_close(cov, torch.cov(feats.T))
    other = torch.randn(40, 6, dtype=torch.float64)
    mu_f, cov_f = FeatureStats.of(other).mean_cov()
    via_stats = frechet_distance_from_moments(*whole.mean_cov(), mu_f, cov_f)
    torch.testing.assert_close(via_stats, frechet_distance(feats, other))


def test_reference_statistics_are_cached_and_the_second_run_reads_nothing(tmp_path):
    net = TinyFeatures(num_features=5)
    data = CountingImages(37)
    mean, cov, count, info = reference_statistics(
        data, net, cache_dir=tmp_path, batch_size=8, max_samples=None
    )
    assert count == 37 and data._reads == 37 and info["cache_hit"] is False  # all, not a cap
    expected = _naive_features(CountingImages(37), net).double()
    torch.testing.assert_close(mean, expected.mean(0))
    torch.testing.assert_close(cov, torch.cov(expected.T))
    assert len(list(tmp_path.glob("*.pt"))) == 1

    again = CountingImages(37)
    mean2, cov2, count2, info2 = reference_statistics(again, net, cache_dir=tmp_path)
    assert again._reads == 0 and info2["cache_hit"] is True and info2["cache"] == info["cache"]
    assert count2 == 37 and torch.equal(mean2, mean) and torch.equal(cov2, cov)

    # Another file list, another feature network, another sample count: each misses the cache.
    changed = CountingImages(37)
    changed.files[3] = "other.png"
    reference_statistics(changed, net, cache_dir=tmp_path)
    assert changed._reads == 37
    fresh = CountingImages(37)
    reference_statistics(fresh, TinyFeatures(num_features=5, seed=1), cache_dir=tmp_path)
    assert fresh._reads == 37
    capped = CountingImages(37)
    _, _, n, _ = reference_statistics(capped, net, cache_dir=tmp_path, max_samples=20)
    assert n == 20 and capped._reads == 20
    assert len(list(tmp_path.glob("*.pt"))) == 4


def test_reference_statistics_share_per_rank():
    """Rank r reads samples r, r + W, ...: two ranks' sums add up to one rank's."""
    net = TinyFeatures(num_features=4)
    shares = []
    for rank in (0, 1):
        data = CountingImages(11)
        seen = []

        def record(t, seen=seen):
            seen.append(t.clone())
            return t

        reference_statistics(
            data, net, use_cache=False, rank=rank, world_size=2, sum_fn=record, batch_size=4
        )
        assert data._reads == (6 if rank == 0 else 5)
        shares.append(seen)
    total_sum = shares[0][0] + shares[1][0]
    total_count = shares[0][2] + shares[1][2]
    expected = _naive_features(CountingImages(11), net).double()
    torch.testing.assert_close(total_sum, expected.sum(0))
    assert float(total_count) == 11


def test_dataset_identity_and_deterministic_view():
    data = CountingImages(3)
    identity = dataset_identity(data)
    assert identity["num_files"] == 3 and identity["root"] == "/data/counting"
    assert identity["resolution"] == [8, 8] and identity["seed"] == 0  # public plain settings
    assert "_reads" not in identity
    view = deterministic_view(data)
    assert view.train is False and data.train is True  # a copy: training data untouched


def test_default_cache_folder_follows_i2i_cache_dir(tmp_path, monkeypatch):
    from i2i.metrics.fid_stats import default_stats_dir

    monkeypatch.setenv("I2I_CACHE_DIR", str(tmp_path))
    assert default_stats_dir() == tmp_path / "fid_stats"
    monkeypatch.delenv("I2I_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_stats_dir() == tmp_path / "xdg" / "i2i" / "fid_stats"
    data = CountingImages(5)
    reference_statistics(data, TinyFeatures(num_features=3))  # no cache_dir: the default
    assert len(list((tmp_path / "xdg" / "i2i" / "fid_stats").glob("*.pt"))) == 1


def test_a_cache_file_naming_code_is_recomputed_without_running_it(tmp_path):
    import os

    net = TinyFeatures(num_features=5)
    *_, info = reference_statistics(CountingImages(9), net, cache_dir=tmp_path)
    marker = tmp_path / "ran"

    class RunsACommand:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"identity": RunsACommand()}, info["cache"])  # a cache folder shared with others
    again = CountingImages(9)
    *_, info2 = reference_statistics(again, net, cache_dir=tmp_path)
    assert not marker.exists() and again._reads == 9 and info2["cache_hit"] is False
