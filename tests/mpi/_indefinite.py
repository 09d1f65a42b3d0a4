"""A deliberately indefinite stationary kernel for the non-PD tests: K = I - c J' (J' ~ all ones).

k(x, z) = [x == z] - c exp(-||x - z||^2 / (2 h^2)) with h = 1e4 on data of unit scale, so every
entry of J' is 1 - O(1e-7). The leading m x m block of I - c J has eigenvalues 1 (m - 1 times) and
1 - c m: it is positive definite iff c m < 1, so Cholesky's first non-positive pivot is at 1-based
order m* = ceil(1 / c) (zero-based index m* - 1), a closed form.
"""

import numpy as np

from kernelgen.kernels import Kernel


class Indefinite(Kernel):
    name = "test_indefinite_identity_minus_ones"
    stationary = True

    def __init__(self, c=1.0 / 1000.5, h=1e4):
        self.c, self.h = c, h

    def _check(self):
        pass

    def from_sqdist(self, r2):  # a plain Kernel: r2 is ||x - z||^2 in data units
        return (r2 == 0) * 1.0 - self.c * np.exp(-r2 / (2.0 * self.h**2))

    def diag(self, X):
        return np.full(np.asarray(X).shape[0], 1.0 - self.c)


def expected_index(c=1.0 / 1000.5):
    """Zero-based index of the first non-positive pivot of I - c J (module docstring)."""
    return int(np.ceil(1.0 / c)) - 1
