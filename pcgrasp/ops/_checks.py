"""Argument checks shared by the pcgrasp.ops wrappers.

Each check raises ValueError/TypeError naming the argument. Checks that read
tensor *values* (lengths in range, finite coordinates, index range) cost a
device sync on CUDA; they are skipped while torch.compile traces, and can be
switched off with ``pcgrasp.ops.set_data_checks(False)`` in hot loops once the
inputs are known to be well formed.
"""
import contextlib

import torch
from torch._subclasses.fake_tensor import FakeTensor as _FakeTensor

from .._ext import require_kernels_for

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
MAX_D = 8
_data_checks = True


def set_data_checks(enabled: bool) -> bool:
    """Turns value-dependent input checks on or off; returns the old setting."""
    global _data_checks
    old, _data_checks = _data_checks, bool(enabled)
    return old


@contextlib.contextmanager
def data_checks(enabled: bool):
    """Context manager form of set_data_checks: ``with ops.data_checks(False):``
    around calls whose inputs come straight from other pcgrasp kernels (indices
    they returned, clouds already checked), so they cost no device syncs. The
    setting is process-wide."""
    old = set_data_checks(enabled)
    try:
        yield
    finally:
        set_data_checks(old)


def data_checks_enabled(x=None) -> bool:
    """True when value checks should run (for tensor x, if given): not switched
    off, not under torch.compile, and x has real data (not fake/meta)."""
    if not _data_checks:
        return False
    try:
        if torch.compiler.is_compiling():
            return False
    except AttributeError:  # pragma: no cover - very old torch
        pass
    if x is not None:
        if x.device.type == "meta" or isinstance(x, _FakeTensor) or torch._is_functional_tensor(x):
            return False
    return True


def tensor(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    require_kernels_for(x)
    return x


def cloud(x, name, max_d=MAX_D):
    """[B, N, D] floating tensor with 1 <= D <= max_d."""
    tensor(x, name)
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape [B, N, D], got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
    if not 1 <= x.shape[2] <= max_d:
        raise ValueError(f"{name} must have 1 <= D <= {max_d}, got D={x.shape[2]}")
    if data_checks_enabled(x) and x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf); pcgrasp ops need finite coordinates")
    return x


def same_device(a, b, an, bn):
    if a.device != b.device:
        raise ValueError(f"{an} and {bn} must be on the same device, got {a.device} and {b.device}")


def lengths(x, name, B, N, like):
    """Optional [B] integer tensor with values in [0, N]; returns int64 on like's device."""
    if x is None:
        return torch.full((B,), N, dtype=torch.int64, device=like.device)
    tensor(x, name)
    if x.dim() != 1 or x.shape[0] != B:
        raise ValueError(f"{name} must have shape [{B}], got shape {tuple(x.shape)}")
    if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{name} must be an integer tensor (int64), got {x.dtype}")
    same_device(x, like, name, "the point tensors")
    x = x.to(torch.int64)
    if data_checks_enabled(x) and B and (bool((x < 0).any()) or bool((x > N).any())):
        raise ValueError(f"{name} must be in [0, {N}], got values in [{int(x.min())}, {int(x.max())}]")
    return x


def count(k, name, allow_zero=True):
    """Python int >= 0 (or >= 1)."""
    if isinstance(k, bool) or not isinstance(k, int):
        if isinstance(k, torch.Tensor) and k.dim() == 0 and not k.is_floating_point():
            k = int(k)
        else:
            raise TypeError(f"{name} must be an int, got {type(k).__name__}")
    lo = 0 if allow_zero else 1
    if k < lo:
        raise ValueError(f"{name} must be >= {lo}, got {k}")
    return k


def radius(r, name="radius"):
    if isinstance(r, bool) or not isinstance(r, (int, float)):
        if isinstance(r, torch.Tensor) and r.numel() == 1:
            r = float(r)
        else:
            raise TypeError(f"{name} must be a float, got {type(r).__name__}")
    r = float(r)
    if r != r or r < 0:
        raise ValueError(f"{name} must be a non-negative number, got {r}")
    return r


def index(idx, name, B, N, like):
    """[B, ...] integer index tensor with values in [-1, N)."""
    tensor(idx, name)
    if idx.dim() < 2 and not (idx.dim() == 1 and B == idx.shape[0] == 0):
        raise ValueError(f"{name} must have shape [B, ...], got shape {tuple(idx.shape)}")
    if idx.shape[0] != B:
        raise ValueError(f"{name} must have batch size {B}, got shape {tuple(idx.shape)}")
    if idx.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an int64 tensor, got {idx.dtype}")
    same_device(idx, like, name, "features")
    idx = idx.to(torch.int64)
    if data_checks_enabled(idx) and idx.numel() and (bool((idx < -1).any()) or bool((idx >= N).any())):
        raise IndexError(
            f"{name} must be in [-1, {N}) (-1 = padding), got values in [{int(idx.min())}, {int(idx.max())}]")
    return idx


def transform(T, name, B, like):
    """Optional [B, 4, 4] floating rigid transform, finite."""
    if T is None:
        return None
    tensor(T, name)
    if T.dim() != 3 or tuple(T.shape) != (B, 4, 4):
        raise ValueError(f"{name} must have shape [{B}, 4, 4], got shape {tuple(T.shape)}")
    if T.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor, got {T.dtype}")
    same_device(T, like, name, "its points")
    if data_checks_enabled(T) and T.numel() and not bool(torch.isfinite(T).all()):
        raise ValueError(f"{name} contains non-finite values")
    return T


def positive(x, name, allow_zero=False):
    """A finite float > 0 (or >= 0)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        if isinstance(x, torch.Tensor) and x.numel() == 1:
            x = float(x)
        else:
            raise TypeError(f"{name} must be a float, got {type(x).__name__}")
    x = float(x)
    ok = (x >= 0 if allow_zero else x > 0) and x != float("inf")
    if not ok or x != x:
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite number, got {x}")
    return x


def finite(x, name):
    """A finite float."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(x).__name__}")
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {x}")
    return x
