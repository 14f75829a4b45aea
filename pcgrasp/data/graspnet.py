"""GraspNet-1Billion scenes: one loader for the real dataset and for the
synthetic copies ``pcgrasp generate-scenes`` writes in the same layout.

Layout read (as graspnetAPI and GSNet read it)::

    root/scenes/scene_<s:04d>/object_id_list.txt
    root/scenes/scene_<s:04d>/<camera>/{camera_poses.npy, cam0_wrt_table.npy}
    root/scenes/scene_<s:04d>/<camera>/depth/<ann:04d>.png   uint16, depth * factor_depth
    root/scenes/scene_<s:04d>/<camera>/label/<ann:04d>.png   0 = background, obj_id + 1
    root/scenes/scene_<s:04d>/<camera>/meta/<ann:04d>.mat    cls_indexes, poses, intrinsic_matrix, factor_depth

Conventions (GSNet's ``graspnet_dataset.py`` / ``data_utils.py``):

- Back-projection: ``z = depth / factor_depth``, ``x = (u - cx) z / fx``,
  ``y = (v - cy) z / fy`` (u column, v row), intrinsics from the frame's meta.
- Camera pose in the table frame: ``cam0_wrt_table @ camera_poses[ann]``.
- Workspace mask: the axis-aligned box, in the table frame, of the labelled
  (object) points, padded by 2 cm; points strictly inside are kept.
- Splits: train 0-99, test 100-189, test_seen 100-129, test_similar 130-159,
  test_novel 160-189, all 0-189. Only scenes present on disk are used.

Deviations from GSNet: labelled pixels without depth do not enter the
workspace box (GSNet lets them pull the box to the camera origin); a frame with
no labelled depth pixel keeps every valid pixel instead of failing; the image
size is the image's own, not a fixed 1280 x 720; ``remove_table`` (keep only
object-labelled points) is ours.

Frame pairs (GraspContrast / PointContrast pretraining): ``FramePairs`` yields
two annotations of one scene whose clouds overlap by more than ``min_overlap``,
each independently augmented in its camera frame (a random flip across the YZ
plane, x -> -x, then a random rotation about the table normal), with the
transforms mapping each augmented cloud to the table frame
(``camera_pose @ inv(augmentation)``) and the positive correspondences from
``pcgrasp.ops.correspondences`` within ``epsilon`` (7.5 mm).
"""
import os

import numpy as np

SPLITS = {
    "train": range(0, 100),
    "test": range(100, 190),
    "test_seen": range(100, 130),
    "test_similar": range(130, 160),
    "test_novel": range(160, 190),
    "all": range(0, 190),
}


def depth_to_cloud(depth, K, factor_depth=1.0):
    """Organised camera-frame cloud [H, W, 3] float32 from a depth image
    (pixels without depth give z = 0)."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be a [H, W] image, got shape {depth.shape}")
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must be a finite 3x3 intrinsic matrix with fx, fy > 0, got {K.tolist()}")
    factor_depth = float(np.asarray(factor_depth).reshape(-1)[0])
    if not factor_depth > 0:
        raise ValueError(f"factor_depth must be > 0, got {factor_depth}")
    H, W = depth.shape
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    z = depth.astype(np.float64) / factor_depth
    return np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], -1).astype(np.float32)


def workspace_mask(cloud, label, camera_pose, valid=None, pad=0.02):
    """GSNet's workspace: pixels whose point lies strictly inside the table-frame
    axis-aligned box of the labelled points, padded by ``pad`` metres.

    cloud [H, W, 3] camera frame; label [H, W] (> 0 = object); camera_pose
    [4, 4] camera -> table; valid [H, W] bool (default: z > 0). Returns
    [H, W] bool (invalid pixels are never in it). Without labelled valid pixels
    every valid pixel is kept."""
    cloud = np.asarray(cloud)
    label = np.asarray(label)
    if cloud.ndim != 3 or cloud.shape[2] != 3 or label.shape != cloud.shape[:2]:
        raise ValueError(f"cloud must be [H, W, 3] and label [H, W], got {cloud.shape} and {label.shape}")
    valid = cloud[..., 2] > 0 if valid is None else np.asarray(valid, dtype=bool)
    T = np.asarray(camera_pose, dtype=np.float64)
    # einsum, not matmul: no BLAS threads for a tall [N, 3] x 3x3 (see render.py)
    pts = np.einsum("ij,kj->ik", cloud.reshape(-1, 3).astype(np.float64), T[:3, :3]) + T[:3, 3]
    fg = (label.reshape(-1) > 0) & valid.reshape(-1)
    if not fg.any():
        return valid.copy()
    lo, hi = pts[fg].min(0) - pad, pts[fg].max(0) + pad
    inside = ((pts > lo) & (pts < hi)).all(1).reshape(label.shape)
    return inside & valid


def _need(path, what="file"):
    if not os.path.exists(path):
        raise FileNotFoundError(f"GraspNet layout: missing {what} {path}")
    return path


def read_png(path):
    from PIL import Image

    with Image.open(_need(path)) as im:
        return np.array(im)


def read_meta(path):
    """A frame's meta .mat: obj_ids [n] int64 (GraspNet ids = cls_indexes - 1),
    poses [n, 4, 4] model -> camera, K [3, 3], factor_depth float."""
    import scipy.io

    m = scipy.io.loadmat(_need(path))
    for key in ("cls_indexes", "poses", "intrinsic_matrix", "factor_depth"):
        if key not in m:
            raise ValueError(f"{path}: meta has no {key!r} (keys: {sorted(k for k in m if not k.startswith('__'))})")
    ids = np.asarray(m["cls_indexes"]).reshape(-1).astype(np.int64) - 1
    P = np.asarray(m["poses"], dtype=np.float64)
    if P.ndim == 2:
        P = P[:, :, None]
    if P.shape[:2] != (3, 4) or P.shape[2] != len(ids):
        raise ValueError(f"{path}: poses must be (3, 4, {len(ids)}), got {P.shape}")
    poses = np.tile(np.eye(4), (len(ids), 1, 1))
    poses[:, :3, :] = P.transpose(2, 0, 1)
    K = np.asarray(m["intrinsic_matrix"], dtype=np.float64)
    return ids, poses, K, float(np.asarray(m["factor_depth"]).reshape(-1)[0])


def sample_indices(n, num_points, rng):
    """GSNet's sampling: num_points of n without replacement when n is large
    enough, else all n plus random repeats."""
    if n >= num_points:
        return rng.choice(n, num_points, replace=False)
    return np.concatenate([np.arange(n), rng.choice(n, num_points - n, replace=True)])


class GraspNetScenes:
    """Frames of GraspNet-1B (real or synthetic) scenes as point clouds.

    root: the dataset root (holding ``scenes/``). split: a key of ``SPLITS``.
    camera: "realsense" or "kinect" (any folder name the scenes have).
    num_points: points per frame for ``__getitem__`` (None: all workspace points).
    voxel_size: for ``coords`` (points / voxel_size, as GSNet feeds MinkowskiEngine).
    workspace: apply the workspace mask (GSNet's ``remove_outlier``).
    remove_table: keep only object-labelled points.
    scene_ids: restrict to these scenes (within the split).
    seed: the sampling seed of ``__getitem__``.
    """

    def __init__(self, root, split="train", camera="realsense", num_points=20000, voxel_size=0.005,
                 workspace=True, remove_table=False, scene_ids=None, seed=0):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"GraspNet root {root!r} does not exist or is not a directory")
        scenes_dir = os.path.join(root, "scenes")
        if not os.path.isdir(scenes_dir):
            raise FileNotFoundError(f"GraspNet layout: {scenes_dir} is missing (is {root!r} a GraspNet-1B root?)")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        if num_points is not None and not (isinstance(num_points, (int, np.integer)) and num_points >= 1):
            raise ValueError(f"num_points must be None or an integer >= 1, got {num_points!r}")
        if not voxel_size > 0:
            raise ValueError(f"voxel_size must be > 0, got {voxel_size!r}")
        self.root, self.split, self.camera = root, split, camera
        self.num_points, self.voxel_size = num_points, float(voxel_size)
        self.workspace, self.remove_table = bool(workspace), bool(remove_table)
        self.seed = seed
        ids = list(SPLITS[split]) if scene_ids is None else [int(s) for s in scene_ids]
        bad = [s for s in ids if s not in SPLITS[split]]
        if bad:
            r = SPLITS[split]
            raise ValueError(f"scene_ids {bad} are not in split {split!r} ({r.start}-{r.stop - 1})")
        present = [s for s in ids if os.path.isdir(self._cam_dir(s))]
        if scene_ids is not None and len(present) < len(ids):
            missing = [self._cam_dir(s) for s in ids if s not in present]
            raise FileNotFoundError(f"GraspNet layout: missing scene folders {missing}")
        if not present:
            raise FileNotFoundError(f"GraspNet layout: no scene of split {split!r} with camera {camera!r} under "
                                    f"{scenes_dir}")
        self.scene_ids = present
        self._poses = {}
        self.frames = []
        for s in present:
            n = len(self.camera_poses(s))
            self.frames += [(s, a) for a in range(n)]

    def _cam_dir(self, scene_id):
        return os.path.join(self.root, "scenes", f"scene_{scene_id:04d}", self.camera)

    def frame_path(self, scene_id, kind, ann_id, ext):
        """The file of one frame in the GraspNet-1Billion layout:
        ``<root>/scenes/scene_<id:04d>/<camera>/<kind>/<ann_id:04d>.<ext>``, e.g.
        ``frame_path(0, "rgb", 3, "png")`` (whether it exists or not)."""
        return os.path.join(self._cam_dir(int(scene_id)), kind, f"{int(ann_id):04d}.{ext}")

    def camera_poses(self, scene_id):
        """(cam0_wrt_table [4, 4], camera_poses [n_ann, 4, 4]) of a scene."""
        if scene_id not in self._poses:
            d = self._cam_dir(scene_id)
            cam0 = np.load(_need(os.path.join(d, "cam0_wrt_table.npy")))
            poses = np.load(_need(os.path.join(d, "camera_poses.npy")))
            if cam0.shape != (4, 4) or poses.ndim != 3 or poses.shape[1:] != (4, 4):
                raise ValueError(f"{d}: cam0_wrt_table must be (4, 4) and camera_poses (n, 4, 4), "
                                 f"got {cam0.shape} and {poses.shape}")
            self._poses[scene_id] = (cam0.astype(np.float64), poses.astype(np.float64))
        return self._poses[scene_id][1]

    def camera_pose(self, scene_id, ann_id):
        """Camera -> table transform [4, 4] float64 of one annotation."""
        poses = self.camera_poses(scene_id)
        if not 0 <= ann_id < len(poses):
            raise IndexError(f"ann_id must be in [0, {len(poses)}) for scene {scene_id}, got {ann_id}")
        return self._poses[scene_id][0] @ poses[ann_id]

    def object_ids(self, scene_id):
        """The scene's object ids (object_id_list.txt), in file order."""
        path = _need(os.path.join(self.root, "scenes", f"scene_{scene_id:04d}", "object_id_list.txt"))
        with open(path) as f:
            return [int(line) for line in f if line.strip()]

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        s, a = self.frames[index]
        rng = np.random.default_rng([self.seed, s, a])
        return self.frame(s, a, num_points=self.num_points, rng=rng)

    def frame(self, scene_id, ann_id, num_points=None, rng=None):
        """One frame as a dict of numpy arrays:

        points [P, 3] float32 camera-frame metres (every valid workspace pixel
        in row-major order when num_points is None, else num_points sampled as
        GSNet does); labels [P] int64 (object id + 1, 0 = table/background);
        pixels [P] int64 (row * W + column of each point); coords [P, 3]
        float32 (points / voxel_size); camera_pose [4, 4] camera -> table;
        object_ids [n] int64 and object_poses [n, 4, 4] (model -> camera) from
        the meta; K [3, 3]; factor_depth; scene_id, ann_id."""
        if num_points is not None and not (isinstance(num_points, (int, np.integer)) and num_points >= 1):
            raise ValueError(f"num_points must be None or an integer >= 1, got {num_points!r}")
        T = self.camera_pose(scene_id, ann_id)
        depth = read_png(self.frame_path(scene_id, "depth", ann_id, "png"))
        label = read_png(self.frame_path(scene_id, "label", ann_id, "png"))
        meta_path = self.frame_path(scene_id, "meta", ann_id, "mat")
        obj_ids, obj_poses, K, factor = read_meta(meta_path)
        if depth.ndim != 2 or label.shape != depth.shape:
            raise ValueError(f"scene {scene_id} ann {ann_id}: depth {depth.shape} and label {label.shape} must be "
                             "single-channel images of one size")
        cloud = depth_to_cloud(depth, K, factor)
        mask = depth > 0
        if self.workspace:
            mask = workspace_mask(cloud, label, T, valid=mask)
        if self.remove_table:
            mask &= label > 0
        pixels = np.flatnonzero(mask)
        if num_points is not None:
            if len(pixels) == 0:
                raise ValueError(f"scene {scene_id} ann {ann_id}: no valid depth pixel to sample from")
            rng = np.random.default_rng() if rng is None else rng
            pixels = pixels[sample_indices(len(pixels), num_points, rng)]
        points = cloud.reshape(-1, 3)[pixels]
        return {"points": points, "labels": label.reshape(-1)[pixels].astype(np.int64),
                "pixels": pixels.astype(np.int64), "coords": points / np.float32(self.voxel_size),
                "camera_pose": T, "object_ids": obj_ids, "object_poses": obj_poses, "K": K,
                "factor_depth": factor, "scene_id": scene_id, "ann_id": ann_id}


# ---------------------------------------------------------------- frame pairs

def augmentation(rng, up):
    """A GraspContrast augmentation in a camera frame: flip across the YZ plane
    (x -> -x) with probability 1/2, then a rotation by a uniform angle about
    the table normal ``up`` (a unit vector in that camera frame). [4, 4]."""
    F = np.diag([-1.0 if rng.random() < 0.5 else 1.0, 1.0, 1.0])
    a = rng.uniform(-np.pi, np.pi)
    k = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    R = np.eye(3) + np.sin(a) * Kx + (1 - np.cos(a)) * Kx @ Kx  # Rodrigues
    A = np.eye(4)
    A[:3, :3] = R @ F
    return A


def _match(src, dst, T_src, T_dst, radius):
    """ops.correspondences on one pair of numpy clouds: (idx [N], dist2 [N])."""
    import torch

    from .. import ops

    dt = torch.float64 if src.dtype == np.float64 else torch.float32
    idx, d2 = ops.correspondences(torch.as_tensor(src, dtype=dt)[None], torch.as_tensor(dst, dtype=dt)[None], radius,
                                  src_transform=torch.as_tensor(T_src, dtype=dt)[None],
                                  dst_transform=torch.as_tensor(T_dst, dtype=dt)[None])
    return idx[0].numpy(), d2[0].numpy()


def frame_overlap(a, b, radius=0.0075):
    """Overlap of two frames (dicts from ``GraspNetScenes.frame``): the smaller
    of the fractions of a's points with a table-frame match in b within
    ``radius`` and of b's points with one in a."""
    if len(a["points"]) == 0 or len(b["points"]) == 0:
        return 0.0
    ia, _ = _match(a["points"], b["points"], a["camera_pose"], b["camera_pose"], radius)
    ib, _ = _match(b["points"], a["points"], b["camera_pose"], a["camera_pose"], radius)
    return float(min((ia >= 0).mean(), (ib >= 0).mean()))


class FramePairs:
    """Pairs of overlapping frames of the same scene with augmentations and
    positive correspondences, for contrastive pretraining.

    scenes: a ``GraspNetScenes``. min_overlap: pairs need ``frame_overlap`` >
    min_overlap (GraspContrast / PointContrast: 0.3), measured on
    ``overlap_points`` points per frame within ``epsilon``. num_points: points
    per frame of a pair (None: all workspace points). augment: the random
    flip + rotation per view. seed: makes pair sampling, point sampling and
    augmentations reproducible (``pair(i)`` depends on (seed, i) only).

    The pair list is built on construction (all annotation pairs of each scene,
    or ``max_pairs_per_scene`` random ones among them).
    """

    def __init__(self, scenes, min_overlap=0.3, epsilon=0.0075, num_points=20000, augment=True, overlap_points=2048,
                 max_pairs_per_scene=None, seed=0, progress=False):
        if not 0 <= min_overlap < 1:
            raise ValueError(f"min_overlap must be in [0, 1), got {min_overlap!r}")
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        from tqdm import tqdm

        self.scenes, self.min_overlap, self.epsilon = scenes, float(min_overlap), float(epsilon)
        self.num_points, self.augment, self.seed = num_points, bool(augment), seed
        rng = np.random.default_rng([seed, 0])
        self.pairs = []  # (scene, ann_a, ann_b, overlap)
        for s in tqdm(scenes.scene_ids, desc="frame overlaps", disable=not progress):
            n = len(scenes.camera_poses(s))
            cand = [(i, j) for i in range(n) for j in range(i + 1, n)]
            if max_pairs_per_scene is not None and len(cand) > max_pairs_per_scene:
                cand = [cand[k] for k in sorted(rng.choice(len(cand), max_pairs_per_scene, replace=False))]
            frames = {}

            def get(a):
                if a not in frames:
                    frames[a] = scenes.frame(s, a, num_points=overlap_points, rng=np.random.default_rng([seed, s, a]))
                return frames[a]

            for i, j in cand:
                ov = frame_overlap(get(i), get(j), self.epsilon)
                if ov > self.min_overlap:
                    self.pairs.append((s, i, j, ov))

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        return self.pair(index)

    def pair(self, index):
        """A dict: points1, points2 [P, 3] float32 (augmented camera frames);
        labels1, labels2 [P] int64; transform1, transform2 [4, 4] float64
        (augmented view -> table: camera_pose @ inv(augmentation));
        augmentation1, augmentation2 [4, 4]; camera_pose1, camera_pose2;
        match [P1] int64 index into points2 of the nearest table-frame point
        within epsilon, -1 if none (``pcgrasp.ops.correspondences``) and
        match_dist2 [P1]; scene_id, ann1, ann2, overlap."""
        if not 0 <= index < len(self.pairs):
            raise IndexError(f"pair index must be in [0, {len(self.pairs)}), got {index}")
        s, a, b, ov = self.pairs[index]
        rng = np.random.default_rng([self.seed, 1, index])
        out = {"scene_id": s, "ann1": a, "ann2": b, "overlap": ov}
        for k, ann in (("1", a), ("2", b)):
            f = self.scenes.frame(s, ann, num_points=self.num_points, rng=rng)
            T = f["camera_pose"]
            A = augmentation(rng, T[:3, :3].T @ [0.0, 0.0, 1.0]) if self.augment else np.eye(4)
            pts = (f["points"].astype(np.float64) @ A[:3, :3].T + A[:3, 3]).astype(np.float32)
            out.update({"points" + k: pts, "labels" + k: f["labels"], "camera_pose" + k: T,
                        "augmentation" + k: A, "transform" + k: T @ np.linalg.inv(A)})
        out["match"], out["match_dist2"] = _match(out["points1"], out["points2"], out["transform1"],
                                                  out["transform2"], self.epsilon)
        return out
