"""The Dex-Net 2.0 dataset layout (what GQ-CNN trains on): loader, writer and
the geometry of its planar grasps. The real dataset and the synthetic
generator (``pcgrasp.data.synthetic.dexnet``) share this code.

Layout: a flat folder of chunk files ``<field>_<i:05d>.npz``, each holding one
array under the key ``arr_0`` whose first axis is the datapoint (the real
dataset has 1000 per file, the last file fewer):

- ``depth_ims_tf_table``: [n, 32, 32, 1] float32 depth crops (metres) centred
  on the grasp centre and rotated so the grasp (closing) axis is horizontal;
- ``hand_poses``: [n, 7] float32: 0 row and 1 column of the grasp centre in
  the full depth image (pixels), 2 depth of the grasp centre from the camera
  (metres; GQ-CNN's parallel-jaw pose input is this column), 3 angle of the
  grasp axis in the image (radians), 4 row and 5 column of the centre in the
  crop, 6 gripper opening in pixels;
- ``robust_ferrari_canny``: [n] float32 robustness; success <=> value > 0.002;
- ``image_labels`` / ``object_labels``: [n] int64 ids of the source image and
  object, for image- and object-wise splits.

Grasp vectors ``y`` in pcgrasp are hand_poses columns 0-3: (row, col, depth, angle).
"""
import glob
import math
import os
import re

import numpy as np
import torch
from torch.nn import functional as F

FIELDS = ("depth_ims_tf_table", "hand_poses", "robust_ferrari_canny", "image_labels", "object_labels")
CHUNK_SIZE = 1000
SUCCESS_THRESHOLD = 0.002
HAND_POSE_COLUMNS = ("row", "col", "depth", "angle", "crop_row", "crop_col", "width_px")


def chunk_path(root, field, index):
    return os.path.join(root, f"{field}_{index:05d}.npz")


def list_chunks(root):
    """Indices of the chunks whose depth, pose and metric files all exist."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"root {root!r} is not a folder")
    found = [int(m.group(1)) for f in glob.glob(os.path.join(root, "depth_ims_tf_table_*.npz"))
             if (m := re.search(r"_(\d{5})\.npz$", f))]
    return sorted(i for i in found if all(os.path.exists(chunk_path(root, f, i)) for f in FIELDS[1:3]))


def write_chunk(root, index, arrays):
    """Writes one chunk (``arrays``: field -> array, equal first dims) under
    the ``arr_0`` key; each file goes to a temporary name, then is renamed, and
    the depth file last, so a chunk counts as written only once complete."""
    n = {len(a) for a in arrays.values()}
    if len(n) != 1:
        raise ValueError(f"arrays of one chunk must have equal lengths, got { {k: len(a) for k, a in arrays.items()} }")
    os.makedirs(root, exist_ok=True)
    for field in sorted(arrays, key=lambda f: f == "depth_ims_tf_table"):
        tmp = chunk_path(root, field, index) + ".tmp.npz"
        np.savez_compressed(tmp, arrays[field])
        os.replace(tmp, chunk_path(root, field, index))


def load_chunks(root, chunks=None):
    """Concatenated arrays of the given chunks (default: all) as a dict."""
    idx = list_chunks(root) if chunks is None else list(chunks)
    if not idx:
        raise FileNotFoundError(f"no Dex-Net chunks (depth_ims_tf_table_XXXXX.npz ...) under {root!r}")
    out = {}
    for field in FIELDS:
        parts = []
        for i in idx:
            p = chunk_path(root, field, i)
            if not os.path.exists(p):
                if field in FIELDS[3:]:
                    break  # optional id files
                raise FileNotFoundError(f"missing {p}")
            with np.load(p) as z:
                parts.append(z["arr_0"])
        if len(parts) == len(idx):
            out[field] = np.concatenate(parts)
    n = len(out["depth_ims_tf_table"])
    if len(out["hand_poses"]) != n or len(out["robust_ferrari_canny"]) != n:
        raise ValueError(f"chunks under {root!r} disagree in length")
    return out


class DexNetDataset(torch.utils.data.Dataset):
    """Datapoints of a Dex-Net 2.0 folder (real or synthetic): (crop [1, S, S]
    float32, grasp y [4] float32 = (row, col, depth, angle), label float32 1/0
    = robust_ferrari_canny > threshold).

    ``chunks`` selects files (the real dataset is 6.7 M datapoints: load a
    subset); ``images`` keeps only datapoints of those image ids (splits).
    """

    def __init__(self, root, chunks=None, images=None, threshold=SUCCESS_THRESHOLD):
        a = load_chunks(root, chunks)
        keep = slice(None)
        if images is not None:
            if "image_labels" not in a:
                raise ValueError(f"images= needs image_labels_XXXXX.npz files under {root!r}")
            keep = np.isin(a["image_labels"], np.asarray(list(images)))
        ims = a["depth_ims_tf_table"][keep]
        if ims.ndim != 4 or ims.shape[3] != 1 or ims.shape[1] != ims.shape[2]:
            raise ValueError(f"depth_ims_tf_table must be [n, S, S, 1], got {ims.shape}")
        self.crops = torch.from_numpy(np.ascontiguousarray(ims.transpose(0, 3, 1, 2), dtype=np.float32))
        self.grasps = torch.from_numpy(np.ascontiguousarray(a["hand_poses"][keep][:, :4], dtype=np.float32))
        self.metric = torch.from_numpy(np.asarray(a["robust_ferrari_canny"][keep], dtype=np.float32).reshape(-1))
        self.labels = (self.metric > threshold).float()
        self.image_ids = torch.from_numpy(a["image_labels"][keep]) if "image_labels" in a else None

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.crops[i], self.grasps[i], self.labels[i]


def image_split(image_ids, val_fraction, seed):
    """(train image ids, val image ids): a seeded image-wise split."""
    ids = np.unique(np.asarray(image_ids))
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    perm = np.random.default_rng(seed).permutation(ids)
    n_val = int(round(val_fraction * len(ids)))
    if val_fraction > 0 and len(ids) > 1:
        n_val = min(max(1, n_val), len(ids) - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# ---------------------------------------------------------------- geometry
def grasp_crops(depth, grasps, size=32, window=64):
    """Depth crops centred on and rotated to planar grasps (bilinear, edge
    pixels repeated outside the image); differentiable w.r.t. ``grasps``.

    Args:
        depth: [H, W] depth image (metres).
        grasps: [N, >=4] (row, col, depth, angle) rows; angle = direction of the
            closing axis in the image, from +column towards +row (radians).
        size: output crop side (pixels); window: side of the image window it
            covers (pixels), so one crop pixel is window / size image pixels.

    Returns [N, 1, size, size]: crop column axis along the closing axis,
    the grasp centre at ((size - 1) / 2, (size - 1) / 2).
    """
    if not isinstance(depth, torch.Tensor) or depth.dim() != 2:
        raise ValueError(f"depth must be a [H, W] tensor, got {getattr(depth, 'shape', type(depth).__name__)}")
    if not isinstance(grasps, torch.Tensor) or grasps.dim() != 2 or grasps.shape[1] < 4:
        raise ValueError(f"grasps must be a [N, 4] tensor, got {getattr(grasps, 'shape', type(grasps).__name__)}")
    H, W = depth.shape
    g = grasps.to(depth.dtype)
    s = window / size
    t = (torch.arange(size, dtype=depth.dtype, device=depth.device) - (size - 1) / 2) * s
    v, u = torch.meshgrid(t, t, indexing="ij")  # crop row, column offsets (image pixels)
    c, sn = torch.cos(g[:, 3]).view(-1, 1, 1), torch.sin(g[:, 3]).view(-1, 1, 1)
    col = g[:, 1].view(-1, 1, 1) + u * c - v * sn
    row = g[:, 0].view(-1, 1, 1) + u * sn + v * c
    grid = torch.stack([2 * col / max(W - 1, 1) - 1, 2 * row / max(H - 1, 1) - 1], -1)
    img = depth.view(1, 1, H, W).expand(len(g), 1, H, W)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)


def planar_grasp_frames(grasps, K, camera_pose):
    """World-frame gripper frames of planar grasps (graspnetAPI axes: x =
    approach = the camera's optical axis, y = closing axis in the image plane
    at ``angle``, z = x cross y).

    Args: grasps [N, >=4] (row, col, depth, angle) NumPy; K [3, 3]; camera_pose
    [4, 4] camera -> world (OpenCV axes). Returns (centers [N, 3], rotations [N, 3, 3]).
    """
    g = np.asarray(grasps, dtype=np.float64)
    if g.ndim != 2 or g.shape[1] < 4:
        raise ValueError(f"grasps must be [N, 4] (row, col, depth, angle), got shape {g.shape}")
    K, T = np.asarray(K, dtype=np.float64), np.asarray(camera_pose, dtype=np.float64)
    row, col, d, a = g[:, 0], g[:, 1], g[:, 2], g[:, 3]
    p = np.stack([(col - K[0, 2]) / K[0, 0] * d, (row - K[1, 2]) / K[1, 1] * d, d], 1)
    x = np.broadcast_to([0.0, 0.0, 1.0], p.shape)
    y = np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], 1)
    R_cam = np.stack([x, y, np.cross(x, y)], 2)  # columns x, y, z
    return p @ T[:3, :3].T + T[:3, 3], np.einsum("ij,njk->nik", T[:3, :3], R_cam)


def wrap_angle(a):
    """Grasp angles modulo pi (a parallel-jaw grasp is symmetric), in [0, pi)."""
    return torch.remainder(a, math.pi) if isinstance(a, torch.Tensor) else np.mod(a, math.pi)
