"""A fit's factor and operator are freed when the last reference to the fit goes, without waiting for
the garbage collector: a reference cycle (fit -> closure -> fit) once kept a 60k factor (14.6 GB)
alive into the next solve of a bandwidth loop, whose memory plan then went out of core."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from kernelgen import SolveOptions, kernel_interpolate
from kernelgen.evidence import kernel_log_evidence
from kernelgen.kernels import Gaussian


_BEFORE: set[int] = set()
_MODULES = ("kernelgen.factors", "kernelgen.solvers._system")


def _ours(o) -> bool:
    mod = getattr(type(o), "__module__", "")
    return isinstance(mod, str) and mod.startswith(_MODULES) and not isinstance(o, type)


def _alive() -> list[str]:
    """Instances of kernelgen's factor and operator classes alive now that were not before the test
    (module-level objects such as enum members are there from import on)."""
    return sorted({type(o).__qualname__ for o in gc.get_objects() if _ours(o) and id(o) not in _BEFORE})


@pytest.fixture
def no_gc():
    gc.collect()
    _BEFORE.clear()
    _BEFORE.update(id(o) for o in gc.get_objects() if _ours(o))
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def _data(n=300, d=8, k=2):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)), rng.standard_normal((n, k))


@pytest.mark.parametrize("route", ["kept factor", "kept factor, new targets", "evidence"])
def test_dropping_the_fit_frees_its_factor_without_gc(no_gc, route):
    X, Y = _data()
    if route == "evidence":
        ev = kernel_log_evidence(X, Y, kernel=Gaussian(bandwidth=3.0))
        assert np.isfinite(ev.log_evidence)
        assert _alive() != []  # the factor is held while the result is (the check below can fail)
        del ev
    else:
        fit = kernel_interpolate(X, Y, kernel=Gaussian(bandwidth=3.0), options=SolveOptions(keep_factor=True))
        if route == "kept factor, new targets":
            fit2 = fit.solve(Y[:, ::-1])
            assert fit2.certificate.relative_residual <= 1e-10
            del fit2
        assert _alive() != []
        del fit
    assert _alive() == []
