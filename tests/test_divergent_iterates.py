"""Closed-form gradient-descent iterates that overflow are refused with the stability condition named.

The kind: a closed form multiplies each eigenmode by (1 - eta lambda_i / N)^t; above the critical rate
(eta lambda_max / N > 2) that grows without bound and, at enough steps, overflows to inf. Three closed forms
carry it -- networks.linearized_gd_outputs, sgd.gd_closed_form, sgd.gradient_flow_predictions(discrete=True) --
and each used to return inf. The oracle: the critical rate 2 N / lambda_max from a direct eigendecomposition.
Also here: errors.restated keeps what callers read from an error (a ConvergenceError's history), which an
out-of-core stall used to lose.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernelgen import networks as N
from kernelgen.errors import ConvergenceError, NonFiniteResultError, NotPositiveDefiniteError, restated
from kernelgen.numerics import check_finite_iterates
from kernelgen.sgd import gd_closed_form, gradient_flow_predictions


def _problem(n=6, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    return A @ A.T + n * np.eye(n), rng.normal(size=n), rng.normal(size=n)


def test_the_three_closed_forms_refuse_overflow_and_name_the_critical_rate():
    Theta, y, f0 = _problem()
    lam_max = np.linalg.eigvalsh(Theta)[-1]
    eta = 2.2 * Theta.shape[0] / lam_max  # 10% above eta_critical = 2 N / lambda_max: |1 - r| = 1.2
    with pytest.raises(NonFiniteResultError, match=r"diverges: .* = 2\.2 > 2") as e:
        gradient_flow_predictions(Theta, y, f0, step_size=eta, steps=[0, 10, 10_000], discrete=True)
    assert f"below {2 * Theta.shape[0] / lam_max:.6g}" in str(e.value)
    # the same closed form a little below the critical rate converges: finite, and at the limit y
    ok = gradient_flow_predictions(Theta, y, f0, step_size=0.9 * eta / 1.1, steps=[10_000], discrete=True)
    np.testing.assert_allclose(ok[0], y, rtol=0, atol=1e-9)  # |1 - r| <= 0.8: 0.8^10000 underflows to 0
    # 10 steps above the critical rate grow 1.2^10 = 6x: large but finite values are returned as they are
    assert np.all(np.isfinite(gradient_flow_predictions(Theta, y, f0, step_size=eta, steps=[10], discrete=True)))

    X = np.random.default_rng(1).normal(size=(8, 3))
    s_max = np.linalg.svd(X, compute_uv=False)[0]
    with pytest.raises(NonFiniteResultError, match="gd_closed_form: .* diverges"):
        gd_closed_form(X, np.ones(8), step_size=2.5 * 8 / s_max**2, steps=[10_000])

    n, k = 5, 2
    T = np.kron(_problem(n, 2)[0], np.eye(k)).reshape(n, k, n, k)
    lam = np.linalg.eigvalsh(T.reshape(n * k, n * k))[-1]
    with pytest.raises(NonFiniteResultError, match="linearized_gd_outputs: .* diverges"):
        N.linearized_gd_outputs(T, np.zeros((n, k)), np.ones((n, k)), learning_rate=2.5 * n * k / lam,
                                steps=[0, 20_000])


def test_check_finite_iterates_without_divergence_blames_the_inputs():
    check_finite_iterates([np.ones(3)], np.array([3.0]), 1.0, what="x")  # finite: nothing to refuse
    with pytest.raises(NonFiniteResultError, match="<= 2, so the overflow is in the inputs"):
        check_finite_iterates([np.array([1.0, np.nan])], np.array([0.5]), 1.0, what="x")


def test_restated_keeps_history_and_index():
    h = [{"step": 0, "kind": "initial", "relative_residual": 1e-9, "seconds": 0.0}]
    e = restated(ConvergenceError("stalled", history=h), "stalled (more context)")
    assert type(e) is ConvergenceError and e.history == h and str(e) == "stalled (more context)"
    e = restated(NotPositiveDefiniteError("pivot", 17), "pivot (more)")
    assert type(e) is NotPositiveDefiniteError and e.index == 17
    assert str(restated(ValueError("a"), "b")) == "b"
