"""The certificate of a kernel solve: what certifies alpha, how, and what ran (private; see kernelgen.solvers).

Every backend's result ends as one frozen :class:`Certificate`, built by the orchestration from the
float64 iteration's outcome; ``KernelInterpolant`` exposes its fields under the names users and the
scripts' JSON lines read (``fit.relative_residual``, ``.history``, ``.solver``, ``.backend``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Certificate", "FrozenRecord"]


class FrozenRecord(dict):
    """A read-only dict (one entry of a certificate's history): item assignment and updates raise TypeError.

    A ``dict`` subclass, so that it prints, compares, pickles and JSON-encodes as a dict; hashable.
    """

    def _refuse(self, *args, **kwargs):
        raise TypeError("a certificate's history is read-only (the fit is immutable).")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = __ior__ = _refuse

    def __hash__(self):
        return hash(tuple(sorted((k, repr(v)) for k, v in self.items())))

    def __reduce__(self):
        return (FrozenRecord, (dict(self),))

_METHODS = ("direct", "bound")


@dataclass(frozen=True)
class Certificate:
    """What certifies the coefficients of one solve (immutable).

    Attributes
    ----------
    relative_residual : float
        ||Y - (K + ridge I) alpha||_F / ||Y||_F as certified: computed by a direct float64 product
        independent of the factor (``method == "direct"``), or a proven upper bound on it in exact
        arithmetic (``method == "bound"``, equal to ``relative_residual_bound``).
    method : {"direct", "bound"}
        How ``relative_residual`` was obtained.
    relative_residual_bound : float or None
        A proven bound on the exact-arithmetic relative residual, where the operator's products have
        one (:meth:`KernelOperator.error_bound`); else None and ``bound_reason`` says why.
    bound_reason : str or None
        Why there is no proven bound (None when there is one).
    last_direct_residual : float or None
        The last relative residual computed by a direct product.
    tol : float
        The tolerance the iteration was asked to reach.
    history : tuple of dict
        Each float64 residual reached (step, kind, relative_residual, seconds).
    n_matvecs : int
        float64 kernel passes.
    solver, backend : str
        What ran (``solver``: "cholesky" or "min_norm").
    factor_dtype : str
        dtype of the factor (float32 = mixed precision with a float64 iteration).
    residual_mode : str
        How the float64 product was computed (:class:`~kernelgen.solvers._backend.OperatorMode`'s value).
    rank, rank_tol, condition_number
        Numerical rank (n for Cholesky), its threshold and the kept spectrum's condition number
        (``min_norm``; None for Cholesky).
    spectrum_estimate : tuple of float or None
        Extreme Ritz values of the preconditioned operator from CG (an estimate).
    """

    relative_residual: float
    method: str
    relative_residual_bound: float | None
    bound_reason: str | None
    last_direct_residual: float | None
    tol: float
    history: tuple
    n_matvecs: int
    solver: str
    backend: str
    factor_dtype: str
    residual_mode: str
    rank: int | None = None
    rank_tol: float | None = None
    condition_number: float | None = None
    spectrum_estimate: tuple | None = None

    def __post_init__(self):
        if self.method not in _METHODS:
            raise ValueError(f"Certificate.method must be one of {_METHODS}, got {self.method!r}")
        object.__setattr__(self, "residual_mode", str(self.residual_mode))
        object.__setattr__(self, "history", tuple(FrozenRecord(h) for h in self.history))
        if self.spectrum_estimate is not None:
            object.__setattr__(self, "spectrum_estimate", tuple(float(v) for v in self.spectrum_estimate))

    @classmethod
    def from_refinement(cls, res, *, operator, tol, solver, backend, factor_dtype, rank=None, rank_tol=None,
                        condition_number=None, bound_reason=None) -> "Certificate":
        """The certificate of a :class:`~kernelgen.solvers.RefinementResult` reached through ``operator``."""
        if res.relative_residual_bound is None and bound_reason is None:
            reason = getattr(operator, "no_bound_reason", lambda: None)()
            bound_reason = reason or "no proven error bound was carried for these products"
        elif res.relative_residual_bound is not None:
            bound_reason = None
        return cls(relative_residual=float(res.relative_residual), method=res.certificate,
                   relative_residual_bound=res.relative_residual_bound, bound_reason=bound_reason,
                   last_direct_residual=res.last_direct_residual, tol=float(tol), history=tuple(res.history),
                   n_matvecs=int(res.n_matvecs), solver=solver, backend=backend, factor_dtype=str(factor_dtype),
                   residual_mode=str(getattr(operator, "mode", "unknown")), rank=rank, rank_tol=rank_tol,
                   condition_number=condition_number, spectrum_estimate=res.spectrum_estimate)

    def to_dict(self) -> dict:
        """The certificate as a JSON-serialisable dict (history as a list of dicts)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["history"] = [dict(h) for h in self.history]
        out["spectrum_estimate"] = None if self.spectrum_estimate is None else list(self.spectrum_estimate)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Certificate":
        """Inverse of :meth:`to_dict` (unknown keys are an error: the file format names every field)."""
        return cls(**d)

    def describe(self) -> str:
        """One line: the residual, how it is certified, and what ran."""
        bound = ("no proven bound: " + self.bound_reason if self.relative_residual_bound is None
                 else f"proven bound {self.relative_residual_bound:.3e}")
        return (f"relative residual {self.relative_residual:.3e} ({self.method}; {bound}) after {self.n_matvecs} "
                f"float64 passes; {self.solver} on {self.backend}, factor {self.factor_dtype}, products "
                f"{self.residual_mode}")
