"""Factorisations computed once and reused.

:class:`Factor` is the protocol (``solve``, ``logdet`` with its precision, ``rank``, ``dtype``,
``describe``); the implementations are

- :class:`CholeskyFactor` -- tiled Cholesky on SciPy/LAPACK, every call bounded, float32 or float64;
- :class:`JaxCholeskyFactor` -- dense Cholesky on a JAX device, NaN-checked;
- :class:`EighFactor` -- symmetric eigendecomposition: pseudo-inverse, rank, GP evidence, effective
  dimension;
- :class:`QRFactor` / :class:`SVDFactor` -- rectangular factors of a feature matrix Phi (QR / LQ, SVD):
  Phi^+ Y with the rank decided on Phi's own singular values (never on its Gram matrix).

A float32 factor's log-determinant is not the float64 one: :class:`LogDet` carries its error
estimate and says how it was obtained.
"""

from ._base import Factor, LogDet
from ._cholesky import CholeskyFactor, JaxCholeskyFactor
from ._eigh import EIGH_MAX_N, EighFactor
from ._rectangular import MAX_LAPACK_DIM, QRFactor, SVDFactor, qr_factor, svd_factor
from ._scalapack import ScalapackCholesky, ScalapackUnavailableError, load_scalapack
from ._tiled import LowerPanels, cholesky_solve_panels, symmetric_matvec_panels, tiled_cholesky

__all__ = [
    "CholeskyFactor",
    "EIGH_MAX_N",
    "EighFactor",
    "Factor",
    "JaxCholeskyFactor",
    "LogDet",
    "LowerPanels",
    "MAX_LAPACK_DIM",
    "QRFactor",
    "SVDFactor",
    "ScalapackCholesky",
    "ScalapackUnavailableError",
    "cholesky_solve_panels",
    "load_scalapack",
    "qr_factor",
    "svd_factor",
    "symmetric_matvec_panels",
    "tiled_cholesky",
]
