"""The distributed backend (MPI + ScaLAPACK) against the single-process solve.

Each test starts ``mpiexec -n P`` (oversubscribed, one BLAS thread per process, a subprocess
timeout on every launch) on ``tests/mpi/worker.py`` and compares what rank 0 writes with
``kernel_interpolate`` run here on one process. Skipped, with the reason, when mpiexec, mpi4py or
ScaLAPACK are missing (``.ci/run`` installs them).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from kernelgen import kernel_interpolate
from kernelgen.factors._scalapack import INT32_MAX_LOCAL, check_int32_local, default_grid, local_indices, numroc
from kernelgen.errors import InvalidInputError
from kernelgen.kernels import Gaussian
from kernelgen.solvers._mpi_backend import mpi_plan

HERE = Path(__file__).parent
WORKER = HERE / "mpi" / "worker.py"
sys.path.insert(0, str(HERE / "mpi"))
from _indefinite import Indefinite, expected_index  # noqa: E402
from _data import data  # noqa: E402  (the same seeded data as every worker process)


def _missing() -> str:
    if shutil.which("mpiexec") is None:
        return "mpiexec not found (apt-get install openmpi-bin libopenmpi-dev)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py not installed (pip install -e '.[mpi]')"
    try:
        from kernelgen.factors._scalapack import load_scalapack

        load_scalapack()
    except Exception as exc:  # noqa: BLE001 -- the reason is reported as the skip message
        return f"ScaLAPACK not loadable: {exc}"
    return ""


MISSING = _missing()
needs_mpi = pytest.mark.skipif(bool(MISSING), reason=f"MPI backend unavailable: {MISSING}")

ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMP_NUM_THREADS": "1",
       "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def launch(cmd, *, env=None, timeout=120):
    """Run mpiexec in its own session; on timeout kill the whole process group (no orphaned ranks), then fail."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env={**os.environ, **ENV, **(env or {})})
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout} s (a hang)")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err), time.perf_counter() - t0


def mpirun(P, args, *, runner=True, env=None, timeout=120):
    cmd = ["mpiexec", "-n", str(P), "--oversubscribe", "--bind-to", "none", sys.executable]
    cmd += (["-m", "mpi4py"] if runner else []) + [str(WORKER), *map(str, args)]
    return launch(cmd, env=env, timeout=timeout)


def load(path):
    z = np.load(path)
    return {k: (json.loads(str(z[k])) if z[k].dtype.kind == "U" and str(z[k])[:1] in "[{" else z[k]) for k in z}


def kappa_1(X, kern):
    """LAPACK's 1-norm condition estimate of the float64 K (dpocon on its Cholesky factor); kappa_2 <= it."""
    K = kern.matrix(X)
    L = scipy.linalg.cholesky(K, lower=True)
    rcond, info = scipy.linalg.lapack.dpocon(L, np.abs(K).sum(axis=0).max(), uplo="L")
    assert info == 0 and rcond > 0
    return 1.0 / rcond, K, 2.0 * float(np.sum(np.log(np.diag(L))))


# ---------------------------------------------------------------------------------------------- layout
def test_numroc_partitions_and_int32_planner():
    for n, nb, p in [(1000, 64, 3), (4097, 256, 2), (60000, 256, 4), (5, 8, 3)]:
        counts = [numroc(n, nb, i, 0, p) for i in range(p)]
        assert sum(counts) == n  # the block-cyclic layout partitions the indices
        idx = np.concatenate([local_indices(n, nb, i, p) for i in range(p)])
        assert np.array_equal(np.sort(idx), np.arange(n)) and [len(local_indices(n, nb, i, p)) for i in
                                                               range(p)] == counts
    # every process's local block (pure arithmetic) tiles the n x n matrix exactly once
    for P in (1, 2, 4, 6):
        g = default_grid(P)
        tot = sum(int(np.prod(mpi_plan(3001, 5, 2, grid=g, nb=128, rank=r, factor_dtype="float32",
                                       tile=512)["local_shape"])) for r in range(P))
        assert tot == 3001**2
    # n = 60,000 in one process: 3.6e9 entries > 2^31 - 1; on a 1x2 grid 60,000 x 30,208 < 2^31 - 1
    with pytest.raises(InvalidInputError, match=r"at least 2 processes"):
        check_int32_local(60000, 256, (1, 1))
    assert check_int32_local(60000, 256, (1, 2)) == 60000 * numroc(60000, 256, 0, 0, 2) <= INT32_MAX_LOCAL


@needs_mpi
def test_numroc_matches_the_library():
    import ctypes

    from kernelgen.factors._scalapack import load_scalapack

    lib = load_scalapack()
    ip = lambda v: ctypes.byref(ctypes.c_int(v))  # noqa: E731
    for n, nb, i, p in [(1000, 64, 2, 3), (4097, 256, 1, 2), (60000, 256, 3, 4), (5, 8, 2, 3), (7, 2, 0, 4)]:
        assert lib.numroc_(ip(n), ip(nb), ip(i), ip(0), ip(p)) == numroc(n, nb, i, 0, p)


# ---------------------------------------------------------------------------------------------- solves
CASES = [  # (P, grid, n, factor dtype)
    (1, "1x1", 2000, "float64"),
    (2, "1x2", 2500, "float32"),
    (2, "2x1", 2500, "float32"),
    (4, "2x2", 4000, "float32"),
]


def _check_against_single_process(tmp_path, P, grid, n, dtype, block="200"):
    out = tmp_path / "out.npz"
    r, secs = mpirun(P, ["solve", out, n, dtype], env={"KERNELGEN_MPI_GRID": grid, "KERNELGEN_MPI_BLOCK": block})
    assert r.returncode == 0, r.stderr[-3000:]
    res = load(out)
    X, Y, Xt = data(n)
    kern = Gaussian(bandwidth=2.0)
    ref = kernel_interpolate(X, Y, kernel=kern, options={"dtype": dtype})
    kap, K, logdet = kappa_1(X, kern)
    a_mpi = res["alpha"]
    # the contract: both certificates <= 1e-10, and an independent float64 product agrees
    assert res["relative_residual"] <= 1e-10 and ref.relative_residual <= 1e-10
    own = np.linalg.norm(Y - K @ a_mpi) / np.linalg.norm(Y)
    assert own <= 1e-10
    # ||a1 - a2|| / ||a|| <= kappa (||r1|| + ||r2||) / ||Y|| (perturbation bound; kappa_2 <= kappa_1)
    rel = np.linalg.norm(a_mpi - ref.alpha) / np.linalg.norm(ref.alpha)
    assert rel <= kap * (own + ref.relative_residual) * 1.01 + 1e-15, (rel, kap)
    # predictions: distributed, local, single process agree (|K_t da| <= ||K_t|| ||da||: ~1e-12 here)
    P_ref = ref.predict(Xt)
    assert np.max(np.abs(res["pred_mpi"] - P_ref)) <= 1e-8
    assert np.max(np.abs(res["pred_local"] - res["pred_mpi"])) <= 1e-8
    # every process returned the same KernelInterpolant, bit for bit
    assert len(set(res["digests"])) == 1 and res["types"] == ["KernelInterpolant"] * P
    assert str(res["backend"]) == "mpi" and str(res["factor_dtype"]) == dtype
    # the distributed factor's log-determinant (diagonal gathered over the grid) with its stated precision:
    # float64: backward stable, ~n u log-scale error; float32: within its own error estimate
    assert str(res["factor_backend"]) == "scalapack"
    tol = 1e-9 * abs(logdet) + 1e-9 if dtype == "float64" else float(res["logdet_bound"])
    assert abs(float(res["logdet"]) - logdet) <= tol, (float(res["logdet"]), logdet, tol)
    return secs


@needs_mpi
@pytest.mark.parametrize("P,grid,n,dtype", CASES, ids=[f"P{c[0]}-{c[1]}-n{c[2]}-{c[3]}" for c in CASES])
def test_distributed_solve_matches_single_process(tmp_path, P, grid, n, dtype):
    _check_against_single_process(tmp_path, P, grid, n, dtype)


@needs_mpi
@pytest.mark.slow
def test_distributed_solve_8000_on_2x2(tmp_path):
    _check_against_single_process(tmp_path, 4, "2x2", 8000, "float32", block="256")


@needs_mpi
def test_non_positive_definite_reports_the_global_pivot(tmp_path):
    out = tmp_path / "out.npz"
    r, _ = mpirun(4, ["nonpd", out, 2000], env={"KERNELGEN_MPI_GRID": "2x2", "KERNELGEN_MPI_BLOCK": "128"})
    assert r.returncode == 0, r.stderr[-3000:]
    res = load(out)
    assert str(res["error"]) == "NotPositiveDefiniteError"
    # closed form (tests/mpi/_indefinite.py): pivot 1000 (0-based), in block 7 of 128: process (1, 1) of 2x2
    assert int(res["index"]) == expected_index() == 1000
    X = data(2000)[0][:, :3]
    with pytest.raises(Exception) as ei:  # the single-process solve stops at the same pivot
        kernel_interpolate(X, np.ones(2000), kernel=Indefinite(), options={"dtype": "float64"})
    assert getattr(ei.value, "index", None) == 1000
    assert "global index 1000" in str(res["message"])


@needs_mpi
def test_processes_that_disagree_all_raise_instead_of_hanging(tmp_path):
    """One process with a NaN, another ridge or another bandwidth: every process raises a named error (no hang)."""
    out = tmp_path / "out.npz"
    r, _ = mpirun(2, ["disagree", out, 300], timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    res = load(out)  # rank 0's view: its own input was fine in every case
    assert str(res["nan"]).startswith("InvalidInputError") and "rank(s) [1]" in str(res["nan"])
    assert "NonFiniteInputError" in str(res["nan"])
    for key in ("ridge", "bandwidth"):
        assert str(res[key]).startswith("InvalidInputError") and "ranks [1] differ from rank 0" in str(res[key])


@needs_mpi
def test_refusals_before_allocating(tmp_path):
    out = tmp_path / "out.npz"
    r, _ = mpirun(2, ["refuse", out, 2000])
    assert r.returncode == 0, r.stderr[-3000:]
    res = load(out)
    # 50,000 points on a 1x2 grid: 50,000 x 25,088 = 1.25e9 entries fit; asked with 2 the int32 check passes,
    # so the int32 refusal is checked on one process below; here the 1 MB budget must refuse
    assert str(res["memory"]).startswith("MemoryBudgetError") and "rank" in str(res["memory"])
    assert float(res["memory_seconds"]) < 10
    r, _ = mpirun(1, ["refuse", out, 2000])
    res = load(out)
    assert str(res["int32"]).startswith("InvalidInputError") and "at least 2 processes" in str(res["int32"])
    assert float(res["int32_seconds"]) < 10  # refused before the 2.5e9-entry block was allocated


@needs_mpi
def test_resume_from_saved_factor(tmp_path):
    ck = tmp_path / "ck"
    env = {"KERNELGEN_MPI_CHECKPOINT": str(ck), "KERNELGEN_MPI_GRID": "2x1", "KERNELGEN_MPI_BLOCK": "200"}
    r1, _ = mpirun(2, ["resume", tmp_path / "a.npz", 2000], env=env)
    assert r1.returncode == 0, r1.stderr[-3000:]
    assert sorted(p.name for p in ck.iterdir()) == ["factor.rank0of2.npz", "factor.rank1of2.npz"]
    r2, _ = mpirun(2, ["resume", tmp_path / "b.npz", 2000], env=env)
    assert r2.returncode == 0, r2.stderr[-3000:]
    a, b = load(tmp_path / "a.npz"), load(tmp_path / "b.npz")
    assert "resumed from the saved factor" in r2.stderr and "resumed" not in r1.stderr
    assert "pspotrf" in r1.stderr and "pspotrf" not in r2.stderr  # no refactoring
    # same factor, same deterministic float64 iteration: the same alpha to the bit
    assert np.array_equal(a["alpha"], b["alpha"]) and b["relative_residual"] <= 1e-10
    # a different grid cannot reuse the blocks: named error, not a wrong answer
    r3, _ = mpirun(2, ["resume", tmp_path / "c.npz", 2000], env={**env, "KERNELGEN_MPI_GRID": "1x2"})
    assert r3.returncode != 0 and "DataIntegrityError" in r3.stderr


# ---------------------------------------------------------------------------------------------- failures
@needs_mpi
@pytest.mark.parametrize("mode,runner,n,expect", [
    ("die_factor", True, 4000, "signal 9"),  # n = 4000 in float64: p?potrf lasts well over the 0.2 s
    ("die_between", True, 2000, "exited with non-zero status"),
    ("raise_between", False, 2000, "calling MPI_Abort"),  # the library's own guard, without mpi4py's runner
])
def test_a_failing_process_ends_the_whole_run(tmp_path, mode, runner, n, expect):
    t0 = time.perf_counter()
    r, _ = mpirun(2, [mode, tmp_path / "x.npz", n, "float64"], runner=runner, timeout=90)
    secs = time.perf_counter() - t0
    assert r.returncode != 0
    assert expect in (r.stdout + r.stderr), (r.stdout + r.stderr)[-3000:]
    assert secs < 60  # no hang (launch() fails the test at 90 s)
    assert not (tmp_path / "x.npz").exists()
    if mode == "die_factor":  # killed inside the factorization: no process finished it
        assert "inside p?potrf" in r.stderr and "pdpotrf n=" not in r.stderr


@needs_mpi
def test_mnist_script_under_mpiexec_prints_once(tmp_path):
    cmd = ["mpiexec", "-n", "2", "--oversubscribe", "--bind-to", "none", sys.executable,
           str(HERE.parent / "scripts" / "mnist_kernel.py"), "--smoke", "--backend", "mpi", "-q"]
    r, _ = launch(cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and r.stdout.count("test error") == 1  # rank 0 only
    m = json.loads(lines[0])
    assert m["backend"] == "mpi" and m["relative_residual"] <= 1e-10 and m["mpi_processes"] == 2
    assert len(m["peak_rss_gb_per_process"]) == 2
