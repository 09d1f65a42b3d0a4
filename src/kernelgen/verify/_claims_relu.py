"""Claims C12, C14, C16: the ReLU NNGP / NTK kernels: NNGP on MNIST, spectral bias, the complexity of random labels.

Same contract as :mod:`kernelgen.verify._claims_data`: ``run_cN(ctx) -> Result``; the claims are
registered here (``CLAIMS``) and collected by :mod:`kernelgen.verify._registry`.
"""

from __future__ import annotations

from ._core import Claim

__all__ = ["CLAIMS"]

#: the claims of this module, each with its smoke / quick / full scales
CLAIMS: list[Claim] = []
