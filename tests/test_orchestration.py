"""The one orchestration (issue 20): a Backend protocol, a Certificate, options passed whole, one dtype policy."""

import dataclasses

import numpy as np
import pytest
import scipy.linalg as sla

import kernelgen
from kernelgen import SolveOptions, kernel_interpolate
from kernelgen.errors import ConvergenceError, InvalidInputError, UnsupportedOptionError
from kernelgen.kernels import Gaussian, kernel_matrix
from kernelgen.options import decide_factor_dtype, float64_retry_allowed
from kernelgen.solvers import Backend, Certificate, KernelOperator, OperatorMode, Plan, load_interpolant
from kernelgen.solvers import plan_kernel_solve


# ---------------------------------------------------------------- a toy backend gets the whole orchestration
class DenseFactor:  # a Factor: solve, dtype, kind, seconds (and the CG's spectrum estimate slot)
    kind, seconds, spectrum_estimate = "cholesky", 0.0, None

    def __init__(self, K):
        self.dtype, self.cf = K.dtype, sla.cho_factor(K, lower=True)

    def solve(self, B):
        return sla.cho_solve(self.cf, B.astype(self.dtype)).astype(np.float64)


class DenseOperator:  # a KernelOperator: the dense float64 product, no proven error bound
    mode, ridge = OperatorMode.STORED, 0.0

    def __init__(self, K):
        self.K = K

    def matvec(self, V):
        return self.K @ V

    def matvec_with_error(self, V):
        return self.K @ V, self.K @ np.abs(V)

    def error_bound(self):
        return None

    def no_bound_reason(self):
        return "the toy's dense product proves nothing"


class ToyBackend:  # dense NumPy: the plan, the operator and the factor; everything else is the orchestration's
    name = "toy"

    def plan(self, n, d, k, options, *, solver="cholesky"):
        fdt = decide_factor_dtype(options, n)
        return Plan(n, d, k, "cholesky", fdt, "stored", n, n * n * 12, 10**12, {"K": n * n * 8}, backend=self.name)

    def operator(self, A, kernel, plan, ridge):
        self.K = kernel_matrix(A, kernel=kernel) + ridge * np.eye(A.shape[0])
        op = DenseOperator(self.K)
        op.ridge = ridge  # the protocol: the operator applies K + ridge I for the ridge asked
        return op

    def factor(self, A, kernel, plan, ridge):
        return DenseFactor(self.K.astype(plan.factor_dtype))


@pytest.fixture
def data(rng):
    X = rng.normal(size=(120, 4))
    return X, rng.normal(size=(120, 2)), rng.normal(size=(30, 4))


def test_a_toy_backend_gets_the_orchestration_certificate_and_result(data):
    X, Y, Xt = data
    kern = Gaussian(bandwidth=1.0)
    toy = ToyBackend()
    assert isinstance(toy, Backend) and isinstance(DenseOperator(np.eye(2)), KernelOperator)
    fit = kernel_interpolate(X, Y, kernel=kern, backend=toy, options=SolveOptions(dtype="float32"))
    ref = kernel_interpolate(X, Y, kernel=kern, backend="scipy", options=SolveOptions(dtype="float32"))
    assert fit.backend == "toy" and fit.solver == "cholesky" and fit.factor_dtype == "float32"
    assert isinstance(fit.certificate, Certificate) and fit.residual_certificate == "direct"
    assert fit.relative_residual <= 1e-10 and fit.relative_residual_bound is None
    assert "proves nothing" in fit.certificate.bound_reason
    # the certificate is an independent dense residual of the returned alpha (tolerance: 1e-10 plus its own rounding)
    K = kernel_matrix(X, kernel=kern)
    assert np.linalg.norm(Y - K @ fit.alpha) / np.linalg.norm(Y) <= 1.01e-10
    # the same interpolant as the SciPy backend: both within 1e-10 of Y, cond(K) ~ 1e3 here
    assert np.allclose(fit.predict(Xt), ref.predict(Xt), rtol=0, atol=1e-6)
    assert fit.n_matvecs >= 2  # a float32 factor: the float64 iteration ran
    with pytest.raises(UnsupportedOptionError, match="backend='toy'"):  # nothing accepted is ignored
        kernel_interpolate(X, Y, kernel=kern, backend=toy, options=SolveOptions(certificate="bound"))
    with pytest.raises(UnsupportedOptionError, match="Cholesky only"):
        kernel_interpolate(X, Y, kernel=kern, backend=type("OnlyChol", (ToyBackend,), {"factor_kinds": ("cholesky",)})(),
                           solver="min_norm")


def test_an_object_that_is_no_backend_is_refused(data):
    X, Y, _ = data
    with pytest.raises(InvalidInputError, match="Backend protocol"):
        kernel_interpolate(X, Y, kernel=Gaussian(1.0), backend=object())


# ---------------------------------------------------------------- the certificate
def test_certificate_is_frozen_and_round_trips_through_the_file(data, tmp_path):
    X, Y, Xt = data
    fit = kernel_interpolate(X, Y, kernel=Gaussian(1.0), options=SolveOptions(certificate="bound"))
    c = fit.certificate
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.relative_residual = 0.0
    # the public names are the certificate's
    assert (fit.relative_residual, fit.history, fit.solver, fit.backend, fit.residual_mode) == (
        c.relative_residual, c.history, c.solver, c.backend, c.residual_mode)
    assert c.relative_residual_bound is not None and c.bound_reason is None and c.tol == 1e-10
    assert Certificate.from_dict(c.to_dict()) == c
    fit.save(tmp_path / "f.npz", include_data=True)
    back = load_interpolant(tmp_path / "f.npz")
    assert back.certificate == c and np.array_equal(back.predict(Xt), fit.predict(Xt))


def test_bound_reason_names_why_there_is_no_bound(data):
    X, Y, _ = data
    K = kernel_matrix(X, kernel=Gaussian(1.0))
    assert "precomputed" in kernel_interpolate(K, Y, kernel="precomputed").certificate.bound_reason
    assert "minimum-norm" in kernel_interpolate(X, Y, kernel=Gaussian(1.0), solver="min_norm").certificate.bound_reason
    assert "matrix_jax" in kernel_interpolate(X, Y, kernel=Gaussian(1.0), backend="jax").certificate.bound_reason


# ---------------------------------------------------------------- one dtype policy, one retry rule, options whole
def test_decide_factor_dtype_is_the_one_rule():
    o = SolveOptions()
    assert decide_factor_dtype(o, o.float64_max_n) == np.float64
    assert decide_factor_dtype(o, o.float64_max_n + 1) == np.float32
    assert decide_factor_dtype(o, 10**5, float64_fits=True) == np.float64  # a backend's device rule
    assert decide_factor_dtype(SolveOptions(dtype="float32"), 10, float64_fits=True) == np.float32
    assert kernelgen.options.AUTO_FLOAT64_MAX_N == o.float64_max_n == kernelgen.solvers.AUTO_FLOAT64_MAX_N
    assert float64_retry_allowed(o, np.float32) and not float64_retry_allowed(o, np.float64)
    assert not float64_retry_allowed(SolveOptions(float64_retry=False), np.float32)
    assert not float64_retry_allowed(SolveOptions(dtype="float32"), np.float32)


def test_jax_plan_states_its_device_rule_through_the_policy():
    from kernelgen.solvers._jax_backend import JaxBackend

    jb = JaxBackend(precomputed=False, options=SolveOptions())
    n = 5000  # above float64_max_n
    assert jb.plan(n, 3, 1, SolveOptions(memory_budget=3 * n * n * 8)).factor_dtype == np.float64
    assert jb.plan(n, 3, 1, SolveOptions(memory_budget=3 * n * n * 8 - 1)).factor_dtype == np.float32
    assert jb.plan(n, 3, 1, SolveOptions(memory_budget=10**12, float64_max_n=10**6)).factor_dtype == np.float64


def test_float64_retry_follows_the_option(rng):
    X, y = rng.normal(size=(200, 5)), rng.normal(size=200)
    # max_iter=1: the float32 route cannot reach tol in one pass, a float64 factor can (cond(K) ~ 1e2 here)
    opts = SolveOptions(float64_max_n=10, max_iter=1)
    fit = kernel_interpolate(X, y, kernel=Gaussian(1.0), options=opts)
    assert fit.factor_dtype == "float64" and fit.relative_residual <= 1e-10
    assert any("float32 route failed" in note for note in fit.notes)
    with pytest.raises(ConvergenceError):
        kernel_interpolate(X, y, kernel=Gaussian(1.0), options=dataclasses.replace(opts, float64_retry=False))


def test_plan_kernel_solve_takes_the_options_whole():
    opts = SolveOptions(dtype="float32", memory_budget=10**10, tile=512, store_kernel=False)
    a = plan_kernel_solve(5000, 10, 1, options=opts)
    b = plan_kernel_solve(5000, 10, 1, dtype="float32", memory_budget=10**10, tile=512, store_kernel=False)
    assert a == b and a.factor_dtype == np.float32 and a.residual == "on-the-fly" and a.tile == 512
    assert a.passes_expected == 6 and a.places == {"factor": "host"}
    with pytest.raises(InvalidInputError, match="not both"):
        plan_kernel_solve(5000, 10, 1, options=opts, tile=256)


def test_refine_reads_its_defaults_from_options(rng):
    from kernelgen.solvers import refine

    A = np.diag(np.linspace(1.0, 10.0, 30))
    Y = rng.normal(size=(30, 1))
    # plain refinement with half the inverse: the residual halves per pass, so it stops just below the options' tol
    opts = SolveOptions(tol=1e-6, max_iter=100, refinement="richardson")
    res = refine(lambda V: A @ V, lambda R: 0.5 * R / np.diag(A)[:, None], Y, options=opts)
    assert 0.25e-6 <= res.relative_residual <= 1e-6 and res.n_matvecs == len(res.history)
    assert kernelgen.numerics.EXACT_TOL == SolveOptions().tol == 1e-10


# ---------------------------------------------------------------- nothing accepted is ignored
@pytest.mark.parametrize("kw,what", [
    ({"solver": "min_norm", "options": SolveOptions(dtype="float32")}, "dtype='float32'"),
    ({"options": SolveOptions(certificate="bound", refinement="richardson")}, "refinement='richardson'"),
])
def test_options_a_route_cannot_honour_are_refused(data, kw, what):
    X, Y, _ = data
    with pytest.raises(UnsupportedOptionError, match=what):
        kernel_interpolate(X, Y, kernel=Gaussian(1.0), **kw)


# ---------------------------------------------------------------- a backend that breaks the protocol gets a named error
@pytest.mark.parametrize("broken,what", [
    ("plan", r"plan\(\) returned dict"),
    ("factor", r"factor\(\) returned object"),
    ("operator", r"operator\(\) returned object"),
    ("shape", "operator returned shape"),
])
def test_a_backend_breaking_the_protocol_gets_a_named_error(data, broken, what):
    X, Y, _ = data

    class Broken(ToyBackend):
        def plan(self, n, d, k, options, *, solver="cholesky"):
            return {"n": n} if broken == "plan" else super().plan(n, d, k, options, solver=solver)

        def operator(self, A, kernel, plan, ridge):
            op = super().operator(A, kernel, plan, ridge)
            if broken == "shape":
                op.matvec = lambda V: V[:-1]
            return object() if broken == "operator" else op

        def factor(self, A, kernel, plan, ridge):
            return object() if broken == "factor" else super().factor(A, kernel, plan, ridge)

    with pytest.raises((InvalidInputError, kernelgen.errors.ShapeMismatchError), match=what):
        kernel_interpolate(X, Y, kernel=Gaussian(1.0), backend=Broken())


class RidgeBlind(ToyBackend):  # applies K alone whatever the ridge: would certify the wrong system
    def operator(self, A, kernel, plan, ridge):
        self.K = kernel_matrix(A, kernel=kernel)
        return DenseOperator(self.K)


class Float32Always(ToyBackend):  # ignores SolveOptions(dtype=...)
    def plan(self, n, d, k, options, *, solver="cholesky"):
        return dataclasses.replace(super().plan(n, d, k, options, solver=solver), factor_dtype=np.dtype(np.float32))


class CholeskyOnly(ToyBackend):  # claims the min-norm route (default factor_kinds) but factors by Cholesky
    def plan(self, n, d, k, options, *, solver="cholesky"):
        return dataclasses.replace(super().plan(n, d, k, options), path="eigh" if solver == "min_norm" else "cholesky")


class BoundClaimed(ToyBackend):  # declares bound_capable but its operator proves nothing
    bound_capable = True


@pytest.mark.parametrize("backend,kw,what", [
    (RidgeBlind(), {"ridge": 0.5}, "ridge 0.0"),
    (Float32Always(), {"options": SolveOptions(dtype="float64")}, "float32 factor"),
    (CholeskyOnly(), {"solver": "min_norm"}, "kind 'cholesky'"),
    (BoundClaimed(), {"options": SolveOptions(certificate="bound")}, "proves nothing"),
])
def test_a_backend_that_would_not_honour_the_request_is_refused(data, backend, kw, what):
    X, Y, _ = data
    with pytest.raises((InvalidInputError, UnsupportedOptionError), match=what):
        kernel_interpolate(X, Y, kernel=Gaussian(1.0), backend=backend, **kw)


def test_the_certificate_history_is_read_only_and_the_fit_hashable(data):
    X, Y, _ = data
    fit = kernel_interpolate(X, Y, kernel=Gaussian(1.0))
    with pytest.raises(TypeError, match="read-only"):
        fit.certificate.history[0]["relative_residual"] = 1e-30
    assert hash(fit.certificate) == hash(Certificate.from_dict(fit.certificate.to_dict()))
    import pickle

    assert pickle.loads(pickle.dumps(fit.certificate)) == fit.certificate


def test_certificate_bound_that_did_not_reach_tol_says_so_in_the_notes(rng):
    X = rng.integers(0, 256, size=(300, 20)).astype(float)  # 8-bit data: Laplace proves its entries
    y = rng.normal(size=300)
    fit = kernel_interpolate(X, y, kernel=kernelgen.kernels.Laplace(bandwidth=50.0),
                             options=SolveOptions(certificate="bound", max_iter=3))
    if fit.residual_certificate == "direct":  # the bound did not certify: never silently
        assert any("certificate='bound'" in note for note in fit.notes)
    else:
        assert fit.relative_residual == fit.relative_residual_bound <= 1e-10


def test_estimator_auto_does_not_take_a_route_its_options_forbid(rng):
    from kernelgen.estimators import KernelInterpolationRegressor

    X, y = rng.normal(size=(300, 3)), rng.normal(size=300)
    # bandwidth 0.8 on 300 points in 3-D: cond(K) ~ 5.5e9, too large for the Cholesky route to certify 1e-10
    # (at 0.6, cond 1.4e7, the compensated direct product now certifies it)
    with pytest.raises(ConvergenceError):
        KernelInterpolationRegressor(kernel=Gaussian(0.8), options=SolveOptions(certificate="bound")).fit(X, y)


def test_a_float64_factor_that_cannot_reach_tol_is_not_told_to_use_float64(rng):
    # 300 points in 5-D at bandwidth 2: cond(K) puts the float64 residual's rounding floor above 1e-10
    X, y = rng.normal(size=(300, 5)), rng.normal(size=300)
    with pytest.raises(ConvergenceError) as ei:
        kernel_interpolate(X, y, kernel=Gaussian(2.0), solver="cholesky")
    msg = str(ei.value)
    assert "dtype='float64'" not in msg and "already float64" in msg and "solver='min_norm'" in msg
