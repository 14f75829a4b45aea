"""ShapeNet-style folders for self-supervised pretraining:
root/<synset>/<model>/models/model_normalized.obj."""
import os

import numpy as np
import torch

from .meshes import load_mesh, sample_surface


def shapenet_models(root):
    out = []
    for synset in sorted(os.listdir(root)):
        sdir = os.path.join(root, synset)
        if not os.path.isdir(sdir):
            continue
        for model in sorted(os.listdir(sdir)):
            path = os.path.join(sdir, model, "models", "model_normalized.obj")
            if os.path.isfile(path):
                out.append(path)
    return out


class ShapeNetPointClouds(torch.utils.data.Dataset):
    """Point clouds [P, 3] of every model, centred and scaled into a sphere of
    ``radius`` (1.0: the unit sphere, as ShapeNet ships; 0.1 puts real shapes
    at the synthetic objects' metre scale), sampled once per model (seeded)."""

    def __init__(self, roots, points=1024, seed=0, extra_meshes=(), radius=1.0):
        if not (isinstance(radius, (int, float)) and radius > 0):
            raise ValueError(f"radius must be a positive number, got {radius!r}")
        roots = [roots] if isinstance(roots, str) else list(roots)
        paths = [p for r in roots for p in shapenet_models(r)] + list(extra_meshes)
        if not paths:
            raise FileNotFoundError(f"no <synset>/<model>/models/model_normalized.obj under {roots}")
        self.clouds = []
        for i, p in enumerate(paths):
            pts = sample_surface(load_mesh(p), points, seed=seed * 100003 + i)
            pts = pts - pts.mean(0)
            pts = radius * pts / max(np.linalg.norm(pts, axis=1).max(), 1e-9)
            self.clouds.append(torch.from_numpy(pts.astype(np.float32)))

    def __len__(self):
        return len(self.clouds)

    def __getitem__(self, i):
        return self.clouds[i]
