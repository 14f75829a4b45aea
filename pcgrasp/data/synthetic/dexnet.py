"""Synthetic Dex-Net 2.0 data: rendered depth images of single objects on a
table, planar parallel-jaw grasps over the image, labelled by the antipodal
test on the mesh with gripper collision checks, written in the Dex-Net 2.0
layout (``pcgrasp.data.dexnet``) so the same loader reads real and synthetic data.

Per image (seeded by (seed, image index), so any subset reproduces alone):
an object from ``OBJECT_CATEGORIES`` (cycled), scaled by 0.7, rests in a stable pose on the
table (``scenes.place_objects``); a camera 0.5-0.7 m above it looks down within
10 degrees of vertical (as Dex-Net 2.0's), with a random roll; the depth
(``render.render_depth``) is rendered at ``image_size`` with a focal length
giving ~2 mm per pixel at 0.6 m. Candidate grasps: centres mostly on object
pixels (some anywhere), depth = the surface depth there + U(-1, 4) cm,
angle U(0, pi). Each is scored by ``robust_grasp_metric``; then as many
successes as failures are kept (up to ``grasps_per_image`` / 2 each; failures
fill up when successes are short). Optional depth noise on the image the crops
come from (labels always come from the mesh).

Deviation from Dex-Net 2.0: ``robust_ferrari_canny`` here is not the
Ferrari-Canny epsilon under pose uncertainty but ``METRIC_SCALE`` x the
fraction of ``perturbations`` perturbed copies of the grasp (centre +-2 mm,
depth +-2 mm, angle +-5 degrees, Gaussian; the first copy unperturbed) that
pass the antipodal test with no gripper collision; with the scale 0.004 the
Dex-Net threshold 0.002 means "more than half pass".
"""
import math
import os

import numpy as np
import torch

from ..dexnet import CHUNK_SIZE, chunk_path, grasp_crops, list_chunks, planar_grasp_frames, write_chunk
from .objects import OBJECT_CATEGORIES, make_object
from .render import add_depth_noise, look_at, render_depth
from .scenes import place_objects, table_mesh

METRIC_SCALE = 0.004
OBJECT_SCALE = 0.7
PIXEL_SIZE_AT_06M = 0.002


def image_intrinsics(size):
    """Square images of ``size`` pixels: f so that a pixel is ~2 mm at 0.6 m."""
    f = 0.6 / PIXEL_SIZE_AT_06M
    c = (size - 1) / 2
    return np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])


def make_view(image_index, seed, image_size=128, categories=OBJECT_CATEGORIES):
    """One object on the table and a camera above it: a dict with ``mesh``
    (object in the table frame, table top z = 0), ``category``, ``K``,
    ``camera_pose`` (camera -> table), ``depth``, ``hit`` (0 = object, 1 = table,
    -1 = none) and ``normals``."""
    rng = np.random.default_rng([seed, image_index])
    category = categories[image_index % len(categories)]
    mesh = make_object(category, rng)
    mesh.apply_scale(OBJECT_SCALE)  # 3-14 cm: most objects fit the 8.5 cm opening one way or another
    _, poses = place_objects([mesh], rng, workspace=0.0)
    mesh = mesh.copy()
    mesh.apply_transform(poses[0])
    target = np.array([0.0, 0.0, 0.5 * mesh.bounds[1, 2]])
    tilt, az, dist = math.radians(rng.uniform(0, 10)), rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 0.7)
    eye = target + dist * np.array([math.sin(tilt) * math.cos(az), math.sin(tilt) * math.sin(az), math.cos(tilt)])
    roll = rng.uniform(0, 2 * math.pi)
    T = look_at(eye, target, up=(math.cos(roll), math.sin(roll), 0.0))
    K = image_intrinsics(image_size)
    depth, hit, normals = render_depth([mesh, table_mesh()], T, K, image_size, image_size)
    return {"mesh": mesh, "category": category, "K": K, "camera_pose": T, "depth": depth, "hit": hit,
            "normals": normals, "rng": rng}


def robust_grasp_metric(mesh, grasps, K, camera_pose, perturbations=8, rng=None, mu=0.5, gripper=None):
    """``METRIC_SCALE`` x the fraction of perturbed copies of each planar grasp
    [N, 4] (the first copy unperturbed) that pass ``geometry.grasp_success``
    (antipodal at ``mu``, no finger through the object or below the table z = 0)."""
    from ...geometry import ParallelJawGripper, grasp_success

    gripper = gripper or ParallelJawGripper()
    g = np.asarray(grasps, dtype=np.float64)
    if perturbations < 1:
        raise ValueError(f"perturbations must be >= 1, got {perturbations}")
    rng = rng or np.random.default_rng(0)
    copies = np.repeat(g[None, :, :4], perturbations, 0)  # [P, N, 4]
    if perturbations > 1:
        f = K[0, 0] / np.maximum(g[:, 2], 1e-6)  # pixels per metre at the grasp depth
        noise = rng.normal(size=(perturbations - 1, len(g), 4))
        copies[1:, :, 0] += noise[..., 0] * 0.002 * f
        copies[1:, :, 1] += noise[..., 1] * 0.002 * f
        copies[1:, :, 2] += noise[..., 2] * 0.002
        copies[1:, :, 3] += noise[..., 3] * math.radians(5)
    c, R = planar_grasp_frames(copies.reshape(-1, 4), K, camera_pose)
    ok = grasp_success(mesh, c, R, gripper.max_width, mu, gripper).reshape(perturbations, len(g))
    return (METRIC_SCALE * ok.mean(0)).astype(np.float32)


def sample_candidates(view, n, rng):
    """n planar grasps (row, col, depth, angle) over the image."""
    depth, hit = view["depth"], view["hit"]
    H, W = depth.shape
    obj = np.argwhere(hit == 0)
    n_obj = int(round(0.85 * n)) if len(obj) else 0
    pick = obj[rng.integers(0, len(obj), n_obj)] if n_obj else np.zeros((0, 2), np.int64)
    anywhere = np.stack([rng.integers(0, H, n - n_obj), rng.integers(0, W, n - n_obj)], 1)
    rc = np.concatenate([pick, anywhere]).astype(np.float64)
    surf = depth[rc[:, 0].astype(int), rc[:, 1].astype(int)].astype(np.float64)
    surf = np.where(surf > 0, surf, depth[depth > 0].max() if (depth > 0).any() else 0.6)
    rc += rng.uniform(-0.5, 0.5, rc.shape)  # sub-pixel centres
    d = surf + rng.uniform(-0.01, 0.04, n)
    return np.stack([rc[:, 0], rc[:, 1], d, rng.uniform(0, math.pi, n)], 1)


def image_datapoints(image_index, seed, image_size=128, grasps_per_image=40, candidates=800, perturbations=8,
                     crop_size=32, crop_window=64, noise_sigma=0.0, gripper=None):
    """All datapoints of one image as the layout's fields (balanced)."""
    from ...geometry import ParallelJawGripper

    gripper = gripper or ParallelJawGripper()
    view = make_view(image_index, seed, image_size)
    rng = view["rng"]
    cand = sample_candidates(view, candidates, rng)
    metric = robust_grasp_metric(view["mesh"], cand, view["K"], view["camera_pose"], perturbations, rng,
                                 gripper=gripper)
    pos, neg = np.flatnonzero(metric > 0.002), np.flatnonzero(metric <= 0.002)
    n_pos = min(len(pos), grasps_per_image // 2)
    keep = np.concatenate([rng.permutation(pos)[:n_pos], rng.permutation(neg)[:grasps_per_image - n_pos]])
    g, metric = cand[keep], metric[keep]
    depth = view["depth"]
    if noise_sigma > 0:
        depth = add_depth_noise(depth, view["normals"], view["camera_pose"], view["K"], rng, sigma=noise_sigma)
    crops = grasp_crops(torch.from_numpy(depth.astype(np.float32)), torch.from_numpy(g.astype(np.float32)),
                        crop_size, crop_window).numpy().transpose(0, 2, 3, 1)
    width_px = gripper.max_width * view["K"][0, 0] / g[:, 2]
    c = (crop_size - 1) / 2
    poses = np.concatenate([g, np.full((len(g), 2), c), width_px[:, None]], 1).astype(np.float32)
    ids = np.full(len(g), image_index, np.int64)
    return {"depth_ims_tf_table": crops.astype(np.float32), "hand_poses": poses, "robust_ferrari_canny": metric,
            "image_labels": ids, "object_labels": ids}


def generate_dexnet(root, images=200, seed=0, image_size=128, grasps_per_image=40, candidates=800, perturbations=8,
                    crop_size=32, crop_window=64, noise_sigma=0.0, images_per_chunk=None, progress=True):
    """Writes ``images`` images' datapoints under ``root`` in the Dex-Net 2.0
    layout; chunk k holds images [k * images_per_chunk, (k+1) * images_per_chunk)
    (default: as many as fill ~1000 datapoints). Finished chunks are skipped
    (resumable). Returns a summary dict."""
    for name, v in (("images", images), ("grasps_per_image", grasps_per_image), ("candidates", candidates),
                    ("image_size", image_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    per_chunk = images_per_chunk or max(1, CHUNK_SIZE // grasps_per_image)
    n_chunks = -(-images // per_chunk)
    os.makedirs(root, exist_ok=True)
    done = set(list_chunks(root))
    todo = [k for k in range(n_chunks) if k not in done or not os.path.exists(chunk_path(root, "image_labels", k))]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(min(per_chunk, images - k * per_chunk) for k in todo), desc="dexnet images",
                   dynamic_ncols=True)
    for k in todo:
        parts = []
        for i in range(k * per_chunk, min(images, (k + 1) * per_chunk)):
            parts.append(image_datapoints(i, seed, image_size, grasps_per_image, candidates, perturbations,
                                          crop_size, crop_window, noise_sigma))
            if bar:
                bar.update(1)
        write_chunk(root, k, {f: np.concatenate([p[f] for p in parts]) for f in parts[0]})
    if bar:
        bar.close()
    metric = np.concatenate([np.load(chunk_path(root, "robust_ferrari_canny", k))["arr_0"] for k in range(n_chunks)])
    return {"root": root, "chunks": n_chunks, "datapoints": int(len(metric)),
            "success_fraction": float((metric > 0.002).mean()), "written": len(todo)}
