"""Feature statistics for FID: sums that add up across processes, and a disk cache of reference
statistics keyed by what they were computed from.

The paper's edges FID compares 200 outputs with ALL the training targets (49,825 shoes, 138,567
handbags). Their statistics cost one pass of the feature network over the training set, so they are
computed once, with each process taking its share (sum of features, sum of outer products, count:
these add up exactly across processes), and cached on disk under a key made of:

- the dataset's identity: its class, its public settings (root, resolution, direction...), its
  length, and for file datasets the number of files and a SHA-256 of their paths;
- the feature network's identity: its class and a SHA-256 of its state dict (for Inception that is
  the weights file's content);
- whether images are quantised to uint8 first, and how many samples were used.

A second run with the same key loads the file and never reads the dataset.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from i2i.data import batch as B
from i2i.io import atomic_write

__all__ = [
    "FeatureStats",
    "dataset_identity",
    "default_stats_dir",
    "deterministic_view",
    "frechet_distance_from_moments",
    "module_identity",
    "reference_statistics",
]

CACHE_VERSION = 1


class FeatureStats:
    """Running sums of (N, D) features in float64: sum, sum of outer products, count.

    Two sets of sums add up to the sums of the union, so each process can take a share and an
    all-reduce of ``as_tensors()`` gives the statistics of everything.

    Args:
        dim: the feature size D.
    """

    def __init__(self, dim: int):
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)
        self.count = 0

    @classmethod
    def of(cls, features: Tensor) -> FeatureStats:
        """The sums of one batch of features.

        Args:
            features: (N, D).

        Returns:
            A new `FeatureStats` over those N samples.
        """
        stats = cls(features.shape[1])
        stats.update(features)
        return stats

    def update(self, features: Tensor) -> None:
        """Add a batch of features to the sums (on the CPU, in float64).

        Args:
            features: (N, D), any device and float dtype.

        Raises:
            ValueError: `features` is not (N, D).
        """
        f = features.detach().to(device="cpu", dtype=torch.float64)
        if f.dim() != 2 or f.shape[1] != self.sum.shape[0]:
            raise ValueError(f"expected (N, {self.sum.shape[0]}) features, got {tuple(f.shape)}")
        self.sum += f.sum(0)
        self.outer += f.T @ f
        self.count += f.shape[0]

    def as_tensors(self) -> list[Tensor]:
        """[sum (D,), sum of outer products (D, D), count (float64 scalar)]: what DDP adds."""
        return [self.sum, self.outer, torch.tensor(float(self.count), dtype=torch.float64)]

    def reduce(self, sum_fn: Callable[[Tensor], Tensor]) -> FeatureStats:
        """These sums added over processes by ``sum_fn``.

        Args:
            sum_fn: adds a tensor over processes (an all-reduce); the identity in one process.

        Returns:
            A new `FeatureStats` of the total, on the CPU.
        """
        total, outer, count = (sum_fn(t) for t in self.as_tensors())
        out = FeatureStats(self.sum.shape[0])
        out.sum, out.outer = total.cpu().to(torch.float64), outer.cpu().to(torch.float64)
        out.count = round(float(count))
        return out

    def mean_cov(self) -> tuple[Tensor, Tensor]:
        """The mean and the unbiased covariance (as torchmetrics' FID)."""
        if self.count < 2:
            raise ValueError(f"FID needs >= 2 samples per set, got {self.count}")
        mean = self.sum / self.count
        cov = (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)
        return mean, cov


def frechet_distance_from_moments(
    mu_r: Tensor, cov_r: Tensor, mu_f: Tensor, cov_f: Tensor
) -> Tensor:
    """||mu_r - mu_f||^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^1/2), in float64.

    The trace of the square root is taken from the eigenvalues of the symmetric
    S_r^1/2 S_f S_r^1/2 (same spectrum as S_r S_f), which avoids a non-symmetric eigensolver.

    Args:
        mu_r: the real features' mean (D,).
        cov_r: the real features' covariance (D, D).
        mu_f: the fake features' mean (D,).
        cov_f: the fake features' covariance (D, D).

    Returns:
        The Fréchet distance, a float64 scalar >= 0 (up to rounding).
    """
    mu_r, cov_r, mu_f, cov_f = (t.to(torch.float64) for t in (mu_r, cov_r, mu_f, cov_f))
    evals, evecs = torch.linalg.eigh(cov_r)
    root_r = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
    inner = root_r @ cov_f @ root_r
    trace_root = torch.linalg.eigvalsh(0.5 * (inner + inner.T)).clamp_min(0).sqrt().sum()
    return (mu_r - mu_f).square().sum() + cov_r.trace() + cov_f.trace() - 2 * trace_root


# ---- identities and the cache ----------------------------------------------------------------


def default_stats_dir() -> Path:
    """``$I2I_CACHE_DIR/fid_stats``, else ``$XDG_CACHE_HOME/i2i/fid_stats`` (``~/.cache/...``),
    next to i2i's other caches."""
    if env := os.environ.get("I2I_CACHE_DIR"):
        return Path(env).expanduser() / "fid_stats"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "i2i" / "fid_stats"


def _sha256_lines(items: list[str]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def dataset_identity(dataset: Dataset) -> dict[str, Any]:
    """What the dataset's images depend on, without reading any image.

    Its class, its public plain-typed settings, its length and, for file datasets, the file count
    and a hash of the (absolute) paths. Nested datasets (``.dataset``) are described too.

    Args:
        dataset: a map-style dataset.

    Returns:
        A JSON-serialisable dict.
    """
    cls = type(dataset)
    identity: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__qualname__}"}
    identity["length"] = len(dataset)  # type: ignore[arg-type]
    for name, value in sorted(vars(dataset).items()):
        if name.startswith("_"):
            continue
        if name == "files" and isinstance(value, list | tuple):
            paths = [os.path.abspath(str(f)) for f in value]
            identity["num_files"] = len(paths)
            identity["files_sha256"] = _sha256_lines(paths)
        elif isinstance(value, Path):
            identity[name] = os.path.abspath(value)
        elif isinstance(value, str | int | float | bool) or value is None:
            identity[name] = value
        elif isinstance(value, list | tuple) and all(
            isinstance(v, str | int | float | bool) for v in value
        ):
            identity[name] = list(value)
        elif isinstance(value, Dataset):
            identity[name] = dataset_identity(value)
    return identity


def module_identity(module: nn.Module) -> dict[str, Any]:
    """The feature network: its class and a SHA-256 of its state dict (names and bytes).

    Args:
        module: the feature network.

    Returns:
        {"class": ..., "state_sha256": ...}.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    cls = type(module)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "state_sha256": digest.hexdigest()}


def deterministic_view(dataset: Dataset) -> Dataset:
    """A shallow copy that reads the stored images, as the official reference statistics.

    No random crop, no flip: ``train`` and ``hflip`` are turned off where the dataset has them as
    booleans.

    Args:
        dataset: the dataset; it is not changed.

    Returns:
        The copy.
    """
    view = copy.copy(dataset)
    for attr in ("train", "hflip"):
        if isinstance(getattr(view, attr, None), bool):
            setattr(view, attr, False)
    return view


def _cache_file(cache_dir: Path, identity: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    name = identity["dataset"]["class"].rsplit(".", 1)[-1]
    return cache_dir / f"{name}-{identity['num_samples']}-{key[:24]}.pt"


def _save(path: Path, stats: FeatureStats, identity: dict[str, Any]) -> None:
    mean, cov = stats.mean_cov()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "identity": json.dumps(identity, sort_keys=True),
        "count": stats.count,
        "mean": mean,
        "cov": cov,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))  # a reader never sees half a file


def _load(path: Path, identity: dict[str, Any]) -> tuple[Tensor, Tensor, int] | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None  # unreadable, or naming code (refused, not run): recompute and overwrite
    if not isinstance(payload, dict):
        return None
    if payload.get("identity") != json.dumps(identity, sort_keys=True):
        return None
    return payload["mean"], payload["cov"], int(payload["count"])


def reference_statistics(
    dataset: Dataset,
    extractor: nn.Module,
    *,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    max_samples: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    sum_fn: Callable[[Tensor], Tensor] = lambda t: t,
    broadcast_fn: Callable[[Any], Any] = lambda obj: obj,
) -> tuple[Tensor, Tensor, int, dict[str, Any]]:
    """(mean, covariance, count, info) of the features of ``dataset``'s images.

    Read from the cache when it holds them, else computed from the ``"image"`` of every sample
    and cached. Under DDP every process calls it with its ``rank`` and ``world_size``: rank r
    takes samples r, r + W, ... and ``sum_fn`` (an all-reduce of sums) adds the shares; whether
    the cache holds the statistics is rank 0's answer (``broadcast_fn``), and rank 0 reads and
    writes the file.

    Args:
        dataset: yields batch dicts whose ``"image"`` is (3, H, W) in [-1, 1].
        extractor: the feature network, (N, ...) -> (N, D); put in eval mode.
        preprocess: maps float images in [-1, 1] to the network's input (uint8 quantisation
            for Inception); None feeds them as they are.
        max_samples: use only the first samples of the dataset; None uses all.
        cache_dir: the cache folder; None is `default_stats_dir()`.
        use_cache: read and write the cache.
        device: where the features are computed.
        batch_size: images per forward.
        num_workers: DataLoader workers.
        rank: this process's rank.
        world_size: the number of processes W.
        sum_fn: adds a tensor over processes (an all-reduce); the identity in one process.
        broadcast_fn: sends rank 0's object to every process; the identity in one process.

    Returns:
        mean (D,) and covariance (D, D) in float64, the number of samples, and info
        ({"cache": path or None, "cache_hit": bool}).

    Raises:
        ValueError: fewer than 2 samples.
    """
    n = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_stats_dir()
    path: Path | None = None
    loaded = None
    if use_cache and rank == 0:
        identity = {
            "version": CACHE_VERSION,
            "dataset": dataset_identity(dataset),
            "features": module_identity(extractor),
            "quantized": preprocess is not None,
            "num_samples": n,
        }
        path = _cache_file(folder, identity)
        loaded = _load(path, identity) if path.is_file() else None
        path_identity: tuple[Path, dict] | None = (path, identity)
    else:
        path_identity = None
    hit = bool(broadcast_fn(loaded is not None)) if use_cache else False
    if hit:
        mean, cov, count = broadcast_fn(loaded)
        return mean, cov, count, {"cache": str(broadcast_fn(path)), "cache_hit": True}

    indices = list(range(rank, n, world_size))
    loader = DataLoader(
        Subset(dataset, indices),
        batch_size=batch_size,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),  # leave the global RNG alone
    )
    stats: FeatureStats | None = None
    extractor = extractor.eval()
    for batch in loader:
        images = batch[B.IMAGE].to(device)
        if preprocess is not None:
            images = preprocess(images)
        with torch.no_grad():
            feats = extractor(images)
        if stats is None:
            stats = FeatureStats(feats.shape[1])
        stats.update(feats)
    # A rank with no share still takes part in the all-reduce, with zeros of the right size.
    dim = broadcast_fn(stats.sum.shape[0] if stats is not None else None)
    stats = (stats or FeatureStats(dim)).reduce(sum_fn)
    mean, cov = stats.mean_cov()
    if path_identity is not None:
        _save(path_identity[0], stats, path_identity[1])
    cache = str(broadcast_fn(path)) if use_cache else None
    return mean, cov, stats.count, {"cache": cache, "cache_hit": False}
