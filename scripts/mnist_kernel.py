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
    python scripts/mnist_kernel.py --n-train 10000 --save fit.npz
    python scripts/mnist_kernel.py --load fit.npz    # reload a saved fit, predict the test set
    python scripts/mnist_kernel.py --augment-shifts 1  # + a one-pixel-shifted copy of each: n = 120,000

With --augment-shifts 1 every training image gets one copy shifted by one pixel in a direction drawn
at random (up, down, left or right; seeded by --shift-seed; zeros shifted in), so n doubles; the
test images are untouched. Beyond what fits in RAM the factor lives in a scratch file (--storage,
--scratch-dir): the solve stays exact.

A file written with --save records how the training data were prepared (pixels / 255 in
float64, or the synthetic digits' seed) and which training rows were used; --load rebuilds
exactly those rows, checks them against the file's data sha256 and predicts the test images.

Prints a human summary; the last line of stdout is one JSON object of metrics.
"""

from __future__ import annotations

import time

import numpy as np

from kernelgen import cli
from kernelgen.numerics import EXACT_TOL

KERNELS = ["gaussian", "laplace", "linear", "polynomial", "relu_nngp", "relu_ntk"]
DEFAULT_BANDWIDTH = {"gaussian": 5.0, "laplace": 10.0, "polynomial": 1.0}
N_MNIST_TRAIN, N_MNIST_TEST, N_SMOKE_TRAIN, N_SMOKE_TEST = 60000, 10000, 400, 200
#: options that choose or configure a fit; with --load the fit comes from the file
FIT_OPTIONS = ["kernel", "bandwidth", "depth", "degree", "solver", "backend", "dtype", "ridge", "tol", "save",
               "n_train", "seed", "smoke", "augment_shifts", "shift_seed", "storage", "scratch_dir"]
#: (row, column) offsets of a one-pixel shift: up, down, left, right
SHIFTS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def shifted_copies(X, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One copy of each 28 x 28 image (rows of X) shifted by one pixel in a seeded random direction.

    Returns the shifted images (same shape and dtype; zeros shifted in at the border) and the
    direction of each, an index into :data:`SHIFTS` (drawn by ``numpy.random.default_rng(seed)``).
    """
    rng = np.random.default_rng(seed)
    direction = rng.integers(0, len(SHIFTS), size=X.shape[0])
    imgs = X.reshape(-1, 28, 28)
    out = np.zeros_like(imgs)
    for k, (dr, dc) in enumerate(SHIFTS):
        sel = direction == k
        src = imgs[sel]
        r_src = slice(max(0, -dr), 28 - max(0, dr))
        r_dst = slice(max(0, dr), 28 - max(0, -dr))
        c_src = slice(max(0, -dc), 28 - max(0, dc))
        c_dst = slice(max(0, dc), 28 - max(0, -dc))
        out[sel, r_dst, c_dst] = src[:, r_src, c_src]
    return out.reshape(X.shape), direction



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
                        "positive-semidefinite K); auto: Cholesky, with the min-norm route when K is not "
                        "positive definite (recorded in fit.notes)")
    p.add_argument("--backend", default="auto", choices=["auto", "scipy", "jax", "mpi"],
                   help="auto: JAX when an accelerator is visible, else SciPy/LAPACK")
    p.add_argument("--dtype", default=None, choices=["float32", "float64"],
                   help="dtype of the factor (default: float64 up to 4,096 images, float32 with float64 "
                        "refinement above; the residual is float64 either way)")
    p.add_argument("--ridge", type=float, default=0.0, help="ridge added to the diagonal (0: exact interpolation)")
    p.add_argument("--tol", type=float, default=EXACT_TOL, help="float64 relative residual to reach")
    p.add_argument("--certificate", default="direct", choices=["direct", "bound"],
                   help="what certifies tol: direct (a verifying float64 product, the default) or bound (the proven "
                        "residual bound carried through CG; stops without the verifying pass once it reaches tol)")
    p.add_argument("--save", type=cli.OutputPath(create_parents=False), default=None, metavar="PATH",
                   help="save the fitted interpolant (alpha, kernel, data hash, how the data were prepared, the "
                        "training rows, residual certificate) to PATH (.npz; its directory must exist), to reload "
                        "with --load PATH (default: not saved)")
    p.add_argument("--augment-shifts", type=int, default=0, choices=[0, 1],
                   help="1: add one copy of each training image shifted by one pixel in a seeded random direction "
                        "(n doubles; test images untouched); 0: none (default)")
    p.add_argument("--shift-seed", type=int, default=0, help="seed of the shift directions (default 0)")
    p.add_argument("--storage", default="auto", choices=["auto", "memory", "disk"],
                   help="where the Cholesky factor lives: auto (RAM when it fits, else a scratch file), memory, disk")
    p.add_argument("--scratch-dir", default=None, metavar="DIR",
                   help="directory of the out-of-core factor's scratch file (default: $KERNELGEN_SCRATCH, else the "
                        "platform cache directory)")
    p.add_argument("--load", default=None, metavar="PATH",
                   help="instead of fitting, reload an interpolant saved by --save, rebuild its training data "
                        "from the preparation and rows recorded in the file, and predict the test images "
                        "(default: fit)")
    return p


def make_kernel(args):
    """The kernel the options describe (its constructor validates the hyper-parameters)."""
    from kernelgen.kernels import Gaussian, Laplace, Linear, Polynomial, ReluNNGP, ReluNTK

    bandwidth = DEFAULT_BANDWIDTH.get(args.kernel) if args.bandwidth is None else args.bandwidth
    return {"gaussian": lambda: Gaussian(bandwidth=bandwidth),
            "laplace": lambda: Laplace(bandwidth=bandwidth),
            "linear": Linear,
            "polynomial": lambda: Polynomial(degree=args.degree, bandwidth=bandwidth),
            "relu_nngp": lambda: ReluNNGP(depth=args.depth),
            "relu_ntk": lambda: ReluNTK(depth=args.depth)}[args.kernel]()


def check(args) -> None:
    """Refuse, before any data are loaded, options out of range or that do not apply."""
    import math

    import kernelgen
    from kernelgen.errors import InvalidInputError

    if args.n_test is not None and not 1 <= args.n_test <= N_MNIST_TEST:
        raise InvalidInputError(f"--n-test must be in [1, {N_MNIST_TEST}] (the test error of no images is undefined), "
                                f"got {args.n_test}; leave it out for all of them.")
    if args.load is not None:
        cli.refuse_options(args, FIT_OPTIONS, "with --load (the fit, its data and its kernel come from the file)")
        from pathlib import Path

        if not Path(args.load).is_file():
            raise InvalidInputError(f"--load {args.load}: no such file (give a file written by --save).")
        return
    if args.smoke:
        cli.refuse_options(args, ["data_home"], "with --smoke (synthetic digits; no MNIST is read)")
    n_max = N_SMOKE_TRAIN if args.smoke else N_MNIST_TRAIN
    if (not args.smoke or "n_train" in cli.given(args)) and not 1 <= args.n_train <= n_max:
        raise InvalidInputError(f"--n-train must be in [1, {n_max}]{' with --smoke' if args.smoke else ''}, "
                                f"got {args.n_train}.")
    if args.augment_shifts:
        cli.refuse_options(args, ["save"], "with --augment-shifts (--load rebuilds plain MNIST rows only)")
    if args.scratch_dir is not None:
        from kernelgen.solvers._planner import check_scratch_directory

        check_scratch_directory(args.scratch_dir)  # ScratchStorageError before any data are loaded
    if args.shift_seed < 0:
        raise InvalidInputError(f"--shift-seed must be a non-negative integer, got {args.shift_seed}.")
    if args.seed is not None and args.seed < 0:
        raise InvalidInputError(f"--seed must be a non-negative integer, got {args.seed}.")
    if args.kernel not in DEFAULT_BANDWIDTH:
        cli.refuse_options(args, ["bandwidth"], f"with --kernel {args.kernel} (it has no bandwidth)")
    if args.kernel not in ("relu_nngp", "relu_ntk"):
        cli.refuse_options(args, ["depth"], f"with --kernel {args.kernel} (only the ReLU kernels have a depth)")
    if args.kernel != "polynomial":
        cli.refuse_options(args, ["degree"], f"with --kernel {args.kernel} (only the polynomial kernel has one)")
    if not (math.isfinite(args.ridge) and args.ridge >= 0):
        raise InvalidInputError(f"--ridge must be a finite number >= 0, got {args.ridge}.")
    make_kernel(args)  # InvalidInputError for a bandwidth, depth or degree out of range
    kernelgen.SolveOptions(dtype=args.dtype, tol=args.tol)  # InvalidInputError for --tol outside (0, 1)


def synthetic_preparation(n_train: int, n_test: int, seed: int) -> dict:
    return {"dataset": "synthetic_digits", "generator": "scripts/mnist_kernel.py:synthetic_digits",
            "n_train": int(n_train), "n_test": int(n_test), "seed": int(seed), "transform": "pixels/255",
            "dtype": "float64"}


#: how the MNIST training inputs are prepared (recorded in a --save file; --load rebuilds from it)
MNIST_PREPARATION = {"dataset": "mnist", "split": "train", "transform": "pixels/255", "dtype": "float64"}


def prepared_data(preparation, rows, *, n_test, data_home, verbose):
    """Rebuild (X_train, y_train, X_test, y_test) from a file's preparation and rows (for --load)."""
    from kernelgen.errors import InvalidInputError

    prep = preparation if isinstance(preparation, dict) else {}
    if prep.get("dataset") == "synthetic_digits":
        Xtr, ytr, Xte, yte = synthetic_digits(prep["n_train"], prep["n_test"], seed=prep["seed"])
        Xtr, Xte = Xtr.astype(np.float64) / 255.0, Xte.astype(np.float64) / 255.0
        return Xtr[rows], ytr[rows], Xte[:n_test], yte[:n_test]
    if {k: prep.get(k) for k in MNIST_PREPARATION} == MNIST_PREPARATION:
        return cli.load_mnist_scaled(train_index=rows, n_test=n_test, data_home=data_home, verbose=verbose)
    raise InvalidInputError(f"--load: the file's training data were prepared as {preparation!r}, which this script "
                            "cannot rebuild (it rebuilds files written by its own --save); load it with "
                            "kernelgen.load_interpolant(PATH, X_train) and the training inputs it was fitted on.")


def _load_main(args) -> dict:
    """--load: reload a saved fit, rebuild its training rows, predict the test images."""
    import kernelgen
    from kernelgen.errors import InvalidInputError

    t_start = time.perf_counter()
    verbose = not args.quiet
    info = kernelgen.load_interpolant(args.load)  # no data yet: read what the file records
    if info.rows is None or info.preparation is None:
        raise InvalidInputError(f"--load {args.load}: the file records no preparation or rows of its training data "
                                "(written by another program); load it with kernelgen.load_interpolant(PATH, "
                                "X_train) and the training inputs it was fitted on.")
    Xtr, ytr, Xte, yte = prepared_data(info.preparation, info.rows, n_test=args.n_test, data_home=args.data_home,
                                       verbose=verbose)
    fit = kernelgen.load_interpolant(args.load, Xtr)  # DataMismatchError unless the rows rebuild the data
    cli.check_interrupted()
    t0 = time.perf_counter()
    P = fit.predict(Xte, verbose=verbose)
    t_predict = time.perf_counter() - t0
    test_error = float(np.mean(np.argmax(P, axis=1) != yte))
    dataset = info.preparation.get("dataset")
    print(f"kernelgen: reloaded {args.load} ({dataset}, n_train={Xtr.shape[0]}, {fit.kernel!r})")
    print(f"  test error  {100 * test_error:.2f}% on {Xte.shape[0]} test images; saved relative residual "
          f"{fit.relative_residual:.2e}, RKHS norm {fit.rkhs_norm:.3g}")
    metrics = {"mode": "load", "loaded": args.load, "dataset": dataset, "preparation": info.preparation,
               "n_train": int(Xtr.shape[0]), "n_test": int(Xte.shape[0]), "kernel_spec": fit.kernel.to_dict(),
               "test_error": test_error, "relative_residual": fit.relative_residual, "rkhs_norm": fit.rkhs_norm,
               "ridge": fit.ridge, "timings": {"predict": t_predict}, "seconds": time.perf_counter() - t_start,
               "peak_rss_gb": cli.peak_rss_gb()}
    return cli.emit(metrics, json_out=args.json_out)


def _main(args) -> dict:
    if args.load is not None:
        return _load_main(args)
    t_start = time.perf_counter()
    import kernelgen

    kernel = make_kernel(args)
    options = kernelgen.SolveOptions(dtype=args.dtype, tol=args.tol, storage=args.storage,
                                     scratch_dir=args.scratch_dir, certificate=args.certificate)
    verbose = not args.quiet
    comm = None
    if args.backend == "mpi":  # mpiexec -n P python scripts/mnist_kernel.py --backend mpi: rank 0 prints
        from kernelgen.factors._scalapack import import_mpi  # optional mpi4py: a named error says how to install

        comm = import_mpi().COMM_WORLD
        verbose = verbose and comm.Get_rank() == 0
    t0 = time.perf_counter()
    seeds = {"subset_seed": args.seed}
    if args.smoke:
        n_train, n_test = min(args.n_train, N_SMOKE_TRAIN), args.n_test or N_SMOKE_TEST
        smoke_seed = 0 if args.seed is None else args.seed
        Xtr, ytr, Xte, yte = synthetic_digits(n_train, n_test, seed=smoke_seed)
        # the project's convention: pixels / 255
        Xtr, Xte = Xtr.astype(np.float64) / 255.0, Xte.astype(np.float64) / 255.0
        seeds = {"synthetic_data": smoke_seed}
        dataset = "synthetic"
        preparation, rows = synthetic_preparation(n_train, n_test, smoke_seed), np.arange(n_train)
    else:
        rows = cli.subset_rows(args.n_train, N_MNIST_TRAIN, args.seed)
        preparation = MNIST_PREPARATION

        def load():
            return cli.load_mnist_scaled(train_index=rows, n_test=args.n_test, data_home=args.data_home,
                                         verbose=verbose)

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
    if args.augment_shifts:
        Xs, _ = shifted_copies(Xtr, args.shift_seed)
        Xtr, ytr = np.concatenate([Xtr, Xs]), np.concatenate([ytr, ytr])
        seeds["shift_seed"] = args.shift_seed
        preparation = {**preparation, "augment": "one-pixel shifts", "shift_seed": args.shift_seed}
    Y = cli.one_hot(ytr, 10)
    t_load = time.perf_counter() - t0

    cli.check_interrupted()
    fit = kernelgen.kernel_interpolate(Xtr, Y, kernel=kernel, ridge=args.ridge, solver=args.solver,
                                       backend=args.backend, options=options, verbose=verbose)
    cli.check_interrupted()
    train_error = float(np.mean(np.argmax(fit.fitted, axis=1) != ytr))
    t0 = time.perf_counter()
    if comm is not None:
        from kernelgen.solvers._mpi_backend import predict_mpi

        P = predict_mpi(fit, Xte, comm=comm)
    else:
        P = fit.predict(Xte, verbose=verbose)
    t_predict = time.perf_counter() - t0
    test_error = float(np.mean(np.argmax(P, axis=1) != yte))
    cli.check_interrupted()
    if args.save and (comm is None or comm.Get_rank() == 0):  # one writer; written whole or not at all
        fit.save(args.save, preparation=preparation, rows=rows)
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
        "preparation": preparation,
        "augment_shifts": args.augment_shifts,
        "factor_storage": fit.plan.storage if fit.plan is not None else None,
        "factor_info": fit.factor_info,
        "plan": fit.plan.to_dict() if fit.plan is not None else None,
    }
    if comm is not None:
        metrics["mpi_processes"] = comm.Get_size()
        metrics["peak_rss_gb_per_process"] = comm.allgather(cli.peak_rss_gb())
        metrics["mpi_plan"] = {k: v for k, v in fit.plan.to_dict().items() if k in ("grid", "nb", "local_shape", "bytes")}
        if comm.Get_rank() != 0:
            return metrics
    print(f"kernelgen exact kernel interpolation on {dataset}: n_train={metrics['n_train']}, {fit.kernel!r}")
    print(f"  test error  {100 * test_error:.2f}%   train error {100 * train_error:.2f}%")
    print(f"  relative residual {fit.relative_residual:.2e} (float64; factor {fit.factor_dtype}, "
          f"{fit.n_matvecs} float64 kernel passes, residual {fit.residual_mode})")
    if fit.relative_residual_bound is not None:
        print(f"  proven bound on the exact-arithmetic residual {fit.relative_residual_bound:.2e} "
              f"(certificate: {fit.residual_certificate})")
    print(f"  RKHS norm {fit.rkhs_norm:.3g}   ridge {fit.ridge:.3g}   solver {fit.solver}/{fit.backend}")
    if metrics["factor_storage"] == "disk":
        st = fit.factor_info.get("stats", {})
        print(f"  factor out of core: {fit.factor_info.get('file_bytes', 0) / 1e9:.1f} GB file, read "
              f"{st.get('bytes_read', 0) / 1e9:.1f} GB and wrote {st.get('bytes_written', 0) / 1e9:.1f} GB while "
              f"factoring (waited {st.get('io_wait', 0):.1f} s on reads), solves read "
              f"{st.get('solve_bytes_read', 0) / 1e9:.1f} GB in {st.get('solve_seconds', 0):.1f} s")
    print("  time " + ", ".join(f"{k} {v:.1f}s" for k, v in metrics["timings"].items())
          + f"; total {seconds:.1f}s; peak RSS {metrics['peak_rss_gb']:.2f} GB")
    return cli.emit(metrics, json_out=args.json_out, seeds=seeds)


def main(argv=None) -> int:
    return cli.run(_main, build_parser(), argv, check=check)


if __name__ == "__main__":
    raise SystemExit(main())
