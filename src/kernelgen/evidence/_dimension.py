"""Effective dimension ``N_eff(H, z) = sum_i lambda_i / (lambda_i + z)`` and the uniform null model
(private; see :mod:`kernelgen.evidence`).

References
----------
W. J. Maddox, G. Benton, A. G. Wilson, "Rethinking parameter counting in deep models: effective
dimensionality revisited", 2020 (N_eff). S. L. Smith and Q. V. Le, "A Bayesian perspective on
generalization and stochastic gradient descent", ICLR 2018, section 2 (the null model).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla

from .._validation import as_float_array
from ..errors import InvalidInputError, NonFiniteInputError, ShapeMismatchError

__all__ = [
    "effective_dimension",
    "uniform_null_log_evidence",
]


# ----------------------------------------------------------------------------------------------
# effective dimensionality
# ----------------------------------------------------------------------------------------------
def effective_dimension(H, z):
    """Effective dimensionality ``N_eff(H, z) = sum_i lambda_i / (lambda_i + z)``.

    Parameters
    ----------
    H : array of shape (d,) or (d, d)
        Eigenvalues, or a symmetric matrix (its eigenvalues are computed with scipy ``eigvalsh``).
    z : float or array of shape (m,)
        Positive regularisation level(s). ``z -> 0`` gives the number of positive eigenvalues (the
        rank); ``z -> inf`` gives 0. Equals PRML's gamma (eq. 3.91) with ``z = alpha``.

    Returns
    -------
    float or ndarray of shape (m,)

    References
    ----------
    Maddox, Benton & Wilson (2020); MacKay (1992); Bishop PRML eq. 3.91.
    """
    H = as_float_array(H, "H", ndim=(1, 2), dtype=np.float64)
    if H.ndim == 2:
        if H.shape[0] != H.shape[1]:
            raise ShapeMismatchError(f"H must be square, got shape {H.shape}.")
        lam = sla.eigvalsh(H, check_finite=False)
    else:
        lam = H
    z_arr = np.asarray(z, dtype=np.float64)
    if np.any(np.isnan(z_arr)):
        raise NonFiniteInputError("z contains NaN.")
    if np.any(z_arr <= 0):
        raise InvalidInputError("z must be > 0 (the limit z -> 0 is the rank; pass a small positive z).")
    zz = np.atleast_1d(z_arr)
    with np.errstate(invalid="ignore"):
        out = np.array([0.0 if math.isinf(zi) else float(np.sum(lam / (lam + zi))) for zi in zz])
    return float(out[0]) if z_arr.ndim == 0 else out


def uniform_null_log_evidence(n_samples: int, n_classes: int) -> float:
    """Log evidence of the null model that predicts uniform class probabilities: ``-N ln C``.

    It has no parameters, so its evidence is its likelihood (Smith & Le 2018, section 2).
    """
    if int(n_samples) < 0 or int(n_classes) < 2:
        raise InvalidInputError("need n_samples >= 0 and n_classes >= 2.")
    return -int(n_samples) * math.log(int(n_classes))
