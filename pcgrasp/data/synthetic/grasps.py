"""The built-in synthetic grasp dataset (no download needed).

It writes the DLR-Hand II layout used by the public Point-JEPA grasping code::

    root/<synset>/<object>/mesh.obj
    root/<synset>/<object>/<scene>/recording.npz   grasps (n, 19), scores (n,)

and a ShapeNet-style folder of extra unlabeled shapes for pretraining::

    pretrain_root/<synset>/<model>/models/model_normalized.obj

How it is generated:
- Objects: six categories of trimesh primitives and compositions with random
  proportions (box, cylinder, sphere, cone, mug = cylinder + torus handle,
  dumbbell = bar + two spheres), randomly rotated and centred. (The large
  unlabeled pretraining set of the same families is ``data.procedural``.)
- Wrist poses: an approach direction on a sphere around the object, the wrist
  at a stand-off beyond the surface, a random roll about the approach axis;
  7-D pose = position + unit quaternion (w, x, y, z).
- Joints (12 = 4 fingers x 3 joints), the generative model: the object is
  seen from the hand frame (x: approach, y: closing, z = x × y) through
  ``local_features`` of 2048 surface samples: the front depth on the approach
  line, the part within 4 cm behind it, the width along y of that part in
  four finger slabs (z = -2.4, -0.8, 0.8, 2.4 cm; 0 where a finger misses the
  object) and in the central slab, the curvature of the central front
  profile (quadratic fit, 0 for a flat face) and the variation of the finger
  widths (necks, handles, rims). Each recorded grasp is one of two valid
  modes for the same object and pose:

      mode ~ Bernoulli(p),  p = P(pinch) = 0.04 + 0.92 sigmoid(2 z),
      z = (0.075 - width) / 0.012 + 2.5 (variation - 0.15) - 2 (curvature - 0.3)
      joints = mean[mode] + N(0, 0.02^2 I)

  power (mode 0): every finger wraps its own slab, flexion clip(2.0 - 10
  w_k, 0.3, 1.8) times (0.45, 0.8, 0.55 + 0.4 curvature); pinch (mode 1):
  fingers 1-2 close to the central width, g = clip(1.6 - 10 width, 0.2, 1.5)
  times (0.25, 0.6, 0.9 - 0.4 curvature) (x 1.1 for finger 2), fingers 3-4
  extended at 0.05 rad (``mode_probability``, ``mode_means``). So pinch is
  likelier on thin parts, handles and necks, power on wide round bodies, with
  residual randomness (p never leaves [0.04, 0.96]); the average of the modes
  is not a valid grasp; and the joints depend on local shape near the
  approach line, not on the category.
- The truth rides along: each recording also stores ``p_pinch`` (n,),
  ``mode_means`` (n, 2, 12) and ``noise_sd``, from which ``bayes_floor``
  computes the best achievable top-logit RMSE of any split (choosing the
  likelier mode: sqrt(mean(min(p, 1-p) D^2 / 12) + sigma^2), D the distance
  between the modes), the conditional-mean floor (p (1-p) instead of
  min(p, 1-p)) and the mode-blind floor (one mode for every grasp).
- Scores are drawn in [1, 3]; grasps with score < 1.5 are dropped by the loader.
"""
import json
import math
import os

import numpy as np

from ..meshes import sample_surface

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


# ---------------------------------------------------------------- the generative model of the joints
NOISE_SD = 0.02                              # rad, i.i.d. per joint
FINGER_Z = (-0.024, -0.008, 0.008, 0.024)    # m, finger offsets along the hand's z axis (power grasp)
SLAB = 0.008                                 # m, half-height of a finger's slab
REACH = 0.04                                 # m, how deep behind the first contact the fingers reach
LINE = 0.01                                  # m, radius of the approach line's tube
P_MIN, P_MAX = 0.04, 0.96                    # residual randomness of the mode


def _ptp(a):
    return float(a.max() - a.min()) if len(a) > 1 else 0.0


def local_features(points, pose, R):
    """The geometry the hand sees near its approach line (all in metres).

    points: surface samples of the object [n, 3] (world frame); pose [7]; R
    the hand axes (``sample_pose``). In the hand frame (x: approach, y:
    closing, z = x × y) with the wrist at the origin:

    - front: the first surface depth along the approach line (points within
      ``LINE`` of the line; all points when none is);
    - the *near* part: points less than ``REACH`` behind the front;
    - widths [4]: per finger, the extent along y of the near points within
      ``SLAB`` of the finger's z offset ``FINGER_Z`` (0 when fewer than 2
      points: the finger misses the object);
    - width: the same for the central slab |z| < ``LINE`` (the pinch width);
    - curvature in [0, 1]: the central slab's front profile (per eighth of
      the width, the nearest depth) fitted by depth = a + b y + k y^2;
      k width / 2, clipped: 0 for a flat (even oblique) face, ~0.5 for a
      cylinder seen across its width;
    - variation: the spread of the finger widths over their mean (necks,
      handles and rims make it large).
    """
    local = (np.asarray(points, np.float64) - np.asarray(pose[:3], np.float64)) @ R
    on_line = (np.abs(local[:, 1]) < LINE) & (np.abs(local[:, 2]) < LINE)
    front = local[on_line, 0].min() if on_line.any() else local[:, 0].min()
    near = local[local[:, 0] < front + REACH]
    widths = np.array([_ptp(near[np.abs(near[:, 2] - z) < SLAB, 1]) for z in FINGER_Z])
    centre = near[np.abs(near[:, 2]) < LINE]
    width = _ptp(centre[:, 1])
    curv = 0.0
    if width > 1e-3:
        # the front profile: per bin of y, the nearest depth; its quadratic coefficient k
        # (depth ~ a + b y + k y^2) times the half width is 0 for a flat (even oblique)
        # face and ~0.5 for a cylinder seen across its full width
        y0 = centre[:, 1].min()
        bins = np.minimum(((centre[:, 1] - y0) / width * 8).astype(int), 7)
        prof = np.array([[centre[bins == b, 1].mean(), centre[bins == b, 0].min()] for b in range(8) if (bins == b).any()])
        if len(prof) >= 3:
            k = np.polyfit(prof[:, 0], prof[:, 1], 2)[0]
            curv = float(np.clip(k * width / 2, 0.0, 1.0))
    variation = float(widths.std() / max(widths.mean(), 1e-3))
    return {"front": float(front), "widths": widths, "width": width, "curvature": curv, "variation": variation}


def mode_probability(feat):
    """P(pinch | geometry): likelier on thin parts and where the width varies
    between fingers (handles, necks, rims), less likely on wide round bodies:
    p = P_MIN + (P_MAX - P_MIN) * sigmoid(2 z), z = (0.075 - width) / 0.012 + 2.5 (variation - 0.15) - 2 (curvature - 0.3)."""
    z = (0.075 - feat["width"]) / 0.012 + 2.5 * (feat["variation"] - 0.15) - 2.0 * (feat["curvature"] - 0.3)
    return P_MIN + (P_MAX - P_MIN) / (1.0 + math.exp(-2.0 * z))


def mode_means(feat):
    """The noise-free joints [2, 12] of the two modes (row 0 power, row 1
    pinch); 4 fingers x (MCP, PIP, DIP), radians.

    power: every finger wraps its own slab: flexion f_k = clip(2.0 - 10 w_k,
    0.3, 1.8) for its local width w_k (a finger that misses the object closes
    fully), joints f_k (0.45, 0.8, 0.55 + 0.4 c) with c the curvature (the
    fingertips curl more on round parts).
    pinch: fingers 1 and 2 close to the central width, g = clip(1.6 - 10 w,
    0.2, 1.5), joints g (0.25, 0.6, 0.9 - 0.4 c) and 1.1 g (0.25, 0.6,
    0.9 - 0.4 c); fingers 3 and 4 stay extended (0.05 each)."""
    c = feat["curvature"]
    f = np.clip(2.0 - 10.0 * feat["widths"], 0.3, 1.8)
    power = np.concatenate([fk * np.array([0.45, 0.8, 0.55 + 0.4 * c]) for fk in f])
    g = float(np.clip(1.6 - 10.0 * feat["width"], 0.2, 1.5))
    tip = np.array([0.25, 0.6, 0.9 - 0.4 * c])
    pinch = np.concatenate([g * tip, 1.1 * g * tip, np.full(6, 0.05)])
    return np.stack([power, pinch])


def grasp_truth(points, pose, R):
    """(P(pinch), mode means [2, 12]) for one object and wrist pose: what the
    generator draws from (deterministic given the geometry)."""
    feat = local_features(points, pose, R)
    return mode_probability(feat), mode_means(feat)


def joints_for_pose(points, category, pose, R, rng, return_mode=False):
    """A 12-D joint vector for the object seen from the hand: the mode is drawn
    with ``P(pinch) = mode_probability`` (so repeated draws for the same pose
    are bimodal), then its mean plus N(0, NOISE_SD^2) per joint. ``points``:
    the object's surface samples (vertices of a finely tessellated mesh also
    do); ``category`` is unused (the model sees geometry only; kept for the
    call signature)."""
    joints, mode = draw_joints(*grasp_truth(points, pose, R), rng)
    return (joints, mode) if return_mode else joints


def draw_joints(p_pinch, means, rng):
    """(joints [12] float32, mode: 1 pinch / 0 power): the mode with
    P(pinch) = p_pinch, then its mean plus N(0, NOISE_SD^2) per joint."""
    mode = int(rng.random() < p_pinch)
    return (means[mode] + rng.normal(0.0, NOISE_SD, size=means.shape[-1])).astype(np.float32), mode


def bayes_floor(p_pinch, means, noise_sd=NOISE_SD):
    """Top-logit RMSE floors (radians) of a set of grasps from the generator's
    truth: ``p_pinch`` [n], ``means`` [n, 2, 12]. Returns a dict:

    - ``mode``: the best top-logit error when the top hypothesis is one of the
      two modes (a valid grasp) and the choice may use the exact geometry:
      pick the likelier mode, E err^2 = min(p, 1-p) D^2 / J + sigma^2 with D
      the distance between the modes;
    - ``mean``: the best of any output (the conditional mean, an invalid
      average of the modes): p (1-p) D^2 / J + sigma^2;
    - ``blind``: the ``mode`` rule with one mode for every grasp (the one
      likelier on average), i.e. a selector that uses no geometry;
    - ``noise``: sigma (the joint noise alone).
    """
    p = np.asarray(p_pinch, np.float64)
    means = np.asarray(means, np.float64)
    if p.ndim != 1 or means.shape != (len(p), 2, means.shape[-1]):
        raise ValueError(f"p_pinch must be [n] and means [n, 2, J], got {p.shape} and {means.shape}")
    if len(p) == 0:
        raise ValueError("p_pinch is empty: no grasps to compute a floor over")
    J = means.shape[-1]
    d2 = ((means[:, 0] - means[:, 1]) ** 2).sum(1) / J
    s2 = float(noise_sd) ** 2
    blind_p = np.full_like(p, 1.0 - p) if p.mean() >= 0.5 else p  # probability of the mode not chosen
    return {"mode": math.sqrt(float((np.minimum(p, 1 - p) * d2).mean()) + s2),
            "mean": math.sqrt(float((p * (1 - p) * d2).mean()) + s2),
            "blind": math.sqrt(float((blind_p * d2).mean()) + s2),
            "noise": math.sqrt(s2)}


GENERATOR_POINTS = 2048  # surface samples per object the joint model reads


def grasp_for_pose(points, category, rng):
    """One wrist pose, a (bimodal) 12-D joint vector, P(pinch) and the mode
    means [2, 12] for an object's surface samples."""
    pose, R = sample_pose(points, rng)
    p, means = grasp_truth(points, pose, R)
    return pose, draw_joints(p, means, rng)[0], p, means


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
            surface = sample_surface(mesh, GENERATOR_POINTS, seed=int(rng.integers(2 ** 31)))
            for s in range(scenes_per_object):
                poses, joints, ps, means = zip(*(grasp_for_pose(surface, cat, rng) for _ in range(grasps_per_scene)))
                grasps = np.concatenate([np.stack(poses), np.stack(joints)], 1)
                scores = rng.uniform(1.0, 3.0, size=grasps_per_scene).astype(np.float32)
                scene_dir = os.path.join(obj_dir, f"scene_{s:02d}")
                os.makedirs(scene_dir, exist_ok=True)
                # the generator's truth rides along for the Bayes floor (loaders of real data ignore it)
                np.savez(os.path.join(scene_dir, "recording.npz"), grasps=grasps, scores=scores,
                         p_pinch=np.asarray(ps, np.float64), mode_means=np.stack(means), noise_sd=NOISE_SD)
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
