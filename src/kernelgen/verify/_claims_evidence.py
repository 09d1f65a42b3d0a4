"""Claim C21: the bandwidth of largest exact GP evidence generalizes as well as the best bandwidth.

Same contract as :mod:`kernelgen.verify._claims_data`: ``run_cN(ctx) -> Result``; the claim is
registered here (``CLAIMS``) and collected by :mod:`kernelgen.verify._registry`.
"""

from __future__ import annotations

from ._core import Claim

__all__ = ["CLAIMS"]

#: the claims of this module, each with its smoke / quick / full scales
CLAIMS: list[Claim] = []
