"""Grasp planning with an energy model: refine planar grasps by descending
the energy E(crop(depth, y), y) with respect to y."""
import math

import torch

from .data.dexnet import grasp_crops


def grasp_energy(model, depth, grasps, crop_size=32, crop_window=64):
    """E of planar grasps [N, 4] (row, col, depth, angle) on a full depth image
    [H, W]: each grasp's crop is re-sampled from the image (differentiably)."""
    return model(grasp_crops(depth, grasps, crop_size, crop_window), grasps)


def _bounds(bounds, like):
    b = torch.as_tensor(bounds, dtype=like.dtype, device=like.device)
    if b.shape != (4, 2) or not torch.isfinite(b[:3]).all() or (b[:3, 0] > b[:3, 1]).any():
        raise ValueError("bounds must be [[row_min, row_max], [col_min, col_max], [depth_min, depth_max], "
                         f"[angle_min, angle_max]] with min <= max, got {bounds!r}")
    return b


def refine_grasps(model, depth, y0, steps=50, lr=0.05, bounds=None, crop_size=32, crop_window=64):
    """Projected (normalised) gradient descent of the energy with respect to the grasps.

    Args:
        model: a ``GraspEnergyModel`` (put in eval mode here; its weights get
            no gradient).
        depth: [H, W] depth image (metres).
        y0: [N, 4] initial grasps (row, col, depth, angle).
        steps: number of descent steps (>= 0).
        lr: length of the first step in the model's standardised grasp
            coordinates (y / model.pose_std, so one rate serves pixels,
            metres and radians), decaying linearly to 0 over the steps. Each
            step goes along -dE/dy normalised per grasp (normalised gradient
            descent): the energy's scale grows with the NCE temperature, so a
            raw gradient step would need a different rate for every model.
        bounds: [4, 2] valid range per coordinate; after every step row, col
            and depth are clamped into it and the angle wrapped modulo pi.
            Default: the image extent, the depth range of the image +- 5 cm.

    Returns (trajectory [steps + 1, N, 4], energies [steps + 1, N]): the
    grasps and their energies before the first and after every step.
    """
    if not isinstance(depth, torch.Tensor) or depth.dim() != 2:
        raise ValueError(f"depth must be a [H, W] tensor, got {getattr(depth, 'shape', type(depth).__name__)}")
    if not isinstance(y0, torch.Tensor) or y0.dim() != 2 or y0.shape[1] != 4:
        raise ValueError(f"y0 must be a [N, 4] tensor of (row, col, depth, angle), got "
                         f"{getattr(y0, 'shape', type(y0).__name__)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    depth = depth.float()
    H, W = depth.shape
    if bounds is None:
        valid = depth[depth > 0]
        lo, hi = (float(valid.min()), float(valid.max())) if valid.numel() else (0.0, 1.0)
        bounds = [[0, H - 1], [0, W - 1], [lo - 0.05, hi + 0.05], [0, math.pi]]
    b = _bounds(bounds, depth)
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    std = model.pose_std.to(depth)
    y = y0.detach().float().clone()
    traj, energies = [y.clone()], []
    try:
        for _ in range(steps + 1):
            y.requires_grad_(True)
            e = grasp_energy(model, depth, y, crop_size, crop_window)
            energies.append(e.detach())
            if len(traj) == steps + 1:
                break
            (g,) = torch.autograd.grad(e.sum(), y)
            with torch.no_grad():
                gz = g * std  # gradient in standardised coordinates
                step = lr * (1 - (len(traj) - 1) / steps)  # linear decay to 0
                y = y - step * std * gz / gz.norm(dim=1, keepdim=True).clamp_min(1e-12)
                y[:, :3] = torch.minimum(torch.maximum(y[:, :3], b[:3, 0]), b[:3, 1])
                y[:, 3] = torch.remainder(y[:, 3], math.pi)
            traj.append(y.clone())
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return torch.stack(traj), torch.stack(energies)
