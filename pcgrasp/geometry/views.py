"""GraspNet-1Billion's grasp parameterisation (graspnetAPI / GSNet conventions), in
NumPy (float64, for labels and evaluation) and torch (differentiable, for models).

A 6-DoF parallel-jaw grasp at a point is indexed by (view, angle, depth):

- views: ``generate_views(300)``, graspnetAPI's Fibonacci lattice on the unit
  sphere, z_i = (2i + 1) / N - 1, azimuth 2 pi i phi with phi = (sqrt 5 - 1) / 2;
  a view is the direction from the object towards the gripper, so the
  approach axis is ``-view``.
- rotation: ``viewpoint_params_to_matrix(-view, angle)``: x = approach,
  y0 = (-x_y, x_x, 0) normalised (``(0, 1, 0)`` when x is vertical),
  z0 = x cross y0, then an in-plane rotation by ``angle`` about x:
  R = [x, y0, z0] @ Rx(angle). Columns: x approach, y closing, z height.
- angles: 12 over pi, angle_k = k pi / 12; depths {0.01, 0.02, 0.03, 0.04} m.
- the gripper's dimensions: ``gripper.GRIPPER``.
"""
import numpy as np
import torch

from .. import ops

NUM_VIEWS = 300
NUM_ANGLES = 12
NUM_DEPTHS = 4
ANGLES = np.arange(NUM_ANGLES) * np.pi / NUM_ANGLES
DEPTHS = np.array([0.01, 0.02, 0.03, 0.04])
FRICTIONS = np.round(np.arange(1, 11) * 0.1, 10)  # the label grid {0.1, ..., 1.0}


def generate_views(n=NUM_VIEWS, phi=(np.sqrt(5) - 1) / 2, center=(0.0, 0.0, 0.0), radius=1.0):
    """graspnetAPI's ``generate_views``: n points of a Fibonacci lattice on a
    sphere, [n, 3] float64, ordered by rising z."""
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    i = np.arange(n, dtype=np.float64)
    z = (2 * i + 1) / n - 1
    r = np.sqrt(1 - z ** 2)
    v = np.stack([r * np.cos(2 * i * np.pi * phi), r * np.sin(2 * i * np.pi * phi), z], 1)
    return radius * v + np.asarray(center, dtype=np.float64)


def viewpoint_params_to_matrix(towards, angle):
    """Rotations [..., 3, 3] from approach vectors ``towards`` [..., 3] (need
    not be unit) and in-plane angles [...] (broadcast), graspnetAPI's
    ``batch_viewpoint_params_to_matrix``."""
    x = np.asarray(towards, dtype=np.float64)
    if x.shape[-1:] != (3,):
        raise ValueError(f"towards must be [..., 3], got shape {x.shape}")
    nx = np.linalg.norm(x, axis=-1, keepdims=True)
    if not (np.isfinite(x).all() and (nx > 0).all()):
        raise ValueError("towards must be finite and non-zero")
    angle = np.asarray(angle, dtype=np.float64)
    x, angle = np.broadcast_arrays(x, angle[..., None])
    angle = angle[..., 0]
    y = np.stack([-x[..., 1], x[..., 0], np.zeros_like(x[..., 0])], -1)
    vertical = np.linalg.norm(y, axis=-1) == 0
    y = np.where(vertical[..., None], np.array([0.0, 1.0, 0.0]), y)
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    z = np.cross(x, y)
    c, s = np.cos(angle), np.sin(angle)
    # R = [x y z] @ Rx(angle): y' = c y + s z, z' = -s y + c z
    return np.stack([x, c[..., None] * y + s[..., None] * z, -s[..., None] * y + c[..., None] * z], -1)


def grasp_rotations(views=None):
    """The label grid's rotations [V, 12, 3, 3] for ``views`` (indices into the
    300 views, default all): approach -view, angles ANGLES."""
    all_views = generate_views(NUM_VIEWS)
    idx = np.arange(NUM_VIEWS) if views is None else np.asarray(views, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= NUM_VIEWS):
        raise ValueError(f"views must be indices in [0, {NUM_VIEWS}), got range [{idx.min()}, {idx.max()}]")
    return viewpoint_params_to_matrix(-all_views[idx][:, None, :], ANGLES[None, :])


# --------------------------------------------------------------------------- torch (models)

def grasp_views(num_view=300, device=None, dtype=torch.float32):
    """graspnetAPI's Fibonacci views as a [num_view, 3] tensor (GSNet's ``generate_grasp_views``).
    To a GPU through pinned memory without blocking (``ops.host_to_device``)."""
    return ops.host_to_device(generate_views(num_view), "cpu" if device is None else device, dtype)


def batch_viewpoint_params_to_matrix(towards, angle):
    """Rotations [..., 3, 3] from approach vectors ``towards`` [..., 3] and in-plane angles
    [...] (GSNet's / graspnetAPI's convention): x = towards / |towards|,
    y0 = (-x_y, x_x, 0) normalised ((0, 1, 0) when x is vertical), z0 = x cross y0,
    R = [x, y0, z0] @ Rx(angle). Differentiable, any float dtype."""
    if not isinstance(towards, torch.Tensor) or towards.shape[-1:] != (3,):
        raise ValueError(f"towards must be a [..., 3] tensor, got "
                         f"{tuple(towards.shape) if isinstance(towards, torch.Tensor) else type(towards).__name__}")
    angle = torch.as_tensor(angle, dtype=towards.dtype, device=towards.device)
    shape = torch.broadcast_shapes(towards.shape[:-1], angle.shape)
    x = towards.expand(*shape, 3)
    angle = angle.expand(shape)
    zero = torch.zeros_like(x[..., 0])
    y = torch.stack([-x[..., 1], x[..., 0], zero], -1)
    vertical = (y == 0).all(-1, keepdim=True)
    e_y = torch.zeros(3, dtype=x.dtype, device=x.device)
    e_y[1] = 1  # a fill on the device, not a copy from the host
    y = torch.where(vertical, e_y, y)
    x = x / x.norm(dim=-1, keepdim=True)
    y = y / y.norm(dim=-1, keepdim=True)
    z = torch.cross(x, y, dim=-1)
    c, s = torch.cos(angle)[..., None], torch.sin(angle)[..., None]
    return torch.stack([x, c * y + s * z, c * z - s * y], -1)
