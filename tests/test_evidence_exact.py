"""The exact GP log evidence from data (kernelgen.evidence.kernel_log_evidence), its hyper-parameter grid
(evidence_grid, plot_evidence_grid) and fit.logdet(float64=True) without a kept factor.

Oracles: a dense float64 kernel matrix by the textbook Gaussian formula (independent of kernelgen's
entries) with numpy's slogdet / solve, and kernelgen's K-based gp_log_evidence.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from kernelgen.errors import InvalidInputError, MemoryBudgetError, NonFiniteResultError, ShapeMismatchError
from kernelgen.evidence import (
    EvidenceGrid,
    evidence_grid,
    gp_log_evidence,
    kernel_log_evidence,
    plot_evidence_grid,
)
from kernelgen.evidence import _exact
from kernelgen.kernels import Gaussian, Laplace, ReluNNGP
from kernelgen.options import SolveOptions
from kernelgen.solvers import kernel_interpolate

LOG_2PI = np.log(2 * np.pi)


def _data(n=120, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, k))


def _onehot(n, k, seed):
    """One-hot class targets (the grid reports a zero-one test error only for class-encoded targets)."""
    return np.eye(k)[np.random.default_rng(seed).integers(0, k, n)]


def _gauss(A, B, s):
    """Textbook Gaussian kernel, float64 (independent of kernelgen.kernels)."""
    d2 = np.sum(A**2, 1)[:, None] + np.sum(B**2, 1)[None, :] - 2 * A @ B.T
    return np.exp(-np.maximum(d2, 0) / (2 * s * s))


def _oracle(K, Y, ridge):
    """log N(Y | 0, K + ridge I) summed over columns, and its parts, by numpy (dense solve, slogdet)."""
    n, k = Y.shape
    C = K + ridge * np.eye(n)
    sign, ld = np.linalg.slogdet(C)
    assert sign > 0
    tr = float(np.sum(Y * np.linalg.solve(C, Y)))
    return {"data_fit": -0.5 * tr, "complexity": -0.5 * k * ld, "constant": -0.5 * n * k * LOG_2PI, "logdet": ld,
            "a2": tr / (n * k)}


@pytest.mark.parametrize("ridge", [0.0, 0.05])
def test_kernel_log_evidence_matches_dense_oracle(ridge):
    X, Y = _data()
    ev = kernel_log_evidence(X, Y, kernel=Gaussian(1.5), ridge=ridge)
    ref = _oracle(_gauss(X, X, 1.5), Y, ridge)
    # cond(K) <= ~1e5 here: the certified residual 1e-10 and the textbook kernel's own rounding (~1e-15 per
    # entry, times cond) leave <= ~1e-9 relative in each part; 1e-8 is that margin x 10
    for part in ("data_fit", "complexity", "constant"):
        assert getattr(ev, part) == pytest.approx(ref[part], rel=1e-8)
    assert ev.logdet.value == pytest.approx(ref["logdet"], rel=1e-8, abs=1e-8)
    assert ev.log_evidence == pytest.approx(ev.data_fit + ev.complexity + ev.constant, rel=1e-14)
    assert ev.amplitude2 == pytest.approx(ref["a2"], rel=1e-8)
    assert ev.relative_residual <= 1e-10 and ev.logdet.dtype == "float64"
    assert ev.fit.factor is None  # released once its log-determinant was read


def test_amplitude_optimum_is_the_maximum_of_gp_log_evidence():
    X, Y = _data(seed=1)
    r = 0.1
    ev = kernel_log_evidence(X, Y, kernel=Gaussian(2.0), ridge=r)
    K = Gaussian(2.0).matrix(X)

    def at(a2):  # kernelgen's K-based evidence of the same model y_j ~ N(0, a2 (K + r I))
        return gp_log_evidence(K, Y, amplitude2=a2, noise_var=a2 * r).log_evidence

    # the closed form is the profile's value at its maximiser: equal to rounding (1e-9 relative: two float64
    # Cholesky factors of a matrix with cond ~1e3), and larger than at a2 * (1 -+ 1%) by ~ n k / 2 * 1e-4
    assert ev.log_evidence_amplitude == pytest.approx(at(ev.amplitude2), rel=1e-9)
    assert ev.log_evidence == pytest.approx(at(1.0), rel=1e-9)
    for f in (0.99, 1.01):
        assert at(f * ev.amplitude2) < ev.log_evidence_amplitude - 1e-3


def test_evidence_refuses_float32_zero_targets_and_what_cannot_fit():
    X, Y = _data(n=40)
    with pytest.raises(InvalidInputError, match="float64"):
        kernel_log_evidence(X, Y, kernel=Gaussian(1.0), options=SolveOptions(dtype="float32"))
    with pytest.raises(InvalidInputError, match="zero"):
        kernel_log_evidence(X, np.zeros_like(Y), kernel=Gaussian(1.0))
    with pytest.raises(MemoryBudgetError):  # refused by the planner before anything n x n is allocated
        kernel_log_evidence(X, Y, kernel=Gaussian(1.0), options=SolveOptions(memory_budget=1000, storage="memory"))


def test_evidence_on_disk_equals_in_ram_and_leaves_no_file(tmp_path):
    X, Y = _data(n=300, d=5, seed=2)
    ram = kernel_log_evidence(X, Y, kernel=Gaussian(2.0), ridge=0.01)
    disk = kernel_log_evidence(X, Y, kernel=Gaussian(2.0), ridge=0.01,
                               options=SolveOptions(storage="disk", scratch_dir=str(tmp_path), tile=64))
    # the same float64 factorisation in another blocking order: rounding-level differences only
    assert disk.logdet.value == pytest.approx(ram.logdet.value, rel=1e-11)
    assert disk.log_evidence == pytest.approx(ram.log_evidence, rel=1e-9)
    assert disk.fit.factor_info.get("storage") == "disk"
    assert [f for f in os.listdir(tmp_path) if not f.startswith(".")] == []  # the scratch file is removed


def test_fit_logdet_float64_without_a_kept_factor(tmp_path):
    X, Y = _data(n=200, d=5, seed=3)
    ref = _oracle(_gauss(X, X, 2.0), Y, 0.01)["logdet"]
    fit = kernel_interpolate(X, Y, kernel=Gaussian(2.0), ridge=0.01, options=SolveOptions(dtype="float32"))
    assert fit.factor is None
    with pytest.raises(InvalidInputError, match="float64=True"):
        fit.logdet()
    ld = fit.logdet(float64=True)
    # float64 factor vs the textbook slogdet: cond(K + 0.01 I) <= 1e3, so ~1e-12 relative; 1e-10 leaves margin
    assert ld.dtype == "float64" and ld.value == pytest.approx(ref, rel=1e-10)
    kept = kernel_interpolate(X, Y, kernel=Gaussian(2.0), ridge=0.01,
                              options=SolveOptions(dtype="float32", keep_factor=True))
    assert kept.logdet().dtype == "float32"
    assert kept.logdet(float64=True).value == pytest.approx(ref, rel=1e-10)
    # out of core: the same refactor, in a scratch file removed after its diagonal is read
    disk = kernel_interpolate(X, Y, kernel=Gaussian(2.0), ridge=0.01,
                              options=SolveOptions(dtype="float32", storage="disk", scratch_dir=str(tmp_path),
                                                   tile=64))
    assert disk.logdet(float64=True).value == pytest.approx(ref, rel=1e-10)
    assert [f for f in os.listdir(tmp_path) if not f.startswith(".")] == []
    with pytest.raises(InvalidInputError, match="training data"):
        kernel_interpolate(_gauss(X, X, 2.0), Y, kernel="precomputed", ridge=0.01).logdet(float64=True)


def test_grid_eigh_route_equals_cholesky_route_and_shares_one_eigendecomposition(monkeypatch):
    X, _ = _data(n=150, d=3, k=2, seed=4)
    Xt, _ = _data(n=60, d=3, k=2, seed=5)
    Y, Yt = _onehot(150, 2, 40), _onehot(60, 2, 50)
    calls = []
    real = _exact.EighFactor.factor

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(_exact.EighFactor, "factor", counting)
    grid = {"bandwidth": [1.0, 2.0]}
    ridges = [0.01, 0.1, 1.0]
    g = evidence_grid(X, Y, kernel=Gaussian(1.0), grid=grid, ridges=ridges, X_test=Xt, Y_test=Yt)
    assert isinstance(g, EvidenceGrid) and g.method == "eigh" and len(g) == 6 and len(calls) == 2
    monkeypatch.setattr(_exact, "EIGH_MAX_N", 10)  # force the Cholesky route
    c = evidence_grid(X, Y, kernel=Gaussian(1.0), grid=grid, ridges=ridges, X_test=Xt, Y_test=Yt)
    assert c.method == "cholesky" and set(c.route) == {"cholesky"} and set(g.route) == {"eigh"}
    # two float64 routes to the same numbers, each certified to 1e-10 with cond <= ~1e4: 1e-8 relative
    for col in ("log_evidence", "log_evidence_amplitude", "data_fit", "complexity", "test_mse"):
        np.testing.assert_allclose(getattr(g, col), getattr(c, col), rtol=1e-8)
    assert np.array_equal(g.test_error, c.test_error) and np.array_equal(g.test_wrong, c.test_wrong)
    assert np.all(g.relative_residual <= 1e-10) and g.status == ("ok",) * 6
    # each row against the direct evidence and a prediction by the textbook kernel
    for i in (0, 4):
        s, r = g.params[i]["bandwidth"], g.ridge[i]
        ref = _oracle(_gauss(X, X, s), Y, r)
        assert g.data_fit[i] == pytest.approx(ref["data_fit"], rel=1e-8)
        P = _gauss(Xt, X, s) @ np.linalg.solve(_gauss(X, X, s) + r * np.eye(len(X)), Y)
        assert g.test_mse[i] == pytest.approx(np.mean(np.sum((P - Yt) ** 2, 1)), rel=1e-8)
        assert g.test_error[i] == np.mean(P.argmax(1) != Yt.argmax(1))
    assert g.best("test_mse") == int(np.argmin(g.test_mse))
    assert g.best() == int(np.argmax(g.log_evidence_amplitude))
    assert g.rows()[0]["params"] == {"bandwidth": 1.0} and g.rows()[1]["ridge"] == 0.1


@pytest.mark.parametrize("route", ["eigh", "cholesky"])
def test_grid_marks_a_singular_row_and_keeps_the_others(route, monkeypatch):
    if route == "cholesky":
        monkeypatch.setattr(_exact, "EIGH_MAX_N", 10)
    X, Y = _data(n=60, d=3, k=2, seed=6)
    X = np.vstack([X, X[:5]])  # repeated points: K is singular, K + ridge I is not
    Y = np.vstack([Y, Y[:5]])
    g = evidence_grid(X, Y, kernel=Laplace(2.0), ridges=[0.0, 0.1])
    assert g.status[0].startswith("not positive definite") and np.isnan(g.log_evidence[0])
    assert g.status[1] == "ok" and np.isfinite(g.log_evidence[1]) and g.best() == 1 and g.route == ("", route)


def test_grid_over_relu_network_hyper_parameters_and_its_plot():
    X, _ = _data(n=80, d=6, k=2, seed=7)
    Y = _onehot(80, 2, 70)
    grid = {"depth": [1, 2], "weight_variance": [1.5, 2.0]}
    g = evidence_grid(X, Y, kernel=ReluNNGP(), grid=grid, ridges=[0.1], X_test=X[:20], Y_test=Y[:20])
    assert len(g) == 4 and [p["depth"] for p in g.params] == [1, 1, 2, 2]
    for i in range(len(g)):  # each row is the direct evidence of its own kernel
        ev = kernel_log_evidence(X, Y, kernel=g.kernels[i], ridge=0.1)
        assert g.log_evidence[i] == pytest.approx(ev.log_evidence, rel=1e-8)  # two float64 routes (see above)
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_evidence_grid(g, "depth")
    assert len(ax.lines) == 2 and len(ax.right_ax.lines) == 2  # one line per weight variance, on both axes
    with pytest.raises(InvalidInputError, match="not a grid parameter"):
        plot_evidence_grid(g, "bandwidth")
    with pytest.raises(InvalidInputError):
        evidence_grid(X, Y, kernel=ReluNNGP(), grid={"depth": []})
    with pytest.raises(InvalidInputError):
        evidence_grid(X, Y, kernel=ReluNNGP(), ridges=[-1.0])


def test_grid_reports_no_zero_one_error_for_regression_targets_and_checks_test_rows():
    X, Y = _data(n=40, d=3, k=2, seed=8)
    Xt, Yt = _data(n=20, d=3, k=2, seed=9)
    g = evidence_grid(X, Y, kernel=Gaussian(1.0), X_test=Xt, Y_test=Yt)
    # real-valued targets are regression: the MSE is reported, a zero-one error would be meaningless
    assert np.all(np.isnan(g.test_error)) and g.test_wrong is None and np.all(np.isfinite(g.test_mse))
    with pytest.raises(ShapeMismatchError, match="rows"):
        evidence_grid(X, Y, kernel=Gaussian(1.0), X_test=Xt, Y_test=Yt[:10])
    with pytest.raises(InvalidInputError, match="float64"):
        evidence_grid(X, Y, kernel=Gaussian(1.0), options={"dtype": "float32"})


@pytest.mark.parametrize("scale", [1e155, 1e-170])
def test_evidence_at_extreme_target_scales_raises_instead_of_nan(scale):
    X, Y = _data(n=200, d=6, k=3, seed=1)  # well conditioned at s = 2: the solve is certified at every scale
    # the solve itself is fine at these scales; the evidence's parts leave the float64 range: an error, never NaN
    with pytest.raises(NonFiniteResultError):
        kernel_log_evidence(X, Y * scale, kernel=Gaussian(2.0))
    ev = kernel_log_evidence(X, Y * 1e-100, kernel=Gaussian(2.0))
    ref = kernel_log_evidence(X, Y, kernel=Gaussian(2.0))
    # the amplitude's profiled evidence is scale-covariant: Y -> c Y shifts it by -n k log(c) (a^2 -> c^2 a^2)
    assert ev.log_evidence_amplitude == pytest.approx(ref.log_evidence_amplitude - 200 * 3 * np.log(1e-100),
                                                      rel=1e-9)
