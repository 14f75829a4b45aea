"""The built-in synthetic grasp dataset (no download needed).

It writes the DLR-Hand II layout used by the public Point-JEPA grasping code::

    root/<synset>/<object>/mesh.obj
    root/<synset>/<object>/<scene>/recording.npz   grasps (n, 19), scores (n,)

and a ShapeNet-style folder of extra unlabeled shapes for pretraining::

    pretrain_root/<synset>/<model>/models/model_normalized.obj

How it is generated:
- Objects: six categories of trimesh primitives and compositions with random
  proportions (box, cylinder, sphere, cone, mug = cylinder + torus handle,
  dumbbell = bar + two spheres), scaled to 6-20 cm and centred.
- Wrist poses: an approach direction on a sphere around the object, the wrist
  at a stand-off beyond the surface, a random roll about the approach axis;
  7-D pose = position + unit quaternion (w, x, y, z).
- Joints (12 = 4 fingers x 3 joints): the object is seen from the hand frame
  (closing direction = the hand's y axis). The grip width (object extent along
  the closing axis near the approach line), the depth to the surface and the
  local roundness (category) set the flexion. Each recorded grasp is one of
  two distinct valid modes for the same object and pose: a power grasp
  (all fingers wrap, flexion grows as the width shrinks) or a precision pinch
  (thumb and index flex to the width, the other fingers stay extended). The
  mode is drawn per grasp, so the same (object, pose) has a bimodal joint
  target and the average of the two modes is not a valid grasp: a
  single-output MSE head is pulled between modes, a winner-takes-all head
  can keep both. Widths depend on shape and pose, so predicting them needs
  the geometry (this is where pretraining on shapes can help).
- Scores are drawn in [1, 3]; grasps with score < 1.5 are dropped by the loader.
"""
import json
import math
import os

import numpy as np

CATEGORIES = ("box", "cylinder", "sphere", "cone", "mug", "dumbbell")
SYNSETS = {c: f"9{i:07d}" for i, c in enumerate(CATEGORIES)}  # ShapeNet-like ids


def make_mesh(category, rng):
    import trimesh
    from trimesh import creation

    s = rng.uniform(0.6, 1.4, size=3)
    if category == "box":
        m = creation.box(extents=s * np.array([0.08, 0.06, 0.1]))
    elif category == "cylinder":
        m = creation.cylinder(radius=0.03 * s[0], height=0.12 * s[2], sections=24)
    elif category == "sphere":
        m = creation.icosphere(subdivisions=2, radius=0.045)
        m.apply_scale(s / s.mean())
    elif category == "cone":
        m = creation.cone(radius=0.04 * s[0], height=0.1 * s[2], sections=24)
    elif category == "mug":
        body = creation.cylinder(radius=0.035 * s[0], height=0.09 * s[2], sections=24)
        handle = creation.torus(major_radius=0.025 * s[1], minor_radius=0.006, major_sections=16, minor_sections=8)
        handle.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, [1, 0, 0]))
        handle.apply_translation([0.035 * s[0] + 0.015 * s[1], 0, 0])
        m = trimesh.util.concatenate([body, handle])
    elif category == "dumbbell":
        bar = creation.cylinder(radius=0.01 * s[0], height=0.12 * s[2], sections=16)
        a = creation.icosphere(subdivisions=1, radius=0.03 * s[1])
        b = creation.icosphere(subdivisions=1, radius=0.03 * s[1])
        a.apply_translation([0, 0, 0.06 * s[2]])
        b.apply_translation([0, 0, -0.06 * s[2]])
        m = trimesh.util.concatenate([bar, a, b])
    else:
        raise ValueError(category)
    R = trimesh.transformations.random_rotation_matrix(rng.random(3))
    m.apply_transform(R)
    m.apply_translation(-m.bounding_box.centroid)
    return m


def quat_from_matrix(R):
    """Unit quaternion (w, x, y, z) with w >= 0."""
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


ROUNDNESS = {"box": 0.0, "cylinder": 0.6, "sphere": 1.0, "cone": 0.5, "mug": 0.7, "dumbbell": 0.8}


def sample_pose(verts, rng):
    """A wrist pose around the object: (pose [7] = position + quaternion, R)
    with R's columns the hand axes (x: approach, towards the object; y: closing)."""
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)  # the wrist sits along +d; it approaches along -d
    up = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    y = np.cross(up, d)
    y /= np.linalg.norm(y)
    roll = rng.uniform(-math.pi, math.pi)
    y = math.cos(roll) * y + math.sin(roll) * np.cross(d, y)
    x_axis = -d
    R = np.stack([x_axis, y, np.cross(x_axis, y)], 1)
    pos = d * (np.abs(verts @ d).max() + 0.03)  # wrist 3 cm outside the surface
    return np.concatenate([pos, quat_from_matrix(R)]).astype(np.float32), R


def joints_for_pose(verts, category, pose, R, rng):
    """A 12-D joint vector for the object seen from the hand frame; the grasp
    mode (power or pinch) is drawn here, so repeated draws are bimodal."""
    local = verts @ R  # object in the hand frame
    reach = np.abs(local[:, 1:]).max()
    # extent along the closing axis (y) of the part of the object near the approach line
    near = np.abs(local[:, 2]) < 0.5 * reach + 1e-6
    width = np.ptp(local[near, 1]) if near.any() else np.ptp(local[:, 1])
    depth = np.linalg.norm(pose[:3]) - np.abs(verts @ -R[:, 0]).max()
    w = np.clip(width / 0.14, 0.05, 1.0)  # 0 (thin) .. 1 (wide)
    rnd = ROUNDNESS[category]
    base = np.array([0.35, 0.8, 0.6])  # per-finger joint pattern (MCP, PIP, DIP)
    if rng.random() < 0.5:  # power grasp: all four fingers wrap, more for thin and round objects
        flex = (1.5 - 1.2 * w) * (1 + 0.3 * rnd)
        joints = np.concatenate([base * flex * f for f in (1.0, 0.95, 0.9, 0.85)])
    else:  # precision pinch: thumb + index close to the width, ring + little stay extended
        flex = (1.2 - 1.0 * w) * (1 + 0.1 * rnd)
        joints = np.concatenate([base * flex * 1.4, base * flex * 1.3, base * 0.05, base * 0.0])
    return (joints + 0.3 * depth + rng.normal(0, 0.02, size=12)).astype(np.float32)


def grasp_for_pose(verts, category, rng):
    """One wrist pose and a (bimodal) 12-D joint vector for a mesh."""
    pose, R = sample_pose(verts, rng)
    return pose, joints_for_pose(verts, category, pose, R, rng)


def generate_dataset(root, objects_per_category=8, scenes_per_object=2, grasps_per_scene=16,
                     pretrain_root=None, pretrain_per_category=24, seed=0):
    """Writes the synthetic grasp dataset (and optionally a pretraining folder).
    Returns a summary dict; also written to root/synthetic.json."""
    rng = np.random.default_rng(seed)
    n_grasps = 0
    for cat in CATEGORIES:
        for o in range(objects_per_category):
            obj_dir = os.path.join(root, SYNSETS[cat], f"{cat}_{o:03d}")
            os.makedirs(obj_dir, exist_ok=True)
            mesh = make_mesh(cat, rng)
            mesh.export(os.path.join(obj_dir, "mesh.obj"))
            verts = np.asarray(mesh.vertices)
            for s in range(scenes_per_object):
                poses, joints = zip(*(grasp_for_pose(verts, cat, rng) for _ in range(grasps_per_scene)))
                grasps = np.concatenate([np.stack(poses), np.stack(joints)], 1)
                scores = rng.uniform(1.0, 3.0, size=grasps_per_scene).astype(np.float32)
                scene_dir = os.path.join(obj_dir, f"scene_{s:02d}")
                os.makedirs(scene_dir, exist_ok=True)
                np.savez(os.path.join(scene_dir, "recording.npz"), grasps=grasps, scores=scores)
                n_grasps += int((scores >= 1.5).sum())
    n_pre = 0
    if pretrain_root:
        for cat in CATEGORIES:
            for o in range(pretrain_per_category):
                d = os.path.join(pretrain_root, SYNSETS[cat], f"{cat}_pre_{o:04d}", "models")
                os.makedirs(d, exist_ok=True)
                make_mesh(cat, rng).export(os.path.join(d, "model_normalized.obj"))
                n_pre += 1
    summary = {"categories": list(CATEGORIES), "objects": objects_per_category * len(CATEGORIES),
               "scenes_per_object": scenes_per_object, "grasps_kept": n_grasps,
               "pretrain_shapes": n_pre, "seed": seed}
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "synthetic.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary
