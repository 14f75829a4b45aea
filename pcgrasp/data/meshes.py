"""Mesh loading (trimesh) and surface sampling."""
import os

import numpy as np

MESH_EXTENSIONS = (".obj", ".ply", ".stl", ".off", ".glb")


def load_mesh(path):
    """A single trimesh.Trimesh from obj/ply/stl/off/glb (scenes are merged)."""
    import trimesh

    m = trimesh.load(path, force="mesh", process=False)
    if not isinstance(m, trimesh.Trimesh) or len(m.faces) == 0:
        raise ValueError(f"{path}: no triangles found")
    return m


def find_mesh(folder):
    """The first mesh file directly inside ``folder`` (sorted), or None."""
    if not os.path.isdir(folder):
        return None
    for name in sorted(os.listdir(folder)):
        if name.lower().endswith(MESH_EXTENSIONS):
            return os.path.join(folder, name)
    return None


def sample_surface(mesh, n, seed=0):
    """n points uniformly on the surface (area weighted), float32 [n, 3],
    deterministic for a seed."""
    rng = np.random.default_rng(seed)
    v, f = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces)
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(f), size=n, p=area / area.sum())
    u, w = rng.random(n), rng.random(n)
    flip = u + w > 1
    u[flip], w[flip] = 1 - u[flip], 1 - w[flip]
    t = tri[face]
    pts = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + w[:, None] * (t[:, 2] - t[:, 0])
    return pts.astype(np.float32)
