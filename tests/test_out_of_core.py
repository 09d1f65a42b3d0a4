"""The out-of-core Cholesky factor (storage="disk"): the factor, the certified solve, resume, refusals, cleanup.

Every test uses ``tmp_path`` as the scratch directory (never the user's cache) and small problems (n <= 3,000,
tiles of 256-384): a small ``memory_budget`` forces a narrow super-panel (``fit.plan.working_width``), so that
the factorisations run several super-panels and stream the factored columns back from the file. The subprocess
tests kill a run with SIGKILL to leave a resumable scratch file behind.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

import kernelgen
from kernelgen import SolveOptions, kernel_interpolate
from kernelgen.errors import (
    DataIntegrityError,
    InvalidInputError,
    MemoryBudgetError,
    NotPicklableError,
    NotPositiveDefiniteError,
    ScratchStorageError,
    ShapeMismatchError,
    UnsupportedOptionError,
)
from kernelgen.factors import LowerPanels, _disk, tiled_cholesky
from kernelgen.factors._disk import (
    DiskCholeskyFactor,
    DiskPanels,
    disk_read_bytes,
    out_of_core_cholesky,
)
from kernelgen.kernels import Gaussian, kernel_matrix
from kernelgen.solvers import _out_of_core, _planner, plan_kernel_solve
from kernelgen.solvers._planner import _disk_parts

ROOT = Path(__file__).resolve().parents[1]
EPS64 = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)
TOL = 1e-10  # the project's exactness tolerance (SolveOptions.tol default)

# the solve problem: Gaussian s = 1 on 1,800 standard normal points in 8-D; cond_2(K) = 2.0e3 (eigvalsh, seed 0),
# so a float32 factor preconditions CG well and the float64 residual floor (~eps cond) is far below 1e-10
N, D, K_TARGETS, TILE, BANDWIDTH = 1800, 8, 3, 256, 1.0
N_TILES = -(-N // TILE)  # 8 tiles: the last one has 8 rows


def _budget(n, d, k, dtype, tile, w_tiles):
    """A memory_budget whose out-of-core plan has a super-panel of exactly ``w_tiles`` tiles.

    The planner takes W = floor(DISK_WORKING_FRACTION (budget - fixed) / (n s + tile s) / tile) tiles; half a
    tile of slack keeps the floor on w_tiles.
    """
    dt = np.dtype(dtype)
    fixed = sum(_disk_parts(n, d, k, dt, tile, 0).values())
    per_col = (n + tile) * dt.itemsize
    return int(fixed + (w_tiles * tile + tile // 2) * per_col / _planner.DISK_WORKING_FRACTION)


def _disk_opts(tmp, dtype="float32", w_tiles=2, **kw):
    return SolveOptions(dtype=dtype, tile=TILE, storage="disk", scratch_dir=str(tmp),
                        memory_budget=_budget(N, D, K_TARGETS, dtype, TILE, w_tiles), **kw)


def _factor_files(directory):
    return sorted(p for p in os.listdir(directory) if p.startswith("kernelgen-factor-"))


def _dense_lower(P: DiskPanels) -> np.ndarray:
    L = np.zeros((P.n, P.n), dtype=P.dtype)
    for i in range(P.n_tiles):
        L[P.bounds[i]:P.bounds[i + 1], :P.bounds[i + 1]] = P.read(i, 0, P.bounds[i + 1])
    return np.tril(L)


Problem = namedtuple("Problem", "X Y Xt K")


@pytest.fixture(scope="module")
def prob():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D))
    Y = rng.standard_normal((N, K_TARGETS))
    Xt = rng.standard_normal((60, D))
    K = kernel_matrix(X, kernel=Gaussian(bandwidth=BANDWIDTH))  # the float64 oracle (26 MB)
    return Problem(X, Y, Xt, K)


def _rel_residual(K, alpha, Y):
    return np.linalg.norm(Y - K @ alpha) / np.linalg.norm(Y)


# ============================================================================ 1. the factor itself
def _spd(n, seed, ridge):
    """A dense SPD matrix: Gaussian kernel of 3-D points (bandwidth 1) plus ``ridge`` I."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    sq = np.sum(X * X, axis=1)
    A = np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0.0)
    np.exp(-0.5 * A, out=A)
    A[np.diag_indices(n)] = 1.0 + ridge
    return A


def _fill_from(A):
    def fill(r0, r1, c0, c1, out):
        out[...] = A[r0:r1, c0:c1]
    return fill


@pytest.mark.parametrize("n, tile, widths", [(1537, 256, (1, 3, 7)), (2999, 384, (3,))])
def test_factor_equals_in_ram_tiled_factor_float64(tmp_path, n, tile, widths):
    A = _spd(n, seed=n, ridge=1e-3)
    ref = LowerPanels.from_dense(A, tile, np.float64)
    tiled_cholesky(ref)
    Lref = ref.to_dense(symmetric=False)
    norm_L = np.sqrt(np.max(np.sum(np.abs(A), axis=1)))  # >= ||L||_2 = ||A||_2^(1/2) (||A||_2 <= ||A||_inf)
    if n < 2000:  # an independent oracle as well: LAPACK's own (differently blocked) Cholesky; the worst-case
        # regrouping bound 4 n eps ||L||_2 (3e-11; measured 2e-13)
        np.testing.assert_allclose(Lref, np.linalg.cholesky(A), rtol=0, atol=4 * n * EPS64 * norm_L)
    T = -(-n // tile)
    for w in widths:
        path = str(tmp_path / f"f{w}")
        P, stats = out_of_core_cholesky(path, n, tile, w * tile, np.float64, _fill_from(A), fingerprint={"w": w})
        try:
            assert stats["width"] == w * tile and stats["superpanels"] == -(-T // w)
            L = _dense_lower(P)
            # Both compute L_ij = (A_ij - sum_k L_ik L_jk) / L_jj from the same tile-wide GEMM terms, only grouped
            # differently (super-panels vs tiles); each sum's rounding is <= gamma_n (|L||L^T|)_ij (Higham, ASNA
            # 2nd ed., Thm 10.3), and with independent roundings it grows as sqrt(n) u rather than n u (Higham &
            # Mary, SIAM J. Sci. Comput. 41(5), 2019); the ridge keeps every pivot >= sqrt(1e-3). Tolerance
            # 4 sqrt(n) eps ||L||_2 (8e-13 at n = 1537, 1.6e-12 at 2999); measured <= 4e-14 (0 for one super-panel).
            np.testing.assert_allclose(L, Lref, rtol=0, atol=4 * np.sqrt(n) * EPS64 * norm_L)
            # closed forms of the I/O: the factor is written once; the reads are sum_J (n - c0_J) c0_J entries
            assert stats["bytes_written"] == P.nbytes == DiskPanels.nbytes_for(n, tile, np.float64)
            assert stats["bytes_read"] == disk_read_bytes(n, tile, w * tile, np.float64)
            assert (stats["bytes_read"] == 0) == (w >= T)
            meta = json.loads(Path(path + ".json").read_text())
            assert meta["done_tiles"] == T
            assert [s[:2] for s in meta["segments"]] == [[J, min(T, J + w)] for J in range(0, T, w)]
        finally:
            P.close()


def test_factor_equals_in_ram_tiled_factor_float32(tmp_path):
    n, tile = 1537, 256
    A = _spd(n, seed=7, ridge=1e-1)  # a ridge of 0.1: cond_2 = 3.7e3, comfortably positive definite in float32
    ref = LowerPanels.from_dense(A, tile, np.float32)
    tiled_cholesky(ref)
    Lref = ref.to_dense(symmetric=False)
    P, stats = out_of_core_cholesky(str(tmp_path / "f32"), n, tile, 2 * tile, np.float32,
                                    _fill_from(A.astype(np.float32)), fingerprint={})
    try:
        assert P.dtype == np.float32 and stats["superpanels"] == 4
        L = _dense_lower(P)
        # the float32 version of the float64 argument above: same recurrences, regrouped sums,
        # 4 sqrt(n) u32 ||L||_2 (2.2e-4 here; measured 2.7e-6)
        norm_L = np.sqrt(np.max(np.sum(np.abs(A), axis=1)))  # >= ||L||_2, as above
        np.testing.assert_allclose(L, Lref, rtol=0, atol=4 * np.sqrt(n) * EPS32 * norm_L)
    finally:
        P.close()


def test_disk_factor_solves_stream_the_file_in_chunks(tmp_path, monkeypatch):
    # a 1 MiB read block = 512 columns of a 256-row float64 panel: the solves read most panels in several chunks
    monkeypatch.setattr(_disk, "_SOLVE_CHUNK", 1 << 20)
    n, tile = 1537, 256
    A = _spd(n, seed=3, ridge=1e-3)
    P, stats = out_of_core_cholesky(str(tmp_path / "f"), n, tile, 3 * tile, np.float64, _fill_from(A), fingerprint={})
    F = DiskCholeskyFactor(P, stats=stats)
    B = np.random.default_rng(4).standard_normal((n, 3))
    X = F.solve(B)
    assert X.dtype == np.float64 and F.stats["solves"] == 1
    assert F.stats["solve_bytes_read"] == 2 * P.nbytes  # every panel read once forward, once backward
    # backward stability of the Cholesky solve (Higham, ASNA 2nd ed., Thm 10.4): the residual is
    # <= gamma_{3n+1} || |L||L^T| || ||x||; with ||A||_F for the norm, 3 n eps (1e-12) above the measured ~1e-16
    assert np.linalg.norm(A @ X - B) <= 3 * n * EPS64 * np.linalg.norm(A) * np.linalg.norm(X)
    L = _dense_lower(P)
    for trans, M in ((False, L), (True, L.T)):
        Z = F.solve_triangular(B, trans=trans)
        # a triangular solve is backward stable row by row (Higham Thm 8.5): |b - M z| <= gamma_n |M||z|
        assert np.all(np.abs(M @ Z - B) <= 2 * n * EPS64 * (np.abs(M) @ np.abs(Z)) + 1e-300)
    assert F.stats["solves"] == 3 and F.stats["solve_bytes_read"] == 4 * P.nbytes
    np.testing.assert_array_equal(F.diagonal(), np.diag(L))
    with pytest.raises(ShapeMismatchError):
        F.solve(B[:-1])
    F.close()
    assert F.closed and os.listdir(tmp_path) == []
    with pytest.raises(InvalidInputError, match="closed"):
        F.solve(B)


# ============================================================================ 2. the certified solve, disk vs memory
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_disk_and_memory_give_the_same_certified_solution(tmp_path, prob, dtype):
    kern = Gaussian(bandwidth=BANDWIDTH)
    mem = kernel_interpolate(prob.X, prob.Y, kernel=kern, options=SolveOptions(dtype=dtype, tile=TILE,
                                                                               storage="memory"))
    disk = kernel_interpolate(prob.X, prob.Y, kernel=kern, options=_disk_opts(tmp_path, dtype, w_tiles=2))
    assert mem.plan.storage == "memory" and disk.plan.storage == "disk"
    assert disk.plan.working_width == 2 * TILE and disk.factor_info["stats"]["superpanels"] == N_TILES // 2
    assert disk.factor_info["storage"] == "disk" and disk.factor_info["dtype"] == dtype
    for fit in (mem, disk):
        assert fit.relative_residual <= TOL
        # an independent oracle of the certificate: the dense float64 K (kernel_matrix) times alpha; the two
        # products differ by summation order only (~eps ||K|| ||alpha|| / ||Y|| ~ 1e-14 here): 1% of tol covers it
        assert _rel_residual(prob.K, fit.alpha, prob.Y) <= 1.01 * TOL
    # closed form: K (alpha_disk - alpha_mem) = R_mem - R_disk, so ||K d_alpha||_F <= (rho_mem + rho_disk) ||Y||_F;
    # the margin (+ 1e-13) covers the float64 rounding of the product itself (eps * ||K|| ||alpha||)
    diff = np.linalg.norm(prob.K @ (disk.alpha - mem.alpha)) / np.linalg.norm(prob.Y)
    assert diff <= disk.relative_residual + mem.relative_residual + 1e-13
    # coefficients: ||d_alpha|| <= ||K^-1|| ||K d_alpha||, so relative to ||alpha|| >= ||Y|| / ||K||: cond_2(K) = 2.0e3
    # times the two residuals (<= 2e-10) = 4e-7 <= 1e-6
    assert np.linalg.norm(disk.alpha - mem.alpha) <= 1e-6 * np.linalg.norm(mem.alpha)
    # predictions on fresh points: k(x, X) d_alpha = k(x, X) K^-1 (R_mem - R_disk), the interpolant of the residual
    # difference; the crude bound ||k(x, X)|| ||K^-1|| ||dR|| is ~1e-6 relative, but dR lies mostly along K's large
    # eigenvalues (CG's error is): measured 8e-11 (float32), 0 (float64); 1e-8 relative keeps a 100x margin
    p_mem, p_disk = mem.predict(prob.Xt), disk.predict(prob.Xt)
    assert np.max(np.abs(p_disk - p_mem)) <= 1e-8 * np.max(np.abs(p_mem))
    assert _factor_files(tmp_path) == []  # keep_factor=False: the scratch file went with the fit's construction


# ============================================================================ 3. reuse of the file: solve, logdet
def test_solve_reuses_the_file_and_logdet_matches_in_ram(tmp_path, prob):
    kern = Gaussian(bandwidth=BANDWIDTH)
    fit = kernel_interpolate(prob.X, prob.Y, kernel=kern, options=_disk_opts(tmp_path, "float64", 3,
                                                                           keep_factor=True))
    files = _factor_files(tmp_path)
    assert len(files) == 2 and files[0].endswith(".float64") and files[1] == files[0] + ".json"
    inode = os.stat(tmp_path / files[0]).st_ino
    solves0 = fit.factor.stats["solves"]
    assert solves0 >= 1 and fit.factor_info["stats"]["solves"] == solves0
    read0 = fit.factor.stats["solve_bytes_read"]
    Y_new = np.random.default_rng(5).standard_normal((N, 2))
    fit2 = fit.solve(Y_new)
    assert fit2.relative_residual <= TOL and _rel_residual(prob.K, fit2.alpha, Y_new) <= 1.01 * TOL
    assert fit2.factor is fit.factor and fit2.plan.storage == "disk"
    assert fit2.factor_info["stats"]["solves"] > solves0  # the same file streamed again, nothing refactored
    # each solve streams the file exactly twice (forward, then backward)
    per_solve = 2 * fit.factor.panels.nbytes
    assert fit.factor.stats["solve_bytes_read"] - read0 == per_solve * (fit2.factor_info["stats"]["solves"] - solves0)
    assert fit2.factor_info["stats"]["bytes_written"] == fit.factor_info["stats"]["bytes_written"]
    assert _factor_files(tmp_path) == files and os.stat(tmp_path / files[0]).st_ino == inode

    # log det from the file's diagonal vs the in-RAM float64 tiled factor of the same K: the same recurrences
    # (test 1: entries agree within ~1e-14), so |d sum 2 log L_ii| <= 2 n 1e-14 / min L_ii (>= sqrt(lambda_min)
    # = 0.14) = 3e-10 absolute, 3e-13 relative to |log det K| = 979.6: 1e-10 relative
    mem = kernel_interpolate(prob.X, prob.Y, kernel=kern, options=SolveOptions(dtype="float64", tile=TILE,
                                                                               storage="memory", keep_factor=True))
    ld_disk, ld_mem = fit.logdet(), mem.logdet()
    assert ld_disk.dtype == "float64"
    assert abs(ld_disk.value - ld_mem.value) <= 1e-10 * abs(ld_mem.value)
    # and vs LAPACK's LU of the dense K (independent): both are backward stable, |d log det| = |tr(K^-1 dK)| <=
    # n ||K^-1|| ||dK|| with ||dK|| <= n eps ||K||: n^2 eps cond = 1.4e-6 absolute, 1.5e-9 relative: 1e-8 relative
    sign, ld_lu = np.linalg.slogdet(prob.K)
    assert sign == 1 and abs(ld_disk.value - ld_lu) <= 1e-8 * abs(ld_lu)
    np.testing.assert_allclose(fit.factor.diagonal(), mem.factor.panels.diagonal(), rtol=1e-12)
    fit.factor.close()
    assert _factor_files(tmp_path) == []


# ============================================================================ 4. crash and resume
_KILL_CODE = """
import os, signal, sys
import numpy as np
import kernelgen
import kernelgen.factors._disk as disk
from kernelgen import SolveOptions
from kernelgen.kernels import Gaussian

calls = [0]
original = disk._write_json_atomic

def write_then_die(path, obj):
    calls[0] += 1
    if calls[0] == 3:  # 1: the empty record, 2: super-panel 0 recorded, 3: super-panel 1 -> die before recording it
        os.kill(os.getpid(), signal.SIGKILL)
    original(path, obj)

disk._write_json_atomic = write_then_die
d = sys.argv[1]
X, Y = np.load(os.path.join(d, "X.npy")), np.load(os.path.join(d, "Y.npy"))
kernelgen.kernel_interpolate(X, Y, kernel=Gaussian(bandwidth={bw}), options=SolveOptions(**{opts}))
print("not killed")
"""


def _child_env() -> dict:
    """The subprocess's environment: as many BLAS threads as this test process uses (conftest), so the killed run's
    super-panels are computed by the same BLAS calls as the in-process runs they are compared with."""
    threads = os.environ.get("KERNELGEN_TEST_BLAS_THREADS", "1")
    return dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)


def _opts_kwargs(o: SolveOptions) -> dict:
    return {k: getattr(o, k) for k in ("dtype", "tile", "storage", "scratch_dir", "memory_budget")}


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, prob):
    """A kernel_interpolate(storage='disk') run SIGKILLed after its first super-panel was recorded (files kept)."""
    d = tmp_path_factory.mktemp("killed")
    np.save(d / "X.npy", prob.X)
    np.save(d / "Y.npy", prob.Y)
    opts = _disk_opts(d, "float32", w_tiles=2)
    code = textwrap.dedent(_KILL_CODE).replace("{bw}", repr(BANDWIDTH)).replace("{opts}", repr(_opts_kwargs(opts)))
    r = subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True, text=True, timeout=300,
                       env=_child_env(), check=False)
    return d, r


def _copy_killed(killed_dir, dest):
    names = _factor_files(killed_dir)
    for name in names:
        shutil.copy2(killed_dir / name, dest / name)
    data = [n for n in names if not n.endswith(".json")]
    assert len(data) == 1
    return dest / data[0], dest / (data[0] + ".json")


def test_killed_run_leaves_a_resumable_file(killed_run):
    d, r = killed_run
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
    assert "not killed" not in r.stdout
    names = _factor_files(d)
    assert len(names) == 2 and names[0].startswith("kernelgen-factor-") and names[0].endswith(".float32")
    assert names[1] == names[0] + ".json"
    assert not (d / (names[1] + ".tmp")).exists()  # killed before the third record was even begun
    meta = json.loads((d / names[1]).read_text())
    assert meta["done_tiles"] == 2 and [s[:2] for s in meta["segments"]] == [[0, 2]]
    # the file was reserved whole at the start (posix_fallocate): its size is the factor's
    assert os.path.getsize(d / names[0]) == DiskPanels.nbytes_for(N, TILE, np.float32)


def test_resume_after_kill_gives_the_uninterrupted_result(tmp_path, killed_run, prob):
    kern = Gaussian(bandwidth=BANDWIDTH)
    ref_dir = tmp_path / "ref"
    ref = kernel_interpolate(prob.X, prob.Y, kernel=kern, options=_disk_opts(ref_dir, "float32", 2, keep_factor=True))
    assert ref.factor_info["stats"]["resumed_superpanels"] == 0
    L_ref = _dense_lower(ref.factor.panels)

    results = {}
    for w_tiles in (2, 3):  # the same width, then another: the width is not part of the file's identity
        d = tmp_path / f"resume{w_tiles}"
        d.mkdir()
        _copy_killed(killed_run[0], d)
        fit = kernel_interpolate(prob.X, prob.Y, kernel=kern, options=_disk_opts(d, "float32", w_tiles,
                                                                                keep_factor=True))
        assert fit.plan.working_width == w_tiles * TILE
        st = fit.factor_info["stats"]
        assert st["resumed_superpanels"] == 1  # super-panel 0 (CRC-checked) reused, not recomputed
        # only the columns after the recorded super-panel were written: the file less panel columns [0, 2 tiles)
        P = fit.factor.panels
        first = sum(P.rows(i) * min(P.bounds[2], P.bounds[i + 1]) for i in range(P.n_tiles)) * 4
        assert st["bytes_written"] == P.nbytes - first
        assert fit.relative_residual <= TOL and _rel_residual(prob.K, fit.alpha, prob.Y) <= 1.01 * TOL
        # the resumed factor: the recorded super-panel read back verbatim, the rest the same recurrences (test 1);
        # float32 regrouping only: 4 sqrt(n) u32 ||L||_2 as in test 1 (measured: bitwise equal)
        L = _dense_lower(P)
        assert np.max(np.abs(L - L_ref)) <= 4 * np.sqrt(N) * EPS32 * np.sqrt(np.max(np.sum(prob.K, axis=1)))
        results[w_tiles] = fit.alpha
        fit.factor.close()
        assert _factor_files(d) == []  # done: the scratch files are gone
    # same width: the same bytes in the same order -> the same alpha bit for bit (deterministic BLAS calls on
    # identical inputs); another width: within the closed form ||K d_alpha|| <= (rho_1 + rho_2) ||Y||
    np.testing.assert_array_equal(results[2], ref.alpha)
    diff = np.linalg.norm(prob.K @ (results[3] - ref.alpha)) / np.linalg.norm(prob.Y)
    assert diff <= 2 * TOL + 1e-13
    ref.factor.close()


# ============================================================================ 5. refusals by name, nothing deleted
def _refused(d, prob, match):
    with pytest.raises(DataIntegrityError, match=match) as info:
        kernel_interpolate(prob.X, prob.Y, kernel=Gaussian(bandwidth=BANDWIDTH), options=_disk_opts(d, "float32", 2))
    return info.value


def test_truncated_scratch_file_is_refused_and_kept(tmp_path, killed_run, prob):
    data, meta = _copy_killed(killed_run[0], tmp_path)
    size = os.path.getsize(data)
    os.truncate(data, size // 3)
    err = _refused(tmp_path, prob, "truncated")
    assert str(data) in str(err) and "delete" in str(err)  # names the file; the user decides
    assert os.path.getsize(data) == size // 3 and meta.exists()  # nothing deleted, nothing rewritten


def test_foreign_fingerprint_is_refused_and_kept(tmp_path, killed_run, prob):
    data, meta = _copy_killed(killed_run[0], tmp_path)
    m = json.loads(meta.read_text())
    m["fingerprint"] = "0" * 64
    meta.write_text(json.dumps(m))
    before = data.read_bytes()
    err = _refused(tmp_path, prob, "another problem")
    assert str(data) in str(err)
    assert data.read_bytes() == before and json.loads(meta.read_text())["fingerprint"] == "0" * 64


def test_file_of_another_problem_under_this_name_is_refused(tmp_path, killed_run, prob):
    # the killed run's files copied under the name that a problem with other data (one point moved) would use
    X2 = prob.X.copy()
    X2[0, 0] += 1.0
    plan = namedtuple("P", "tile factor_dtype")(TILE, np.dtype(np.float32))
    fp = _out_of_core._problem_fingerprint(X2, Gaussian(bandwidth=BANDWIDTH), 0.0, plan)
    name = "kernelgen-factor-" + hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:20] + ".float32"
    src_data, src_meta = _copy_killed(killed_run[0], tmp_path)
    assert src_data.name != name
    src_data.rename(tmp_path / name)
    src_meta.rename(tmp_path / (name + ".json"))
    with pytest.raises(DataIntegrityError, match="another problem"):
        kernel_interpolate(X2, prob.Y, kernel=Gaussian(bandwidth=BANDWIDTH), options=_disk_opts(tmp_path, "float32", 2))
    assert _factor_files(tmp_path) == [name, name + ".json"]


def test_corrupt_finished_superpanel_is_refused_by_crc(tmp_path, killed_run, prob):
    data, meta = _copy_killed(killed_run[0], tmp_path)
    # byte 0 of the file: L[0, 0] in panel 0, column 0 -- inside the recorded super-panel 0 (columns [0, 512))
    with open(data, "r+b") as f:
        b = f.read(1)
        f.seek(0)
        f.write(bytes([b[0] ^ 0xFF]))
    corrupted = data.read_bytes()
    err = _refused(tmp_path, prob, "CRC")
    assert "super-panel 0" in str(err) and "corrupt" in str(err)
    assert data.read_bytes() == corrupted and meta.exists()


def test_corruption_in_an_unrecorded_superpanel_is_overwritten(tmp_path, killed_run, prob):
    # super-panel 1 (columns [512, 1024)) was written but never recorded: resuming recomputes it over the bad bytes
    data, _ = _copy_killed(killed_run[0], tmp_path)
    P = DiskPanels(str(data), N, TILE, np.float32, create=False)
    off, _ = P._span(3, 2 * TILE, 2 * TILE + 1)
    P.close()
    with open(data, "r+b") as f:
        f.seek(off)
        f.write(b"\xff\xff\xff\x7f")  # a NaN in L[768, 512]
    fit = kernel_interpolate(prob.X, prob.Y, kernel=Gaussian(bandwidth=BANDWIDTH), options=_disk_opts(tmp_path))
    assert fit.factor_info["stats"]["resumed_superpanels"] == 1 and fit.relative_residual <= TOL


def test_scratch_file_without_its_record_is_refused_and_kept(tmp_path, killed_run, prob):
    data, meta = _copy_killed(killed_run[0], tmp_path)
    meta.unlink()
    before = data.read_bytes()
    err = _refused(tmp_path, prob, "without its progress record")
    assert str(data) in str(err)
    assert data.read_bytes() == before and _factor_files(tmp_path) == [data.name]


# ======================================================================= 6. files removed: finish, Ctrl-C, close, gc
def test_files_removed_after_a_normal_finish(tmp_path, prob):
    fit = kernel_interpolate(prob.X, prob.Y, kernel=Gaussian(bandwidth=BANDWIDTH), options=_disk_opts(tmp_path))
    assert fit.factor is None and fit.factor_info["storage"] == "disk"
    assert fit.factor_info["stats"]["bytes_written"] == DiskPanels.nbytes_for(N, TILE, np.float32)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_files_removed_after_ctrl_c_or_error_mid_factor(tmp_path, prob, monkeypatch, exc):
    original = _out_of_core.fill_columns
    seen = {"calls": 0, "files": None}
    # super-panel 0 fills row panels 0..7 (8 calls); call 11 is inside super-panel 1, after super-panel 0 was recorded
    stop_at = N_TILES + 3

    def fill(src, r0, r1, c0, c1, out):
        seen["calls"] += 1
        if seen["calls"] == stop_at:
            seen["files"] = _factor_files(tmp_path)
            seen["done"] = json.loads((tmp_path / seen["files"][1]).read_text())["done_tiles"]
            raise exc("stop")
        return original(src, r0, r1, c0, c1, out)

    monkeypatch.setattr(_out_of_core, "fill_columns", fill)
    with pytest.raises(exc):
        kernel_interpolate(prob.X, prob.Y, kernel=Gaussian(bandwidth=BANDWIDTH), options=_disk_opts(tmp_path))
    # the file and its record existed mid-factor, super-panel 0 (2 tiles) recorded
    assert seen["calls"] == stop_at and len(seen["files"]) == 2 and seen["done"] == 2
    assert os.listdir(tmp_path) == []  # neither the file, its .json nor a .json.tmp is left


def test_kept_factor_file_lives_until_close_or_collection(tmp_path, prob):
    kern = Gaussian(bandwidth=BANDWIDTH)
    fit = kernel_interpolate(prob.X, prob.Y, kernel=kern, options=_disk_opts(tmp_path, keep_factor=True))
    files = _factor_files(tmp_path)
    assert len(files) == 2 and Path(fit.factor.path).name == files[0]
    fit.factor.close()
    assert _factor_files(tmp_path) == [] and fit.factor.closed
    with pytest.raises(InvalidInputError, match="closed"):
        fit.solve(prob.Y[:, 0])
    fit = kernel_interpolate(prob.X, prob.Y, kernel=kern, options=_disk_opts(tmp_path, keep_factor=True))
    fit2 = fit.solve(prob.Y[:, :1])  # shares the factor: the file lives while either fit does
    assert len(_factor_files(tmp_path)) == 2
    del fit
    gc.collect()
    assert len(_factor_files(tmp_path)) == 2
    del fit2
    gc.collect()
    assert _factor_files(tmp_path) == []


# ============================================================================ 7. pickling and saving
def test_disk_factor_is_not_picklable_but_the_fit_saves_without_it(tmp_path, prob):
    scratch = tmp_path / "scratch"
    fit = kernel_interpolate(prob.X, prob.Y, kernel=Gaussian(bandwidth=BANDWIDTH),
                             options=_disk_opts(scratch, keep_factor=True))
    with pytest.raises(NotPicklableError, match="scratch file"):
        pickle.dumps(fit)
    with pytest.raises(NotPicklableError):
        pickle.dumps(fit.factor)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(NotPicklableError, match="include_factor"):
        fit.save(out / "fit.npz", include_factor=True)
    assert os.listdir(out) == []  # refused before anything was written (no partial or temporary file)
    with pytest.raises(NotPicklableError):
        fit.factor.to_arrays()
    fit.save(out / "fit.npz")
    back = kernelgen.load_interpolant(out / "fit.npz", prob.X)
    assert back.factor is None and back.relative_residual == fit.relative_residual
    np.testing.assert_array_equal(back.alpha, fit.alpha)
    np.testing.assert_array_equal(back.predict(prob.Xt), fit.predict(prob.Xt))  # same alpha, same float64 products
    fit.factor.close()
    # a fit without its factor (keep_factor=False) pickles like any other
    plain = kernel_interpolate(prob.X, prob.Y, kernel=Gaussian(bandwidth=BANDWIDTH), options=_disk_opts(scratch))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(plain)).alpha, plain.alpha)
    assert _factor_files(scratch) == []


# ============================================================================ 8. the planner
GIB24 = 23.5e9


@pytest.fixture
def plenty_of_disk(monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_planner.shutil, "disk_usage", lambda p: usage(10**13, 0, 10**13))
    monkeypatch.setattr(_planner, "available_memory", lambda: GIB24)


def test_planner_memory_at_60000_disk_at_120000(tmp_path, plenty_of_disk):
    scratch = tmp_path / "not" / "created"
    opts = SolveOptions(scratch_dir=str(scratch))
    p60 = plan_kernel_solve(60000, 784, 10, options=opts)
    assert p60.storage == "memory" and p60.working_width == 0 and p60.places["factor"] == "host"
    assert np.dtype(p60.factor_dtype) == np.float32
    p120 = plan_kernel_solve(120000, 784, 10, options=opts)
    assert p120.storage == "disk" and p120.places == {"factor": "disk"} and p120.residual == "on-the-fly"
    assert p120.working_width % p120.tile == 0 and p120.tile <= p120.working_width <= 16384
    assert p120.scratch_dir == str(scratch) and p120.disk_free == 10**13
    # the scratch file: n^2/2 float32 entries (the lower panels) + a page
    assert p120.disk_bytes == LowerPanels.nbytes_for(120000, p120.tile, np.float32) + 4096
    assert 0.5 * 120000**2 * 4 <= p120.disk_bytes <= 0.52 * 120000**2 * 4
    assert p120.bytes_needed <= p120.bytes_available == int(_planner.DEFAULT_MEMORY_FRACTION * GIB24)
    assert "disk" in p120.describe() and p120.to_dict()["storage"] == "disk"
    assert not scratch.exists() and not scratch.parent.exists()  # planning creates nothing


def test_planner_storage_memory_at_120000_suggests_disk(tmp_path, plenty_of_disk):
    with pytest.raises(MemoryBudgetError) as info:
        plan_kernel_solve(120000, 784, 10, options=SolveOptions(storage="memory", scratch_dir=str(tmp_path / "s")))
    msg = str(info.value)
    assert "storage=" in msg and "'disk'" in msg
    assert not (tmp_path / "s").exists()


def test_planner_refuses_when_the_disk_is_too_small(tmp_path, monkeypatch):
    monkeypatch.setattr(_planner, "available_memory", lambda: GIB24)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_planner.shutil, "disk_usage", lambda p: usage(10**11, 10**11 - 5 * 10**9, 5 * 10**9))
    scratch = tmp_path / "scratch"
    for storage in ("disk", "auto"):
        with pytest.raises(MemoryBudgetError) as info:
            plan_kernel_solve(120000, 784, 10, options=SolveOptions(storage=storage, scratch_dir=str(scratch)))
        msg = str(info.value)
        need = LowerPanels.nbytes_for(120000, 2048, np.float32) + 4096
        assert f"{need / 1e9:.2f} GB needed" in msg and "5.00 GB free" in msg and str(scratch) in msg
        assert "Nothing was written" in msg
        assert not scratch.exists()
    # and through kernel_interpolate: refused before the scratch directory is created
    rng = np.random.default_rng(1)
    monkeypatch.setattr(_planner.shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(MemoryBudgetError, match="free"):
        kernel_interpolate(rng.standard_normal((300, 3)), rng.standard_normal(300), kernel=Gaussian(bandwidth=1.0),
                           options=SolveOptions(storage="disk", scratch_dir=str(scratch)))
    assert not scratch.exists()


def test_planner_refusals_and_scratch_dir_from_environment(tmp_path, monkeypatch, plenty_of_disk):
    with pytest.raises(UnsupportedOptionError, match="precomputed"):
        plan_kernel_solve(1000, 0, 1, precomputed=True, options=SolveOptions(storage="disk",
                                                                             scratch_dir=str(tmp_path)))
    K = kernel_matrix(np.random.default_rng(2).standard_normal((50, 2)), kernel=Gaussian(bandwidth=1.0))
    with pytest.raises(UnsupportedOptionError, match="storage='disk'"):
        kernel_interpolate(K, np.ones(50), kernel="precomputed", options=SolveOptions(storage="disk",
                                                                                      scratch_dir=str(tmp_path)))
    with pytest.raises(InvalidInputError, match="storage"):
        SolveOptions(storage="tape")
    with pytest.raises(InvalidInputError, match="scratch_dir"):
        SolveOptions(scratch_dir="")
    env_dir = tmp_path / "from-env"
    monkeypatch.setenv("KERNELGEN_SCRATCH", str(env_dir))
    assert _planner.scratch_directory(SolveOptions()) == str(env_dir)
    p = plan_kernel_solve(3000, 4, 1, options=SolveOptions(storage="disk"))
    assert p.storage == "disk" and p.scratch_dir == str(env_dir)
    # an explicit scratch_dir wins over the environment
    assert plan_kernel_solve(3000, 4, 1, options=SolveOptions(storage="disk", scratch_dir=str(tmp_path))
                             ).scratch_dir == str(tmp_path)
    assert not env_dir.exists()


# ============================================================================ 9. diagonal-shift fallback
def _near_duplicates(seed=0, n0=700, m=20, delta=1e-4):
    """Gaussian s = 1 on 700 points in 8-D plus 20 near-copies (moved by 1e-4) with the same targets.

    In float64 K is positive definite (smallest eigenvalue 2.6e-9 ~ delta^2 / 2, Cholesky succeeds); in float32 the
    pair's entry k(x, x') = 1 - 5e-9 rounds to 1, so the Schur complement of a copy is pure rounding: the float32
    factor breaks down. Equal targets keep alpha moderate (Y has no component along the near-null pairs).
    """
    rng = np.random.default_rng(seed)
    X0 = rng.standard_normal((n0, 8))
    Y0 = rng.standard_normal((n0, 2))
    idx = rng.choice(n0, m, replace=False)
    u = rng.standard_normal((m, 8))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return np.vstack([X0, X0[idx] + delta * u]), np.vstack([Y0, Y0[idx]])


@pytest.fixture(scope="module")
def shifted_fit(tmp_path_factory):
    """A float32 out-of-core fit of the near-duplicates problem (its factor kept; closed at teardown)."""
    d = tmp_path_factory.mktemp("shifted")
    X, Y = _near_duplicates()
    n = X.shape[0]
    opts = SolveOptions(dtype="float32", tile=TILE, storage="disk", scratch_dir=str(d),
                        memory_budget=_budget(n, 8, 2, "float32", TILE, 1), keep_factor=True)
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("kernelgen")
    logger.addHandler(handler)
    try:
        fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), options=opts)
    finally:
        logger.removeHandler(handler)
    yield fit, X, Y, d, records
    fit.factor.close()


def test_float32_breakdown_is_shifted_and_the_unshifted_system_certified(shifted_fit):
    fit, X, Y, d, records = shifted_fit
    K = kernel_matrix(X, kernel=Gaussian(bandwidth=1.0))
    np.linalg.cholesky(K)  # the oracle: positive definite in float64
    assert fit.plan.working_width == TILE and fit.factor_info["stats"]["superpanels"] == 3
    shift = fit.factor_info["diagonal_shift"]
    assert shift > 0 and shift == pytest.approx(_out_of_core.DISK_SHIFTS[0] * 1.0)  # mean diag K = 1
    assert fit.factor.diagonal_shift == shift
    assert any("diagonal shift" in note and "unshifted" in note for note in fit.notes)
    assert any("broke down" in r.getMessage() for r in records)
    # certified on the unshifted K: the fit's own certificate and the dense float64 oracle
    assert fit.relative_residual <= TOL
    assert _rel_residual(K, fit.alpha, Y) <= 1.01 * TOL
    assert len(_factor_files(d)) == 2  # kept: closed at the fixture's teardown


def test_logdet_of_a_shifted_factor_says_it_is_not_logdet_k(shifted_fit):
    fit = shifted_fit[0]
    ld = fit.logdet()
    assert ld.error_bound is None and "NOT log det K" in ld.how
    # the value is 2 sum log diag(L) of the factor of K + shift I
    assert ld.value == pytest.approx(2 * np.sum(np.log(fit.factor.diagonal().astype(np.float64))))


def test_float64_breakdown_is_not_shifted(tmp_path, monkeypatch):
    # a float64 factor on disk has no shift fallback: the breakdown is reported (and the file removed)
    def fail(*a, **k):
        raise NotPositiveDefiniteError("forced", index=3)

    monkeypatch.setattr(_out_of_core, "out_of_core_cholesky", fail)
    X, Y = _near_duplicates(n0=200, m=2)
    with pytest.raises(NotPositiveDefiniteError):
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), solver="cholesky",
                           options=SolveOptions(dtype="float64", tile=TILE, storage="disk", scratch_dir=str(tmp_path)))
    assert _factor_files(tmp_path) == []


_KILL_SHIFTED = """
import os, signal, sys
import numpy as np
import kernelgen
import kernelgen.factors._disk as disk
import kernelgen.solvers._out_of_core as sb
from kernelgen import SolveOptions
from kernelgen.kernels import Gaussian

state = {"add": 0.0}
ooc, write = sb.out_of_core_cholesky, disk._write_json_atomic

def ooc_spy(*a, **k):
    state["add"] = k["diagonal_add"]
    return ooc(*a, **k)

def write_then_die(path, obj):
    if state["add"] > 0 and len(obj["segments"]) >= 2:  # the shifted refactor, 1 super-panel recorded
        os.kill(os.getpid(), signal.SIGKILL)
    write(path, obj)

sb.out_of_core_cholesky, disk._write_json_atomic = ooc_spy, write_then_die
d = sys.argv[1]
X, Y = np.load(os.path.join(d, "X.npy")), np.load(os.path.join(d, "Y.npy"))
kernelgen.kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), options=SolveOptions(**{opts}))
"""


def test_rerun_after_kill_during_shifted_refactor_resumes(tmp_path):
    X, Y = _near_duplicates()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    opts = SolveOptions(dtype="float32", tile=TILE, storage="disk", scratch_dir=str(tmp_path),
                        memory_budget=_budget(X.shape[0], 8, 2, "float32", TILE, 1))
    code = textwrap.dedent(_KILL_SHIFTED).replace("{opts}", repr(_opts_kwargs(opts)))
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300,
                       env=_child_env(), check=False)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert len(_factor_files(tmp_path)) == 2  # the shifted attempt's file and record were left
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), options=opts)  # the same solve, rerun
    assert fit.relative_residual <= TOL and fit.factor_info["diagonal_shift"] > 0
    assert fit.factor_info["stats"]["resumed_superpanels"] >= 1  # resumed the shifted attempt, not refactored
    assert not _factor_files(tmp_path)  # and removed it at the end


# ============================================================================ 10. scripts/mnist_kernel.py
@pytest.fixture(scope="module")
def mnist_script():
    path = ROOT / "scripts" / "mnist_kernel.py"
    spec = importlib.util.spec_from_file_location("_ooc_test_mnist_kernel", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def restore_loggers():
    names = ["kernelgen", "mnist_kernel"]
    before = {n: logging.getLogger(n).level for n in names}
    yield
    for n, lvl in before.items():
        logging.getLogger(n).setLevel(lvl)


def _shift_oracle(img, dr, dc):
    """np.roll by (dr, dc), then zero the rows / columns that wrapped around."""
    out = np.roll(img, (dr, dc), axis=(0, 1))
    if dr > 0:
        out[:dr, :] = 0
    elif dr < 0:
        out[dr:, :] = 0
    if dc > 0:
        out[:, :dc] = 0
    elif dc < 0:
        out[:, dc:] = 0
    return out


def test_shifted_copies_match_the_roll_oracle(mnist_script):
    assert mnist_script.SHIFTS == ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right
    rng = np.random.default_rng(3)
    X = rng.integers(1, 256, size=(64, 784)).astype(np.uint8)  # no zero pixel: every shifted-in zero is visible
    S, direction = mnist_script.shifted_copies(X, seed=11)
    assert S.shape == X.shape and S.dtype == X.dtype and direction.shape == (64,)
    assert set(direction.tolist()) == {0, 1, 2, 3}  # 64 draws: every direction occurs (P(miss) ~ 4 (3/4)^64)
    for x, s, k in zip(X, S, direction):
        dr, dc = mnist_script.SHIFTS[k]
        np.testing.assert_array_equal(s.reshape(28, 28), _shift_oracle(x.reshape(28, 28), dr, dc))
        assert np.count_nonzero(s == 0) == 28  # exactly one row or column of zeros shifted in
    # "up" moves the content up: the first row of the copy is the second of the image
    up = np.flatnonzero(direction == 0)[0]
    np.testing.assert_array_equal(S[up].reshape(28, 28)[0], X[up].reshape(28, 28)[1])
    # reproducible for a seed, the draw of numpy's default_rng(seed)
    S2, d2 = mnist_script.shifted_copies(X, seed=11)
    np.testing.assert_array_equal(S2, S)
    np.testing.assert_array_equal(d2, direction)
    np.testing.assert_array_equal(direction, np.random.default_rng(11).integers(0, 4, size=64))
    assert not np.array_equal(mnist_script.shifted_copies(X, seed=12)[1], direction)
    # float images too (the script shifts pixels/255 in float64)
    Sf, df = mnist_script.shifted_copies(X.astype(np.float64) / 255.0, seed=11)
    np.testing.assert_array_equal(df, direction)
    np.testing.assert_array_equal(Sf, S.astype(np.float64) / 255.0)


def test_mnist_script_augmented_smoke_on_disk(tmp_path, mnist_script, capsys, restore_loggers):
    scratch = tmp_path / "scratch"
    rc = mnist_script.main(["--smoke", "--augment-shifts", "1", "--storage", "disk", "--scratch-dir", str(scratch),
                            "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    m = json.loads(out.strip().splitlines()[-1])
    assert m["n_train"] == 2 * mnist_script.N_SMOKE_TRAIN and m["augment_shifts"] == 1
    assert m["factor_storage"] == "disk" and m["factor_info"]["storage"] == "disk"
    assert m["plan"]["storage"] == "disk" and m["plan"]["scratch_dir"] == str(scratch)
    assert m["relative_residual"] <= TOL and m["train_error"] == 0.0  # exact interpolation of one-hot labels
    assert m["preparation"]["augment"] == "one-pixel shifts" and m["preparation"]["shift_seed"] == 0
    assert m["provenance"]["seeds"]["shift_seed"] == 0
    assert _factor_files(scratch) == []  # the factor was not kept: its file is gone


def test_mnist_script_refuses_augment_with_save(tmp_path, mnist_script, capsys, restore_loggers):
    target = tmp_path / "x.npz"
    rc = mnist_script.main(["--smoke", "--augment-shifts", "1", "--save", str(target), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--save" in err and "--augment-shifts" in err and "UnsupportedOptionError" in err
    assert not target.exists() and os.listdir(tmp_path) == []


# ============================================================================ 11. review findings: storage errors,
# concurrent solves, malformed records, refusals of options that cannot hold
def _small(seed=3, n=300):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)), rng.standard_normal((n, 2))


def _small_opts(tmp, **kw):
    return SolveOptions(storage="disk", scratch_dir=str(tmp), tile=64, memory_budget=int(0.4e9), **kw)


def test_scratch_dir_that_cannot_hold_a_file_is_refused_before_anything_is_written(tmp_path):
    X, Y = _small()
    afile = tmp_path / "afile"
    afile.write_text("x")
    for bad in (afile, afile / "sub"):
        with pytest.raises(ScratchStorageError, match="scratch_dir"):
            kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), options=_small_opts(bad))
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_full_disk_at_reservation_is_a_named_error_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    X, Y = _small()
    with pytest.raises(ScratchStorageError, match="free disk space"):
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), options=_small_opts(tmp_path))
    assert not _factor_files(tmp_path)


def test_a_file_in_use_by_another_solve_is_not_shared(tmp_path, caplog):
    """Another holder of the problem's file (flock): this solve factors into its own file, same certified answer."""
    import fcntl

    X, Y = _small()
    opts = _small_opts(tmp_path, keep_factor=True)
    first = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), options=opts)
    path = first.factor.path
    with caplog.at_level(logging.WARNING, logger="kernelgen.factors._disk"):
        second = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), options=opts)
    assert second.factor.path != path and "in use by another solve" in caplog.text
    assert second.factor_info["stats"]["resumed_superpanels"] == 0
    # the same deterministic factor bytes: bitwise the same alpha
    np.testing.assert_array_equal(second.alpha, first.alpha)
    second.factor.close()
    assert os.path.exists(path)  # closing one fit's factor never removes another's file
    fd = os.open(path, os.O_RDWR)
    try:  # the first fit still holds its lock
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    first.factor.close()
    assert not _factor_files(tmp_path)


@pytest.mark.parametrize("record", [[1, 2], {"format": 1}, {"done_tiles": "x", "segments": []}])
def test_malformed_progress_record_is_refused_by_name(tmp_path, record):
    X, Y = _small()
    opts = _small_opts(tmp_path, keep_factor=True)
    fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), options=opts)
    path = fit.factor.path
    data = open(path, "rb").read()
    fit.factor.close()
    with open(path, "wb") as f:  # a left-over file whose record was damaged
        f.write(data)
    with open(path + ".json", "w") as f:
        json.dump(record, f)
    with pytest.raises(DataIntegrityError, match="progress record|another problem"):
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), options=opts)
    assert os.path.exists(path)  # refused, not deleted: the user decides


def test_storage_disk_where_it_cannot_hold_is_refused(tmp_path):
    X, Y = _small()
    opts = _small_opts(tmp_path)
    with pytest.raises(UnsupportedOptionError, match="min_norm"):
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), solver="min_norm", options=opts)
    with pytest.raises(UnsupportedOptionError, match="storage='disk'"):
        kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=1.0), backend="jax", options=opts)
    assert not os.listdir(tmp_path)


def test_refusal_names_ram_when_ram_is_the_cause(tmp_path):
    with pytest.raises(MemoryBudgetError) as ei:
        plan_kernel_solve(600, 5, 2, options=SolveOptions(storage="disk", scratch_dir=str(tmp_path),
                                                          memory_budget=180_000_000))
    msg = str(ei.value)
    assert "raise SolveOptions(memory_budget" in msg and "free disk space" not in msg
    assert not os.listdir(tmp_path)


def test_float64_logdet_refactors_out_of_core_when_the_plan_says_disk(tmp_path, monkeypatch):
    """fit.logdet(float64=True) follows the plan: a float64 factor that does not fit the budget goes to disk."""
    X, Y = _small(n=600)
    kern = Gaussian(bandwidth=1.0)
    fit = kernel_interpolate(X, Y, kernel=kern, options=_small_opts(tmp_path, dtype="float32", keep_factor=True))
    dtypes, real = [], _out_of_core.out_of_core_cholesky
    monkeypatch.setattr(_out_of_core, "out_of_core_cholesky",
                        lambda *a, **k: dtypes.append(np.dtype(a[4]).name) or real(*a, **k))
    ld = fit.logdet(float64=True)
    assert dtypes == ["float64"]  # the float64 refactor ran out of core
    assert ld.dtype == "float64" and ld.error_bound is None
    ref = kernelgen.factors.CholeskyFactor.factor(kernel_matrix(X, kernel=kern), dtype=np.float64).logdet().value
    # two float64 Cholesky factors of the same K (another summation order): log det agrees to ~n u cond per pivot
    # (cond_2(K) < 1e3 here), far below 1e-10 relative
    assert ld.value == pytest.approx(ref, rel=1e-10)
    fit.factor.close()
    assert not _factor_files(tmp_path)  # the float64 refactor's file was removed when dropped
