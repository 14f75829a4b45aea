"""Data -> ``Picture`` for every kind ``pcgrasp show`` draws.

Frames: each builder keeps the frame its data comes in and gives a camera in that frame:

- scene frames (GraspNet-1B layout, ``scene_grasps_picture``, ``graspness_picture``): the
  frame's camera frame (points from ``GraspNetScenes.frame``, grasps as the detector dumps
  them); the camera is the frame's own (identity extrinsic, the meta's K), its image scaled up
  to at least ``MIN_WIDTH`` pixels wide;
- an object's grasp labels (``object_labels_picture``): the object's model frame, a look-at
  camera framing the label points;
- an EBM view (``ebm_picture``): the table frame of ``data.synthetic.dexnet.make_view`` (or
  any depth image with its K and camera -> world pose), seen by that camera;
- a Point-JEPA grasp (``jepa_picture``): the object-centred frame of ``data.grasps.GraspDataset``,
  a look-at camera framing the object and the hand.

Colours: grasp scores (higher = better) through a colormap (``viridis`` by default: dark
purple low, yellow high, monotone in lightness); friction coefficients (lower = better) through
the reversed colormap, so the best grasps are yellow in both; graspness through ``inferno``.
"""
import os

import numpy as np

from ..data.graspnet import depth_to_cloud
from ..data.synthetic.render import look_at
from ..eval.grasp_ap import dump_path
from ..geometry.grasps import check_grasp_array, rotations_of, translations_of
from ..geometry.gripper import GRIPPER, ParallelJawGripper
from .gripper_mesh import graspnet_gripper_mesh, hand_mesh, planar_jaw_mesh, quaternion_matrix
from .picture import Camera, Mesh, Picture

MIN_WIDTH = 640
DEFAULT_SIZE = (640, 480)
POINT_GREY = np.array([150, 150, 150], np.uint8)


# ---------------------------------------------------------------- colours and cameras
def colormap(values, cmap="viridis", vmin=None, vmax=None):
    """uint8 [N, 3] colours of ``values`` [N] through a matplotlib colormap, normalised to
    [vmin, vmax] (default: the values' range; a constant gives the colormap's top)."""
    from matplotlib import colormaps

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not len(v):
        return np.zeros((0, 3), np.uint8)
    lo = float(np.min(v)) if vmin is None else float(vmin)
    hi = float(np.max(v)) if vmax is None else float(vmax)
    x = np.ones_like(v) if hi <= lo else np.clip((v - lo) / (hi - lo), 0, 1)
    return np.rint(colormaps[cmap](x)[:, :3] * 255).astype(np.uint8)


def color_legend(vmin, vmax, cmap="viridis", name="score", stops=5, fmt="{:.2f}"):
    """A legend (label -> uint8 [3]) of ``stops`` colours from vmax down to vmin."""
    vals = np.linspace(vmax, vmin, stops) if vmax > vmin else np.array([vmax])
    cols = colormap(vals, cmap, vmin, vmax)
    return {f"{name} {fmt.format(v)}": c for v, c in zip(vals, cols)}


def look_at_camera(points, width=DEFAULT_SIZE[0], height=DEFAULT_SIZE[1], direction=(1.0, -1.0, -1.2),
                   up=(0.0, 0.0, 1.0), fov_deg=40.0, margin=1.15):
    """A pinhole camera framing ``points`` [N, 3] (world frame): looking along ``direction``
    (world frame) at the points' bounding-box centre, from far enough that their bounding sphere
    (times ``margin``) fits the smaller field of view ``fov_deg``."""
    P = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    P = P[np.isfinite(P).all(1)]
    if not len(P):
        P = np.zeros((1, 3))
    lo, hi = P.min(0), P.max(0)
    c = (lo + hi) / 2
    r = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3) * margin
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    f = 0.5 * min(width, height) / np.tan(np.radians(fov_deg) / 2)
    dist = r / np.sin(np.radians(fov_deg) / 2)
    K = np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
    return Camera(look_at(c - dist * d, c, up), K, int(width), int(height))


def image_camera(K, width, height, extrinsic=None, min_width=MIN_WIDTH):
    """The camera of an image of ``width`` x ``height`` with intrinsics K (camera -> world
    ``extrinsic``, default identity: the picture is in the camera frame), scaled up by an
    integer-free factor so that it is at least ``min_width`` pixels wide (image edges fixed:
    c' = (c + 0.5) s - 0.5)."""
    s = max(1.0, float(min_width) / float(width))
    K = np.asarray(K, dtype=np.float64).copy()
    K[0, 0] *= s
    K[1, 1] *= s
    K[0, 2] = (K[0, 2] + 0.5) * s - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * s - 0.5
    T = np.eye(4) if extrinsic is None else np.asarray(extrinsic, dtype=np.float64)
    return Camera(T, K, int(round(width * s)), int(round(height * s)))


# ---------------------------------------------------------------- grasps
def select_grasps(grasps, top_k=None, min_score=None):
    """The grasps of an [N, 17] array to draw: score >= ``min_score``, sorted by score (best
    first, stable), the first ``top_k``. Returns (grasps [M, 17], their row indices [M])."""
    g = check_grasp_array(grasps)
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    idx = np.argsort(-g[:, 0], kind="stable")
    if min_score is not None:
        idx = idx[g[idx, 0] >= float(min_score)]
    if top_k is not None:
        idx = idx[:int(top_k)]
    return g[idx], idx


def grasp_meshes(grasps, colors, name="grasp", score_name="score"):
    """One graspnetAPI gripper ``Mesh`` per row of an [N, 17] array (its width, depth,
    height, R, t; frame of the array), coloured by ``colors`` [N, 3] uint8; names
    ``"<name> <i> <score_name> <score>"``."""
    g = check_grasp_array(grasps)
    R, t = rotations_of(g), translations_of(g)
    out = []
    for i in range(len(g)):
        h = g[i, 2] if g[i, 2] > 0 else GRIPPER.height
        v, f = graspnet_gripper_mesh(R[i], t[i], g[i, 1], g[i, 3], h)
        out.append(Mesh(v, f, np.asarray(colors[i], np.uint8), f"{name} {i} {score_name} {g[i, 0]:.3f}"))
    return out


def grasps_picture(points, colors, grasps, camera=None, top_k=50, min_score=None, cmap="viridis", title="",
                   score_name="score"):
    """Points [P, 3] (colours [P, 3] uint8 or None: grey) with the selected grasps of an
    [N, 17] array (same frame) as grippers coloured by score (``select_grasps``; the colour
    scale spans the drawn grasps' scores). ``camera``: default a look-at camera framing the
    points and grippers."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    cols = np.broadcast_to(POINT_GREY, pts.shape).copy() if colors is None else np.asarray(colors, np.uint8)
    g, _ = select_grasps(grasps, top_k, min_score)
    gc = colormap(g[:, 0], cmap)
    meshes = grasp_meshes(g, gc, score_name=score_name)
    if camera is None:
        camera = look_at_camera(np.concatenate([pts] + [m.vertices for m in meshes]))
    legend = color_legend(g[:, 0].min(), g[:, 0].max(), cmap, score_name) if len(g) else {}
    return Picture(pts, cols, meshes, camera, title or f"{len(g)} grasps", legend)


# ---------------------------------------------------------------- scene frames
def _scenes(root, scene_id, camera):
    from ..data.graspnet import GraspNetScenes

    return GraspNetScenes(root, split="all", camera=camera, num_points=None, scene_ids=[int(scene_id)])


def scene_frame(root, scene_id, ann_id, camera="realsense"):
    """A frame of a GraspNet-1B-layout root as (frame dict of ``GraspNetScenes.frame`` with
    every workspace point, camera-frame metres; point colours [P, 3] uint8 from the frame's
    rgb image when present, else grey by label; Camera of the frame's image).
    Raises ValueError naming the annotation when ``ann_id`` is not one of the scene's."""
    from ..data.graspnet import read_png

    ds = _scenes(root, scene_id, camera)
    n = len(ds.camera_poses(int(scene_id)))
    if not 0 <= int(ann_id) < n:
        raise ValueError(f"annotation (frame) {ann_id} is out of range: scene {int(scene_id)} has frames 0-{n - 1}")
    f = ds.frame(int(scene_id), int(ann_id))
    depth_path = ds.frame_path(int(scene_id), "depth", int(ann_id), "png")
    H, W = read_png(depth_path).shape[:2]
    rgb_path = ds.frame_path(int(scene_id), "rgb", int(ann_id), "png")
    colors = None
    if os.path.exists(rgb_path):
        rgb = read_png(rgb_path)
        if rgb.shape[:2] == (H, W):
            rgb = rgb[..., None].repeat(3, -1) if rgb.ndim == 2 else rgb[..., :3]
            colors = rgb.reshape(-1, 3)[f["pixels"]].astype(np.uint8)
    if colors is None:
        colors = np.where((f["labels"] > 0)[:, None], [185, 185, 185], [120, 120, 120]).astype(np.uint8)
    return f, colors, image_camera(f["K"], W, H)


def scene_grasps_picture(root, scene_id, ann_id, grasps=None, dump_dir=None, camera="realsense", top_k=50,
                         min_score=None, cmap="viridis"):
    """A scene frame's cloud (camera frame) with grasps: ``grasps`` an [N, 17] array in that
    camera frame, or the frame's dump under ``dump_dir`` (``evaluate-detector``), or, with
    neither, the frame's labelled grasps (``labels.scene_labels.scene_label_grasps``: score
    1.1 - mu, needs ``pcgrasp labels`` to have run on the scene). Seen from the frame's camera."""
    f, colors, cam = scene_frame(root, scene_id, ann_id, camera)
    if grasps is None and dump_dir is not None:
        path = dump_path(dump_dir, scene_id, ann_id, camera)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no grasp dump {path} (evaluate-detector writes <dump>/scene_<s>/<camera>/<ann>.npy)")
        grasps, source = np.load(path), "predicted"
    elif grasps is None:
        from ..labels.scene_labels import scene_label_grasps

        grasps, source = scene_label_grasps(root, int(scene_id), int(ann_id), camera), "labelled"
    else:
        source = "given"
    g = check_grasp_array(grasps, "grasps")
    pic = grasps_picture(f["points"], colors, g, cam, top_k, min_score, cmap)
    pic.title = (f"scene {int(scene_id):04d} frame {int(ann_id):04d}: {len(pic.meshes)} of {len(g)} {source} "
                 f"grasps (best first)")
    return pic


def graspness_picture(root, scene_id, ann_id, camera="realsense", cmap="inferno", path=None):
    """A scene frame's workspace cloud (camera frame) coloured by its graspness
    (``graspness/scene_<s>/<camera>/<ann>.npy`` [P, 1], one value per workspace point in
    ``GraspNetScenes.frame``'s order; or ``path``), seen from the frame's camera."""
    from ..labels.scene_labels import graspness_path

    f, _, cam = scene_frame(root, scene_id, ann_id, camera)
    path = path or graspness_path(root, int(scene_id), camera, int(ann_id))
    if not os.path.exists(path):
        raise FileNotFoundError(f"no graspness file {path} (run `pcgrasp labels` on the scene first)")
    g = np.load(path).reshape(-1).astype(np.float64)
    if len(g) != len(f["points"]):
        raise ValueError(f"{path} holds {len(g)} values but the frame has {len(f['points'])} workspace points")
    lo, hi = (float(g.min()), float(g.max())) if len(g) else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    return Picture(f["points"], colormap(g, cmap, lo, hi), [], cam,
                   f"scene {int(scene_id):04d} frame {int(ann_id):04d}: graspness (mean {g.mean() if len(g) else 0:.3f})",
                   color_legend(lo, hi, cmap, "graspness"))


# ---------------------------------------------------------------- object grasp labels
def label_grasps(labels, with_collision=False):
    """Every positive grasp of an object's label arrays (a dict or npz with points [Np, 3],
    offsets [Np, V, A, D, 3] (angle, depth, width), collision [Np, V, A, D], scores
    [Np, V, A, D] (mu, -1 = none) and optionally views [V]) as (grasps [M, 17] in the model
    frame with column 0 = mu, mu [M], label point index [M]); collision-free ones only unless
    ``with_collision``."""
    from ..geometry.views import NUM_VIEWS
    from ..labels.scene_labels import label_grasp_array

    for k in ("points", "offsets", "collision", "scores"):
        if k not in labels:
            raise KeyError(f"grasp labels have no {k!r} array (a grasp_label/<obj>_labels.npz file?)")
    pts = np.asarray(labels["points"], np.float64)
    scores, offsets = np.asarray(labels["scores"]), np.asarray(labels["offsets"])
    coll = np.asarray(labels["collision"], bool)
    views = np.asarray(labels["views"]) if "views" in labels else np.arange(NUM_VIEWS)
    if scores.ndim != 4 or scores.shape[0] != len(pts) or scores.shape[1] != len(views) or \
            offsets.shape != scores.shape + (3,) or coll.shape != scores.shape:
        raise ValueError(f"grasp labels: inconsistent shapes points {pts.shape}, scores {scores.shape}, offsets "
                         f"{offsets.shape}, collision {coll.shape}, views {views.shape}")
    ok = scores > 0
    if not with_collision:
        ok &= ~coll
    p, v, a, d = np.nonzero(ok)
    mu = scores[p, v, a, d].astype(np.float64)
    return label_grasp_array(pts, offsets, views, (p, v, a, d), mu), mu, p


def object_labels_picture(path, top_k=100, max_friction=None, with_collision=False, cmap="viridis_r", mesh=True,
                          seed=0):
    """An object's grasp labels (``grasp_label/<obj>_labels.npz``, model frame): its label
    points coloured by their best (lowest) friction coefficient mu (grey: no positive grasp),
    the ``top_k`` grasps with the lowest mu (ties in a seeded random order, so they spread over
    the object; mu <= ``max_friction``) as grippers coloured by mu (reversed colormap: low mu,
    the better grasp, is bright), and the object's model (``<root>/models/<obj>/nontextured.ply``
    beside ``grasp_label/``) in light grey when ``mesh`` and present."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no grasp label file {path}")
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    try:
        with np.load(path) as z:
            labels = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - empty, truncated, pickled or not an .npz at all
        raise ValueError(f"{path} is not a readable grasp label .npz ({' '.join(str(e).split())[:160]})") from None
    if not isinstance(labels, dict) or "points" not in labels:
        raise ValueError(f"{path} is not a grasp label file (pcgrasp labels writes grasp_label/<obj>_labels.npz)")
    g, mu, p = label_grasps(labels, with_collision)
    pts = np.asarray(labels["points"], np.float64)
    keep = np.ones(len(g), bool) if max_friction is None else mu <= float(max_friction) + 1e-9
    g, mu, p = g[keep], mu[keep], p[keep]
    best = np.full(len(pts), np.inf)
    np.minimum.at(best, p, mu)
    pc = np.broadcast_to(POINT_GREY, pts.shape).copy()
    has = np.isfinite(best)
    pc[has] = colormap(best[has], cmap, 0.1, 1.0)
    order = np.lexsort((np.random.default_rng(seed).permutation(len(mu)), mu))
    if top_k is not None:
        order = order[:int(top_k)]
    g, mu = g[order], mu[order]
    meshes = grasp_meshes(g, colormap(mu, cmap, 0.1, 1.0), score_name="mu")
    obj = os.path.basename(path).split("_")[0]
    model = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(path))), "models", obj, "nontextured.ply")
    if mesh and os.path.exists(model):
        import trimesh

        m = trimesh.load(model, process=False)
        meshes.insert(0, Mesh(np.asarray(m.vertices), np.asarray(m.faces), np.array([225, 225, 225], np.uint8),
                              f"object {obj}"))
    cam = look_at_camera(np.concatenate([pts] + [m.vertices for m in meshes]))
    title = (f"object {obj}: {len(order)} of {len(keep)} {'' if with_collision else 'collision-free '}labelled grasps, "
             "lowest friction first")
    stops = (0.1, 0.4, 0.7, 1.0)
    legend = {f"mu {m:.1f}": c for m, c in zip(stops, colormap(stops, cmap, 0.1, 1.0))}
    return Picture(pts, pc, meshes, cam, title, legend)


# ---------------------------------------------------------------- EBM planner
def ebm_picture(depth, K, camera_pose, grasps, energies, widths=None, top_k=None, gripper=ParallelJawGripper(),
                cmap="viridis", title="", min_width=480):
    """An EBM view: the depth image [H, W] back-projected (table / world frame through
    ``camera_pose``, camera -> world), coloured by height, with planar grasps [N, 4] (row, col,
    depth, angle; the Dex-Net ``hand_poses`` columns) as Dex-Net parallel-jaw grippers
    (``data.dexnet.planar_grasp_frames``: approach along the optical axis), opened to
    ``widths`` [N] metres (default the gripper's max opening) and coloured by energy (low
    energy = the planner's better grasp = bright; grasp score = -energy). ``top_k``: the
    lowest-energy ones. Seen from the depth image's camera."""
    from ..data.dexnet import planar_grasp_frames

    y = np.asarray(grasps, dtype=np.float64).reshape(-1, 4)
    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    if len(e) != len(y):
        raise ValueError(f"energies must be [N] with N = {len(y)} grasps, got {e.shape}")
    cloud = depth_to_cloud(depth, K).reshape(-1, 3).astype(np.float64)   # camera frame, z = 0: no depth
    T = np.eye(4) if camera_pose is None else np.asarray(camera_pose, dtype=np.float64)
    pts = cloud[cloud[:, 2] > 0] @ T[:3, :3].T + T[:3, 3]
    zc = pts[:, 2] if len(pts) else np.zeros(0)
    colors = colormap(zc, "Greys_r", zc.min() - 0.5 * (np.ptp(zc) + 1e-3), zc.max()) if len(pts) else \
        np.zeros((0, 3), np.uint8)
    order = np.argsort(e, kind="stable")
    if top_k is not None:
        order = order[:int(top_k)]
    c, R = planar_grasp_frames(y[order], K, camera_pose)
    cols = colormap(-e[order], cmap)
    w = None if widths is None else np.asarray(widths, np.float64).reshape(-1)[order]
    meshes = []
    for i in range(len(order)):
        v, f = planar_jaw_mesh(R[i], c[i], None if w is None else w[i], gripper)
        meshes.append(Mesh(v, f, cols[i], f"grasp {int(order[i])} energy {e[order[i]]:.3f}"))
    H, W = np.asarray(depth).shape
    cam = image_camera(K, W, H, camera_pose, min_width)
    legend = {}
    if len(order):
        lo, hi = e[order].min(), e[order].max()
        vals = np.linspace(lo, hi, 5) if hi > lo else np.array([lo])
        legend = {f"energy {v:.2f}": cc for v, cc in zip(vals, colormap(-vals, cmap, -hi, -lo))}
    return Picture(pts, colors, meshes, cam, title or f"{len(order)} planar grasps, lowest energy first", legend)


# ---------------------------------------------------------------- Point-JEPA hands
def softmax(x):
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    e = np.exp(x - x.max()) if len(x) else x
    return e / e.sum() if len(x) else e


def jepa_picture(points, pose, joints, logits=None, truth=None, cmap="viridis", title=""):
    """A Point-JEPA object (points [P, 3], object-centred frame of ``GraspDataset``) with K
    hand configurations at one wrist pose [7] (position + quaternion w, x, y, z in that frame):
    ``joints`` [K, 12] (the WTA head's hypotheses) coloured by their probability
    softmax(``logits`` [K]) (default uniform), plus the recorded ``truth`` joints [12] in grey
    when given. Hands are ``gripper_mesh.hand_mesh``'s schematic hand."""
    J = np.asarray(joints, dtype=np.float64).reshape(-1, 12)
    prob = softmax(np.zeros(len(J)) if logits is None else logits)
    if len(prob) != len(J):
        raise ValueError(f"logits must be [K] with K = {len(J)} hypotheses, got {np.shape(logits)}")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    order = np.argsort(-prob, kind="stable")
    cols = colormap(prob[order], cmap, 0.0, max(float(prob.max()), 1e-9))
    grey = np.array([110, 110, 110], np.uint8)
    v, f = hand_mesh(pose, J[0])                     # the palm, once: every hand shares the wrist pose
    meshes = [Mesh(v[:8], f[:12], np.array([200, 200, 200], np.uint8), "palm (wrist pose)")]
    if truth is not None:
        v, f = hand_mesh(pose, truth, palm=False)
        meshes.append(Mesh(v, f, grey, "recorded grasp"))
    for i, k in enumerate(order):
        v, f = hand_mesh(pose, J[k], palm=False)
        meshes.append(Mesh(v, f, cols[i], f"hypothesis {int(k)} p {prob[k]:.3f}"))
    pc = np.broadcast_to(np.array([70, 130, 200], np.uint8), pts.shape).copy()
    # look along the hand's z (the axis the fingers bend about), the approach pointing up
    R = quaternion_matrix(np.asarray(pose, dtype=np.float64).reshape(-1)[3:])
    cam = look_at_camera(np.concatenate([pts] + [m.vertices for m in meshes]), direction=R[:, 2] + 0.35 * R[:, 1],
                         up=R[:, 0])
    legend = {f"p {p:.2f} (hyp. {int(k)})": c for p, k, c in zip(prob[order], order, cols)}
    if truth is not None:
        legend["recorded"] = grey
    return Picture(pts, pc, meshes, cam, title or f"{len(J)} hand hypotheses", legend)
