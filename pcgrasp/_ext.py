"""Loads the compiled extension and reports what it contains."""
import torch

import os

_LIBRARY = os.environ.get("PCGRASP_LIBRARY")
if _LIBRARY:  # absolute, so that child processes started elsewhere load the same file
    _LIBRARY = os.environ["PCGRASP_LIBRARY"] = os.path.abspath(_LIBRARY)
try:
    if _LIBRARY:
        # e.g. the CMake sanitizer build: registers the same ops
        torch.ops.load_library(_LIBRARY)
    else:
        from . import _C  # noqa: F401  (registers the pcgrasp:: ops)
except ImportError as e:  # pragma: no cover - only on a broken install
    raise ImportError(
        "pcgrasp's compiled extension pcgrasp._C could not be loaded "
        f"({e}). Build it against the installed torch with "
        "`pip install --no-build-isolation .` from the pcgrasp checkout."
    ) from e

try:
    from . import _build_config as _cfg
except ImportError:  # pragma: no cover - built by something other than setup.py
    _cfg = None

REBUILD_HINT = (
    "Rebuild pcgrasp with CUDA: install a CUDA build of torch and the CUDA toolkit "
    "(nvcc), then run `pip install --no-build-isolation --force-reinstall .` "
    "in the pcgrasp checkout (without PCGRASP_CPU_ONLY=1)."
)


def _has_cuda_kernels():
    return torch._C._dispatch_has_kernel_for_dispatch_key("pcgrasp::knn", "CUDA")


def build_info():
    """What this pcgrasp build contains.

    Returns a dict with ``torch_version`` (the torch it was built against),
    ``torch_runtime`` (the torch imported now), ``cuda_version`` (CUDA of the
    build, or None), ``cuda_arch_list`` (the TORCH_CUDA_ARCH_LIST compiled for,
    '' when the visible GPU decided) and ``cuda_built`` (CUDA kernels are
    registered).
    """
    return {
        "torch_version": getattr(_cfg, "TORCH_VERSION", None),
        "torch_runtime": torch.__version__,
        "cuda_version": getattr(_cfg, "CUDA_VERSION", None),
        "cuda_arch_list": getattr(_cfg, "CUDA_ARCH_LIST", ""),
        "cuda_built": _has_cuda_kernels(),
    }


def require_kernels_for(t):
    """Raises a clear error when a tensor's device has no pcgrasp kernels."""
    if t.device.type == "cuda" and not _has_cuda_kernels():
        raise RuntimeError(f"pcgrasp was built without CUDA kernels, but got a CUDA tensor. {REBUILD_HINT}")
    if t.device.type not in ("cpu", "cuda", "meta"):
        raise RuntimeError(f"pcgrasp has no kernels for device type '{t.device.type}'")
