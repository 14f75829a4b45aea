"""Per-frame training data for the GSNet-style detector (GSNet's ``GraspNetDataset`` with
labels), read from a GraspNet-1B root holding ``scenes/``, ``grasp_label/``,
``collision_label/`` and ``graspness/`` (``pcgrasp labels`` writes the last three).

``DetectionFrames(root, split, ...)[i]`` is one frame as numpy arrays, sampled as
``GraspNetScenes.frame`` / GSNet (``num_points`` of the workspace points without
replacement, or all of them plus random repeats):

- ``point_clouds`` [N, 3] float32 camera frame; ``objectness_label`` [N] int64 (label > 0);
  ``graspness_label`` [N] float32 (the frame's ``graspness/*.npy`` at the sampled points);
- per object of the frame's meta with at least ``min_object_points`` sampled points (GSNet:
  50): ``object_poses_list`` [3, 4] float32 (model -> camera), ``grasp_points_list`` [Np, 3]
  (a random subset of min(max(Np / 4, 300), Np) label points, as GSNet),
  ``grasp_widths_list`` [Np, V, A, D] (offsets[..., 2]), ``grasp_scores_list`` [Np, V, A, D]
  (mu where 0 < mu and the grasp neither collides with its object (the label file's
  ``collision``) nor with the scene (``collision_label``), else 0), ``grasp_views_list`` [V]
  int64 (the view indices the label file holds);
- ``scene_id``, ``ann_id``, ``camera_pose`` [4, 4] float64 (camera -> table).

``augment=True``: GSNet's augmentation, a flip x -> -x with probability 1/2, then a rotation
about the camera x axis by U(-30, 30) degrees, applied to the points and the object poses.

Randomness: frame i of epoch e draws from ``np.random.default_rng([seed, e, scene, ann])``
(``set_epoch(e)``; e = 0 by default), so an epoch is reproducible, independent of worker
order, and differs from the next (GSNet draws from numpy's global state).

``frames_per_scene=k`` keeps annotations 0 .. k-1 of every scene (the paper's label budget:
the first k of each scene's 256 views, deterministic).

``collate_detection(list of frames)`` stacks them into the detector's batch (torch tensors;
per-object labels as nested lists).
"""
import os

import numpy as np
import torch

from ..data.graspnet import GraspNetScenes, sample_indices
from .grasp_labels import grasp_label_path
from .scene_labels import collision_label_path, graspness_path, load_grasp_labels

__all__ = ["DetectionFrames", "collate_detection", "gsnet_augmentation"]

_LABELS_HINT = "run `pcgrasp labels --root {root} --scenes {scenes}` first"


def gsnet_augmentation(rng):
    """GSNet's ``augment_data`` transform [3, 3]: a YZ-plane flip (x -> -x) with probability
    1/2, then a rotation about x by a uniform angle in [-pi/6, pi/6)."""
    flip = np.diag([-1.0, 1.0, 1.0]) if rng.random() > 0.5 else np.eye(3)
    a = rng.random() * np.pi / 3 - np.pi / 6
    c, s = np.cos(a), np.sin(a)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return rot @ flip


class DetectionFrames:
    """GSNet's training frames with their labels (see the module docstring).

    Args: root; split (a key of ``pcgrasp.data.graspnet.SPLITS``); camera; num_points per
    frame; frames_per_scene (None: all annotations); scene_ids (a subset of the split);
    seed; augment; min_object_points (objects with fewer sampled points get no labels).
    Missing label files raise FileNotFoundError naming the file and the command that
    writes it."""

    def __init__(self, root, split="train", camera="realsense", num_points=20000, frames_per_scene=None,
                 scene_ids=None, seed=0, augment=False, min_object_points=50):
        if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)) or num_points < 1:
            raise ValueError(f"num_points must be a positive int, got {num_points!r}")
        if frames_per_scene is not None and (isinstance(frames_per_scene, bool) or
                                             not isinstance(frames_per_scene, (int, np.integer)) or
                                             frames_per_scene < 1):
            raise ValueError(f"frames_per_scene must be None or a positive int, got {frames_per_scene!r}")
        if isinstance(min_object_points, bool) or not isinstance(min_object_points, (int, np.integer)) or \
                min_object_points < 0:
            raise ValueError(f"min_object_points must be an int >= 0, got {min_object_points!r}")
        self.scenes = GraspNetScenes(root, split=split, camera=camera, num_points=None, scene_ids=scene_ids,
                                     seed=seed)
        self.root, self.split, self.camera = root, split, camera
        self.num_points, self.frames_per_scene = int(num_points), frames_per_scene
        self.seed, self.augment, self.min_object_points = seed, bool(augment), int(min_object_points)
        self.epoch = 0
        self.frames = []
        for s in self.scenes.scene_ids:
            n = len(self.scenes.camera_poses(s))
            k = n if frames_per_scene is None else min(int(frames_per_scene), n)
            self.frames += [(s, a) for a in range(k)]
        self._check_labels()
        self._grasp_labels = {}
        self._collision = {}

    def _missing(self, path, scene_id):
        return FileNotFoundError(f"detection labels: missing {path}; "
                                 + _LABELS_HINT.format(root=self.root, scenes=scene_id))

    def _check_labels(self):
        for s in self.scenes.scene_ids:
            path = collision_label_path(self.root, s)
            if not os.path.exists(path):
                raise self._missing(path, s)
            for o in self.scenes.object_ids(s):
                path = grasp_label_path(self.root, o)
                if not os.path.exists(path):
                    raise self._missing(path, s)
        for s, a in self.frames:
            path = graspness_path(self.root, s, self.camera, a)
            if not os.path.exists(path):
                raise self._missing(path, s)

    def set_epoch(self, epoch):
        """Selects the random stream of ``epoch`` (sampling, label subsets, augmentation)."""
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.frames)

    def grasp_labels(self, obj_id):
        """(points [Np, 3] float32, widths, scores with self-collisions and mu <= 0 set to 0
        [Np, V, A, D] float32, views [V] int64) of an object, cached."""
        if obj_id not in self._grasp_labels:
            points, offsets, collision, scores, views = load_grasp_labels(self.root, obj_id)
            scores = np.where((scores > 0) & ~collision, scores, 0).astype(np.float32)
            self._grasp_labels[obj_id] = (points.astype(np.float32), offsets[..., 2].astype(np.float32), scores,
                                          np.asarray(views, dtype=np.int64))
        return self._grasp_labels[obj_id]

    def scene_collision(self, scene_id):
        """{obj_id: [Np, V, A, D] bool} scene collision labels of a scene, cached."""
        if scene_id not in self._collision:
            ids = self.scenes.object_ids(scene_id)
            with np.load(collision_label_path(self.root, scene_id)) as f:
                self._collision[scene_id] = {o: f[f"arr_{i}"] for i, o in enumerate(ids)}
        return self._collision[scene_id]

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index must be in [0, {len(self)}), got {index}")
        s, a = self.frames[index]
        rng = np.random.default_rng([int(self.seed), self.epoch, s, a])
        f = self.scenes.frame(s, a)                      # every workspace point, row-major
        g = np.load(graspness_path(self.root, s, self.camera, a)).reshape(-1)
        if len(g) != len(f["points"]):
            raise ValueError(f"{graspness_path(self.root, s, self.camera, a)} holds {len(g)} values but the frame has "
                             f"{len(f['points'])} workspace points (labels written for other scenes?)")
        if len(f["points"]) == 0:
            raise ValueError(f"scene {s} ann {a}: no valid depth pixel to sample from")
        idx = sample_indices(len(f["points"]), self.num_points, rng)
        points = f["points"][idx].astype(np.float32)
        seg = f["labels"][idx]
        coll = self.scene_collision(s)
        poses, gpts, widths, scores, views = [], [], [], [], []
        for o, pose in zip(f["object_ids"], f["object_poses"]):
            o = int(o)
            if (seg == o + 1).sum() < self.min_object_points or o not in coll:
                continue
            p, w, sc, v = self.grasp_labels(o)
            keep = rng.choice(len(p), min(max(len(p) // 4, 300), len(p)), replace=False)
            poses.append(pose[:3, :4].astype(np.float32))
            gpts.append(p[keep])
            widths.append(w[keep])
            scores.append(np.where(coll[o][keep], 0, sc[keep]).astype(np.float32))
            views.append(v)
        if self.augment:
            T = gsnet_augmentation(rng)
            points = (points.astype(np.float64) @ T.T).astype(np.float32)
            poses = [(T @ P.astype(np.float64)).astype(np.float32) for P in poses]
        return {"point_clouds": points, "objectness_label": (seg > 0).astype(np.int64),
                "graspness_label": g[idx].astype(np.float32),
                "object_poses_list": np.stack(poses) if poses else np.zeros((0, 3, 4), np.float32),
                "grasp_points_list": gpts, "grasp_widths_list": widths, "grasp_scores_list": scores,
                "grasp_views_list": views, "scene_id": s, "ann_id": a,
                "camera_pose": np.asarray(f["camera_pose"], dtype=np.float64)}


def collate_detection(frames):
    """A batch (dict) from a list of ``DetectionFrames`` items: ``point_clouds`` [B, N, 3]
    float32, ``objectness_label`` [B, N] int64, ``graspness_label`` [B, N] float32,
    ``object_poses_list`` list of [n_b, 3, 4] float32, ``grasp_points_list`` /
    ``grasp_widths_list`` / ``grasp_scores_list`` / ``grasp_views_list`` lists (len B) of
    lists (len n_b) of tensors, ``scene_id`` / ``ann_id`` [B] int64, ``camera_pose``
    [B, 4, 4] float64."""
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ValueError("frames must be a non-empty list of DetectionFrames items")
    n = {len(f["point_clouds"]) for f in frames}
    if len(n) != 1:
        raise ValueError(f"frames must share num_points, got {sorted(n)}")

    def stack(key, dtype):
        return torch.stack([torch.as_tensor(np.asarray(f[key])).to(dtype) for f in frames])

    def nested(key):
        return [[torch.as_tensor(x) for x in f[key]] for f in frames]

    return {"point_clouds": stack("point_clouds", torch.float32),
            "objectness_label": stack("objectness_label", torch.int64),
            "graspness_label": stack("graspness_label", torch.float32),
            "object_poses_list": [torch.as_tensor(f["object_poses_list"], dtype=torch.float32) for f in frames],
            "grasp_points_list": nested("grasp_points_list"), "grasp_widths_list": nested("grasp_widths_list"),
            "grasp_scores_list": nested("grasp_scores_list"), "grasp_views_list": nested("grasp_views_list"),
            "scene_id": torch.as_tensor([int(f["scene_id"]) for f in frames], dtype=torch.int64),
            "ann_id": torch.as_tensor([int(f["ann_id"]) for f in frames], dtype=torch.int64),
            "camera_pose": stack("camera_pose", torch.float64)}
