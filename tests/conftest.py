import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def x64():
    """JAX float64 inside the test only (never flip the global config)."""
    from kernelgen._jax import enable_x64

    with enable_x64():
        yield


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    """Run the suite with one BLAS thread (KERNELGEN_TEST_BLAS_THREADS overrides).

    The tests use small matrices, where threads buy nothing, and several test runs may
    share a 2-core machine: oversubscribed OpenBLAS threads spin and slow small calls by
    100x. Subprocess tests (BLAS call limits, scripts) keep the default threading.
    """
    import os

    from threadpoolctl import threadpool_limits

    n = int(os.environ.get("KERNELGEN_TEST_BLAS_THREADS", "1"))
    with threadpool_limits(limits=n, user_api="blas"):
        yield
