"""P-IDS / U-IDS, the paired and unpaired Inception discriminative scores of CoModGAN, and FID.

A linear SVM (scikit-learn's ``LinearSVC(dual=False)`` with defaults, reproduced in torch by
`i2i.metrics.svm.fit_linear_svc`) is fitted on the 2N Inception features of N real images
(label 1) and of their N completions (label 0): no train/test split, no standardisation. With f its
decision function,

    U-IDS = (#{i: f(real_i) <= 0} + #{i: f(fake_i) > 0}) / 2N   (the misclassification rate)
    P-IDS = #{i: f(fake_i) > f(real_i)} / N                      (needs the pairing)

Both tend to 0.5 when fakes are indistinguishable from reals; papers report percentages. The
official protocol quantises both image sets to uint8 before the Inception network, as done here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors

from i2i.metrics.features import inception_feature_extractor, quantize_images
from i2i.metrics.fid_stats import frechet_distance_from_moments
from i2i.metrics.svm import solve_linear_svc

__all__ = ["InceptionDiscriminativeScore", "discriminative_scores", "frechet_distance"]

_STATES = ("real_features", "fake_features")


def _check_features(real: Tensor, fake: Tensor) -> None:
    if real.dim() != 2 or real.shape != fake.shape:
        raise ValueError(
            "real and fake features must both be (N, D) with the same N and D, got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}"
        )


def discriminative_scores(real: Tensor, fake: Tensor, C: float = 1.0) -> dict[str, Tensor]:
    """P-IDS and U-IDS of paired features ``real[i]`` / ``fake[i]``, as float32 fractions.

    The SVM runs on the features' device; decision values are float64.

    Args:
        real: features of the real images (N, D).
        fake: features of their completions (N, D), row i paired with ``real[i]``.
        C: the SVM's regularisation (1.0 in the paper).

    Returns:
        {"p_ids": scalar, "u_ids": scalar}, each in [0, 1]; 0.5 means indistinguishable.

    Raises:
        ValueError: the two sets are not both (N, D) of the same shape.
    """
    _check_features(real, fake)
    return _scores_of_stacked(torch.cat([real, fake]), real.shape[0], C)


def _scores_of_stacked(x: Tensor, n: int, C: float) -> dict[str, Tensor]:
    """Scores of x = [reals; fakes] (2N, D), row i paired with row N + i."""
    labels = torch.cat([torch.ones(n, device=x.device), torch.zeros(n, device=x.device)])
    fit = solve_linear_svc(x, labels, C=C)
    if not fit.converged:
        warnings.warn(
            f"the SVM of P-IDS / U-IDS did not converge in {fit.n_iter} Newton iterations "
            f"(||grad|| / ||grad0|| = {fit.grad_norm_ratio:.1e}): scores are approximate",
            UserWarning,
            stacklevel=3,
        )
    f_real, f_fake = fit.decision[:n], fit.decision[n:]
    u_ids = ((f_real <= 0).sum() + (f_fake > 0).sum()).double() / (2 * n)
    p_ids = (f_fake > f_real).sum().double() / n
    return {"p_ids": p_ids.float(), "u_ids": u_ids.float()}


def frechet_distance(real: Tensor, fake: Tensor) -> Tensor:
    """Frechet distance between Gaussians fitted to two feature sets, in float64.

    ||mu_r - mu_f||^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^1/2) with unbiased covariances, like
    torchmetrics' FID; the trace of the square root is taken from the eigenvalues of the symmetric
    S_r^1/2 S_f S_r^1/2 (same spectrum as S_r S_f), which avoids a non-symmetric eigensolver.

    Args:
        real: (N_r, D) features.
        fake: (N_f, D) features; N_r and N_f need not be equal.

    Returns:
        A float64 scalar >= 0 (up to rounding).

    Raises:
        ValueError: the sets are not (N, D) with the same D, or one has fewer than 2 samples.
    """
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"features must be (N, D) with the same D, got {tuple(real.shape)}, {tuple(fake.shape)}"
        )
    if min(real.shape[0], fake.shape[0]) < 2:
        raise ValueError(f"FID needs >= 2 samples per set, got {real.shape[0]} and {fake.shape[0]}")
    stats = []
    for feats in (real, fake):
        feats = feats.to(torch.float64)
        mean = feats.mean(0)
        centred = feats - mean
        stats.append((mean, centred.T @ centred / (feats.shape[0] - 1)))
    (mu_r, cov_r), (mu_f, cov_f) = stats
    return frechet_distance_from_moments(mu_r, cov_r, mu_f, cov_f)


class InceptionDiscriminativeScore(Metric):
    """P-IDS / U-IDS (and optionally FID) of paired real and generated images.

    Args:
        feature: 2048 for the Inception-v3 pool3 features of the FID network (the paper's
            protocol: images are quantised to uint8 first), or an ``nn.Module`` that maps the
            images, passed unchanged, to (N, D) features.
        compute_fid: also return ``"fid"``, the Frechet distance of the same features.
        C: the SVM's regularisation (1.0 in the paper).
        weights_path: where the Inception weights are (see
            `i2i.metrics.features.find_inception_weights`).
        check_hash: whether to check their SHA-256.
        kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, ...).

    ``update(real, fake)`` takes paired float batches (N, 3, H, W) in [-1, 1]. ``compute()`` returns
    ``{"p_ids", "u_ids"}`` (fractions in [0, 1]) plus ``"fid"`` when asked. Features are kept as
    float32 on the CPU (2 x N x 2048 x 4 bytes: 164 MB at N = 10,000); under DDP each rank's pairs
    are gathered with real_i and fake_i still aligned.

    The feature network is frozen, in eval mode, and deliberately not a child module: it stays out
    of ``state_dict()`` (and so out of checkpoints) and out of ``parameters()``, yet ``.to(device)``
    moves it with the metric.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    real_features: list[Tensor]
    fake_features: list[Tensor]

    def __init__(
        self,
        feature: int | nn.Module = 2048,
        compute_fid: bool = False,
        C: float = 1.0,
        weights_path: str | os.PathLike | None = None,
        check_hash: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if C <= 0:
            raise ValueError(f"C must be > 0, got {C}")
        if isinstance(feature, bool) or not isinstance(feature, int | nn.Module):
            raise TypeError(f"feature must be 2048 or an nn.Module, got {type(feature).__name__}")
        if isinstance(feature, int):
            if feature != 2048:
                raise ValueError(
                    f"feature={feature}: P-IDS / U-IDS are defined on the 2048-d pool3 features; "
                    "pass 2048, or an nn.Module for other features"
                )
            extractor: nn.Module = inception_feature_extractor(weights_path, check_hash=check_hash)
        else:
            if weights_path is not None:
                raise ValueError("weights_path applies to the Inception (feature=2048) only")
            extractor = feature
        self.inception_protocol = isinstance(feature, int)
        extractor.requires_grad_(False).eval()
        # Bypass nn.Module.__setattr__ so the network is not registered as a child (see docstring).
        self.__dict__["_extractor"] = extractor
        self.compute_fid = bool(compute_fid)
        self.C = float(C)
        self.add_state("real_features", default=[], dist_reduce_fx="cat")
        self.add_state("fake_features", default=[], dist_reduce_fx="cat")

    @property
    def feature_extractor(self) -> nn.Module:
        """The frozen feature network (not a child module: outside `state_dict()`)."""
        return self.__dict__["_extractor"]

    def _apply(self, fn: Callable, exclude_state: Sequence[str] = ()) -> nn.Module:
        # The features stay on the CPU (exclude_state) whatever the device; the feature network
        # follows the metric's device but keeps its dtype (a .half() would change the features).
        this = super()._apply(fn, exclude_state=(*exclude_state, *_STATES))
        this.feature_extractor.to(this.device)
        return this

    def _check_images(self, real: Tensor, fake: Tensor) -> None:
        if not isinstance(real, Tensor) or not isinstance(fake, Tensor):
            raise TypeError(f"real and fake must be tensors, got {type(real)}, {type(fake)}")
        if real.dim() != 4 or fake.dim() != 4:
            raise ValueError(
                f"real and fake must be image batches (N, C, H, W), got shapes {tuple(real.shape)} "
                f"and {tuple(fake.shape)}"
            )
        if real.shape[0] != fake.shape[0]:
            raise ValueError(
                f"real and fake batch sizes differ: {tuple(real.shape)} vs {tuple(fake.shape)}; "
                "P-IDS needs pairs: fake[i] must be the completion of real[i]"
            )
        if real.shape != fake.shape:
            raise ValueError(
                f"real and fake shapes differ: {tuple(real.shape)} vs {tuple(fake.shape)}"
            )
        if self.inception_protocol and real.shape[1] != 3:
            raise ValueError(f"Inception takes RGB images (N, 3, H, W), got {tuple(real.shape)}")

    def features(self, images: Tensor) -> Tensor:
        """(N, D) float32 features of images in [-1, 1] on the CPU, as the metric keeps them.

        Images are quantised to uint8 first for Inception.

        Args:
            images: (N, 3, H, W) in [-1, 1] (any channels for a custom feature network).

        Returns:
            float32 (N, D) on the CPU.

        Raises:
            ValueError: the feature network does not return (N, D).
        """
        if self.inception_protocol:
            images = quantize_images(images)
        extractor = self.feature_extractor
        if extractor.training:  # someone switched it to training: batch norm must not update
            extractor.eval()
        with torch.no_grad():
            feats = extractor(images)
        if not isinstance(feats, Tensor) or feats.dim() != 2 or feats.shape[0] != images.shape[0]:
            shape = tuple(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__
            raise ValueError(
                f"the feature network must map {images.shape[0]} images to ({images.shape[0]}, D) "
                f"features, got {shape}"
            )
        return feats.detach().to(device="cpu", dtype=torch.float32)

    def update(self, real: Tensor, fake: Tensor) -> None:
        """Add a batch of pairs: ``fake[i]`` is the output for the input made from ``real[i]``.

        Args:
            real: float (N, 3, H, W) in [-1, 1].
            fake: float (N, 3, H, W) in [-1, 1], the same shape as `real`.

        Raises:
            TypeError: `real` or `fake` is not a tensor.
            ValueError: the shapes are not equal 4-D batches (RGB for Inception).
        """
        self._check_images(real, fake)
        f_real, f_fake = self.features(real), self.features(fake)
        # Append together so that the i-th rows of both concatenated states stay a pair, also
        # after the DDP gather (which concatenates each state rank by rank).
        self.real_features.append(f_real)
        self.fake_features.append(f_fake)

    def forward(self, real: Tensor, fake: Tensor) -> None:
        """Only updates: the scores of one batch mean nothing (the SVM separates few samples).

        Args:
            real: as in `update`.
            fake: as in `update`.
        """
        self.update(real, fake)

    def _sync_dist(
        self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None
    ) -> None:
        # The states live on the CPU, but a NCCL group gathers GPU tensors only: gather on the
        # metric's device, then bring the gathered features back to the CPU.
        device = self.device
        if device.type != "cpu":
            for name in _STATES:
                setattr(self, name, [t.to(device) for t in getattr(self, name)])
        super()._sync_dist(dist_sync_fn, process_group)
        for name in _STATES:
            value = getattr(self, name)
            if isinstance(value, Tensor):
                setattr(self, name, value.cpu())
            else:
                setattr(self, name, [t.cpu() for t in value])

    def compute(self) -> dict[str, Tensor]:
        """Fit the SVM on every pair seen (gathered across processes) and score it.

        Warns when there are fewer pairs than feature dimensions (the scores are then meaningless).

        Returns:
            {"p_ids", "u_ids"} as float32 fractions in [0, 1], plus "fid" when `compute_fid`.

        Raises:
            RuntimeError: no pairs, or unequal numbers of real and fake features.
        """
        # List states before a DDP sync, tensors after it.
        reals, fakes = (
            [state] if isinstance(state, Tensor) else list(state)
            for state in (self.real_features, self.fake_features)
        )
        if not reals or not fakes:
            raise RuntimeError("no samples: call update(real, fake) before compute()")
        n, n_fake = sum(len(t) for t in reals), sum(len(t) for t in fakes)
        if n != n_fake:
            raise RuntimeError(
                f"{n} real but {n_fake} fake features: P-IDS needs pairs "
                "(were the states modified, or ranks given batches of different sizes?)"
            )
        dim = reals[0].shape[1]
        if n < dim:
            warnings.warn(
                f"only {n} pairs for {dim}-d features (fewer samples than dimensions): the "
                "linear SVM separates so few samples almost perfectly (exactly when 2N <= D + 1), "
                "so P-IDS / U-IDS are biased towards 0 and meaningless. Use N >> "
                f"{dim} (the paper: 10,000 or more).",
                UserWarning,
                stacklevel=2,
            )
        # One copy of all features, reals then fakes, on the metric's device for the SVM.
        x = torch.cat([*reals, *fakes]).to(self.device)
        out = _scores_of_stacked(x, n, self.C)
        if self.compute_fid:
            out["fid"] = frechet_distance(x[:n], x[n:]).float()
        return out
