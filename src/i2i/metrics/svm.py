"""A linear SVM in torch that reproduces scikit-learn's ``LinearSVC(dual=False)`` for P-IDS / U-IDS.

The reference classifier of the CoModGAN paper is ``LinearSVC(dual=False)`` with its defaults:
liblinear's primal L2-regularised squared-hinge solver (``L2R_L2LOSS_SVC``). liblinear fits the
intercept as the weight of an extra constant feature of value ``intercept_scaling = 1``, so the
bias is regularised like every other weight. The problem solved here is therefore exactly

    min_{w, b}  0.5 * (||w||^2 + b^2) + C * sum_i max(0, 1 - y_i * (w . x_i + b))^2,   y_i in {-1, 1}

and the stopping rule is liblinear's: stop once ||grad|| <= eps * ||grad(w = 0)||, where liblinear
shrinks the user's ``tol`` for class imbalance: eps = tol * max(min(#pos, #neg), 1) / n (so tol / 2
for balanced classes, as in P-IDS / U-IDS where there are N reals and N fakes).

liblinear runs a trust-region Newton method (TRON) in one thread. This solver reaches the same
optimum with a different, faster route:

- Newton steps on the generalised Hessian H = I + 2C X_A^T X_A (A: rows with margin < 1), solved
  inexactly by preconditioned conjugate gradient with Hessian-vector products (H is never formed);
- the preconditioner is a randomised Nystrom approximation of X_A^T X_A. Its sketch X_A^T X_A Omega
  is updated incrementally from the rows that enter or leave A, so it costs a full pass only once;
- an exact line search: along a direction the objective is a convex piecewise quadratic in the step
  size, minimised by safeguarded 1-D Newton on O(n) work after one product X s.

Objective values, gradients, margins and the line search run in float64, so the optimum and the
stopping test are float64-accurate. The many Hessian-vector products inside CG use a float32 copy
of the data on CPU by default: they only shape the search direction (an inexact direction is
corrected by the exact line search and the next gradient) and halve the memory traffic.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["SVCFit", "fit_linear_svc", "solve_linear_svc"]

# liblinear's CG stops at a residual of 0.1 * ||grad||; the Newton iterations then need a few more
# steps than with exact solves, but each is cheap.
_CG_RTOL = 0.1
_CG_MAX_ITER = 250
# Nystrom preconditioner rank: enough to capture the dominant directions of image features (the
# mean and the leading principal components), cheap to sketch (an (n, d) x (d, k) product).
_NYSTROM_RANK = 128
_POWER_ITER = 1


class SVCFit(NamedTuple):
    """The solution and how it was reached."""

    w: Tensor  # (d,) float64, on the input's device
    b: float
    n_iter: int  # Newton iterations (liblinear's n_iter_)
    cg_iter: int  # conjugate-gradient iterations summed over all Newton steps
    converged: bool
    grad_norm_ratio: float  # ||grad|| / ||grad at w = 0|| at the returned point


def _signed_labels(y: Tensor, n: int) -> Tensor:
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"y must have shape ({n},) to match x, got {tuple(y.shape)}")
    values = set(torch.unique(y).tolist())
    if values <= {0, 1}:
        signed = y.to(torch.float64) * 2 - 1
    elif values <= {-1, 1}:
        signed = y.to(torch.float64)
    else:
        raise ValueError(f"y must hold labels in {{0, 1}} or {{-1, 1}}, got values {sorted(values)}")
    if len(values) < 2:
        raise ValueError(f"y must contain both classes, got only {sorted(values)}")
    return signed


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run small LAPACK calls single-threaded: right after the big multi-threaded products, MKL's
    threaded eigh / QR / SVD of a 128 x 128 matrix stall for ~0.5 s on 2 cores (measured), while a
    single thread takes milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Nystrom:
    """Randomised Nystrom approximation U diag(lam) U^T of X_A^T X_A, with its PCG preconditioner.

    The sketch Y = X_A^T (X_A Omega) is kept up to date by adding and removing the rows whose
    membership of the active set changes, which is cheap once the active set settles.
    """

    def __init__(
        self, xs: Tensor, rank: int, mu: float, power_iter: int, generator: torch.Generator
    ) -> None:
        d = xs.shape[1]
        omega = torch.randn(d, rank, dtype=torch.float64, generator=generator).to(xs.device)
        with _one_thread():
            omega = torch.linalg.qr(omega).Q
        # Power iterations on the full Gram X^T X aim the test matrix at its dominant subspace,
        # which the active sets' Grams share; the sketch below stays exact for any fixed Omega.
        for _ in range(power_iter):
            omega = (xs.T @ (xs @ omega.to(xs.dtype))).to(torch.float64)
            with _one_thread():
                omega = torch.linalg.qr(omega).Q
        self.omega = omega  # (d, k) orthonormal columns
        self.proj = xs @ omega.to(xs.dtype)  # (n, k): X Omega, reused by every update
        self.sketch = torch.zeros(d, rank, dtype=torch.float64, device=xs.device)
        self.active = torch.zeros(xs.shape[0], dtype=torch.bool, device=xs.device)
        self.mu = mu

    def update(self, xs: Tensor, active: Tensor) -> None:
        enter = active & ~self.active
        leave = self.active & ~active
        if enter.any():
            self.sketch += (xs[enter].T @ self.proj[enter]).to(torch.float64)
        if leave.any():
            self.sketch -= (xs[leave].T @ self.proj[leave]).to(torch.float64)
        self.active = active.clone()
        with _one_thread():
            self._factor()

    def _factor(self) -> None:
        # Stable Nystrom from a sketch (Tropp et al. 2017): shift by a tiny nu so the core is
        # positive definite, factor, and take the SVD of the (d, k) factor.
        y = self.sketch
        nu = math.sqrt(y.shape[0]) * torch.finfo(torch.float64).eps * max(y.norm().item(), 1e-300)
        y_nu = y + nu * self.omega
        core = self.omega.T @ y_nu
        core = 0.5 * (core + core.T)
        chol, info = torch.linalg.cholesky_ex(core)
        if info.item() != 0:  # numerically singular core: fall back to no preconditioning
            self.u = None
            return
        b = torch.linalg.solve_triangular(chol, y_nu.T, upper=False).T  # Y_nu chol^{-T}
        # Eigen-decompose the small (k, k) Gram of b rather than an SVD of the tall b: cheaper.
        sq, v = torch.linalg.eigh(b.T @ b)
        keep = sq > 1e-10 * sq[-1].clamp_min(1e-300)
        sq, v = sq[keep], v[:, keep]
        u = (b @ v) / sq.sqrt()
        lam = (sq - nu).clamp_min(0)
        self.u = u
        # M^{-1} = U diag((lam_min + mu) / (lam_i + mu)) U^T + (I - U U^T): the captured directions
        # are scaled down to the level of the uncaptured tail.
        self.scale = (lam.min() + self.mu) / (lam + self.mu) - 1

    def apply(self, r: Tensor) -> Tensor:
        if self.u is None:
            return r
        return r + self.u @ (self.scale * (self.u.T @ r))


def _line_search(
    w: Tensor, s: Tensor, z: Tensor, u: Tensor, C: float, max_iter: int = 50
) -> float:
    """argmin over a >= 0 of 0.5 ||w + a s||^2 + C sum max(0, 1 - z - a u)^2.

    The function is convex, piecewise quadratic and C^1 in a: safeguarded Newton on its derivative
    (bisection when a Newton step leaves the bracket) ends in a few steps.
    """
    ws, ss = torch.dot(w, s).item(), torch.dot(s, s).item()

    def slope_curv(a: float) -> tuple[float, float]:
        slack = 1 - z - a * u
        act = slack > 0
        ua = u[act]
        slope = ws + a * ss - 2 * C * torch.dot(ua, slack[act]).item()
        curv = ss + 2 * C * torch.dot(ua, ua).item()
        return slope, curv

    slope0, _ = slope_curv(0.0)
    if slope0 >= 0:  # not a descent direction (only at the optimum, up to rounding)
        return 0.0
    lo, hi, a = 0.0, math.inf, 1.0
    for _ in range(max_iter):
        slope, curv = slope_curv(a)
        if abs(slope) <= 1e-12 * abs(slope0):
            break
        if slope > 0:
            hi = a
        else:
            lo = a
        step = a - slope / curv
        if not (lo < step < hi):
            step = 0.5 * (lo + hi) if math.isfinite(hi) else 2 * a
        if step == a:
            break
        a = step
    return a


def solve_linear_svc(
    x: Tensor,
    y: Tensor,
    C: float = 1.0,
    tol: float = 1e-4,
    max_iter: int = 1000,
    intercept_scaling: float = 1.0,
    hv_dtype: torch.dtype | None = None,
    seed: int = 0,
) -> SVCFit:
    """Fit the squared-hinge linear SVM; see the module docstring for the problem and the method.

    ``hv_dtype`` is the dtype of the data copy used for Hessian-vector products (default float32 on
    CPU, float64 elsewhere: GPUs have the memory and float32 there is no faster for a matvec
    bound by float64 reductions anyway). ``seed`` fixes the Nystrom sketch (results are identical up
    to solver tolerance for any seed).
    """
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (n_samples, n_features), got shape {tuple(x.shape)}")
    n, d = x.shape
    if C <= 0 or intercept_scaling <= 0:
        raise ValueError(f"C and intercept_scaling must be > 0, got C={C}, {intercept_scaling=}")
    device = x.device
    yv = _signed_labels(y.to(device), n)
    ones = torch.full((n, 1), float(intercept_scaling), dtype=torch.float64, device=device)
    xd = torch.cat([x.to(torch.float64), ones], dim=1)  # (n, d + 1): liblinear's bias feature
    if hv_dtype is None:
        hv_dtype = torch.float32 if device.type == "cpu" else torch.float64
    xs = xd if hv_dtype == torch.float64 else xd.to(hv_dtype)

    n_pos = int((yv > 0).sum())
    eps = tol * max(min(n_pos, n - n_pos), 1) / n  # liblinear's primal_solver_tol

    def gradient(w: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        active = z < 1
        coef = torch.where(active, yv * (z - 1), torch.zeros_like(z))
        return w + 2 * C * (coef @ xd), active

    w = torch.zeros(d + 1, dtype=torch.float64, device=device)
    z = torch.zeros(n, dtype=torch.float64, device=device)  # margins y_i * (w . x_i)
    g, active = gradient(w, z)
    gnorm0 = g.norm().item()
    gen = torch.Generator().manual_seed(seed)
    precond = _Nystrom(xs, min(_NYSTROM_RANK, d + 1, n), 1 / (2 * C), _POWER_ITER, gen)

    n_iter = cg_total = 0
    gnorm = gnorm0
    converged = gnorm <= eps * gnorm0
    while not converged and n_iter < max_iter:
        n_iter += 1
        precond.update(xs, active)
        xa = xs[active] if int(active.sum()) < 0.8 * n else None

        def hess_vec(v: Tensor, xa: Tensor | None = xa, active: Tensor = active) -> Tensor:
            vs = v.to(hv_dtype)
            if xa is not None:
                out = (xa @ vs) @ xa
            else:
                out = ((xs @ vs) * active.to(hv_dtype)) @ xs
            return v + 2 * C * out.to(torch.float64)

        s, k = _pcg(hess_vec, -g, precond.apply, _CG_RTOL * gnorm, _CG_MAX_ITER)
        cg_total += k
        u = yv * (xd @ s)
        alpha = _line_search(w, s, z, u, C)
        if alpha == 0.0:
            break  # no further decrease is representable in float64
        w = w + alpha * s
        z = z + alpha * u
        g, active = gradient(w, z)
        gnorm = g.norm().item()
        converged = gnorm <= eps * gnorm0

    return SVCFit(
        w=w[:d].clone(),
        b=float(w[d].item() * intercept_scaling),
        n_iter=n_iter,
        cg_iter=cg_total,
        converged=converged,
        grad_norm_ratio=gnorm / gnorm0 if gnorm0 > 0 else 0.0,
    )


def _pcg(matvec, b: Tensor, precond, atol: float, max_iter: int) -> tuple[Tensor, int]:
    """Preconditioned conjugate gradient for H x = b from x = 0, until ||r|| <= atol."""
    x = torch.zeros_like(b)
    r = b.clone()
    zr = precond(r)
    p = zr.clone()
    rz = torch.dot(r, zr)
    k = 0
    while k < max_iter and r.norm().item() > atol:
        k += 1
        hp = matvec(p)
        step = rz / torch.dot(p, hp)
        x += step * p
        r -= step * hp
        zr = precond(r)
        rz_new = torch.dot(r, zr)
        p = zr + (rz_new / rz) * p
        rz = rz_new
    return x, k


def fit_linear_svc(
    x: Tensor, y: Tensor, C: float = 1.0, tol: float = 1e-4, max_iter: int = 1000
) -> tuple[Tensor, float]:
    """scikit-learn's ``LinearSVC(dual=False, C=C, tol=tol, max_iter=max_iter)`` in torch.

    Args:
        x: (n, d) features, any float dtype, on any device (the fit runs there).
        y: (n,) labels in {0, 1} or {-1, 1}; 1 is the positive class.

    Returns:
        (w, b): w (d,) float64 on x's device and the intercept b, so that the decision function is
        ``x @ w + b`` (positive for class 1), like ``coef_[0]`` and ``intercept_[0]``.
    """
    fit = solve_linear_svc(x, y, C=C, tol=tol, max_iter=max_iter)
    if not fit.converged:
        warnings.warn(
            f"fit_linear_svc did not converge in {fit.n_iter} Newton iterations "
            f"(||grad|| / ||grad0|| = {fit.grad_norm_ratio:.2e}); increase max_iter={max_iter}",
            UserWarning,
            stacklevel=2,
        )
    return fit.w, fit.b
