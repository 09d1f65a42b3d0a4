"""Claims C15 and C19 of ``kernelgen.verify``: the smoke budget passes, broken computations fail.

Fault injections, each the way a real bug would look: C15 with the standard instead of the NTK
parameterisation, and with an analytic kernel whose sigma_w^2 is 10% off; C19 with a Gaussian process
whose kernel ignores the Hamming distance (white noise), and with Walsh coefficients normalised by the
variance instead of the standard deviation. Each must turn the claim's verdict into ``fail``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import kernelgen.verify as V
from kernelgen import networks
from kernelgen.kernels import ReluNNGP, kernel_matrix
from kernelgen.verify import _claims_networks as CN

pytest.importorskip("jax")

PNG = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path, ids, capsys):
    rc = V.main(["--budget", "smoke", "--only", ids, "--out", str(tmp_path), "-q"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return rc, {c["id"]: c for c in line["claims"]}


def test_smoke_passes_with_figures_and_details(tmp_path, capsys):
    rc, claims = _run(tmp_path, "C15,C19", capsys)
    assert rc == 0, {k: v["verdict"] for k, v in claims.items()}
    rep = {c["id"]: c for c in json.loads((tmp_path / "report.json").read_text())["claims"]}
    for cid in ("C15", "C19"):
        assert rep[cid]["verdict"] == "pass", rep[cid]["reason"]
        assert (tmp_path / rep[cid]["figure"]).read_bytes()[:8] == PNG
    # C15: the measured value is the largest Theorem 2.1 slope, and the S9 slopes are the ones judged
    d15 = rep["C15"]["details"]
    assert rep["C15"]["measured"] == pytest.approx(max(d15["slopes"].values()))
    assert all(-0.65 <= v <= -0.35 for v in d15["kernel_slopes"].values())
    # C19: every n's mean distance is above the bound it is judged against
    assert all(r["distance"] >= r["bound"] for r in rep["C19"]["details"]["rows"])


def test_hamming_profile_is_the_nngp_on_the_cube():
    n = 6
    S = networks.cube_strings(n)
    g = CN.hamming_profile(n, depth=2, weight_variance=2.0, bias_variance=0.0)
    K = kernel_matrix(S[:1], S, kernel=ReluNNGP(depth=2))[0]
    pc = np.array([bin(x).count("1") for x in range(1 << n)])
    # the same kernel entries evaluated on other strings at the same Hamming distance: rounding only
    np.testing.assert_allclose(K, g[pc], rtol=1e-12)


def test_standard_parameterisation_fails_c15(tmp_path, monkeypatch, capsys):
    # the standard parameterisation: same function at init, but an NTK that grows with the width
    monkeypatch.setattr(CN, "PARAMETERIZATION", "standard")
    rc, claims = _run(tmp_path, "C15", capsys)
    assert rc == 1 and claims["C15"]["verdict"] == "fail"


def test_analytic_kernel_with_wrong_weight_variance_fails_c15(tmp_path, monkeypatch, capsys):
    real = CN.analytic_kernels

    def wrong(X, *, depth, weight_variance, bias_variance):  # sigma_w^2 10% off: an error that does not decay
        return real(X, depth=depth, weight_variance=1.1 * weight_variance, bias_variance=bias_variance)

    monkeypatch.setattr(CN, "analytic_kernels", wrong)
    rc, claims = _run(tmp_path, "C15", capsys)
    assert rc == 1 and claims["C15"]["verdict"] == "fail"


def test_white_noise_kernel_fails_c19(tmp_path, monkeypatch, capsys):
    def white(n, **kw):  # a kernel that ignores the Hamming distance: a uniformly random classifier
        g = np.zeros(n + 1)
        g[0] = 1.0
        return g

    monkeypatch.setattr(CN, "hamming_profile", white)
    rc, claims = _run(tmp_path, "C19", capsys)
    assert rc == 1 and claims["C19"]["verdict"] == "fail"


def test_wrong_walsh_normalisation_fails_c19(tmp_path, monkeypatch, capsys):
    # variances where standard deviations belong: the covariance becomes H diag(mu^2 / 2^n) H, another kernel
    monkeypatch.setattr(networks, "_walsh_amplitudes", lambda mu: np.maximum(mu, 0.0) / mu.size)
    rc, claims = _run(tmp_path, "C19", capsys)
    assert rc == 1 and claims["C19"]["verdict"] == "fail"


def test_a_diverged_linearisation_is_reported_and_left_out_of_the_gap_fit_only(tmp_path, monkeypatch):
    # A narrow network's empirical NTK can put eta lambda_max / (n k) above 2: its linearised GD diverges (the
    # closed form raises NonFiniteResultError) while the network itself trains. C15 once reported that as an
    # infinite output gap and died on NaN; now that width leaves the output-gap fit, named in the reason.
    from kernelgen.errors import NonFiniteResultError
    from kernelgen.verify._core import Context, run_claim

    real, calls = networks.linearized_gd_outputs, []

    def first_diverges(*a, **k):
        calls.append(1)
        if len(calls) == 1:  # width 16, first seed
            raise NonFiniteResultError("linearized_gd_outputs: the iterates ... diverges: ... > 2")
        return real(*a, **k)

    monkeypatch.setattr(networks, "linearized_gd_outputs", first_diverges)
    claim = next(c for c in CN.CLAIMS if c.id == "C15")
    params = {**claim.scales["smoke"].params, "widths": [16, 32, 64, 256]}
    res = run_claim(claim, Context("smoke", params, tmp_path, quiet=True))
    d = res.details
    assert d["output_gap_widths"] == [32, 64, 256] and [r["width"] for r in d["linearisation_diverged"]] == [16]
    assert len(d["mean"]["output_gap"]) == 3 and len(d["mean"]["param_change"]) == 4  # only the gap loses it
    assert "diverges at width 16 seed" in res.reason and np.isfinite(res.measured)
