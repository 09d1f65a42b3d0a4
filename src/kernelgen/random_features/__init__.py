"""Random-feature models, minimum-norm fits and double-descent sweeps over the width.

Modules: ``_features`` (feature maps, arc-cosine kernel, ``min_norm_fit``), ``_sweep`` (the exact sweep),
``_targets`` (``encode_targets``: the one rule deciding class labels vs regression targets, shared by the sweep,
the estimators and the scripts). The
scikit-learn estimators ``RandomFeaturesRegressor`` / ``RandomFeaturesClassifier`` live in
:mod:`kernelgen.estimators` with the kernel-interpolation estimators.

Features
--------
``"fourier"`` (Rahimi & Recht): ``phi_j(x) = sqrt(2/N) cos(v_j^T x + b_j)``,
``v_j ~ N(0, s^{-2} I_d)``, ``b_j ~ U[0, 2 pi)``. Then ``E[Phi Phi^T] = K`` with the Gaussian
kernel ``K(x, z) = exp(-||x - z||^2 / (2 s^2))`` (proof: ``proofs/rff_gaussian_kernel.py``),
the coefficient norm is comparable with the kernel interpolant's RKHS norm, and the
interpolation threshold sits at ``N = n`` (Belkin, Hsu, Ma, Mandal 2019).

``"relu"``: ``phi_j(x) = sqrt(2/N) max(0, v_j^T x)``, ``v_j ~ N(0, s^{-2} I_d)``; the limit
kernel is the order-1 arc-cosine kernel ``s^{-2} ||x|| ||z|| (sin t + (pi - t) cos t) / pi``
(Cho & Saul 2009), :func:`arccos_kernel`.

A drawn map (:class:`RandomFeatureMap`) holds ``N_max`` features; the model of width ``N``
uses its first ``N`` columns rescaled to ``sqrt(2/N)`` ("nested features"), so a sweep
over ``N`` reuses one draw. Features are generated in row x column blocks whose
temporaries stay below ``block_bytes``.

Minimum-norm fits
-----------------
:func:`min_norm_fit` is ``a = Phi^+ Y`` through :func:`kernelgen.min_norm_solve`: least
squares below ``N = n``, minimum-norm interpolation above, rank-revealing throughout.

:func:`double_descent_sweep` returns ``Phi_N^+ Y`` at every width, computed from ``Phi_N`` (a rank
cut-off on a Gram matrix would act on ``kappa(Phi)^2`` and discard singular values of ``Phi`` below
``sqrt(cutoff) sigma_max``: at ``N = n`` on the first 3,000 MNIST images that changed the test error
from 89.2% to 83.6% and the coefficient norm from 13,580 to 1,056). It reuses work across widths:

* ``N <= n``: the leading ``N x N`` block of ``A = Psi^T Psi`` (``Psi`` the unnormalised
  features of the widest draw) is the Gram matrix of width ``N``, and the leading block of
  the Cholesky factor ``A = R^T R`` is its factor: one ``potrf`` serves every width below ``n``.
  ``R`` is used only as a right preconditioner: CGLS on ``Phi_N R^-1`` from the seminormal
  solution (Bjorck 1996, sec. 7.4) converges to ``Phi_N^+ Y`` with the accuracy of a
  backward-stable solve on ``Phi_N``.
* ``N > n``: ``S_N = Psi_N Psi_N^T = L L^T`` is accumulated column block by column block (``syrk``)
  and factored once per width; CGLS on ``L^-1 Phi_N`` from ``Phi_N^T S_N^-1 Y`` stays in the row
  space of ``Phi_N`` and converges to the minimum-norm interpolant.
* The Gram factor is used only where LAPACK's condition estimate says it is a good
  preconditioner (``SweepOptions.chol_rcond_factor``); near ``N = n`` (and wherever CGLS does not
  converge) a Householder QR / LQ of ``Phi_N`` solves and decides the rank on the singular values
  of ``Phi_N`` (:class:`kernelgen.factors._rectangular.QRFactor`).
* Every width is certified with ``Phi_N`` itself, independently of the factor used:
  ``||Phi^T (Y - Phi a)|| / (||Phi|| ||Y||)`` and ``||Y - Phi a|| / ||Y||``.

Dtype policy: everything is float64 (inputs are converted); ``Phi`` at ``N ~ n`` has condition
numbers of 1e5 - 1e7 (MNIST), its Gram matrices their squares, far beyond float32's reach.

References
----------
.. [RR] A. Rahimi, B. Recht. Random features for large-scale kernel machines. NIPS 2007.
.. [BHMM] M. Belkin, D. Hsu, S. Ma, S. Mandal. Reconciling modern machine-learning practice
   and the classical bias-variance trade-off. PNAS 116(32), 2019, Fig. 2 (RFF on MNIST).
.. [CS] Y. Cho, L. Saul. Kernel methods for deep learning. NIPS 2009, eq. (6)-(7).
"""

from ._features import (
    FEATURE_KINDS,
    MinNormFit,
    RandomFeatureMap,
    arccos_kernel,
    draw_random_features,
    min_norm_fit,
    random_fourier_features,
)
from ._sweep import SweepOptions, SweepResult, default_widths, double_descent_sweep
from ._targets import TASKS, EncodedTargets, encode_targets, infer_task

__all__ = [
    "FEATURE_KINDS",
    "TASKS",
    "EncodedTargets",
    "MinNormFit",
    "RandomFeatureMap",
    "SweepOptions",
    "SweepResult",
    "arccos_kernel",
    "default_widths",
    "double_descent_sweep",
    "draw_random_features",
    "encode_targets",
    "infer_task",
    "min_norm_fit",
    "random_fourier_features",
]
