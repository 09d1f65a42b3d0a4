"""Reliability issue 21, kernel parts: no silent wrong answer from a user's kernel.

Item 1 (a kernel impersonating a built-in), item 11 (the public extension API and its scaling
contract, the docs' Matérn example executed), item 10 (median bandwidth at data scales 1e200 and
1e-300; a kernel without JAX twin on the JAX path; ``has_jax``), item 6 (kernels and entries pickle,
bit-identical). Oracles: closed forms computed independently with SciPy's ``cdist``, exact
power-of-two scale invariance, and the class identities themselves.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import kernelgen
from kernelgen.errors import KernelIdentityError, NonFiniteResultError, UnsupportedOptionError
from kernelgen.kernels import (
    Gaussian,
    Kernel,
    Laplace,
    Linear,
    Polynomial,
    ReluNNGP,
    ReluNTK,
    as_kernel,
    default_bandwidth,
    kernel_matrix,
    kernel_matrix_jax,
)
from kernelgen.kernels import _base

DOCS = Path(__file__).resolve().parents[1] / "docs" / "kernels.md"


class PlainCauchy(Kernel):
    """A user kernel written on the public hook only: k = 1 / (1 + ||x - z||^2 / h^2); no JAX twin."""

    name = "test_ufk_plain_cauchy"
    stationary = True

    def __init__(self, h=1.0):
        self.h = h

    def from_sqdist(self, r2):  # a plain Kernel: r2 in data units
        return 1.0 / (1.0 + r2 / self.h**2)


@pytest.fixture
def registry():
    """Restore the kernel registry after a test that defines classes (even where a clash is not refused)."""
    saved = dict(_base._REGISTRY)
    yield _base._REGISTRY
    _base._REGISTRY.clear()
    _base._REGISTRY.update(saved)


@pytest.fixture(scope="module")
def matern():
    """The docs' worked example, executed as written (module name fixed: re-running it must re-register)."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/kernels.md has one worked example"
    ns = {"__name__": "docs_kernels_example"}
    exec(compile(blocks[0], str(DOCS), "exec"), ns)  # noqa: S102 - the documentation's own code
    return ns


def _data(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal(n)


def _matern32_closed_form(X, Z, s):
    r = np.sqrt(3.0) * cdist(X, Z) / s
    return (1.0 + r) * np.exp(-r)


# ---------------------------------------------------------------------------------------- item 1
def test_a_user_class_cannot_take_a_builtin_name(registry):
    with pytest.raises(KernelIdentityError, match="gaussian.*already registered.*_families:Gaussian"):
        class Fake(Kernel):  # noqa: F841 - the definition itself is refused
            name = "gaussian"
            stationary = True

            def from_sqdist(self, r2):
                return 1.0 / (1.0 + r2)
    assert type(as_kernel("gaussian")) is Gaussian
    assert registry["gaussian"] is Gaussian


@pytest.mark.parametrize("kname", ["Gaussian", "GAUSSIAN", "gAuSsIaN"])
def test_a_name_differing_only_in_case_from_a_registered_one_is_refused(registry, kname):
    """"Gaussian" beside the built-in "gaussian" would be two kernels one letter apart: refused at definition."""
    match = f"'{kname}' differs only in case from 'gaussian'.*_families:Gaussian"
    with pytest.raises(KernelIdentityError, match=match):
        class Fake(Kernel):  # noqa: F841 - the definition itself is refused
            name = kname
            stationary = True

            def from_sqdist(self, r2):
                return 1.0 / (1.0 + r2)
    assert kname not in registry and registry["gaussian"] is Gaussian
    assert type(as_kernel("gaussian")) is Gaussian  # lookups unchanged (exact)


def test_user_names_clash_ignoring_case_too(registry):
    class Mine(Kernel):
        name = "test_ufk_Case_Kernel"
        stationary = True

        def from_sqdist(self, r2):
            return 1.0 / (1.0 + r2)

    with pytest.raises(KernelIdentityError, match="differs only in case from 'test_ufk_Case_Kernel'.*Mine"):
        class Other(Kernel):  # noqa: F841
            name = "test_ufk_case_kernel"
    assert registry["test_ufk_Case_Kernel"] is Mine and "test_ufk_case_kernel" not in registry


def test_the_same_class_defined_again_re_registers(registry):
    # a notebook cell run twice: same module and qualified name, a new class object
    src = "from kernelgen.kernels import Stationary\nclass Cell(Stationary):\n    name = 'test_ufk_cell'\n"
    first, second = {"__name__": "nb_cell"}, {"__name__": "nb_cell"}
    exec(src, first)  # noqa: S102
    exec(src, second)  # noqa: S102
    assert registry["test_ufk_cell"] is second["Cell"]
    other = {"__name__": "another_module"}
    with pytest.raises(KernelIdentityError, match="nb_cell:Cell"):
        exec(src, other)  # noqa: S102


def test_an_unnamed_subclass_is_never_found_by_its_parents_name(registry):
    class MyGauss(Gaussian):
        def from_sqdist(self, r2):
            r2 += 1.0
            return np.reciprocal(r2, out=r2)

    assert registry["gaussian"] is Gaussian
    assert type(as_kernel("gaussian", bandwidth=1.0)) is Gaussian
    assert type(Kernel.from_dict(Gaussian(1.0).to_dict())) is Gaussian


def test_to_dict_records_the_class_and_from_dict_refuses_another():
    d = (Gaussian(2.0) + 0.5 * Linear()).to_dict()
    assert d["class"] == "kernelgen.kernels._base:Sum"
    assert d["params"]["kernels"][0]["class"] == "kernelgen.kernels._families:Gaussian"
    assert Kernel.from_dict(d) == Gaussian(2.0) + 0.5 * Linear()
    forged = Gaussian(2.0).to_dict() | {"class": "user_notebook:Cauchy"}
    with pytest.raises(KernelIdentityError, match="user_notebook:Cauchy.*_families:Gaussian"):
        Kernel.from_dict(forged)
    legacy = {"kernel": "gaussian", "params": {"bandwidth": 2.0}}  # files written before the class was recorded
    assert Kernel.from_dict(legacy) == Gaussian(2.0)


def test_load_interpolant_refuses_a_file_whose_kernel_name_now_denotes_another_class(tmp_path, registry):
    X, y = _data()
    path = tmp_path / "fit.npz"
    kernelgen.kernel_interpolate(X, y, kernel=Gaussian(1.5)).save(path)

    class Impostor(Gaussian):  # another session in which "gaussian" denotes a different class
        def from_sqdist(self, r2):
            return 1.0 / (1.0 + r2)

    registry["gaussian"] = Impostor
    with pytest.raises(KernelIdentityError, match="Impostor"):
        kernelgen.load_interpolant(path, X)


def test_a_subclass_overriding_the_formula_gets_its_own_entries_and_no_proven_bound(registry):
    class Cauchy(Gaussian):
        def from_sqdist(self, r2):
            r2 += 1.0
            return np.reciprocal(r2, out=r2)

    X, y = _data()
    k = Cauchy(bandwidth=1.3)
    ref = 1.0 / (1.0 + cdist(X, X, "sqeuclidean") / 1.3**2)
    # centred expansion / differences: |error of r2| ~ 1e-15 on O(1) data, so the entries agree to ~1e-14
    np.testing.assert_allclose(kernel_matrix(X, kernel=k), ref, rtol=1e-12, atol=0)
    assert k.entries(X).entry_error_bound() is None
    fit = kernelgen.kernel_interpolate(X, y, kernel=k)
    assert fit.relative_residual_bound is None
    assert fit.relative_residual <= 1e-10
    # the exact built-ins keep their proof
    assert Gaussian(bandwidth=1.3).entries(X).entry_error_bound() is not None
    Xi = np.round(X * 255.0) / 255.0
    assert Laplace(bandwidth=3.0).entries(Xi).entry_error_bound() is not None


# ---------------------------------------------------------------------------------------- item 11
def test_the_hooks_are_public_and_no_private_alias_is_left():
    for hook in ("from_sqdist", "from_gram", "from_sqdist_jax", "from_gram_jax"):
        assert callable(getattr(Kernel, hook))
        assert not hasattr(Kernel, "_" + hook)
    r2 = np.array([0.0, 1.0, 4.0])
    np.testing.assert_array_equal(Gaussian(1.0).from_sqdist(r2.copy()), np.exp(-r2 / 2.0))
    np.testing.assert_array_equal(Laplace(1.0).from_sqdist(r2.copy()), np.exp(-np.sqrt(r2)))


def test_docs_matern_example_entries_match_the_closed_form_and_interpolate(matern):
    Matern32 = matern["Matern32"]
    X, y = matern["X"], matern["y"]
    k = Matern32(bandwidth=2.0)
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((17, X.shape[1]))
    # float64 entries vs the closed form through cdist: both within ~1e-15 relative of exact
    np.testing.assert_allclose(kernel_matrix(X, Z, kernel=k), _matern32_closed_form(X, Z, 2.0), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(k.diag(X), np.ones(X.shape[0]))  # k(0) = 1 exactly
    fit = matern["fit"]
    assert fit.relative_residual <= 1e-10
    # interpolation: K alpha = y to the certified residual, so predictions at X recover y to ~1e-10 |y|
    np.testing.assert_allclose(fit.predict(X), y, rtol=0, atol=1e-8 * np.max(np.abs(y)))
    assert type(as_kernel("matern32")) is Matern32
    assert Kernel.from_dict(k.to_dict()) == k
    assert k.has_jax
    Kj = np.asarray(kernel_matrix_jax(X, Z, kernel=k))
    np.testing.assert_allclose(Kj, _matern32_closed_form(X, Z, 2.0), rtol=1e-12, atol=0)  # float64 on the device
    # the example run twice (a notebook cell) re-registers instead of clashing
    exec(compile(DOCS.read_text(encoding="utf-8").split("```python\n")[1].split("```")[0], "again", "exec"),  # noqa: S102
         {"__name__": "docs_kernels_example"})


@pytest.mark.parametrize("scale", [2.0**665, 1e200, 2.0**-997, 1e-300])
def test_a_natural_formula_is_right_at_data_scales_1e200_and_1e_300(matern, scale):
    Matern32 = matern["Matern32"]
    X, _ = _data(30, 4)
    k1 = Matern32().resolve(X)
    ks = Matern32().resolve(X * scale)
    # the median bandwidth scales with the data (exact for powers of two; 1e200 rounds each coordinate once)
    np.testing.assert_allclose(ks.bandwidth, k1.bandwidth * scale, rtol=1e-13)
    Ks = kernel_matrix(X * scale, kernel=ks)
    assert np.all(np.isfinite(Ks))
    # the kernel is scale invariant: k(cX; c s) = k(X; s); relative error of r ~ 1e-15 per rounding
    np.testing.assert_allclose(Ks, _matern32_closed_form(X, X, k1.bandwidth), rtol=1e-12, atol=1e-300)


def test_a_formula_that_turns_non_finite_gets_a_named_error_not_a_raw_overflow():
    class Careless(Kernel):  # (1 + r) exp(-r) with r in data units: inf * 0 = NaN where r2 overflows
        name = "test_ufk_careless"
        stationary = True

        def __init__(self):
            pass

        def from_sqdist(self, r2):
            r = np.sqrt(r2)
            return (1.0 + r) * np.exp(-r)

    X, _ = _data(12, 2)
    K = kernel_matrix(X, kernel=Careless())  # at scale 1 it is fine
    np.testing.assert_allclose(K, (1 + cdist(X, X)) * np.exp(-cdist(X, X)), rtol=1e-12)
    with pytest.raises(NonFiniteResultError, match="Careless.from_sqdist"):
        kernel_matrix(X * 1e200, kernel=Careless())
    # a plain kernel whose formula has the right limit gets it: exp(-r2) = 0 beyond the float range
    K = kernel_matrix(X * 1e200, kernel=PlainCauchy())
    np.testing.assert_array_equal(K, np.eye(X.shape[0]))  # 1 / (1 + 1e400) is 0 to float64


def test_resolve_keeps_every_other_hyper_parameter(registry):
    from kernelgen.kernels import Stationary

    class Rational(Stationary):
        name = "test_ufk_rational"

        def __init__(self, bandwidth=None, alpha=2.0):
            self.alpha = alpha
            super().__init__(bandwidth)

        def from_sqdist(self, r2):
            return (1.0 + r2 / (2.0 * self.alpha)) ** -self.alpha

    X, _ = _data()
    k = Rational(alpha=0.7).resolve(X)
    assert k.alpha == 0.7 and k.bandwidth == default_bandwidth(X, kernel="test_ufk_rational")


# ---------------------------------------------------------------------------------------- item 10
@pytest.mark.parametrize("scale", [1e200, 1e-300, 2.0**1000, 2.0**-1020])
def test_default_bandwidth_at_any_data_scale(scale):
    X, _ = _data(50, 3)
    for kernel in ("gaussian", "laplace"):
        # a median of distances scales with the data; 1e200 rounds every coordinate once (rel. 1e-16)
        np.testing.assert_allclose(default_bandwidth(X * scale, kernel=kernel),
                                   default_bandwidth(X, kernel=kernel) * scale, rtol=1e-13)


def test_a_kernel_without_jax_twin_is_refused_by_name_on_the_jax_path():
    X, y = _data(10, 2)
    k = PlainCauchy()
    assert not k.has_jax
    with pytest.raises(UnsupportedOptionError, match=r"PlainCauchy.*no JAX implementation.*backend='scipy'"):
        kernel_matrix_jax(X, kernel=k)
    with pytest.raises(UnsupportedOptionError, match="PlainCauchy") as ei:
        kernelgen.kernel_interpolate(X, y, kernel=k, backend="jax")
    # the remedy names the public hook a user implements (from_sqdist_jax: PlainCauchy is stationary), never
    # a private name (_from_sqdist_jax / _from_gram_jax are not hooks)
    assert "implement from_sqdist_jax" in str(ei.value) and "_from_" not in str(ei.value)
    with pytest.raises(UnsupportedOptionError, match="PlainCauchy") as ei:
        kernel_matrix_jax(X, kernel=Gaussian(1.0) + 2.0 * k)
    assert "implement from_sqdist_jax" in str(ei.value) and "_from_" not in str(ei.value)
    from kernelgen.solvers import Problem, orchestrate  # the backend's own guard (driven directly)
    from kernelgen.solvers._jax_backend import JaxBackend

    opts = kernelgen.SolveOptions()
    problem = Problem(A=X, Y=y[:, None], kernel=k, ridge=0.0, precomputed=False, solver="cholesky", options=opts)
    with pytest.raises(UnsupportedOptionError, match="PlainCauchy") as ei:
        orchestrate(JaxBackend(precomputed=False, options=opts), problem)
    assert "implement from_sqdist_jax" in str(ei.value) and "_from_" not in str(ei.value)


def test_has_jax_is_true_only_where_the_jax_twin_computes_the_same_kernel(registry):
    for k in (Gaussian(1.0), Laplace(1.0), Linear(), Polynomial(2), ReluNNGP(), ReluNTK(),
              Gaussian(1.0) * Polynomial(2) + 0.5 * Linear(), kernelgen.kernels.Precomputed()):
        assert k.has_jax is True, k
    assert (Gaussian(1.0) + PlainCauchy()).has_jax is False
    assert (3.0 * PlainCauchy()).has_jax is False

    class Cauchy(Gaussian):  # overrides the NumPy formula only: Gaussian's JAX twin would be the wrong kernel
        def from_sqdist(self, r2):
            return 1.0 / (1.0 + r2)

    assert Cauchy(1.0).has_jax is False
    X, _ = _data(8, 2)
    with pytest.raises(UnsupportedOptionError, match="Cauchy"):
        kernel_matrix_jax(X, kernel=Cauchy(1.0))


# ---------------------------------------------------------------------------------------- item 6
@pytest.mark.parametrize("kern", [Gaussian(1.7), Laplace(2.0), Linear(), Polynomial(3, 2.0, 0.5), ReluNTK(depth=3),
                                  Gaussian(1.0) * Linear() + 0.5 * Laplace(3.0), PlainCauchy(2.0)],
                         ids=lambda k: type(k).__name__)
@pytest.mark.parametrize("integers", [False, True])
def test_kernels_and_entries_pickle_and_give_bit_identical_entries(kern, integers):
    X, _ = _data(70, 5)
    if integers:
        X = np.round(np.abs(X) * 60.0) / 255.0  # the exact integer form of 8-bit data
    k2 = pickle.loads(pickle.dumps(kern))
    assert k2 == kern and type(k2) is type(kern)
    src = kern.entries(X)
    ref = kernel_matrix(X, kernel=kern)
    src.block(0, 70, 0, 70, 0, np.empty((70, 70)))  # scratch buffers exist before pickling
    src2 = pickle.loads(pickle.dumps(src))
    out = np.empty((70, 70))
    src2.block(0, 70, 0, 70, 0, out)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(k2.matrix(X), ref)
    np.testing.assert_array_equal(kernel_matrix(X, kernel=k2), ref)
