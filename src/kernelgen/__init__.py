"""kernelgen: exact computation for the theory of deep learning."""

from . import errors

__version__ = "0.1.0"
__all__ = ["errors", "__version__"]
