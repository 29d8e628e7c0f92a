"""fit_linear_svc against scikit-learn's LinearSVC(dual=False), the reference of P-IDS / U-IDS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmarks.metrics import synthetic_features

from i2i.metrics import svm
from i2i.metrics.svm import fit_linear_svc, solve_linear_svc

sklearn_svm = pytest.importorskip("sklearn.svm")


def _objective(x: np.ndarray, y01: np.ndarray, w: np.ndarray, b: float, C: float = 1.0) -> float:
    """liblinear's primal: 0.5 (|w|^2 + b^2) + C sum max(0, 1 - y f)^2 (the bias is regularised)."""
    y = 2.0 * y01 - 1.0
    slack = np.maximum(0.0, 1.0 - y * (x @ w + b))
    return 0.5 * (w @ w + b * b) + C * float(slack @ slack)


def _data(n: int, d: int, pos_frac: float, sep: float, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    n_pos = int(n * pos_frac)
    y = torch.cat([torch.ones(n_pos), torch.zeros(n - n_pos)])
    # A common offset (features of real networks are not centred: the bias matters) plus a class
    # shift along a random direction.
    x = torch.randn(n, d, generator=g) + 1.0 + sep * y[:, None] * torch.randn(d, generator=g)
    return x.double(), y


CASES = [
    # n, d, positive fraction, separation: n > d, n < d (separable), imbalanced, harder overlap
    (400, 50, 0.5, 0.3),
    (120, 300, 0.5, 0.3),
    (600, 40, 0.2, 0.3),
    (1500, 120, 0.5, 0.15),
]


@pytest.mark.parametrize(("n", "d", "pos_frac", "sep"), CASES)
def test_matches_sklearn(n: int, d: int, pos_frac: float, sep: float) -> None:
    x, y = _data(n, d, pos_frac, sep, seed=n + d)
    w, b = fit_linear_svc(x, y)
    ref = sklearn_svm.LinearSVC(dual=False).fit(x.numpy(), y.numpy())
    ours = (x @ w + b).numpy()
    theirs = ref.decision_function(x.numpy())

    assert np.corrcoef(ours, theirs)[0, 1] > 0.999
    assert np.mean((ours > 0) == (theirs > 0)) > 0.995
    # Same problem (bias regularised): the objectives agree to the solvers' tolerance, and ours is
    # not the worse one (liblinear stops earlier on the separable n < d case: 0.4% higher).
    f_ours = _objective(x.numpy(), y.numpy(), w.numpy(), b)
    f_ref = _objective(x.numpy(), y.numpy(), ref.coef_[0], float(ref.intercept_[0]))
    assert abs(f_ours - f_ref) <= 1e-2 * f_ref
    assert f_ours <= f_ref * (1 + 1e-5)

    def u_ids(f: np.ndarray) -> float:
        pos = y.numpy() == 1
        return (np.sum(f[pos] <= 0) + np.sum(f[~pos] > 0)) / n

    assert abs(u_ids(ours) - u_ids(theirs)) < 0.005
    if pos_frac == 0.5:  # pairs: i-th positive with i-th negative
        half = n // 2
        p_ours = np.mean(ours[half:] > ours[:half])
        p_ref = np.mean(theirs[half:] > theirs[:half])
        assert abs(p_ours - p_ref) < 0.005


def test_objective_at_optimum_and_label_conventions() -> None:
    x, y = _data(300, 20, 0.5, 0.4, seed=1)
    tight = solve_linear_svc(x, y, tol=1e-10)
    assert tight.converged
    default = solve_linear_svc(x, y)
    assert default.n_iter >= 1 and default.converged
    obj = _objective(x.numpy(), y.numpy(), tight.w.numpy(), tight.b)
    # The tight solution is the minimum: the default-tolerance solution and sklearn's are not below.
    ref = sklearn_svm.LinearSVC(dual=False).fit(x.numpy(), y.numpy())
    for w, b in [(default.w.numpy(), default.b), (ref.coef_[0], float(ref.intercept_[0]))]:
        assert _objective(x.numpy(), y.numpy(), w, b) >= obj - 1e-9 * obj
    # {-1, 1} labels give the same fit as {0, 1}; float32 input the same as float64.
    w_pm, b_pm = fit_linear_svc(x, 2 * y - 1)
    w_32, b_32 = fit_linear_svc(x.float(), y)
    torch.testing.assert_close(w_pm, default.w)
    assert b_pm == pytest.approx(default.b)
    torch.testing.assert_close(w_32, default.w, rtol=1e-4, atol=1e-5)
    # decision holds x @ w + b of the training rows, in float64
    torch.testing.assert_close(tight.decision, x @ tight.w + tight.b)


def test_bias_is_regularised_like_liblinear() -> None:
    # One feature, all positives at x = 3 and negatives at x = 2: an unregularised bias would put
    # the boundary at 2.5; liblinear's regularised bias shifts it. The fits must agree.
    x = torch.cat([torch.full((50, 1), 3.0), torch.full((50, 1), 2.0)]).double()
    y = torch.cat([torch.ones(50), torch.zeros(50)])
    w, b = fit_linear_svc(x, y)
    ref = sklearn_svm.LinearSVC(dual=False).fit(x.numpy(), y.numpy())
    assert float(w[0]) == pytest.approx(float(ref.coef_[0, 0]), rel=1e-3)
    assert b == pytest.approx(float(ref.intercept_[0]), rel=1e-3)
    assert abs(-b / float(w[0]) - 2.5) > 0.01  # not the unregularised midpoint


def test_bad_inputs_fail_loudly() -> None:
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="labels|got"):
        fit_linear_svc(x, torch.arange(10) % 3)
    with pytest.raises(ValueError, match="both classes"):
        fit_linear_svc(x, torch.ones(10))
    with pytest.raises(ValueError, match="2-D"):
        fit_linear_svc(x[:, 0], torch.arange(10) % 2)
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        fit_linear_svc(x, torch.arange(9) % 2)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_linear_svc(bad, torch.arange(10) % 2)


def test_warns_when_not_converged() -> None:
    x, y = _data(200, 30, 0.5, 0.2, seed=3)
    with pytest.warns(UserWarning, match="did not converge"):
        fit_linear_svc(x, y, max_iter=1)


def test_power_step_sharpens_the_preconditioner(monkeypatch) -> None:
    # d + 1 > 256: the low-rank Nystrom preconditioner (not the exact one). Features like
    # Inception's: a mean, slowly decaying principal directions, noise. The power step must reach
    # the same optimum in fewer CG iterations (the count is deterministic for a seed).
    real, fake = synthetic_features(500, dim=320, rank=160, seed=1)
    x = torch.cat([real, fake]).double()
    y = torch.cat([torch.ones(500), torch.zeros(500)])
    fits = {}
    for power in (0, 1):
        monkeypatch.setattr(svm, "_POWER_ITERATIONS", power)
        fits[power] = solve_linear_svc(x, y, tol=1e-8)
        assert fits[power].converged
    assert fits[1].cg_iter < 0.9 * fits[0].cg_iter, (fits[0].cg_iter, fits[1].cg_iter)
    torch.testing.assert_close(fits[1].w, fits[0].w, rtol=1e-5, atol=1e-7)
    assert fits[1].b == pytest.approx(fits[0].b, abs=1e-6)
