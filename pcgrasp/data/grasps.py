"""The DLR-Hand II grasp layout of the public Point-JEPA grasping code:

    root/<synset>/<object>/<scene>/recording.npz   grasps (n, 19) = 7-D pose + 12 joints, scores (n,)

with the object's mesh in root/<synset>/<object>/ (obj/ply/stl/off/glb).
"""
import os

import numpy as np
import torch

from .meshes import find_mesh, load_mesh, sample_surface

MIN_SCORE = 1.5


def load_recordings(root, objects=None, min_score=MIN_SCORE, truth=False):
    """Reads every recording. Returns (object ids "<synset>/<object>", mesh
    paths per object, list of (object index, pose [7], joints [12])).

    truth=True adds a fourth item: the synthetic generator's truth of the kept
    grasps, (P(pinch) [n], mode means [n, 2, 12], noise sd), or None when a
    recording lacks it (real data)."""
    ids, meshes, rows = [], [], []
    ps, means, sds = [], [], set()
    for synset in sorted(os.listdir(root)):
        sdir = os.path.join(root, synset)
        if not os.path.isdir(sdir):
            continue
        for obj in sorted(os.listdir(sdir)):
            oid = f"{synset}/{obj}"
            if objects is not None and oid not in objects:
                continue
            odir = os.path.join(sdir, obj)
            mesh = find_mesh(odir)
            recs = sorted(os.path.join(odir, s, "recording.npz") for s in os.listdir(odir)
                          if os.path.isfile(os.path.join(odir, s, "recording.npz")))
            if mesh is None or not recs:
                continue
            k = len(ids)
            ids.append(oid)
            meshes.append(mesh)
            for r in recs:
                z = np.load(r)
                g, s = np.asarray(z["grasps"], dtype=np.float32), np.asarray(z["scores"], dtype=np.float32)
                if g.ndim != 2 or g.shape[1] != 19 or len(s) != len(g):
                    raise ValueError(f"{r}: expected grasps (n, 19) and scores (n,), got {g.shape} and {s.shape}")
                for row in g[s >= min_score]:
                    rows.append((k, row[:7], row[7:]))
                if truth and "p_pinch" in z.files:
                    ps.append(z["p_pinch"][s >= min_score])
                    means.append(z["mode_means"][s >= min_score])
                    sds.add(float(z["noise_sd"]))
                elif truth:
                    sds.add(None)
    if not truth:
        return ids, meshes, rows
    if None in sds or len(sds) != 1:
        return ids, meshes, rows, None
    return ids, meshes, rows, (np.concatenate(ps), np.concatenate(means), sds.pop())


class GraspDataset(torch.utils.data.Dataset):
    """(points [P, 3], pose [7], joints [12]) per kept grasp. Each object's
    cloud is sampled once (``points`` surface samples, seeded by object) and
    normalised with the object: centred at the mesh's bounding-box centre,
    the same transform applied to the wrist position."""

    def __init__(self, root, objects=None, points=1024, min_score=MIN_SCORE, seed=0):
        self.ids, mesh_paths, rows = load_recordings(root, objects, min_score)
        self.clouds, self.centres = [], []
        for i, path in enumerate(mesh_paths):
            m = load_mesh(path)
            c = np.asarray(m.bounding_box.centroid, dtype=np.float32)
            self.clouds.append(torch.from_numpy(sample_surface(m, points, seed=seed * 100003 + i) - c))
            self.centres.append(c)
        self.obj = torch.tensor([r[0] for r in rows], dtype=torch.long)
        poses = np.stack([r[1] for r in rows]) if rows else np.zeros((0, 7), np.float32)
        if rows:
            poses[:, :3] -= np.stack(self.centres)[self.obj.numpy()]
        self.poses = torch.from_numpy(poses)
        self.joints = torch.from_numpy(np.stack([r[2] for r in rows]) if rows else np.zeros((0, 12), np.float32))

    def __len__(self):
        return len(self.obj)

    def __getitem__(self, i):
        return self.clouds[self.obj[i]], self.poses[i], self.joints[i]
