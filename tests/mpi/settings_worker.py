"""MPI worker for tests/test_user_faults_solvers.py: ``mpiexec ... python tests/mpi/settings_worker.py MODE OUT``.

Every process solves the same small seeded problem with ``backend="mpi"`` and writes its own outcome
to ``OUT.rank<r>.json`` (the error's class and message, or "none"), so that the test sees what every
rank raised. Modes:

- ``solve``: a plain solve (the test gives the ranks different ``KERNELGEN_MPI_*`` settings).
- ``bound``: ``SolveOptions(certificate="bound")``: the distributed backend carries the proven bound
  through CG (every pass applied to [p, |p|] in one Allreduce); each rank also writes an independent
  dense float64 residual of its alpha (numpy, the kernel matrix formed here), the test's oracle.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _data import data  # noqa: E402
from mpi4py import MPI  # noqa: E402

from kernelgen import kernel_interpolate  # noqa: E402
from kernelgen.errors import KernelgenError  # noqa: E402
from kernelgen.kernels import Gaussian  # noqa: E402


def main():
    mode, out = sys.argv[1], sys.argv[2]
    rank = MPI.COMM_WORLD.Get_rank()
    X, Y, _ = data(200)
    opts = {"dtype": "float64"} if mode == "solve" else {"certificate": "bound"}
    try:
        fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=2.0), backend="mpi", options=opts)
        res = {"error": "none", "relative_residual": fit.relative_residual,
               "bound": fit.relative_residual_bound, "certificate": fit.residual_certificate,
               "passes": fit.n_matvecs, "alpha_sum": float(abs(fit.alpha).sum())}
        if mode == "bound":
            import numpy as np

            sq = (X * X).sum(1)
            K = np.exp(-np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0) / (2 * 2.0**2))
            Y2 = Y.reshape(len(Y), -1)
            res["dense_residual"] = float(np.linalg.norm(Y2 - K @ fit.alpha.reshape(Y2.shape)) / np.linalg.norm(Y2))
    except KernelgenError as exc:
        res = {"error": type(exc).__name__, "message": str(exc)}
    with open(f"{out}.rank{rank}.json", "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
