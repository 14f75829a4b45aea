"""A large unlabeled pretraining set of procedural shapes, generated lazily and
cached.

Shape ``i`` is drawn from its own generator, ``numpy.random.default_rng([seed,
i])``: family ``categories[i % len(categories)]`` of the synthetic grasp
objects (``make_mesh``: random proportions and rotation), ``points`` surface
samples, in metres and centred on the bounding-box centre, the frame of
``GraspDataset``'s clouds (so pretraining and fine-tuning see the same
scale). Any subset can be generated in any order with the same result.

With ``cache`` (a folder) each cloud is written once as ``<i:07d>.npy`` (a
temporary file, then a rename) and read back afterwards: ``fill()`` generates
what is missing with a progress bar and can be interrupted and rerun.
``cache/meta.json`` records (seed, points, categories); a cache written with
other settings is refused rather than mixed.
"""
import json
import os

import numpy as np
import torch

from .meshes import sample_surface
from .synthetic.grasps import CATEGORIES, make_mesh


def procedural_cloud(index, points=1024, seed=0, categories=CATEGORIES):
    """(cloud float32 [points, 3], category index) of shape ``index``."""
    rng = np.random.default_rng([seed, index])
    label = index % len(categories)
    mesh = make_mesh(categories[label], rng)
    pts = sample_surface(mesh, points, seed=int(rng.integers(2 ** 31)))
    return pts - np.asarray(mesh.bounds.mean(0), np.float32), label


class ProceduralShapes(torch.utils.data.Dataset):
    """Clouds [points, 3] of shapes ``start .. start + n - 1`` (see the module
    docstring). ``labels`` holds their family indices (for probes)."""

    def __init__(self, n, points=1024, seed=0, cache=None, start=0, categories=CATEGORIES):
        if not (isinstance(n, (int, np.integer)) and n >= 1):
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        if not (isinstance(points, (int, np.integer)) and points >= 1):
            raise ValueError(f"points must be an integer >= 1, got {points!r}")
        if not (isinstance(start, (int, np.integer)) and start >= 0):
            raise ValueError(f"start must be an integer >= 0, got {start!r}")
        self.n, self.points, self.seed, self.start = int(n), int(points), int(seed), int(start)
        self.categories = tuple(categories)
        self.labels = np.array([(start + i) % len(self.categories) for i in range(n)])
        self.cache = cache
        if cache:
            os.makedirs(cache, exist_ok=True)
            meta = {"seed": self.seed, "points": self.points, "categories": list(self.categories)}
            path = os.path.join(cache, "meta.json")
            if os.path.exists(path):
                with open(path) as f:
                    old = json.load(f)
                if old != meta:
                    raise ValueError(f"cache {cache!r} was written with {old}, not {meta}; use another folder")
            else:
                with open(path + ".tmp", "w") as f:
                    json.dump(meta, f)
                os.replace(path + ".tmp", path)

    def _path(self, index):
        return os.path.join(self.cache, f"{index:07d}.npy")

    def _make(self, index):
        return procedural_cloud(index, self.points, self.seed, self.categories)[0]

    def fill(self, progress=True):
        """Generates and caches every missing cloud; returns how many were made."""
        if not self.cache:
            raise ValueError("fill() needs a cache folder (cache=...)")
        todo = [self.start + i for i in range(self.n) if not os.path.exists(self._path(self.start + i))]
        it = todo
        if progress and todo:
            from tqdm import tqdm
            it = tqdm(todo, desc="procedural shapes", dynamic_ncols=True)
        for index in it:
            tmp = self._path(index) + ".tmp.npy"
            np.save(tmp, self._make(index))
            os.replace(tmp, self._path(index))
        return len(todo)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} shapes")
        index = self.start + i
        if self.cache:
            path = self._path(index)
            if os.path.exists(path):
                return torch.from_numpy(np.load(path))
            cloud = self._make(index)
            tmp = path + ".tmp.npy"
            np.save(tmp, cloud)
            os.replace(tmp, path)
            return torch.from_numpy(cloud)
        return torch.from_numpy(self._make(index))
