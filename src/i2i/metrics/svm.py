"""A linear SVM in torch that reproduces scikit-learn's ``LinearSVC(dual=False)`` for P-IDS / U-IDS.

The reference classifier of the CoModGAN paper is ``LinearSVC(dual=False)`` with its defaults:
liblinear's primal L2-regularised squared-hinge solver (``L2R_L2LOSS_SVC``). liblinear fits the
intercept as the weight of an extra constant feature of value ``intercept_scaling = 1``, so the
bias is regularised like every other weight. The problem solved here is therefore exactly

    min_{w, b}  0.5 * (||w||^2 + b^2) + C * sum_i max(0, 1 - y_i * (w . x_i + b))^2,  y_i = +-1

and the stopping rule is liblinear's: stop once ||grad|| <= eps * ||grad(w = 0)||, where liblinear
shrinks the user's ``tol`` for class imbalance: eps = tol * max(min(#pos, #neg), 1) / n (so tol / 2
for balanced classes, as in P-IDS / U-IDS where there are N reals and N fakes).

liblinear runs a trust-region Newton method (TRON) in one thread. This solver reaches the same
optimum with a different, faster route:

- Newton steps on the generalised Hessian H = I + 2C X_A^T X_A (A: rows with margin < 1), solved
  inexactly by preconditioned conjugate gradient with Hessian-vector products (H is never formed);
- the preconditioner is a randomised Nystrom approximation of X_A^T X_A. Its test matrix Omega
  takes one power step (Omega <- orth(X^T X Omega)) so that it spans the leading eigenvectors, and
  its sketch X_A^T X_A Omega is updated incrementally from the rows that enter or leave A, so it
  costs full passes only once;
- an exact line search: along a direction the objective is a convex piecewise quadratic in the step
  size, minimised by safeguarded 1-D Newton on O(n) work after one product X s.

Margins, gradients, objective and line search accumulate in float64, so the optimum and the
stopping test are float64-accurate. The many Hessian-vector products inside CG use float32 data:
they only shape the search direction (an inexact direction is corrected by the exact line search
and the next gradient) and halve the memory traffic. On the CPU the loop runs in one thread (see
``_threads``). It gives scikit-learn's scores in a fraction of its time, which is what lets
P-IDS / U-IDS run at the paper's sizes on a CPU (``python -m benchmarks.metrics``; the numbers
are in docs/benchmarks.md, P-IDS / U-IDS).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
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
_NYSTROM_RANK = 64
_EXACT_RANK_MAX = 256
# Power steps that turn the random sketch toward the leading eigenvectors (each costs one more
# (n, d) x (d, k) product pair, once per fit).
_POWER_ITERATIONS = 1
# Gather the active rows into a copy when fewer than this fraction of them are active.
_GATHER_BELOW = 0.8


class SVCFit(NamedTuple):
    """The solution and how it was reached."""

    w: Tensor  # (d,) float64, on the input's device
    b: float
    decision: Tensor  # (n,) float64 decision values x_i . w + b of the training rows
    n_iter: int  # Newton iterations (liblinear's n_iter_)
    cg_iter: int  # conjugate-gradient iterations summed over all Newton steps
    converged: bool
    grad_norm_ratio: float  # ||grad|| / ||grad at w = 0|| at the returned point
    active_fraction: list[float]  # fraction of rows with margin < 1 at each Newton step


def _signed_labels(y: Tensor, n: int) -> Tensor:
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"y must have shape ({n},) to match x, got {tuple(y.shape)}")
    values = set(torch.unique(y).tolist())
    if values <= {0, 1}:
        signed = y.to(torch.float64) * 2 - 1
    elif values <= {-1, 1}:
        signed = y.to(torch.float64)
    else:
        raise ValueError(f"y must hold labels in {{0, 1}} or {{-1, 1}}, got {sorted(values)}")
    if len(values) < 2:
        raise ValueError(f"y must contain both classes, got only {sorted(values)}")
    return signed


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run a section with ``n`` intra-op threads, then restore the caller's (process-wide) setting.

    The solver's loop is a chain of matrix-vector products on chunks and of O(n) vector ops, which
    gain nothing from a second thread and lose much when the cores are shared: a multi-threaded
    MKL call then waits for its partner thread to be scheduled, and a small threaded eigh right
    after a big product stalls far longer than it computes (docs/benchmarks.md, P-IDS / U-IDS).
    Only the large sketch products below use the caller's threads.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Data:
    """The augmented data [X, s * 1] (liblinear's bias feature of value s), never materialised.

    X is stored once in float32 (a float64 input is kept as well). Products that define the
    optimum (margins, gradients) accumulate in float64: row chunks are converted on the fly, which
    costs less than a float64 copy of X and keeps its memory. The Hessian-vector products of CG run
    in float32 and fused per chunk: each chunk of rows is read from memory once for X v and X^T t.
    """

    def __init__(self, x: Tensor, bias: float, fast_dtype: torch.dtype) -> None:
        self.fast = x.to(fast_dtype).contiguous()
        self.exact = x.contiguous() if x.dtype == torch.float64 else None
        self.bias = bias
        # Small chunks stay in the CPU's L2 cache between the two products of a fused pass.
        self.chunk = 256 if x.device.type == "cpu" else 16384

    def _chunks(self, x: Tensor) -> list[Tensor]:
        return list(x.split(self.chunk))

    def matvec(self, v: Tensor) -> Tensor:
        """float64 X~ v."""
        vw = v[:-1]
        if self.exact is not None:
            head = self.exact @ vw
        else:
            head = torch.cat([c.to(torch.float64) @ vw for c in self._chunks(self.fast)])
        return head + self.bias * v[-1]

    def rmatvec(self, r: Tensor) -> Tensor:
        """float64 X~^T r."""
        if self.exact is not None:
            head = r @ self.exact
        else:
            head = torch.zeros(self.fast.shape[1], dtype=torch.float64, device=r.device)
            for c, rc in zip(self._chunks(self.fast), r.split(self.chunk), strict=True):
                head += rc @ c.to(torch.float64)
        return torch.cat([head, (self.bias * r.sum()).reshape(1)])

    def project_back(self, proj: Tensor) -> Tensor:
        """float64 X~^T P for a float32 (n, k) block P (a sketch: float32 products suffice)."""
        head = self.fast.T @ proj.to(self.fast.dtype)
        tail = self.bias * proj.sum(0, dtype=torch.float64)
        return torch.cat([head.to(torch.float64), tail[None]])

    def gram_vec(self, v: Tensor, rows: Tensor | None, mask: Tensor | None) -> Tensor:
        """X~_A^T X~_A v in float32, over the gathered active ``rows`` or masking all rows."""
        x = self.fast if rows is None else rows
        vw = v[:-1].to(x.dtype)
        vb = float(v[-1]) * self.bias
        head = torch.zeros_like(vw)
        tsum = 0.0
        masks = mask.split(self.chunk) if mask is not None else [None] * len(self._chunks(x))
        for c, m in zip(self._chunks(x), masks, strict=True):
            t = c @ vw + vb
            if m is not None:
                t = t * m
            head.addmv_(c.T, t)
            tsum += t.sum()
        return torch.cat([head, (self.bias * tsum).reshape(1)]).to(torch.float64)


class _Nystrom:
    """Randomised Nystrom approximation U diag(lam) U^T of X_A^T X_A, with its PCG preconditioner.

    The sketch Y = X_A^T (X_A Omega) is kept up to date by adding and removing the rows whose
    membership of the active set changes, which is cheap once the active set settles.
    """

    def __init__(
        self,
        data: _Data,
        rank: int,
        mu: float,
        generator: torch.Generator,
        threads: int,
        power_iterations: int = 1,
    ) -> None:
        # rank >= rank(X~^T X~) (which is <= min(n, d + 1)): the approximation is exact.
        self.full_rank = rank >= min(data.fast.shape[0], data.fast.shape[1] + 1)
        x = data.fast
        omega = torch.randn(x.shape[1] + 1, rank, dtype=torch.float64, generator=generator)
        omega = torch.linalg.qr(omega.to(x.device)).Q
        with _threads(threads):
            for _ in range(power_iterations if not self.full_rank else 0):
                # Omega <- orth(X~^T X~ Omega): a random sketch only finds the eigenvectors that
                # stand above the tail's total mass; one power step turns it toward the leading
                # ones, which the preconditioner needs (N = 10,000: 25 CG steps instead of 43).
                omega = torch.linalg.qr(data.project_back(self._project(data, omega))).Q
            self.proj = self._project(data, omega)  # (n, k): X~ Omega, reused by every update
        self.omega = omega  # (d + 1, k) orthonormal columns
        self.sketch = torch.zeros_like(omega)
        self.active = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        self.mu = mu
        self.u: Tensor | None = None
        self.threads = threads

    @staticmethod
    def _project(data: _Data, omega: Tensor) -> Tensor:
        x = data.fast
        return x @ omega[:-1].to(x.dtype) + (data.bias * omega[-1]).to(x.dtype)

    def _add(self, data: _Data, rows: Tensor, sign: float) -> None:
        count = int(rows.sum())
        if count == 0:
            return
        if count == rows.numel():  # all rows (the first step): no gather, the caller's threads
            with _threads(self.threads):
                head = data.fast.T @ self.proj
            proj = self.proj
        else:
            proj = self.proj[rows]
            head = data.fast[rows].T @ proj
        tail = data.bias * proj.sum(0, dtype=torch.float64)
        self.sketch += sign * torch.cat([head.to(torch.float64), tail[None]])

    def update(self, data: _Data, active: Tensor) -> None:
        self._add(data, active & ~self.active, 1.0)
        self._add(data, self.active & ~active, -1.0)
        self.active = active.clone()
        self._factor()

    def _factor(self) -> None:
        # Nystrom: A ~ Y (Omega^T Y)^+ Y^T with Y = A Omega. The pseudo-inverse of the small core
        # via its eigendecomposition also copes with rank-deficient A (few active rows), where a
        # Cholesky of the core fails. Then U diag(lam) U^T from the eigh of B^T B, B = Y V E^-1/2.
        y = self.sketch
        e, v = torch.linalg.eigh(0.5 * (self.omega.T @ y + y.T @ self.omega))
        keep = e > 1e-12 * e[-1].clamp_min(1e-300)
        if not keep.any():  # no active rows: H = I, nothing to precondition
            self.u = None
            return
        b = (y @ v[:, keep]) / e[keep].sqrt()
        lam, v = torch.linalg.eigh(b.T @ b)
        keep = lam > 1e-12 * lam[-1]
        lam, v = lam[keep], v[:, keep]
        self.u = (b @ v) / lam.sqrt()
        # M^{-1} = U diag((lam_min + mu) / (lam_i + mu)) U^T + (I - U U^T): the captured directions
        # are scaled down to the level of the uncaptured tail. With a full-rank sketch lam_min is
        # meaningless (nothing is uncaptured): use 0 so that M^{-1} is the exact inverse.
        floor = lam.new_zeros(()) if self.full_rank else lam.min()
        self.scale = (floor + self.mu) / (lam + self.mu) - 1

    def apply(self, r: Tensor) -> Tensor:
        if self.u is None:
            return r
        return r + self.u @ (self.scale * (self.u.T @ r))


def _line_search(w: Tensor, s: Tensor, z: Tensor, u: Tensor, C: float, max_iter: int = 50) -> float:
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
    hv_dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> SVCFit:
    """Fit the squared-hinge linear SVM; see the module docstring for the problem and the method.

    Args:
        x: (n, d) features, any float dtype, on any device (the fit runs there).
        y: (n,) labels in {0, 1} or {-1, 1}, both classes present; 1 is the positive class.
        C: the regularisation, > 0.
        tol: the stopping tolerance, shrunk for class imbalance as liblinear does.
        max_iter: the most Newton iterations, >= 1.
        intercept_scaling: the constant feature appended for the intercept, > 0.
        hv_dtype: the dtype of the data copy used for Hessian-vector products inside CG (only the
            search directions depend on it).
        seed: fixes the Nystrom sketch; any seed reaches the same optimum up to the solver
            tolerance.

    Returns:
        The solution and how it was reached (see `SVCFit`).

    Raises:
        ValueError: `x` is not 2-D or holds NaN or infinite values, `y` does not match, or an
            option is out of range.
    """
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (n_samples, n_features), got shape {tuple(x.shape)}")
    if C <= 0 or intercept_scaling <= 0:
        raise ValueError(f"C and intercept_scaling must be > 0, got C={C}, {intercept_scaling=}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    yv = _signed_labels(y.to(x.device), x.shape[0])
    data = _Data(x, float(intercept_scaling), hv_dtype)
    if not torch.isfinite(torch.stack(torch.aminmax(data.fast))).all():  # one pass, no copy
        raise ValueError("x contains NaN or infinite values")
    threads = torch.get_num_threads()
    if x.device.type != "cpu":
        return _solve(data, yv, C, tol, max_iter, seed, threads)
    with _threads(1):
        return _solve(data, yv, C, tol, max_iter, seed, threads)


def _solve(
    data: _Data, yv: Tensor, C: float, tol: float, max_iter: int, seed: int, threads: int
) -> SVCFit:
    n, d = data.fast.shape
    device = data.fast.device
    n_pos = int((yv > 0).sum())
    eps = tol * max(min(n_pos, n - n_pos), 1) / n  # liblinear's primal_solver_tol

    def gradient(w: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        active = z < 1
        coef = torch.where(active, yv * (z - 1), torch.zeros_like(z))
        return w + 2 * C * data.rmatvec(coef), active

    w = torch.zeros(d + 1, dtype=torch.float64, device=device)  # (w, b / intercept_scaling)
    z = torch.zeros(n, dtype=torch.float64, device=device)  # margins y_i * (w . x~_i)
    g, active = gradient(w, z)
    gnorm0 = gnorm = g.norm().item()
    # A sketch of full rank makes the preconditioner exact (CG then takes a step or two): affordable
    # when the Gram's rank min(n, d + 1) is small. Otherwise a low rank catches the dominant part.
    rank = min(n, d + 1)
    rank = rank if rank <= _EXACT_RANK_MAX else _NYSTROM_RANK
    gen = torch.Generator().manual_seed(seed)
    precond = _Nystrom(data, rank, 1 / (2 * C), gen, threads, _POWER_ITERATIONS)

    n_iter = cg_total = 0
    active_frac = []
    converged = gnorm <= eps * gnorm0
    while not converged and n_iter < max_iter:
        n_iter += 1
        precond.update(data, active)
        # Gather the active rows once when that saves work in the CG products that follow.
        n_active = int(active.sum())
        rows = data.fast[active] if n_active < _GATHER_BELOW * n else None
        mask = None if rows is not None or n_active == n else active.to(data.fast.dtype)
        active_frac.append(n_active / n)

        def hess_vec(v: Tensor, rows: Tensor | None = rows, mask: Tensor | None = mask) -> Tensor:
            return v + 2 * C * data.gram_vec(v, rows, mask)

        s, k = _pcg(hess_vec, -g, precond.apply, _CG_RTOL * gnorm, _CG_MAX_ITER)
        cg_total += k
        u = yv * data.matvec(s)
        alpha = _line_search(w, s, z, u, C)
        if alpha == 0.0:
            break  # no decrease representable in float64 any more
        w = w + alpha * s
        z = z + alpha * u
        g, active = gradient(w, z)
        gnorm = g.norm().item()
        converged = gnorm <= eps * gnorm0

    return SVCFit(
        w=w[:d].clone(),
        b=float(w[d].item() * data.bias),
        decision=yv * z,
        n_iter=n_iter,
        cg_iter=cg_total,
        converged=converged,
        grad_norm_ratio=gnorm / gnorm0 if gnorm0 > 0 else 0.0,
        active_fraction=active_frac,
    )


def _pcg(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    precond: Callable[[Tensor], Tensor],
    atol: float,
    max_iter: int,
) -> tuple[Tensor, int]:
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

    Warns when the solver does not converge in `max_iter` iterations.

    Args:
        x: (n, d) features, any float dtype, on any device (the fit runs there).
        y: (n,) labels in {0, 1} or {-1, 1}; 1 is the positive class.
        C: the regularisation, > 0.
        tol: the stopping tolerance.
        max_iter: the most Newton iterations.

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
