"""Bayesian evidence: exact (linear regression, Gaussian process) and Laplace.

What is here
------------
* :func:`blr_log_evidence` -- exact log evidence of Bayesian linear regression
  (Bishop PRML eq. 3.86) from a float64 Cholesky factor of ``A = alpha I + beta Phi^T Phi``.
* :func:`mackay_evidence` -- MacKay's fixed-point re-estimation of ``alpha`` and ``beta``
  (PRML eqs. 3.91-3.95), with a convergence report; the SVD of ``Phi`` is computed once.
* :func:`gp_log_evidence` -- exact ``sum_j log N(y_j | 0, a^2 K + sigma^2 I)`` per target column
  (Rasmussen & Williams eq. 2.30) from a float64 Cholesky factor.
* :func:`gp_type2_ml` -- "factor once, solve many": one symmetric eigendecomposition of ``K``
  (:meth:`kernelgen.factors.EighFactor.factor`, reusable across target sets) and then type-II
  maximum likelihood of the amplitude ``a^2`` and the noise variance ``sigma^2`` at O(n k) per
  evaluation.
* :func:`laplace_evidence` -- the Laplace approximation for any twice-differentiable log joint with
  a proper prior (JAX Hessian or a user-supplied exact Hessian), at its MAP found by L-BFGS and
  polished by Newton, or at a given point; with the Occam-factor decomposition.
* :func:`logistic_laplace_evidence`, :func:`softmax_laplace_evidence` -- logistic / softmax
  regression with a Gaussian prior; the Hessian is the exact Gauss-Newton matrix (exact for the
  canonical link).
* :func:`kernel_logistic_laplace_evidence` -- the same logistic Laplace evidence in function space
  (latent prior ``f ~ N(0, K)``, Rasmussen & Williams Alg. 3.1, eq. 3.32): O(n^3), for models with
  more parameters than samples; equal to the weight-space form for ``K = X X^T / lam``.
* :func:`effective_dimension` -- ``N_eff(H, z) = sum_i lambda_i / (lambda_i + z)``.
* :func:`kernel_log_evidence` -- the exact GP log evidence from data (X, Y, kernel, ridge): one float64
  tiled Cholesky factor of ``K + ridge I`` (planner-checked; on disk when RAM does not suffice), a
  certified float64 solve, the data-fit / complexity / constant parts and the amplitude's closed-form
  type-II optimum (independent GPs per target column, noise variance ``a^2 * ridge``).
* :func:`evidence_grid` -- that evidence over a grid of kernel hyper-parameters and ridges (one
  eigendecomposition per kernel setting for every ridge when n <= 8,192, else one Cholesky per pair),
  with the exact posterior mean's test error and MSE beside it (:class:`EvidenceGrid`);
  :func:`plot_evidence_grid` draws them against a hyper-parameter.

Dtype policy
------------
Everything is float64: inputs of any real dtype are converted to float64 (never computed in
float32: a float32 factor's log-determinant is not accurate enough, and refinement does not fix
it). JAX runs only inside :func:`kernelgen._jax.enable_x64`. No jitter or ridge is ever added: a
matrix that is not positive definite raises :class:`~kernelgen.errors.NotPositiveDefiniteError`.

References
----------
.. [1] C. M. Bishop, *Pattern Recognition and Machine Learning*, 2006, sections 3.5 and 4.4
   (eqs. 3.86, 3.91-3.95, 4.135-4.137).
.. [2] D. J. C. MacKay, "Bayesian interpolation", Neural Computation 4(3), 1992.
.. [3] C. E. Rasmussen and C. K. I. Williams, *Gaussian Processes for Machine Learning*, 2006,
   eq. 2.30 and section 5.4.
.. [4] S. L. Smith and Q. V. Le, "A Bayesian perspective on generalization and stochastic
   gradient descent", ICLR 2018.
.. [5] W. J. Maddox, G. Benton, A. G. Wilson, "Rethinking parameter counting in deep models:
   effective dimensionality revisited", 2020 (N_eff).

Where it lives
--------------
``_linear``     Bayesian linear regression and MacKay's fixed point
``_gp``         GP evidence, ``gp_type2_ml``
``_laplace``    the Laplace approximation; logistic, softmax and kernel-logistic evidence
``_dimension``  effective dimension and the uniform null model
``_exact``      the exact evidence from data (float64 factor) and its hyper-parameter grid
``_common``     helpers (float64 Cholesky without jitter, positive scalars)
"""

from ._dimension import effective_dimension, uniform_null_log_evidence
from ._exact import EvidenceGrid, KernelEvidence, evidence_grid, kernel_log_evidence, plot_evidence_grid
from ._gp import (
    GPEvidence,
    GPType2ML,
    gp_log_evidence,
    gp_type2_ml,
)
from ._laplace import (
    KernelLaplaceResult,
    LaplaceResult,
    kernel_logistic_laplace_evidence,
    laplace_evidence,
    logistic_laplace_evidence,
    softmax_laplace_evidence,
)
from ._linear import BLREvidence, MacKayResult, blr_log_evidence, mackay_evidence

__all__ = [
    "BLREvidence",
    "MacKayResult",
    "GPEvidence",
    "GPType2ML",
    "LaplaceResult",
    "KernelLaplaceResult",
    "blr_log_evidence",
    "mackay_evidence",
    "gp_log_evidence",
    "gp_type2_ml",
    "laplace_evidence",
    "logistic_laplace_evidence",
    "softmax_laplace_evidence",
    "kernel_logistic_laplace_evidence",
    "effective_dimension",
    "uniform_null_log_evidence",
    "EvidenceGrid",
    "KernelEvidence",
    "evidence_grid",
    "kernel_log_evidence",
    "plot_evidence_grid",
]
