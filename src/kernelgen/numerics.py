"""One home for each numerical rule kernelgen applies.

Every module imports these instead of restating them:

- :data:`EXACT_TOL` -- the float64 relative residual that defines "exact" (1e-10).
- :data:`WORKING_MEMORY_BYTES` -- the working-memory budget of one block of temporaries.
- :data:`MEMORY_FRACTION` -- the share of the memory available now that one solve may use by default
  (the rest is the margin for the interpreter's growth and small temporaries).
- :data:`CALL_LIMITS` / :data:`DEFAULT_TILE` -- the largest single BLAS/LAPACK call issued per dtype
  (the OpenBLAS bundled with NumPy/SciPy segfaults on very large single calls in its threaded path:
  float64 ``cho_factor`` crashed from n = 16,384 on one project machine and ~23,000 on another, float32
  from ~33,000-40,000, a float64 25,000^2 GEMM too; see docs/numerics.md, "BLAS and LAPACK call
  limits"). ``tests/test_blas_limits.py`` runs each limit in a subprocess.
- :func:`unit_roundoff` -- u = eps / 2 of a dtype.
- :func:`check_symmetric` -- the one symmetry check, its tolerance following the precision of the
  matrix judged.
- :func:`spectral_cutoffs` -- the one PSD / rank rule for a symmetric spectrum, following the
  precision the matrix carries (a float32 matrix is judged with float32's roundoff).
- :func:`singular_value_cutoff` -- the rank rule for a rectangular matrix, decided on its
  singular values (never on its Gram matrix, whose condition number is squared).
"""

from __future__ import annotations

from dataclasses import dataclass

import mmap
import os

import numpy as np

from .errors import InvalidInputError, MemoryBudgetError, NonFiniteResultError

__all__ = [
    "CALL_LIMITS",
    "CallLimits",
    "DEFAULT_TILE",
    "EXACT_TOL",
    "MEMORY_FRACTION",
    "WORKING_MEMORY_BYTES",
    "available_memory",
    "empty_hugepages",
    "check_allocation",
    "check_finite_iterates",
    "check_symmetric",
    "relative_norm",
    "safe_norm",
    "singular_value_cutoff",
    "spectral_cutoffs",
    "unit_roundoff",
]

#: The project's definition of an exact solve: float64 relative residual ||Y - K alpha||_F / ||Y||_F.
EXACT_TOL = 1e-10

#: Working memory for one block of temporaries (kernel blocks, feature blocks), in bytes.
WORKING_MEMORY_BYTES = 256 * 2**20

#: Share of :func:`available_memory` one computation may use when no budget is given. MemAvailable
#: already excludes the running interpreter and the libraries it loaded, so the remaining 15% is the
#: only margin (for their growth and small temporaries): no fixed overhead is added on top of it.
MEMORY_FRACTION = 0.85


@dataclass(frozen=True)
class CallLimits:
    """Largest single BLAS/LAPACK call kernelgen issues for one dtype.

    Attributes
    ----------
    potrf_n : int
        Order of the largest potrf / trsm / syevd operand (one diagonal tile; also the tile cap).
    gemm_rows, gemm_cols : int
        Largest GEMM output block.
    """

    potrf_n: int
    gemm_rows: int
    gemm_cols: int


#: Tested per-dtype call limits, below the smallest measured crash point (docs/numerics.md,
#: "BLAS and LAPACK call limits").
CALL_LIMITS = {
    np.dtype(np.float32): CallLimits(potrf_n=8192, gemm_rows=8192, gemm_cols=16384),
    np.dtype(np.float64): CallLimits(potrf_n=8192, gemm_rows=8192, gemm_cols=16384),
}

#: Default tile of the tiled Cholesky: large enough for GEMM near peak, small enough that the
#: serial potrf on the diagonal is cheap.
DEFAULT_TILE = 2048


#: Buffers at least this large are allocated by :func:`empty_hugepages` on transparent huge pages.
HUGEPAGE_MIN_BYTES = 4 * 2**20


def empty_hugepages(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` (C order) on anonymous memory advised for transparent huge pages.

    Writing a large fresh buffer costs one page fault per 4 KiB page; on the project's virtual
    machines a fault costs ~9 ns per float32 entry written (7.2 GB of float32 kernel panels: ~16 s),
    with 2 MiB pages ~0.5 ns (measured 2026-11-29: 1.8 GB first write 2.76 s with np.empty, 0.24 s
    here; docs/numerics.md, "Kernel entry costs"). Falls back to ``np.empty`` below
    :data:`HUGEPAGE_MIN_BYTES`, off Linux, or when the advice is refused. The memory is returned to
    the system when the array is freed.
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * dtype.itemsize
    if nbytes < HUGEPAGE_MIN_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.empty(shape, dtype=dtype)
    try:
        m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError, AttributeError):
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(m, dtype=dtype, count=count).reshape(shape)


def available_memory() -> int:
    """Bytes of memory available now (Linux MemAvailable, capped by a cgroup limit)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover
            avail = 8 * 2**30
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                txt = f.read().strip()
            if txt.isdigit():
                limit = int(txt)
                with open(path.replace("memory.max", "memory.current").replace(
                        "limit_in_bytes", "usage_in_bytes")) as f:
                    used = int(f.read().strip())
                avail = min(avail, max(0, limit - used))
        except (OSError, ValueError):
            continue
    return int(avail)


def check_allocation(nbytes: int, *, what: str, memory_budget: int | None = None, remedy: str = "") -> None:
    """Refuse an allocation of ``nbytes`` before making it when it exceeds the budget.

    The budget defaults to :data:`MEMORY_FRACTION` (85%) of :func:`available_memory` (the planner's rule).

    Raises
    ------
    MemoryBudgetError
        With the bytes needed, the bytes available and ``remedy``.
    """
    budget = int(memory_budget if memory_budget is not None else MEMORY_FRACTION * available_memory())
    if nbytes > budget:
        raise MemoryBudgetError(f"{what} needs {nbytes / 1e9:.2f} GB but {budget / 1e9:.2f} GB is available. "
                                f"Remedy: {remedy or 'fewer rows, or more memory'}.", nbytes, budget)


def unit_roundoff(dtype) -> float:
    """Unit roundoff u = eps / 2 of a floating dtype (float32: 5.96e-8, float64: 1.11e-16)."""
    return float(np.finfo(np.dtype(dtype)).eps) / 2.0


def check_symmetric(K: np.ndarray, *, rtol: float | None = None, name: str = "K",
                    block_rows: int = 1024) -> float:
    """Refuse a matrix that is not symmetric to the precision it carries.

    The tolerance is ``rtol * max|diag K|`` (``max|K|`` when the diagonal is zero), with ``rtol``
    defaulting to ``1e3 * u`` of K's dtype (float64: 1.1e-13, float32: 6e-5): rounding in a
    symmetric computation leaves asymmetries of a few ulps of the entries; a wrong matrix leaves
    more. Checked in row blocks (no n x n temporary) at every size.

    Parameters
    ----------
    K : ndarray of shape (n, n), float32 or float64
    rtol : float, optional
    name : str
        Used in the error message.

    Returns
    -------
    float
        The largest |K - K^T| found.

    Raises
    ------
    InvalidInputError
        When max |K - K^T| exceeds the tolerance (the remedy, (K + K^T)/2 for rounding, is in
        the message).
    """
    n = K.shape[0]
    if rtol is None:
        rtol = 1e3 * unit_roundoff(K.dtype)
    scale = float(np.max(np.abs(np.diagonal(K)))) if n else 0.0
    if scale == 0.0:
        scale = float(np.max(np.abs(K))) if K.size else 0.0
    scale = scale or 1.0
    worst = 0.0
    for r0 in range(0, n, block_rows):
        r1 = min(n, r0 + block_rows)
        worst = max(worst, float(np.max(np.abs(K[r0:r1, :] - K[:, r0:r1].T))))
    if worst > rtol * scale:
        raise InvalidInputError(
            f"{name} is not symmetric (max |{name} - {name}ᵀ| = {worst:.3g}, above {rtol:.1e} x {scale:.3g}); "
            f"pass ({name} + {name}.T) / 2 if the asymmetry is rounding.")
    return worst


def spectral_cutoffs(eigenvalues: np.ndarray, *, dtype=np.float64, rcond: float | None = None
                     ) -> tuple[float, float]:
    """Rank and PSD thresholds for the spectrum of a symmetric matrix held in ``dtype``.

    Parameters
    ----------
    eigenvalues : ndarray of shape (n,)
    dtype : float32 or float64
        The precision the *matrix* carries (a float32 kernel stored or computed in float32 carries
        float32 rounding even when its eigenvalues are computed in float64).
    rcond : float, optional
        Relative rank threshold; default ``n * eps(dtype)`` (the LAPACK / NumPy convention).

    Returns
    -------
    rank_tol : float
        Eigenvalues ``<= rank_tol`` count as zero: ``rcond * max|lambda|``.
    neg_tol : float
        An eigenvalue below ``-neg_tol`` proves the matrix indefinite:
        ``max(rank_tol, sqrt(u(dtype)) * max|lambda|)``. Rounding perturbs eigenvalues of a PSD
        matrix by about p(n) u ||K|| (Weyl's inequality with the backward error of the
        decomposition and of the matrix itself), far below sqrt(u) ||K||.

    References
    ----------
    Golub & Van Loan, Matrix Computations, 4th ed., §8.1.2 (Weyl), §5.4.1 (numerical rank).
    """
    w = np.asarray(eigenvalues)
    n = w.shape[0]
    u = unit_roundoff(dtype)
    wmax = float(np.max(np.abs(w))) if n else 0.0
    rc = max(n, 1) * float(np.finfo(np.dtype(dtype)).eps) if rcond is None else float(rcond)
    if not (rc >= 0 and np.isfinite(rc)):
        raise InvalidInputError(f"rcond must be a finite number >= 0, got {rcond!r}")
    rank_tol = rc * wmax
    neg_tol = max(rank_tol, np.sqrt(u) * wmax)
    return rank_tol, neg_tol


def singular_value_cutoff(singular_values: np.ndarray, shape: tuple, *, dtype=np.float64,
                          rcond: float | None = None) -> float:
    """Absolute threshold below which singular values of a rectangular matrix count as zero.

    Default ``max(shape) * eps(dtype) * sigma_max`` (the NumPy ``matrix_rank`` / ``pinv``
    convention); ``rcond`` overrides the relative factor.
    """
    s = np.asarray(singular_values)
    smax = float(np.max(s)) if s.size else 0.0
    rc = max(shape) * float(np.finfo(np.dtype(dtype)).eps) if rcond is None else float(rcond)
    if not (rc >= 0 and np.isfinite(rc)):
        raise InvalidInputError(f"rcond must be a finite number >= 0, got {rcond!r}")
    return rc * smax


def safe_norm(A) -> float:
    """Frobenius norm without under- or overflow: max|A| * ||A / max|A|||_F (0 for an all-zero A).

    ``np.linalg.norm`` squares the entries, so it returns 0 below ~1e-154 and inf above ~1e154
    although the norm itself is representable; a certificate must not read 0.0 for that reason.
    Returns inf/nan when A holds inf/nan (the callers refuse those).
    """
    A = np.asarray(A)
    if A.size == 0:
        return 0.0
    m = float(np.max(np.abs(A)))
    if m == 0.0 or not np.isfinite(m):
        return m
    return m * float(np.linalg.norm(A / m))


def relative_norm(R, Y) -> float:
    """||R||_F / ||Y||_F computed with :func:`safe_norm` (||R||_F when Y is zero)."""
    nr, ny = safe_norm(R), safe_norm(Y)
    return nr / ny if ny > 0 else nr


def check_finite_iterates(values, step_rates, step_size: float, *, what: str) -> None:
    """Refuse closed-form gradient-descent iterates that overflowed, naming the stability condition.

    The closed forms multiply each eigenmode by ``(1 - r_i)^t``, with ``r_i = step_size * lambda_i / N`` the
    mode's rate. Where ``max r_i > 2`` that factor exceeds 1 in modulus and grows without bound: the
    iteration diverges (Lee et al., NeurIPS 2019, sec. 2.4: eta below eta_critical = 2 N / lambda_max).
    Large finite iterates are returned as they are. Overflow to inf or NaN raises, instead of being returned.

    Parameters
    ----------
    values : sequence of ndarray
        The iterates (any shapes).
    step_rates : ndarray
        ``step_size * lambda_i / N`` for every eigenmode (any shape).
    step_size : float
        The learning rate, for the message.
    what : str
        The computation, for the message.

    Raises
    ------
    NonFiniteResultError
        When ``values`` holds NaN or inf. The message gives ``max r_i`` and, if it is above 2, the largest
        stable step size.
    """
    if all(np.all(np.isfinite(v)) for v in values):
        return
    r = float(np.max(step_rates)) if np.size(step_rates) else 0.0
    why = (f"the iteration diverges: step_size * lambda_max / N = {r:.6g} > 2, so |1 - r| > 1; a step size "
           f"below {2.0 * step_size / r:.6g} converges (eta_critical = 2 N / lambda_max)" if r > 2.0 else
           f"step_size * lambda_max / N = {r:.6g} <= 2, so the overflow is in the inputs or the step count")
    raise NonFiniteResultError(f"{what}: the iterates at step_size {step_size:g} are not finite; {why}.")
