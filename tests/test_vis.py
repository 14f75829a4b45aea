"""pcgrasp.vis: the PNG shows each gripper where its grasp says (pixels checked against a pinhole
projection written here), depth ordering between points and meshes, top-k / min-score selection
and score colours, and every kind of picture built from files the project's own code writes."""
import os

import numpy as np
import pytest
import torch

from conftest import needs_trimesh
from pcgrasp.geometry.grasps import grasp_array
from pcgrasp.vis import Camera, Picture, grasps_picture, render_image, render_png, select_grasps

WHITE = np.array([255, 255, 255])
FX, CX, CY, W, H = 500.0, 160.0, 120.0, 320, 240


def viridis(x):
    from matplotlib import colormaps

    return np.rint(np.asarray(colormaps["viridis"](x))[:3] * 255).astype(int)


def pixel(p):
    """(row, col) of a camera-frame point under the test camera (identity pose, fx = fy = FX)."""
    p = np.asarray(p, dtype=np.float64)
    return int(round(FX * p[1] / p[2] + CY)), int(round(FX * p[0] / p[2] + CX))


def camera():
    return Camera(np.eye(4), np.array([[FX, 0, CX], [0, FX, CY], [0, 0, 1.0]]), W, H)


def wall(z, half=0.12, step=0.002):
    """A dense square of points at depth z (camera frame), facing the camera."""
    s = np.arange(-half, half + 1e-9, step)
    x, y = np.meshgrid(s, s)
    return np.stack([x.ravel(), y.ravel(), np.full(x.size, z)], 1)


# two grasps in the camera frame with R = I: approach x = image right, closing y = image down
T1, T2 = np.array([0.0, 0.0, 0.5]), np.array([-0.09, -0.1, 0.6])
GRASPS = grasp_array([0.9, 0.3], 0.06, 0.02, 0.02, np.tile(np.eye(3), (2, 1, 1)), np.stack([T1, T2]))
# graspnetAPI's gripper (GraspNetGripper): fingers -0.02 < x < depth, 0.03 < |y| < 0.04; bottom plate
# -0.03 < x < -0.02; our approach tail behind it
FINGERS = [(0.0, -0.035, 0.0), (0.0, 0.035, 0.0)]


def render_grasps(points, grasps=GRASPS, shade=False):
    cols = np.full((len(points), 3), 128, np.uint8)
    pic = grasps_picture(points, cols, grasps, camera(), top_k=None)
    return render_image(pic, annotate=False, shade=shade, point_radius=1)


def test_gripper_is_where_the_grasp_says():
    img = render_grasps(np.zeros((0, 3)))
    assert img.shape == (H, W, 3)
    for t, col in ((T1, viridis(1.0)), (T2, viridis(0.0))):  # colours span the drawn scores
        for f in FINGERS:
            r, c = pixel(t + f)
            assert (img[r, c] == col).all(), (t, f, img[r, c], col)
        r, c = pixel(t + (-0.025, 0.0, 0.0))          # the bottom plate between the fingers' backs
        assert (img[r, c] == col).all()
        r, c = pixel(t + (-0.05, 0.0, 0.0))           # the approach tail
        assert (img[r, c] == col).all()
        for p in [(0.01, 0.0, 0.0), (0.03, 0.035, 0.0), (0.0, 0.05, 0.0)]:  # between / beyond the fingers
            r, c = pixel(t + p)
            assert (img[r, c] == WHITE).all(), p
    assert (img[5, 315] == WHITE).all() and (img[235, 5] == WHITE).all()
    # shading keeps the hue: the finger's face is the score colour times a factor
    shaded = render_grasps(np.zeros((0, 3)), shade=True)
    v = shaded[pixel(T1 + FINGERS[0])].astype(float)
    ref = viridis(1.0).astype(float)
    assert np.dot(v, ref) / np.linalg.norm(v) / np.linalg.norm(ref) > 0.999 and v.sum() <= ref.sum()


def test_rotated_gripper_follows_the_rotation_columns():
    """R's columns are (approach, closing, height): a grasp turned 90 degrees about the camera's z
    approaches along image-down, its fingers sit left and right, and nothing is where R^T would
    put the tail (a transposed rotation fails here; R = I cannot tell)."""
    c, s = 0.0, 1.0
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    g = grasp_array([0.9], 0.06, 0.02, 0.02, R[None], T1[None])
    img = render_grasps(np.zeros((0, 3)), grasps=g)
    for local in [(0.0, -0.035, 0.0), (0.0, 0.035, 0.0), (-0.05, 0.0, 0.0)]:
        r, cc = pixel(T1 + R @ np.array(local))
        assert (img[r, cc] != WHITE).any(), local
    r, cc = pixel(T1 + R.T @ np.array([-0.05, 0.0, 0.0]))
    assert (img[r, cc] == WHITE).all()


def test_depth_order_between_points_and_grippers():
    front = render_grasps(wall(0.45))   # a wall of points in front of the gripper hides it
    for f in FINGERS:
        assert (front[pixel(T1 + f)] == 128).all()
    behind = render_grasps(wall(0.56))  # a wall behind it shows through the gap only
    for f in FINGERS:
        assert (behind[pixel(T1 + f)] == viridis(1.0)).all()
    assert (behind[pixel(T1 + (0.01, 0.0, 0.0))] == 128).all()


def test_picture_checks():
    with pytest.raises(ValueError, match="camera"):
        render_image(Picture(np.zeros((1, 3)), np.zeros((1, 3), np.uint8)))
    with pytest.raises(ValueError, match="colors"):
        render_image(Picture(np.zeros((2, 3)), np.zeros((1, 3), np.uint8), camera=camera()))


def test_top_k_min_score_and_colour_order(rng):
    n = 40
    R = np.tile(np.eye(3), (n, 1, 1))
    scores = np.round(rng.random(n), 3)
    g = grasp_array(scores, 0.05, 0.02, 0.02, R, rng.uniform(-0.1, 0.1, (n, 3)) + [0, 0, 0.6])
    for k, m in ((5, None), (None, 0.5), (3, 0.7), (100, None)):
        sel, idx = select_grasps(g, k, m)
        want = sorted((i for i in range(n) if m is None or scores[i] >= m), key=lambda i: -scores[i])[:k]
        assert list(idx) == want and (sel[:, 0] == scores[want]).all()
    pic = grasps_picture(np.zeros((1, 3)), None, g, camera(), top_k=10, min_score=0.2)
    top = sorted(scores[scores >= 0.2], reverse=True)[:10]
    assert len(pic.meshes) == 10
    lo, hi = min(top), max(top)
    for mesh, s in zip(pic.meshes, top):
        assert np.abs(mesh.color.astype(int) - viridis((s - lo) / (hi - lo))).max() <= 1
        assert f"score {s:.3f}" in mesh.name
    lum = [0.2126 * m.color[0] + 0.7152 * m.color[1] + 0.0722 * m.color[2] for m in pic.meshes]
    assert all(a >= b for a, b in zip(lum, lum[1:]))   # viridis: lighter = better
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="top_k"):
            select_grasps(g, bad)


def test_meshes_follow_the_gripper_dimensions():
    from pcgrasp.geometry.gripper import ParallelJawGripper
    from pcgrasp.vis import hand_mesh, planar_jaw_mesh
    from pcgrasp.vis.gripper_mesh import graspnet_gripper_mesh

    v, f = graspnet_gripper_mesh(np.eye(3), np.zeros(3), 0.08, 0.03)
    assert f.shape == (48, 3) and np.isclose(v[:, 0].max(), 0.03) and np.isclose(np.abs(v[:, 1]).max(), 0.05)
    assert np.isclose(np.abs(v[:, 2]).max(), 0.01)
    g = ParallelJawGripper()
    v, _ = planar_jaw_mesh(np.eye(3), np.zeros(3), None, g)
    assert np.isclose(np.abs(v[:, 1]).max(), g.max_width / 2 + g.finger_width) and np.isclose(v[:, 0].max(), 0)
    v, f = hand_mesh([0.1, 0, 0, 1, 0, 0, 0], np.zeros(12))
    assert len(v) == 13 * 8 and v[:, 0].max() > 0.1 + 0.09  # open fingers reach 10 cm ahead of the wrist
    vf, ff = hand_mesh([0.1, 0, 0, 1, 0, 0, 0], np.zeros(12), palm=False)
    assert np.array_equal(vf, v[8:]) and np.array_equal(ff, f[12:] - 8)   # the same fingers, no palm box
    with pytest.raises(ValueError):
        hand_mesh(np.zeros(7), np.zeros(12))


def test_render_20k_points_50_grippers(tmp_path, rng):
    """A scene-sized picture renders to a PNG of the camera's size (a title strip and legend
    panel only add to it) with many distinct gripper colours (timing: see the report, not here)."""
    from PIL import Image
    pts = rng.uniform([-0.2, -0.15, 0.5], [0.2, 0.15, 0.7], (20000, 3))
    R = np.tile(np.eye(3), (50, 1, 1))
    g = grasp_array(rng.random(50), 0.05, 0.02, 0.02, R, rng.uniform([-0.15, -0.1, 0.45], [0.15, 0.1, 0.6], (50, 3)))
    cam = Camera(np.eye(4), np.array([[600, 0, 319.5], [0, 600, 239.5], [0, 0, 1.0]]), 640, 480)
    pic = grasps_picture(pts, None, g, cam)
    img = np.asarray(Image.open(render_png(pic, str(tmp_path / "a.png"))).convert("RGB"))
    assert img.shape[0] >= 480 and img.shape[1] >= 640
    mesh_colors = {tuple(m.color) for m in pic.meshes}
    seen = {tuple(c) for c in img.reshape(-1, 3)}
    assert len(mesh_colors & seen) >= 10


# ---------------------------------------------------------------- each kind from the project's files
SMALL = dict(views=2, width=96, height=54, objects_per_scene=(2, 3), progress=False)
VIEWS = [0, 60, 120, 180, 240, 290]


def make_scene(root):
    """A one-scene GraspNet-1B-layout root with grasp labels, collision labels and graspness
    (the project's generators, tiny), and a dump of grasps at frame 0 in evaluate-detector's layout."""
    from pcgrasp.data.graspnet import GraspNetScenes
    from pcgrasp.data.synthetic.scenes import generate_scenes
    from pcgrasp.labels.grasp_labels import write_object_labels
    from pcgrasp.labels.scene_labels import write_scene_collision_labels, write_scene_graspness
    from pcgrasp.vis import dump_path

    generate_scenes(root, scenes="0", seed=3, **SMALL)
    ds = GraspNetScenes(root, split="all", num_points=None, scene_ids=[0])
    ids = ds.object_ids(0)
    for o in ids:
        write_object_labels(root, o, num_points=8, views=VIEWS)
    write_scene_collision_labels(root, 0)
    write_scene_graspness(root, 0)
    pts = ds.frame(0, 0)["points"]
    t = pts[np.random.default_rng(0).choice(len(pts), 12, replace=False)]
    R = np.tile(np.array([[0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]]), (12, 1, 1))   # approach along the view
    g = grasp_array(np.linspace(0.1, 1.0, 12), 0.04, 0.02, 0.02, R, t - 0.02 * R[:, :, 0])
    path = dump_path(os.path.join(root, "dump"), 0, 0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, g)
    return ids


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    pytest.importorskip("trimesh")
    root = str(tmp_path_factory.mktemp("vis") / "gn")
    return root, make_scene(root)


def assert_png(pic, path, min_meshes=0):
    assert len(pic.meshes) >= min_meshes and len(pic.points) > 0
    render_png(pic, str(path))
    from PIL import Image

    img = np.asarray(Image.open(path))
    assert img.ndim == 3 and img.shape[0] > 100
    body = img[30:, : pic.camera.width]
    assert (body != 255).any(axis=-1).mean() > 0.01  # something was drawn
    assert_served(pic)
    return img


def assert_served(pic):
    """The same picture in the web viewer (when viser is installed): a node per mesh and the
    cloud, and the client page served on loopback (tests/test_vis_viewer.py loads it in Chromium).
    Without viser (CI's no-optional run) only the PNG is checked."""
    import urllib.request

    try:
        import viser  # noqa: F401
    except ImportError:
        return

    from pcgrasp.vis.viewer import serve

    with serve(pic, port=0, block=False) as v:
        assert v.host == "127.0.0.1" and v.handles["points"] is not None
        assert len(v.handles["meshes"]) == len(pic.meshes)
        with urllib.request.urlopen(v.url, timeout=30) as r:
            assert r.status == 200


@pytest.mark.pipeline
def test_scene_grasps_from_a_dump(scene, tmp_path):
    from pcgrasp.vis import scene_grasps_picture

    root, _ = scene
    pic = scene_grasps_picture(root, 0, 0, dump_dir=os.path.join(root, "dump"), top_k=5)
    assert len(pic.meshes) == 5 and [m.name.split()[-1] for m in pic.meshes] == \
        [f"{s:.3f}" for s in np.linspace(0.1, 1.0, 12)[::-1][:5]]
    assert pic.camera.width >= 640 and np.allclose(pic.camera.extrinsic, np.eye(4))
    assert_png(pic, tmp_path / "g.png", 5)
    with pytest.raises(ValueError, match="out of range"):
        scene_grasps_picture(root, 0, 7, dump_dir=os.path.join(root, "dump"))


@pytest.mark.pipeline
def test_object_labels(scene, tmp_path):
    from pcgrasp.labels.grasp_labels import grasp_label_path
    from pcgrasp.vis import label_grasps, object_labels_picture

    root, ids = scene
    path = grasp_label_path(root, ids[0])
    with np.load(path) as z:
        lab = {k: z[k] for k in z.files}
    g, mu, p = label_grasps(lab, with_collision=True)
    assert len(g) == (lab["scores"] > 0).sum() and set(np.round(mu, 1)) <= set(np.round(np.arange(1, 11) * 0.1, 1))
    pic = object_labels_picture(path, top_k=10, with_collision=True)
    mus = [float(m.name.split()[-1]) for m in pic.meshes if m.name.startswith("grasp")]
    assert mus == sorted(mus) and mus[0] == pytest.approx(mu.min())
    assert any(m.name.startswith("object") for m in pic.meshes)
    assert_png(pic, tmp_path / "l.png", 1)


@pytest.mark.pipeline
def test_graspness_heat_map(scene, tmp_path):
    from pcgrasp.labels.scene_labels import graspness_path
    from pcgrasp.vis import colormap, graspness_picture

    root, _ = scene
    pic = graspness_picture(root, 0, 1)
    g = np.load(graspness_path(root, 0, "realsense", 1)).reshape(-1)
    assert len(pic.points) == len(g)
    i, j = int(g.argmax()), int(g.argmin())
    lo, hi = g.min(), g.max() if g.max() > g.min() else g.min() + 1
    assert (pic.colors[i] == colormap([g[i]], "inferno", lo, hi)[0]).all()
    assert (pic.colors[j] == colormap([g[j]], "inferno", lo, hi)[0]).all()
    assert_png(pic, tmp_path / "h.png")


def tiny_ebm_checkpoint(path):
    """An (untrained) energy model saved as `pcgrasp ebm train` saves it."""
    from pcgrasp.train.ebm import build_model

    cfg = {"seed": 0, "model": {"repeat": 8, "hidden": [16, 8]}, "data": {"generate": {"image_size": 64},
                                                                         "crop_window": 32}}
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict(), "cfg": cfg}, path)
    return path


@pytest.mark.pipeline
@needs_trimesh
def test_ebm_candidates(tmp_path):
    from pcgrasp.data.synthetic.dexnet import make_view
    from pcgrasp.vis import ebm_picture

    view = make_view(3, 0, 64)
    y = np.array([[32, 32, view["depth"][32, 32], 0.3], [20, 40, view["depth"][20, 40], 1.2]])
    pic = ebm_picture(view["depth"], view["K"], view["camera_pose"], y, [0.5, -1.0])
    assert [m.name.split()[1] for m in pic.meshes] == ["1", "0"]        # lowest energy first
    assert (pic.meshes[0].color == viridis(1.0)).all()
    assert_png(pic, tmp_path / "e.png", 2)


def tiny_jepa_checkpoint(tmp_path):
    """A tiny synthetic grasp dataset, its splits and an untrained grasp model saved as
    `pcgrasp train` saves it."""
    from pcgrasp.data import generate_dataset, load_recordings, make_splits
    from pcgrasp.train.jepa import build_grasp_model

    root, splits = str(tmp_path / "grasps"), str(tmp_path / "splits")
    generate_dataset(root, objects_per_category=2, scenes_per_object=1, grasps_per_scene=4, pretrain_per_category=0)
    ids, _, _ = load_recordings(root)
    make_splits(ids, splits, budgets=[1.0])
    cfg = {"seed": 0, "data": {"root": root, "splits": splits, "points": 128},
           "model": {"dim": 32, "depth": 1, "heads": 2, "centers": 8, "group_size": 8, "k": 3, "hidden": 32,
                     "token_width": 8, "input_scale": 12.5}}
    t = {"init": "scratch", "head": "wta", "budget": 1.0, "pack": "A", "seed": 0}
    torch.manual_seed(0)
    model = build_grasp_model({**cfg, "train": t}, "scratch", "wta")
    path = str(tmp_path / "model.pt")
    torch.save({"model": model.state_dict(), "cfg": cfg, "train": t}, path)
    return path


@pytest.mark.pipeline
@needs_trimesh
def test_jepa_hands(tmp_path):
    from pcgrasp.vis import jepa_picture

    from pcgrasp.data import GraspDataset

    tiny_jepa_checkpoint(tmp_path)
    ds = GraspDataset(str(tmp_path / "grasps"), points=128)
    pts, pose, joints = ds[0]
    pred = np.stack([joints.numpy() + d for d in (0.0, 0.3, 0.6)])
    pic = jepa_picture(pts.numpy(), pose.numpy(), pred, [0.0, 2.0, 1.0], joints.numpy())
    assert [m.name.split()[:2] for m in pic.meshes] == [["palm", "(wrist"], ["recorded", "grasp"], ["hypothesis", "1"],
                                                         ["hypothesis", "2"], ["hypothesis", "0"]]
    assert [len(m.vertices) for m in pic.meshes] == [8] + [12 * 8] * 4   # one palm box; 12 phalanges each
    assert_png(pic, tmp_path / "j.png", 5)
