"""pcgrasp: CUDA-accelerated point-cloud ops for grasp learning.

The kernels live in the compiled extension ``pcgrasp._C``; the public API is
``pcgrasp.ops``. ``pcgrasp.build_info()`` says what was compiled.
"""
from ._ext import build_info  # noqa: F401  (loads the extension)
from . import ops  # noqa: F401

__version__ = "0.1.0"
__all__ = ["ops", "build_info", "__version__"]
