"""Random similarity-style augmentations of batches of object clouds, as the
Point-MAE / Point-JEPA family pretrains with (per-axis scaling and a
translation), plus an optional rotation about z or over SO(3).

``CloudAugmentation(scale=(lo, hi), translate=t, rotate="none"|"z"|"so3")``
draws, per cloud b, a rotation R_b, per-axis scales s_b ~ U[lo, hi]^3 and a
translation t_b ~ U[-t, t]^3 from a ``torch.Generator`` (CPU), and maps each
point p of cloud b to ``s_b * (R_b p) + t_b`` (rotate, then scale, then
translate). Units are the clouds' own (metres for pcgrasp's object clouds).
"""
import math

import torch

__all__ = ["CloudAugmentation", "apply_augmentation", "canonical_pose", "CANONICAL"]

ROTATIONS = ("none", "z", "so3")


def apply_augmentation(points, R, s, t):
    """points [B, N, 3] -> s[b] * (R[b] @ p) + t[b]; R [B, 3, 3], s [B, 3], t [B, 3]."""
    return (points @ R.transpose(1, 2)) * s[:, None, :] + t[:, None, :]


CANONICAL = ("none", "pose", "pose+size")


def canonical_pose(points, size=None):
    """Each cloud of ``points`` [B, N, 3] in its principal-axis frame: centred
    on its mean, rotated so that its variance along x >= y >= z, each axis's
    sign chosen so that the third moment along it is >= 0 (the frame is then
    the same for any rotation or reflection of the cloud, barring equal
    variances or zero third moments); with ``size`` (> 0) also scaled to an
    RMS distance of ``size`` from the centre. Computed in float64, returned
    in the input's dtype."""
    if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[-1] != 3 or points.shape[1] < 1:
        raise ValueError("points must be a [B, N, 3] tensor with N >= 1, got "
                         f"{tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float))
                             or not (math.isfinite(size) and size > 0)):
        raise ValueError(f"size must be a finite number > 0 or None, got {size!r}")
    x = points.double()
    x = x - x.mean(1, keepdim=True)
    cov = x.transpose(1, 2) @ x / x.shape[1]
    _, vec = torch.linalg.eigh(cov)  # ascending eigenvalues
    y = x @ vec.flip(-1)
    sign = torch.where((y ** 3).sum(1, keepdim=True) < 0, -1.0, 1.0).to(y)
    y = y * sign
    if size is not None:
        rms = (y ** 2).sum(-1).mean(1, keepdim=True).sqrt()[..., None]
        y = y * (size / rms.clamp_min(1e-300))
    return y.to(points.dtype)


class CloudAugmentation:
    """See the module docstring. ``from_config(dict | None)`` reads a config
    section (keys ``scale``, ``translate``, ``rotate``); None or {} is the
    identity. Bad values raise ``ValueError`` naming the key."""

    def __init__(self, scale=(1.0, 1.0), translate=0.0, rotate="none", name="augment"):
        ok = (isinstance(scale, (list, tuple)) and len(scale) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scale))
        if not ok or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"{name}.scale must be [lo, hi] with 0 < lo <= hi, got {scale!r}")
        if isinstance(translate, bool) or not isinstance(translate, (int, float)) or not (
                math.isfinite(translate) and translate >= 0):
            raise ValueError(f"{name}.translate must be a finite number >= 0, got {translate!r}")
        if rotate not in ROTATIONS:
            raise ValueError(f"{name}.rotate must be one of {', '.join(ROTATIONS)}, got {rotate!r}")
        self.scale, self.translate, self.rotate = (float(scale[0]), float(scale[1])), float(translate), rotate

    @classmethod
    def from_config(cls, section, name="pretrain.augment"):
        if section is None:
            return None
        if not isinstance(section, dict):
            raise ValueError(f"{name} must be a mapping with keys scale, translate, rotate; got {section!r}")
        unknown = set(section) - {"scale", "translate", "rotate"}
        if unknown:
            raise ValueError(f"{name}: unknown key(s) {', '.join(sorted(unknown))} (known: scale, translate, rotate)")
        return cls(section.get("scale", (1.0, 1.0)), section.get("translate", 0.0), section.get("rotate", "none"),
                   name)

    @property
    def identity(self):
        return self.scale == (1.0, 1.0) and self.translate == 0.0 and self.rotate == "none"

    def draw(self, batch, generator, dtype=torch.float64):
        """(R [B, 3, 3], s [B, 3], t [B, 3]) on the CPU, from ``generator``."""
        g = dict(generator=generator, dtype=torch.float64)
        if self.rotate == "so3":
            # a uniform rotation: the normalised uniform quaternion (Shoemake), w >= 0 not required
            q = torch.randn(batch, 4, **g)
            w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
            R = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                             2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                             2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1).reshape(batch, 3, 3)
        elif self.rotate == "z":
            a = (torch.rand(batch, **g) * 2 - 1) * math.pi
            c, s_ = a.cos(), a.sin()
            zero, one = torch.zeros_like(a), torch.ones_like(a)
            R = torch.stack([c, -s_, zero, s_, c, zero, zero, zero, one], 1).reshape(batch, 3, 3)
        else:
            R = torch.eye(3, dtype=torch.float64).expand(batch, 3, 3).clone()
        lo, hi = self.scale
        s = lo + (hi - lo) * torch.rand(batch, 3, **g)
        t = (torch.rand(batch, 3, **g) * 2 - 1) * self.translate
        return R.to(dtype), s.to(dtype), t.to(dtype)

    def __call__(self, points, generator):
        """points [B, N, 3] (any device, float) -> augmented copy; draws from ``generator``."""
        if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError("points must be a [B, N, 3] tensor, got "
                             f"{tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
        R, s, t = (x.to(points.device) for x in self.draw(points.shape[0], generator, points.dtype))
        return apply_augmentation(points, R, s, t)
