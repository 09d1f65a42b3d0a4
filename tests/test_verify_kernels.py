"""Claims C11 (interpolating noisy labels, Belkin, Ma & Mandal 2018) and C13 (learning-curve exponents,
Spigler, Geiger & Wyart 2020): their helpers against closed forms, their smoke runs, and the fault
injections that must turn each claim into ``fail``.

Faults, each the way a real bug would enter: C11 -- the test labels flipped too (a label leak the other
way), the bandwidths read in raw-pixel units on pixels / 255; C13 -- targets permuted against the inputs,
an eigenbasis whose columns are shuffled against their eigenvalues.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import kernelgen.verify as V
from kernelgen.errors import InvalidInputError
from kernelgen.factors import EIGH_MAX_N
from kernelgen.verify import _claims_kernels as K

PNG = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path, ids, capsys):
    rc = V.main(["--budget", "smoke", "--only", ids, "--out", str(tmp_path), "-q"])
    out = capsys.readouterr().out.strip().splitlines()
    claims = {c["id"]: c for c in json.loads(out[-1])["claims"]}
    rep = {c["id"]: c for c in json.loads((tmp_path / "report.json").read_text())["claims"]}
    for cid, c in claims.items():
        if c["verdict"] == "not reproduced" and "data unavailable" in rep[cid]["reason"]:
            pytest.skip("MNIST unavailable")
    return rc, claims, rep


# ---------------------------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_flip_labels_flips_exactly_that_many_to_other_classes(fraction):
    y = np.random.default_rng(3).integers(0, 10, 1003)
    z = K.flip_labels(y, fraction, 10, seed=[1, 2])
    # the rule: exactly round(p n) labels change, each to another class in range, deterministically
    assert int(np.sum(z != y)) == round(fraction * y.size)
    assert z.min() >= 0 and z.max() < 10 and z.dtype == np.int64
    assert np.array_equal(z, K.flip_labels(y, fraction, 10, seed=[1, 2]))
    assert np.array_equal(y, np.random.default_rng(3).integers(0, 10, 1003))  # input not mutated


def test_flip_labels_draws_the_new_class_uniformly():
    # every wrong class equally likely: 90,000 flips of class 0 over 9 others, 10,000 expected each;
    # 5 binomial standard deviations (sqrt(10000 * 8/9) = 94) keep a false alarm below 1e-5
    z = K.flip_labels(np.zeros(90000, dtype=np.int64), 1.0, 10, seed=0)
    counts = np.bincount(z, minlength=10)
    assert counts[0] == 0 and np.all(np.abs(counts[1:] - 10000) <= 5 * 94)


def test_flip_labels_refuses_bad_input():
    with pytest.raises(InvalidInputError):
        K.flip_labels([0, 1], 1.5, 2, 0)
    with pytest.raises(InvalidInputError):
        K.flip_labels([0, 3], 0.5, 3, 0)
    with pytest.raises(InvalidInputError):
        K.flip_labels([0, 0], 0.5, 1, 0)


@pytest.mark.parametrize("k", [1, 2, 12, 16, 22])
def test_bonferroni_z_is_the_corrected_normal_quantile(k):
    z = K.bonferroni_z(k)
    # closed form through erf (independent of scipy's ppf): two-sided tail 0.05 / k; float64 erf to 1e-12
    assert abs(math.erfc(z / math.sqrt(2)) - 0.05 / k) <= 1e-12 * (0.05 / k) * 1e3
    if k == 1:
        assert abs(z - 1.959963984540054) <= 1e-12


def test_parity_is_plus_one_for_odd_digits():
    assert K.parity(np.arange(10)).tolist() == [-1.0, 1.0] * 5


@pytest.mark.parametrize("a_true", [0.0, 0.8, 1.36, 2.0])
def test_decay_exponent_recovers_the_power_law_and_its_standard_error(a_true):
    rho = np.arange(1, 4001.0)
    rng = np.random.default_rng(7)
    est = []
    for _ in range(60):
        w = rho ** -a_true * rng.standard_normal(rho.size) ** 2  # the chi-square model the estimator assumes
        a, se, centres, means = K.decay_exponent(w, 40, 400)
        est.append(a)
    est = np.array(est)
    # unbiased: the mean of 60 estimates within 4 standard errors of the mean (se / sqrt(60))
    assert abs(est.mean() - a_true) <= 4 * se / math.sqrt(60)
    # the Fisher standard error matches the spread over draws: the sample sd of 60 draws is within
    # ~ 1/sqrt(2 * 59) = 9% of the truth (1 sd), 30% allows 3 of them
    assert abs(est.std(ddof=1) / se - 1) <= 0.3
    assert centres.size == K.N_RANK_BINS and np.all(np.diff(centres) > 0) and np.all(means > 0)


def test_decay_exponent_pools_samples():
    rho = np.arange(1, 2001.0)
    rng = np.random.default_rng(1)
    W = rho ** -1.2 * rng.standard_normal((3, rho.size)) ** 2
    a1, se1, _, _ = K.decay_exponent(W[0], 20, 200)
    a3, se3, _, _ = K.decay_exponent(W, 20, 200)
    # three samples carry three times the Fisher information: se / sqrt(3) exactly
    assert abs(se3 - se1 / math.sqrt(3)) <= 1e-12
    assert abs(a3 - 1.2) <= 4 * se3


def test_decay_exponent_refuses_bad_ranges():
    with pytest.raises(InvalidInputError):
        K.decay_exponent(np.ones(100), 50, 200)
    with pytest.raises(InvalidInputError):
        K.decay_exponent(np.ones(100), 10, 11)
    with pytest.raises(InvalidInputError):
        K.decay_exponent(np.zeros(100), 10, 50)


def test_registry_scales_grow_and_respect_eigh_max_n():
    for c in K.CLAIMS:
        est = [c.scales[b].estimate_s for b in ("smoke", "quick", "full")]
        assert est == sorted(est), c.id
        assert not c.scales["smoke"].source_tested and c.scales["full"].source_tested
    c13 = {c.id: c for c in K.CLAIMS}["C13"]
    assert all(c13.scales[b].params["n_eig"] <= EIGH_MAX_N for b in ("smoke", "quick", "full"))
    # the full fit range is the source's [3k, 30k], and every independent subset size stays <= 30,000
    assert c13.scales["full"].params["fit_range"] == [3000, 30000]
    assert max(c13.scales["full"].params["sizes"]) == 30000


# ---------------------------------------------------------------------------------------------- smoke
def test_smoke_c11_c13_pass_with_their_numbers(tmp_path, capsys):
    rc, claims, rep = _run(tmp_path, "C11,C13", capsys)
    assert rc == 0, {k: v["reason"] for k, v in rep.items()}
    c11, c13 = rep["C11"], rep["C13"]
    # C11: the dense oracle ran for both kernels and all 3 label sets, and agreed
    assert [d["kernel"] for d in c11["details"]["dense_checks"]] == ["gaussian", "laplace"]
    assert all(len(d["test_errors"]) == 3 and d["pass"] for d in c11["details"]["dense_checks"])
    # every interpolant is exact on its own labels, flipped ones included
    assert all(p["train_error"] == 0 and p["relative_residual"] <= 1e-10 for p in c11["details"]["points"])
    # C13: both kernels measured, the exponent a positive decay, beta_hat = a - 1 by definition
    for kn in ("laplace", "gaussian"):
        r = c13["details"]["kernels"][kn]
        assert r["beta"] > 0.1 and abs(r["beta_hat"] - (r["a"] - 1)) <= 1e-12
    for c in (c11, c13):
        assert (tmp_path / c["figure"]).read_bytes()[:8] == PNG


# ---------------------------------------------------------------------------------------------- faults
def test_test_labels_flipped_too_fails_c11(tmp_path, monkeypatch, capsys):
    real = K._pool

    def leaky(ctx, name):  # the test labels flipped by the training rule: scored against noisy labels
        Xtr, ytr, Xte, yte = real(ctx, name)
        return Xtr, ytr, Xte, K.flip_labels(yte, 0.1, 10, seed=99)

    monkeypatch.setattr(K, "_pool", leaky)
    rc, claims, _ = _run(tmp_path, "C11", capsys)
    assert rc == 1 and claims["C11"]["verdict"] == "fail"


def test_bandwidth_in_raw_pixel_units_fails_c11(tmp_path, monkeypatch, capsys):
    # s = 5 and 10 read as raw 0-255 units while the pixels are / 255 (C13's convention applied to C11)
    monkeypatch.setattr(K, "C11_BANDWIDTHS", {"gaussian": 5.0 / 255, "laplace": 10.0 / 255})
    rc, claims, _ = _run(tmp_path, "C11", capsys)
    assert rc == 1 and claims["C11"]["verdict"] == "fail"


def test_targets_permuted_against_inputs_fail_c13(tmp_path, monkeypatch, capsys):
    real = K.parity
    monkeypatch.setattr(K, "parity", lambda y: np.random.default_rng(5).permutation(real(y)))
    rc, claims, rep = _run(tmp_path, "C13", capsys)
    assert rc == 1 and claims["C13"]["verdict"] == "fail"
    assert not all(all(c.values()) for c in rep["C13"]["details"]["checks"].values())


def test_shuffled_eigenbasis_fails_c13(tmp_path, monkeypatch, capsys):
    real = K.spectral.kernel_spectrum

    def shuffled(*a, **kw):  # eigenvectors no longer paired with their eigenvalues
        s = real(*a, **kw)
        perm = np.random.default_rng(11).permutation(s.eigenvectors.shape[1])
        return dataclasses.replace(s, eigenvectors=s.eigenvectors[:, perm])

    monkeypatch.setattr(K.spectral, "kernel_spectrum", shuffled)
    rc, claims, rep = _run(tmp_path, "C13", capsys)
    assert rc == 1 and claims["C13"]["verdict"] == "fail"
    # the curve is untouched; only the spectrum's decay fails
    checks = rep["C13"]["details"]["checks"]
    assert all(c["beta_positive"] for c in checks.values()) and not any(c["a_decays"] for c in checks.values())
