"""MPI worker for tests/test_mpi.py: ``mpiexec -n P python [-m mpi4py] tests/mpi/worker.py MODE OUT [n] [dtype]``.

Every process builds the same seeded data (d = 10 normal inputs, Gaussian bandwidth 2, two
targets), calls ``kernel_interpolate(..., backend="mpi")`` and checks what only it can see; rank 0
writes OUT (.npz) for the test to compare against the single-process solve. Modes:

- ``solve``: alpha, residual, distributed and local predictions, every rank's alpha digest.
- ``nonpd``: the indefinite kernel of ``_indefinite.py``; records the error and its global index.
- ``refuse``: the int32 local-size refusal and the memory refusal (messages recorded).
- ``die_factor``: rank 1 kills itself (SIGKILL) 0.2 s into p?potrf.
- ``die_between``: rank 1 exits (os._exit(3)) after the factor, before the float64 iteration.
- ``raise_between``: rank 1 raises RuntimeError in its first preconditioner solve.
- ``resume``: solve with ``KERNELGEN_MPI_CHECKPOINT`` set (the test runs it twice).
- ``disagree``: rank 1 alone has a NaN in X / another ridge / another bandwidth; every rank must raise.
"""

import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _data import data  # noqa: E402
from mpi4py import MPI  # noqa: E402

import kernelgen.factors._scalapack as scl  # noqa: E402
from kernelgen import kernel_interpolate  # noqa: E402
from kernelgen.errors import KernelgenError  # noqa: E402
from kernelgen.kernels import Gaussian  # noqa: E402
from kernelgen.solvers._mpi_backend import predict_mpi  # noqa: E402

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(name)s: %(message)s")


def main():
    mode, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    dtype = sys.argv[4] if len(sys.argv) > 4 else "float32"
    X, Y, Xt = data(n)
    kern = Gaussian(bandwidth=2.0)
    opts = {"dtype": dtype, "keep_factor": True}
    res = {}
    if mode == "die_factor" and rank == 1:
        real = scl._potrf

        def dying(*a, **k):
            sys.stderr.write("worker rank 1: inside p?potrf, SIGKILL in 0.2 s\n")
            sys.stderr.flush()
            threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
            return real(*a, **k)

        scl._potrf = dying
    if mode == "die_between" and rank == 1:
        real_factor = scl.ScalapackCholesky.factor.__func__

        def factor_then_exit(cls, *a, **k):
            real_factor(cls, *a, **k)
            sys.stderr.write("worker rank 1: factor done, exiting before the float64 iteration\n")
            sys.stderr.flush()
            os._exit(3)

        scl.ScalapackCholesky.factor = classmethod(factor_then_exit)
    if mode == "raise_between" and rank == 1:
        def broken_solve(self, B):
            raise RuntimeError("injected failure in rank 1's preconditioner solve")

        scl.ScalapackCholesky.solve = broken_solve
    if mode == "nonpd":
        from _indefinite import Indefinite

        try:
            kernel_interpolate(X[:, :3], Y, kernel=Indefinite(), backend="mpi", options={"dtype": "float64"})
            res["error"] = "none"
        except KernelgenError as exc:
            res["error"], res["index"], res["message"] = type(exc).__name__, getattr(exc, "index", -1), str(exc)
    elif mode == "disagree":
        bad_x = X.copy()
        if rank == 1:
            bad_x[0, 0] = np.nan
        cases = (("nan", (bad_x, Y), kern, 0.0),
                 ("ridge", (X, Y), kern, 1e-3 if rank == 1 else 0.0),
                 ("bandwidth", (X, Y), Gaussian(bandwidth=2.0 + (1e-6 if rank == 1 else 0.0)), 1e-2))
        for key, args, k, ridge in cases:
            try:
                kernel_interpolate(*args, kernel=k, ridge=ridge, backend="mpi", options=opts)
                res[key] = "none"
            except KernelgenError as exc:
                res[key] = f"{type(exc).__name__}: {exc}"
    elif mode == "refuse":
        big = np.random.default_rng(0).normal(size=(50000, 1))
        for key, args, o in (("int32", (big, big[:, 0]), {"dtype": "float32"}),
                             ("memory", (X, Y), {"dtype": "float32", "memory_budget": 10**6})):
            if key == "int32" and comm.Get_size() > 1:
                continue  # with 2+ processes n = 50,000 fits: it would really be solved
            t0 = time.perf_counter()
            try:
                kernel_interpolate(*args, kernel=kern, backend="mpi", options=o)
                res[key] = "none"
            except KernelgenError as exc:
                res[key] = f"{type(exc).__name__}: {exc}"
            res[key + "_seconds"] = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        fit = kernel_interpolate(X, Y, kernel=kern, backend="mpi", options=opts)
        res["seconds"] = time.perf_counter() - t0
        P_mpi = predict_mpi(fit, Xt)
        P_loc = fit.predict(Xt)
        res.update(alpha=fit.alpha, relative_residual=fit.relative_residual, pred_mpi=P_mpi, pred_local=P_loc,
                   backend=fit.backend, factor_dtype=fit.factor_dtype, kernel_seconds=fit.timings.get("kernel"),
                   type=type(fit).__name__, n_matvecs=fit.n_matvecs)
        ld = fit.factor.logdet()  # collective
        res.update(logdet=ld.value, logdet_bound=-1.0 if ld.error_bound is None else ld.error_bound,
                   factor_backend=fit.factor.backend)
        res["digests"] = comm.allgather(hashlib.sha256(fit.alpha.tobytes()).hexdigest())
        res["types"] = comm.allgather(type(fit).__name__)
    if rank == 0:
        np.savez(out, **{k: (np.array(json.dumps(v)) if isinstance(v, (list, dict)) else np.asarray(v))
                         for k, v in res.items()})


if __name__ == "__main__":
    main()
