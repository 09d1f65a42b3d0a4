"""Issue 21 ("no silent wrong answer from the user's side"), the solver side: items 7, 9, 10, 12 and the
certificate check. Each test is one example of the issue, asserted against an oracle (NumPy's pinv, the
planner itself, the documented contract); MPI tests launch ``mpiexec`` with a timeout and kill the
process group on a hang (as tests/test_mpi.py does).
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from kernelgen import SolveOptions, kernel_interpolate
from kernelgen.errors import (
    InterpolationWarning,
    InvalidInputError,
    MemoryBudgetError,
    NotPositiveDefiniteError,
    UnsupportedOptionError,
)
from kernelgen.kernels import Gaussian, Laplace, kernel_matrix
from kernelgen.solvers import plan_kernel_solve

HERE = Path(__file__).parent
MPI_WORKER = HERE / "mpi" / "settings_worker.py"
SOLVER_FILES = ["solvers/_interpolate.py", "solvers/_planner.py", "solvers/_mpi_backend.py", "solvers/_jax_backend.py",
                "solvers/_system.py", "solvers/_refine.py", "solvers/_min_norm.py", "numerics.py", "options.py",
                "_validation.py"]


def _cauchy_without_jax():
    """A user's stationary kernel, 1 / (1 + r^2), with no JAX twin (defined here: the class must not be global)."""
    from kernelgen.kernels import Stationary

    class CauchyNoJax(Stationary):
        name = "test_user_faults_solvers_cauchy"

        def from_sqdist(self, r2):
            return 1.0 / (1.0 + r2)

    return CauchyNoJax


def _singular_data(rng, consistent=True):
    X = rng.normal(size=(60, 8))  # the distinct points' Gaussian(1) kernel: cond ~ 1e2
    X = np.vstack([X, X[:10]])  # repeated rows: K singular (rank 60), Cholesky impossible
    Y = rng.normal(size=(70, 2))
    if consistent:
        Y[60:] = Y[:10]
    return X, Y


# ============================================================================ item 12: solver="auto" -> min_norm
def test_auto_solver_gives_pinv_on_singular_kernel(rng, caplog):
    X, Y = _singular_data(rng)
    kern = Gaussian(bandwidth=1.0)
    with caplog.at_level(logging.WARNING, logger="kernelgen"):
        fit = kernel_interpolate(X, Y, kernel=kern)  # solver="auto" (the default)
    K = kernel_matrix(X, kernel=kern)
    ref = np.linalg.pinv(K, rcond=70 * np.finfo(float).eps, hermitian=True) @ Y
    assert fit.solver == "min_norm" and fit.rank == 60 and fit.relative_residual <= 1e-10
    # both are K^+ Y on the 60-dim range of a kernel with cond ~1e2 there: they agree to ~cond * eps * ||alpha||;
    # 1e-6 leaves room for pinv's own rounding at the rank cut (a wrong route, e.g. a ridge, differs by O(1))
    np.testing.assert_allclose(fit.alpha, ref, rtol=1e-6, atol=1e-8 * np.abs(ref).max())
    assert any(r.levelno == logging.WARNING and "solved by min_norm" in r.getMessage() for r in caplog.records)


def test_auto_solver_records_the_note(rng):
    X, Y = _singular_data(rng)
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0))
    notes = getattr(fit, "notes", ())  # KernelInterpolant.notes (read from the outcome's "notes")
    assert any("solver='auto': K is not positive definite (first failing pivot" in n and "solved by min_norm" in n
               for n in notes), notes


def test_explicit_cholesky_keeps_raising_and_auto_refuses_where_min_norm_cannot_hold(rng):
    X, Y = _singular_data(rng)
    with pytest.raises(NotPositiveDefiniteError) as ei:
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), solver="cholesky")
    assert ei.value.index is not None and ei.value.index >= 60  # the first repeat of an earlier row
    # an explicit float32 factor: auto does not take a route the user did not ask for
    with pytest.raises(NotPositiveDefiniteError, match="dtype='float32'"):
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), options=SolveOptions(dtype="float32"))
    # min_norm refused by the planner (n = 1000, small tiles: the float64 Cholesky needs ~25 MB beside the fixed
    # parts, the eigendecomposition 4 n^2 x 8 = 32 MB): the NotPD error comes back with the refusal appended
    X = rng.normal(size=(990, 8))
    X = np.vstack([X, X[:10]])
    Y = rng.normal(size=(1000, 1))
    Y[990:] = Y[:10]
    need64 = plan_kernel_solve(1000, 8, 1, dtype="float64", tile=64, memory_budget=10**12,
                               store_kernel=False).bytes_needed
    with pytest.raises(NotPositiveDefiniteError, match="could not take the min-norm route") as ei:
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0),
                           options=SolveOptions(memory_budget=need64 + 10_000, store_kernel=False, tile=64))
    assert "solver='min_norm' at n=1000 needs" in str(ei.value) and ei.value.index >= 990


# ============================================================================ item 10: messages that mislead
def test_too_large_bandwidth_suggests_a_smaller_one(rng):
    X = rng.normal(size=(80, 3))  # distinct points; bandwidth 1e3 >> distances: K = all ones to 1e-7
    with pytest.raises(NotPositiveDefiniteError) as ei:
        kernel_interpolate(X, rng.normal(size=80), kernel=Gaussian(bandwidth=1e3), solver="cholesky")
    msg = str(ei.value)
    assert "SMALLER bandwidth" in msg and "ridge=" in msg and "solver='min_norm'" in msg
    assert "larger bandwidth" not in msg


@pytest.mark.parametrize("where", ["X", "Y", "K", "min_norm_solve"])
def test_sparse_input_is_refused_with_toarray(rng, where):
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    S = scipy.sparse.csr_matrix(X)
    with pytest.raises(InvalidInputError) as ei:
        if where == "X":
            kernel_interpolate(S, y, kernel=Gaussian(bandwidth=1.0))
        elif where == "Y":
            kernel_interpolate(X, scipy.sparse.csr_matrix(y[:, None]), kernel=Gaussian(bandwidth=1.0))
        elif where == "K":
            K = kernel_matrix(X, kernel=Gaussian(bandwidth=1.0))
            kernel_interpolate(scipy.sparse.csr_matrix(K), y, kernel="precomputed")
        else:
            from kernelgen.solvers import min_norm_solve

            min_norm_solve(S, y)
    msg = str(ei.value)
    assert "sparse matrices are not supported" in msg and ".toarray()" in msg and "dtype object" not in msg


def test_interpolation_warning_is_emitted_once_and_can_be_silenced(rng, caplog):
    X, Y = _singular_data(rng, consistent=False)  # repeats with conflicting targets: no interpolant
    with caplog.at_level(logging.DEBUG, logger="kernelgen"), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), solver="min_norm")
    assert sum(issubclass(x.category, InterpolationWarning) for x in w) == 1
    assert w[0].filename == __file__  # attributed to the caller's line
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "interpolate" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kernelgen"), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=InterpolationWarning)
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), solver="min_norm")
    assert not w and not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_custom_kernel_without_jax_on_jax_backend_is_refused_before_work(rng):
    kern = _cauchy_without_jax()(bandwidth=1.0)
    with pytest.raises(UnsupportedOptionError) as ei:
        kernel_interpolate(rng.normal(size=(30, 2)), rng.normal(size=30), kernel=kern, backend="jax")
    msg = str(ei.value)
    assert "CauchyNoJax" in msg and "backend='scipy'" in msg


def test_auto_backend_picks_scipy_for_a_kernel_without_jax(rng, monkeypatch, caplog):
    import kernelgen.solvers._interpolate as ki

    monkeypatch.setattr(ki, "accelerator_available", lambda: True)  # "a GPU is visible"
    X, y = rng.normal(size=(30, 2)), rng.normal(size=30)
    with caplog.at_level(logging.INFO, logger="kernelgen"):
        fit = kernel_interpolate(X, y, kernel=_cauchy_without_jax()(bandwidth=1.0))
    assert fit.backend == "scipy" and fit.relative_residual <= 1e-10
    assert "no JAX implementation" in caplog.text
    # a kernel declaring has_jax = False explicitly: the same choice
    G = type("GaussianNoJax", (Gaussian,), {"has_jax": False})
    assert kernel_interpolate(X, y, kernel=G(bandwidth=1.0)).backend == "scipy"


# ============================================================================ certificate="bound" never ignored
@pytest.mark.parametrize("case", ["jax", "min_norm", "precomputed", "laplace_float_data", "sum_kernel"])
def test_certificate_bound_is_refused_where_it_cannot_hold(rng, case, monkeypatch):
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    opts = SolveOptions(certificate="bound")
    kw = {"kernel": Gaussian(bandwidth=2.0), "options": opts}
    calls = []
    real = Gaussian.entries

    def spy(self, A, B=None, *, dtype=np.float64):  # any n x n work goes through blocks of these entries
        e = real(self, A, B, dtype=dtype)
        blk = e.block

        def counting(*a, **k):
            calls.append(1)
            return blk(*a, **k)

        e.block = counting
        return e

    monkeypatch.setattr(Gaussian, "entries", spy)
    if case == "jax":
        kw["backend"] = "jax"
        what = "backend='jax'"
    elif case == "min_norm":
        kw["solver"] = "min_norm"
        what = "solver='min_norm'"
    elif case == "precomputed":
        X, kw["kernel"], what = kernel_matrix(X, kernel=Gaussian(bandwidth=2.0)), "precomputed", "precomputed K"
        calls.clear()
    elif case == "laplace_float_data":
        kw["kernel"], what = Laplace(bandwidth=2.0), "Laplace"
    else:
        kw["kernel"], what = Gaussian(bandwidth=2.0) + Gaussian(bandwidth=1.0), " + Gaussian(bandwidth=1.0)"
    with pytest.raises(UnsupportedOptionError) as ei:
        kernel_interpolate(X, y, **kw)
    assert what in str(ei.value) and "certificate='direct'" in str(ei.value)
    assert not calls  # refused before any kernel block was computed


def test_store_kernel_is_refused_where_the_backend_cannot_honour_it(rng):
    X, y = rng.normal(size=(40, 10)), rng.normal(size=40)
    with pytest.raises(UnsupportedOptionError, match="store_kernel=False.*backend='jax'"):
        kernel_interpolate(X, y, kernel=Gaussian(bandwidth=2.0), backend="jax",
                           options=SolveOptions(store_kernel=False))


def test_certificate_bound_still_works_where_it_is_proven(rng):
    X, y = rng.normal(size=(40, 10)), rng.normal(size=40)  # d = 10, bandwidth 2: K well conditioned
    fit = kernel_interpolate(X, y, kernel=Gaussian(bandwidth=2.0), options=SolveOptions(certificate="bound"))
    # the proven bound (or the direct residual when the bound could not reach tol) certifies tol
    assert fit.relative_residual <= 1e-10


# ============================================================================ item 9: the planner's overhead and remedies
def test_planner_does_not_add_a_fixed_overhead_on_top_of_the_fraction(monkeypatch, rng):
    import kernelgen.solvers._planner as planner

    monkeypatch.setattr(planner, "available_memory", lambda: 5 * 10**8)  # a busy node: 0.5 GB free
    plan = plan_kernel_solve(50, 3, 1)
    assert plan.bytes_available == int(0.85 * 5 * 10**8) and plan.bytes_needed < 10**8
    X, y = rng.normal(size=(50, 10)), rng.normal(size=50)  # d = 10, bandwidth 2: K well conditioned
    assert kernel_interpolate(X, y, kernel=Gaussian(bandwidth=2.0)).relative_residual <= 1e-10


def test_refusal_for_too_little_free_memory_says_free_memory(monkeypatch):
    import kernelgen.solvers._planner as planner

    monkeypatch.setattr(planner, "available_memory", lambda: 3 * 10**7)  # 30 MB free: no solve fits
    for solver in ("cholesky", "min_norm"):
        with pytest.raises(MemoryBudgetError) as ei:
            plan_kernel_solve(50, 3, 1, solver=solver)
        msg = str(ei.value)
        assert "free memory" in msg and "would not help" in msg and "dtype='float32' (" not in msg
        assert "fewer samples would not help" in msg and "at most" not in msg


@pytest.mark.parametrize("dtype", [None, "float32", "float64"])
def test_refusal_remedy_is_true(dtype):
    n, d = 20000, 10
    need32 = plan_kernel_solve(n, d, 1, dtype="float32", memory_budget=10**13, store_kernel=False).bytes_needed
    for budget in (need32 - 1, need32 + 10**6):
        try:  # the factor held in RAM (storage="auto" would plan it on disk instead of refusing)
            plan_kernel_solve(n, d, 1, options=SolveOptions(dtype=dtype, memory_budget=budget, storage="memory"))
            assert dtype != "float64" and budget > need32
            continue
        except MemoryBudgetError as exc:
            msg = str(exc)
        # float32 offered exactly when the float32 plan fits the same budget
        assert ("dtype='float32' (" in msg) == (dtype == "float64" and budget > need32)
        # "at most m samples": m fits under the same dtype rule and m + 1 does not (the planner is the oracle)
        m = int(msg.split("use at most ")[1].split()[0])
        mem = SolveOptions(dtype=dtype, memory_budget=budget, storage="memory")
        plan_kernel_solve(m, d, 1, options=mem)
        with pytest.raises(MemoryBudgetError):
            plan_kernel_solve(m + 1, d, 1, options=mem)


def test_memory_fraction_is_one_named_constant(monkeypatch):
    import kernelgen.numerics as numerics
    import kernelgen.solvers._jax_backend as jb
    import kernelgen.solvers._planner as planner

    assert planner.DEFAULT_MEMORY_FRACTION is numerics.MEMORY_FRACTION
    src = Path(numerics.__file__).parent
    for rel in SOLVER_FILES:
        text = (src / rel).read_text()
        lines = [ln for ln in text.splitlines() if "0.85" in ln and "MEMORY_FRACTION = 0.85" not in ln
                 and "(0.85)" not in ln and "(85%)" not in ln]
        assert not [ln for ln in lines if not ln.lstrip().startswith(("#", "-", "*"))], (rel, lines)
    # the JAX backend's host budget on a CPU device: the fraction of what is free, once (no 600 MiB subtracted)
    monkeypatch.setattr(jb, "available_memory", lambda: 5 * 10**8)

    class CPU:
        def memory_stats(self):
            return None

    assert jb.device_memory(CPU()) == int(numerics.MEMORY_FRACTION * 5 * 10**8)


# ============================================================================ item 7: MPI processes that disagree
def _mpi_missing() -> str:
    if shutil.which("mpiexec") is None:
        return "mpiexec not found"
    try:
        import mpi4py  # noqa: F401
        from kernelgen.factors._scalapack import load_scalapack

        load_scalapack()
    except Exception as exc:  # noqa: BLE001 -- the reason is the skip message
        return f"mpi4py / ScaLAPACK unavailable: {exc}"
    return ""


MPI_MISSING = _mpi_missing()
needs_mpi = pytest.mark.skipif(bool(MPI_MISSING), reason=f"MPI backend unavailable: {MPI_MISSING}")
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _mpmd(tmp_path, mode, per_rank_env, timeout=60):
    """mpiexec -n 1 -x A=a python w : -n 1 -x A=b python w; kills the process group on a hang (then fails)."""
    out = tmp_path / "out"
    cmd = ["mpiexec", "--oversubscribe", "--bind-to", "none"]
    for i, env in enumerate(per_rank_env):
        if i:
            cmd.append(":")
        cmd += ["-n", "1"]
        for k, v in env.items():
            cmd += ["-x", f"{k}={v}"]
        cmd += [sys.executable, str(MPI_WORKER), mode, str(out)]
    base = {k: v for k, v in os.environ.items() if not k.startswith("KERNELGEN_MPI_")}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env={**base, **MPI_ENV})
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout} s (a hang)")
    assert p.returncode == 0, err[-3000:]
    return [json.loads((tmp_path / f"out.rank{r}.json").read_text()) for r in range(len(per_rank_env))]


@needs_mpi
@pytest.mark.parametrize("var,values", [("KERNELGEN_MPI_GRID", ("1x2", "2x1")),
                                        ("KERNELGEN_MPI_BLOCK", ("128", "64"))])
def test_mpi_processes_with_different_settings_all_raise(tmp_path, var, values):
    res = _mpmd(tmp_path, "solve", [{var: values[0]}, {var: values[1]}])
    for r in res:  # every rank raises the same named error, naming the setting and both ranks with their values
        assert r["error"] == "SettingsMismatchError", r
        assert var in r["message"] and f"{values[0]!r} on rank(s) [0]" in r["message"]
        assert f"{values[1]!r} on rank(s) [1]" in r["message"]
    assert res[0]["message"] == res[1]["message"]


@needs_mpi
def test_mpi_certificate_bound_is_honoured_on_every_rank(tmp_path):
    """certificate='bound' on backend='mpi' (issue 20): a proven bound, the same on every rank, above the truth."""
    res = _mpmd(tmp_path, "bound", [{}, {}])
    assert res[0] == res[1], res  # the replicated iteration: every rank returns the same fit
    r = res[0]
    assert r["error"] == "none" and r["bound"] is not None and r["relative_residual"] <= 1e-10, r
    # the bound is an upper bound on the exact residual; the oracle (a dense float64 product of n = 200 terms per
    # entry) is itself exact to ~n u |K||alpha| / |Y| < 1e-12 here, hence the slack
    assert r["dense_residual"] <= r["bound"] + 1e-12, r
    if r["certificate"] == "bound":
        assert r["relative_residual"] == r["bound"]


def test_mpi_backend_without_mpi4py_names_the_error_and_the_remedy(rng, monkeypatch):
    """Without mpi4py, backend='mpi' was a raw ModuleNotFoundError (scripts exited 1 with a traceback)."""
    from kernelgen.factors._scalapack import ScalapackUnavailableError

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # `import mpi4py` now raises ImportError
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    with pytest.raises(ScalapackUnavailableError) as ei:
        kernel_interpolate(rng.normal(size=(20, 2)), rng.normal(size=20), backend="mpi")
    msg = str(ei.value)
    assert isinstance(ei.value, InvalidInputError)  # a named kernelgen error: the CLI's exit status 2, one line
    assert "needs mpi4py, which is not installed" in msg
    assert 'pip install -e ".[mpi]"' in msg and "Open MPI" in msg and "ScaLAPACK" in msg
    assert isinstance(ei.value.__cause__, ImportError)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "12.5"])
def test_mpi_block_setting_malformed_is_an_error_not_the_default(monkeypatch, value):
    from kernelgen.solvers._mpi_backend import mpi_settings

    monkeypatch.setenv("KERNELGEN_MPI_BLOCK", value)
    monkeypatch.delenv("KERNELGEN_MPI_GRID", raising=False)
    with pytest.raises(InvalidInputError, match="KERNELGEN_MPI_BLOCK"):
        mpi_settings(1)
