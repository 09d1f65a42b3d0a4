"""SGD, gradient descent and randomised Kaczmarz on least squares, primal and dual.

The claim this module makes visible (Zhang et al. 2017, section 5): gradient methods
started at ``w0 = 0`` keep ``w = X^T alpha`` in the row space of ``X``, and when they
interpolate, ``X w = y``, the limit is the minimum-norm interpolant ``X^+ y``. The same
iteration runs in *kernel (dual) coordinates* ``alpha`` with rows of ``K = X X^T`` (or of
any PSD kernel matrix), which moves ``n/d`` of the bytes per step when ``n < d``.

Loss scaling (used everywhere in this module)
---------------------------------------------
Full batch::

    L(w) = (1 / 2N) ||X w - y||^2,          grad L = X^T (X w - y) / N,   Hessian H = X^T X / N

Mini-batch of size B (indices ``i_1 .. i_B``, duplicates allowed)::

    L_B(w) = (1 / 2B) sum_b (x_{i_b}^T w - y_{i_b})^2,   w <- w - eta * grad L_B(w)

so B = 1 is ``w <- w - eta * x_i (x_i^T w - y_i)`` and full-batch GD is
``w <- w - (eta / N) X^T (X w - y)``. Randomised Kaczmarz (Strohmer & Vershynin 2009)
is B = 1 with rows drawn with probability ``||x_i||^2 / ||X||_F^2`` and the per-row step
``eta_i = omega / ||x_i||^2`` (relaxation ``omega``, classical ``omega = 1``).

Dual form: with ``w = w0 + X^T alpha`` the residual of sample ``i`` is
``x_i^T w0 + K_i alpha - y_i``, so the mini-batch step is
``alpha[i_b] -= (eta / B) r_b`` (scatter-add: a sample drawn twice is updated twice),
the same trajectory as the primal one in exact arithmetic.

Stability bound (:func:`stability_bound`), with ``beta = max_i ||x_i||^2`` (``max K_ii``)
and ``lambda_1 = lambda_max(H)`` (``lambda_max(K) / N``):

- full-batch GD: ``eta < 2 / lambda_1`` (necessary and sufficient: the error contracts by
  ``max |1 - eta lambda|`` over the nonzero spectrum of H);
- B = 1: ``eta < 2 / beta`` -- the per-sample step ``I - eta x_i x_i^T`` has eigenvalue
  ``1 - eta ||x_i||^2`` along ``x_i``;
- mini-batch B with replacement: ``eta < 2B / (beta + (B - 1) lambda_1)``, twice the
  step ``eta*(B)`` of Ma, Bassily & Belkin (2018, Theorem 2): below it the expected squared
  error contracts, because ``E[H_B^2] <= (beta + (B - 1) lambda_1) / B * H``;
- mini-batch B without replacement (uniform B-subsets):
  ``eta < 2B(N - 1) / ((N - B) beta + N (B - 1) lambda_1)``, which is ``2 / beta`` at B = 1
  and ``2 / lambda_1`` at B = N (full-batch GD).

For B > 1 the bounds are sufficient, not necessary. A step above the bound raises
:class:`~kernelgen.errors.UnstableStepSizeError` unless ``allow_unstable=True``.

Rates and the row space
-----------------------
:func:`predicted_contraction` gives the per-step factor theory predicts for a recorded GD or
SGD run (GD: ``max(|1 - eta lambda+_min|, |1 - eta lambda_max|)``, exact; SGD with replacement:
the same factor for the mean error and an upper bound on the root-mean-square error), and
:func:`measured_contraction` the factor fitted on the run's recorded distances. A run counts as
at its limit only when its distance is actually small; scripts report the steps still needed
otherwise. ``Trajectory.out_of_span`` measures the null-space component of the float64 primal
iterate (see :class:`Trajectory` for where that can and cannot be nonzero).

Default path
------------
``form="auto"`` runs the dual form when ``n < d`` and ``K`` fits in
:data:`DUAL_MAX_BYTES` (the primal form otherwise): the trajectory is the same, each step
gathers ``B n`` numbers instead of ``B d``. Measured here (``benchmarks/bench_sgd.py``,
n = 1,000, d = 5,000, float64): dual 1.79M steps/s at B = 1 (13.5x a NumPy loop, 9.6x the jit
primal form) and 17.2k at B = 100 (8.8x the NumPy loop, 9.3x the primal form).

Precision: every iteration runs in float64 (``kernelgen._jax.enable_x64``) with
``precision=HIGHEST`` matmuls; inputs of any float dtype are converted to float64.

References
----------
Zhang, Bengio, Hardt, Recht, Vinyals. Understanding deep learning requires rethinking
generalization. ICLR 2017, section 5.
Ma, Bassily, Belkin. The power of interpolation: understanding the effectiveness of SGD in
modern over-parametrized learning. ICML 2018, Theorem 2 (eta*(m) = m / (beta + (m - 1) lambda_1)).
Strohmer, Vershynin. A randomized Kaczmarz algorithm with exponential convergence.
J. Fourier Anal. Appl. 15 (2009), Algorithm 1.
Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein, Pennington. Wide neural networks of any
depth evolve as linear models under gradient descent. NeurIPS 2019, eq. (9)
(``f(t) = y + exp(-eta t Theta / N) (f0 - y)``).

Where it lives
--------------
``_common``        :class:`Trajectory`, record schedules, step sizes, :func:`stability_bound`,
                   :func:`sample_indices`, the jit-compiled iterations, the problem setup
``_primal``        :func:`sgd`, :func:`gd`, :func:`kaczmarz` on ``X w = y`` (primal or dual form)
``_dual``          :func:`kernel_sgd`, :func:`kernel_gd`, :func:`kernel_kaczmarz` on ``K alpha = y``
``_closed_forms``  :func:`gd_closed_form`, :func:`gradient_flow_predictions`,
                   :func:`predicted_contraction`, :func:`measured_contraction`

Randomness: every sampled run takes ``key``, a JAX PRNG key or an int seed (this package's rule for
JAX-level functions, see :mod:`kernelgen`); the same key gives the same indices, primal or dual.
"""

from ._closed_forms import (
    PredictedContraction,
    gd_closed_form,
    gradient_flow_predictions,
    measured_contraction,
    predicted_contraction,
)
from ._common import (
    DUAL_MAX_BYTES,
    Trajectory,
    default_record_steps,
    sample_indices,
    stability_bound,
)
from ._dual import kernel_gd, kernel_kaczmarz, kernel_sgd
from ._primal import gd, kaczmarz, sgd

__all__ = [
    "DUAL_MAX_BYTES",
    "Trajectory",
    "stability_bound",
    "sample_indices",
    "sgd",
    "gd",
    "kaczmarz",
    "kernel_sgd",
    "kernel_gd",
    "kernel_kaczmarz",
    "gd_closed_form",
    "gradient_flow_predictions",
    "default_record_steps",
    "PredictedContraction",
    "predicted_contraction",
    "measured_contraction",
]
