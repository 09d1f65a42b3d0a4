#!/usr/bin/env python
"""Exact kernel interpolation on MNIST: the 1.2% test error of Zhang et al. (2017, section 5).

Solves K alpha = Y exactly (float64 relative residual <= --tol) for one-hot targets Y, with
no ridge unless asked, then classifies the test images by the argmax of K_test alpha.
By default: all 60,000 training images, a Gaussian kernel with s = 5 on pixels / 255, and all
10,000 test images. Memory grows as n^2 and time as n^3 in the number of training images n:
try --n-train 10000 before the full run.

    python scripts/mnist_kernel.py --n-train 10000   # a subset
    python scripts/mnist_kernel.py                   # all 60,000 training images
    python scripts/mnist_kernel.py --smoke           # synthetic digits, seconds

Prints a human summary; the last line of stdout is one JSON object of metrics.
"""

from __future__ import annotations

import time

import numpy as np

from kernelgen import cli

KERNELS = ["gaussian", "laplace", "linear", "polynomial", "relu_nngp", "relu_ntk"]
DEFAULT_BANDWIDTH = {"gaussian": 5.0, "laplace": 10.0, "polynomial": 1.0}


def synthetic_digits(n_train: int, n_test: int, seed: int):
    """Ten noisy prototype 'digits' in [0, 1]^784 (uint8 like MNIST) for --smoke."""
    rng = np.random.default_rng(seed)
    protos = rng.random((10, 784)) < 0.2
    def draw(m):
        y = rng.integers(0, 10, size=m)
        X = protos[y] * 200.0 + rng.normal(0, 40.0, size=(m, 784))
        return np.clip(X, 0, 255).astype(np.uint8), y
    Xtr, ytr = draw(n_train)
    Xte, yte = draw(n_test)
    return Xtr, ytr, Xte, yte


def build_parser():
    p = cli.make_parser(
        __doc__, script=__file__, data_home=True,
        seed=None, seed_help="draw the training subset at random with this seed (default: the first --n-train "
                             "images; in --smoke: seed 0 of the synthetic data)",
        smoke="tiny run on synthetic digits (at most 400 training images), seconds; no MNIST needed")
    p.add_argument("--n-train", type=int, default=60000, help="training images")
    p.add_argument("--n-test", type=int, default=None, help="test images, the first N (default: all 10,000)")
    p.add_argument("--kernel", default="gaussian", choices=KERNELS, help="kernel family")
    p.add_argument("--bandwidth", type=float, default=None,
                   help="kernel scale s (default: 5 for gaussian, 10 for laplace, 1 for polynomial; "
                        "the ReLU kernels and linear have none)")
    p.add_argument("--depth", type=int, default=2, help="hidden ReLU layers of relu_nngp / relu_ntk")
    p.add_argument("--degree", type=int, default=3, help="degree of the polynomial kernel")
    p.add_argument("--solver", default="auto", choices=["auto", "cholesky", "min_norm"],
                   help="cholesky: positive-definite K; min_norm: K^+ Y by eigendecomposition (any "
                        "positive-semidefinite K); auto: cholesky")
    p.add_argument("--backend", default="auto", choices=["auto", "scipy", "jax", "mpi"],
                   help="auto: JAX when an accelerator is visible, else SciPy/LAPACK")
    p.add_argument("--dtype", default=None, choices=["float32", "float64"],
                   help="dtype of the factor (default: float64 up to 4,096 images, float32 with float64 "
                        "refinement above; the residual is float64 either way)")
    p.add_argument("--ridge", type=float, default=0.0, help="ridge added to the diagonal (0: exact interpolation)")
    p.add_argument("--tol", type=float, default=1e-10, help="float64 relative residual to reach")
    p.add_argument("--save", default=None, metavar="PATH",
                   help="save the fitted interpolant (alpha, kernel, data hash, residual certificate) to PATH "
                        "(.npz), to reload with kernelgen.load_interpolant(PATH, X_train) (default: not saved)")
    return p


def _main(args) -> dict:
    t_start = time.perf_counter()
    import kernelgen
    from kernelgen.kernels import (
        Gaussian,
        Laplace,
        Linear,
        Polynomial,
        ReluNNGP,
        ReluNTK,
    )

    bandwidth = DEFAULT_BANDWIDTH.get(args.kernel) if args.bandwidth is None else args.bandwidth
    kernel = {"gaussian": lambda: Gaussian(bandwidth=bandwidth),
              "laplace": lambda: Laplace(bandwidth=bandwidth),
              "linear": Linear,
              "polynomial": lambda: Polynomial(degree=args.degree, bandwidth=bandwidth),
              "relu_nngp": lambda: ReluNNGP(depth=args.depth),
              "relu_ntk": lambda: ReluNTK(depth=args.depth)}[args.kernel]()
    options = kernelgen.SolveOptions(dtype=args.dtype, tol=args.tol)
    verbose = not args.quiet
    comm = None
    if args.backend == "mpi":  # mpiexec -n P python scripts/mnist_kernel.py --backend mpi: rank 0 prints
        from mpi4py import MPI  # optional dependency: pip install -e ".[mpi]"

        comm = MPI.COMM_WORLD
        verbose = verbose and comm.Get_rank() == 0
    t0 = time.perf_counter()
    seeds = {"subset_seed": args.seed}
    if args.smoke:
        n_train = min(args.n_train, 400)
        smoke_seed = 0 if args.seed is None else args.seed
        Xtr, ytr, Xte, yte = synthetic_digits(n_train, args.n_test or 200, seed=smoke_seed)
        # the project's convention: pixels / 255
        Xtr, Xte = Xtr.astype(np.float64) / 255.0, Xte.astype(np.float64) / 255.0
        seeds = {"synthetic_data": smoke_seed}
        dataset = "synthetic"
    else:
        def load():
            return cli.load_mnist_scaled(n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                                         data_home=args.data_home, verbose=verbose)

        if comm is not None and comm.Get_size() > 1:  # rank 0 fills the cache (download) first, then the rest
            got = None
            if comm.Get_rank() == 0:
                try:
                    got = load()
                except BaseException:
                    comm.bcast(True)
                    raise
            failed = comm.bcast(False)
            if failed:
                from kernelgen.errors import DataUnavailableError

                raise DataUnavailableError("rank 0 could not load MNIST (its error is printed above).")
            Xtr, ytr, Xte, yte = got if got is not None else load()
        else:
            Xtr, ytr, Xte, yte = load()
        dataset = "mnist"
    Y = cli.one_hot(ytr, 10)
    t_load = time.perf_counter() - t0

    fit = kernelgen.kernel_interpolate(Xtr, Y, kernel=kernel, ridge=args.ridge, solver=args.solver,
                                       backend=args.backend, options=options, verbose=verbose)
    train_error = float(np.mean(np.argmax(fit.fitted, axis=1) != ytr))
    t0 = time.perf_counter()
    if comm is not None:
        from kernelgen.solvers._mpi_backend import predict_mpi

        P = predict_mpi(fit, Xte, comm=comm)
    else:
        P = fit.predict(Xte, verbose=verbose)
    t_predict = time.perf_counter() - t0
    test_error = float(np.mean(np.argmax(P, axis=1) != yte))
    if args.save and (comm is None or comm.Get_rank() == 0):  # one writer
        fit.save(args.save)
    seconds = time.perf_counter() - t_start

    metrics = {
        "dataset": dataset,
        "n_train": int(Xtr.shape[0]),
        "n_test": int(Xte.shape[0]),
        "kernel": args.kernel,
        "bandwidth": getattr(fit.kernel, "bandwidth", None),
        "kernel_spec": fit.kernel.to_dict(),
        "test_error": test_error,
        "train_error": train_error,
        "relative_residual": fit.relative_residual,
        "relative_residual_bound": fit.relative_residual_bound,
        "residual_certificate": fit.residual_certificate,
        "rkhs_norm": fit.rkhs_norm,
        "ridge": fit.ridge,
        "solver": fit.solver,
        "backend": fit.backend,
        "factor_dtype": fit.factor_dtype,
        "residual_mode": fit.residual_mode,
        "float64_kernel_passes": fit.n_matvecs,
        "residual_history": [h["relative_residual"] for h in fit.history],
        "timings": {"load": t_load, **{k: v for k, v in fit.timings.items()}, "predict": t_predict},
        "seconds": seconds,
        "peak_rss_gb": cli.peak_rss_gb(),
        "saved": args.save,
    }
    if comm is not None:
        metrics["mpi_processes"] = comm.Get_size()
        metrics["peak_rss_gb_per_process"] = comm.allgather(cli.peak_rss_gb())
        metrics["mpi_plan"] = {k: v for k, v in fit.plan.items() if k in ("grid", "nb", "local_shape", "bytes")}
        if comm.Get_rank() != 0:
            return metrics
    print(f"kernelgen exact kernel interpolation on {dataset}: n_train={metrics['n_train']}, {fit.kernel!r}")
    print(f"  test error  {100 * test_error:.2f}%   train error {100 * train_error:.2f}%")
    print(f"  relative residual {fit.relative_residual:.2e} (float64; factor {fit.factor_dtype}, "
          f"{fit.n_matvecs} float64 kernel passes, residual {fit.residual_mode})")
    if fit.relative_residual_bound is not None:
        print(f"  proven bound on the exact-arithmetic residual {fit.relative_residual_bound:.2e} "
              f"(certificate: {fit.residual_certificate})")
    print(f"  RKHS norm {fit.rkhs_norm:.1f}   ridge {fit.ridge}   solver {fit.solver}/{fit.backend}")
    print("  time " + ", ".join(f"{k} {v:.1f}s" for k, v in metrics["timings"].items())
          + f"; total {seconds:.1f}s; peak RSS {metrics['peak_rss_gb']:.2f} GB")
    return cli.emit(metrics, json_out=args.json_out, seeds=seeds)


def main(argv=None) -> int:
    return cli.run(_main, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
