"""The seeded data every MPI worker process and the single-process reference build (no MPI import)."""

import numpy as np


def data(n, seed=0):
    """X (n, 10) normal, Y (n, 2) normal, test inputs (300, 10): a Gaussian(bandwidth=2) K well conditioned."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    Y = rng.normal(size=(n, 2))
    Xt = rng.normal(size=(300, 10))
    return X, Y, Xt
