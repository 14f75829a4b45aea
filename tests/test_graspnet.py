"""The GraspNet-1B loader and frame pairs.

The real-layout fixture (tests/fixtures/graspnet_real, made by its
make_fixture.py in closed form, not by pcgrasp) is read back and checked
against a back-projection and a workspace mask written here, and against its
known geometry (table plane z = 0, a 6 x 6 x 5 cm box at the origin). Frame
pairs are checked against brute-force NumPy nearest neighbours."""
import os
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pcgrasp.data import graspnet
from pcgrasp.data.graspnet import FramePairs, GraspNetScenes, depth_to_cloud, workspace_mask

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "graspnet_real")
CAM = os.path.join(FIXTURE, "scenes", "scene_0100", "realsense")
BOX_LO, BOX_HI = np.array([-0.03, -0.03, 0.0]), np.array([0.03, 0.03, 0.05])


def raw_frame(ann):
    """The fixture's files read directly: depth (m), label, K, table pose."""
    depth = np.array(Image.open(os.path.join(CAM, "depth", f"{ann:04d}.png"))).astype(np.float64) / 1000
    label = np.array(Image.open(os.path.join(CAM, "label", f"{ann:04d}.png")))
    meta = scipy.io.loadmat(os.path.join(CAM, "meta", f"{ann:04d}.mat"))
    T = np.load(os.path.join(CAM, "cam0_wrt_table.npy")) @ np.load(os.path.join(CAM, "camera_poses.npy"))[ann]
    return depth, label, meta["intrinsic_matrix"], T


def naive_workspace(points_table, fg, valid, pad=0.02):
    """Per-point loop: inside the padded box of the foreground points."""
    box = points_table[fg & valid]
    lo, hi = box.min(0) - pad, box.max(0) + pad
    out = np.zeros(len(points_table), bool)
    for i, p in enumerate(points_table):
        out[i] = valid[i] and all(lo[k] < p[k] < hi[k] for k in range(3))
    return out


def dist_to_fixture_geometry(pw):
    """Distance of table-frame points to the table plane or the box surface."""
    d_table = np.abs(pw[:, 2])
    q = np.maximum(BOX_LO - pw, pw - BOX_HI)
    outside = np.linalg.norm(np.maximum(q, 0), axis=1)
    inside = np.minimum(np.max(q, axis=1), 0)
    return np.minimum(d_table, np.abs(outside + inside))


@pytest.mark.parametrize("ann", [0, 1])
def test_real_fixture_backprojection_mask_and_geometry(ann):
    ds = GraspNetScenes(FIXTURE, split="test_seen", num_points=None)
    assert ds.scene_ids == [100] and len(ds) == 2 and ds.frames == [(100, 0), (100, 1)]
    f = ds.frame(100, ann)
    depth, label, K, T = raw_frame(ann)
    H, W = depth.shape
    # independent back-projection, row-major over the valid pixels
    v, u = np.nonzero(depth > 0)
    z = depth[v, u]
    pc = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], 1)
    pw = pc @ T[:3, :3].T + T[:3, 3]
    keep = naive_workspace(pw, label[v, u] > 0, np.ones(len(pw), bool))
    assert 0 < keep.sum() < len(keep)  # the mask removes part of the table
    np.testing.assert_allclose(f["points"], pc[keep], rtol=1e-6, atol=1e-6)
    assert f["points"].dtype == np.float32 and f["labels"].dtype == np.int64
    np.testing.assert_array_equal(f["labels"], label[v, u][keep])
    np.testing.assert_array_equal(f["pixels"], (v * W + u)[keep])
    np.testing.assert_allclose(f["camera_pose"], T)
    assert set(np.unique(f["labels"])) == {0, 18}
    # the fixture's geometry: every point on the table plane or the box (mm depth quantisation)
    world = f["points"].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    assert dist_to_fixture_geometry(world).max() < 1e-3
    # meta: ids = cls_indexes - 1, the box pose maps to its table pose in every frame
    assert f["object_ids"].tolist() == [3, 17]
    box_in_table = T @ f["object_poses"][1]
    np.testing.assert_allclose(box_in_table[:3, 3], [0, 0, 0.025], atol=1e-6)
    np.testing.assert_allclose(box_in_table[:3, :3], np.eye(3), atol=1e-6)
    assert ds.object_ids(100) == [3, 17]
    # the public path of a frame's files: the layout's own path, written out here
    for kind, ext in (("depth", "png"), ("label", "png"), ("meta", "mat")):
        assert ds.frame_path(100, kind, ann, ext) == os.path.join(CAM, kind, f"{ann:04d}.{ext}")
        assert os.path.exists(ds.frame_path(np.int64(100), kind, np.int64(ann), ext))


def test_both_fixture_frames_see_the_same_world_points():
    ds = GraspNetScenes(FIXTURE, split="test", num_points=None)
    f0, f1 = ds.frame(100, 0), ds.frame(100, 1)
    w0 = f0["points"].astype(np.float64) @ f0["camera_pose"][:3, :3].T + f0["camera_pose"][:3, 3]
    w1 = f1["points"].astype(np.float64) @ f1["camera_pose"][:3, :3].T + f1["camera_pose"][:3, 3]
    # the box top seen from both cameras: same z and the same footprint
    top0, top1 = w0[f0["labels"] == 18], w1[f1["labels"] == 18]
    for top in (top0, top1):
        assert (top[:, 2] > 0.0).all() and (np.abs(top[:, :2]) < 0.03 + 1e-3).all()


def test_sampling_like_gsnet_and_table_removal():
    ds = GraspNetScenes(FIXTURE, split="test_seen", num_points=None)
    full = ds.frame(100, 0)
    n = len(full["points"])
    few = ds.frame(100, 0, num_points=n // 2, rng=np.random.default_rng(0))
    assert len(few["points"]) == n // 2 and len(np.unique(few["pixels"])) == n // 2
    assert np.isin(few["pixels"], full["pixels"]).all()
    many = ds.frame(100, 0, num_points=n + 7, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(np.unique(many["pixels"])), full["pixels"])
    np.testing.assert_array_equal(many["pixels"][:n], full["pixels"])  # all points first, then repeats
    a = ds.frame(100, 0, num_points=50, rng=np.random.default_rng(3))
    b = ds.frame(100, 0, num_points=50, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a["points"], b["points"])
    np.testing.assert_allclose(few["coords"], few["points"] / np.float32(0.005))
    objs = GraspNetScenes(FIXTURE, split="test_seen", num_points=None, remove_table=True).frame(100, 0)
    np.testing.assert_array_equal(objs["pixels"], full["pixels"][full["labels"] > 0])
    raw = GraspNetScenes(FIXTURE, split="test_seen", num_points=None, workspace=False).frame(100, 0)
    depth = raw_frame(0)[0]
    assert len(raw["points"]) == (depth > 0).sum() > n
    item = GraspNetScenes(FIXTURE, split="test_seen", num_points=64, seed=1)[1]
    assert item["points"].shape == (64, 3) and item["ann_id"] == 1


def test_workspace_mask_against_a_loop(rng):
    for trial in range(5):
        H, W = rng.integers(1, 12, size=2)
        cloud = rng.normal(size=(H, W, 3)).astype(np.float32)
        cloud[..., 2] = np.abs(cloud[..., 2])
        cloud[rng.random((H, W)) < 0.2] = 0  # missing depth
        label = (rng.random((H, W)) < 0.3).astype(np.uint8) * rng.integers(1, 5)
        a = rng.normal(size=3)
        T = np.eye(4)
        c, s = np.cos(a[0]), np.sin(a[0])
        T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
        T[:3, 3] = a
        valid = cloud[..., 2] > 0
        got = workspace_mask(cloud, label, T, pad=0.1)
        pw = cloud.reshape(-1, 3).astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        fg = label.reshape(-1) > 0
        if (fg & valid.reshape(-1)).any():
            ref = naive_workspace(pw, fg, valid.reshape(-1), pad=0.1).reshape(H, W)
        else:
            ref = valid
        np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError, match="cloud"):
        workspace_mask(np.zeros((3, 3)), np.zeros((3, 3)), np.eye(4))


def test_depth_to_cloud_checks():
    with pytest.raises(ValueError, match="depth"):
        depth_to_cloud(np.zeros(5), np.eye(3))
    with pytest.raises(ValueError, match="K"):
        depth_to_cloud(np.zeros((2, 2)), -np.eye(3))
    with pytest.raises(ValueError, match="factor_depth"):
        depth_to_cloud(np.zeros((2, 2)), np.eye(3), 0)


def test_splits_are_graspnet_1b():
    assert graspnet.SPLITS["train"] == range(0, 100)
    assert graspnet.SPLITS["test_seen"] == range(100, 130)
    assert graspnet.SPLITS["test_similar"] == range(130, 160)
    assert graspnet.SPLITS["test_novel"] == range(160, 190)
    assert graspnet.SPLITS["test"] == range(100, 190)
    with pytest.raises(FileNotFoundError, match="train"):
        GraspNetScenes(FIXTURE, split="train")
    with pytest.raises(ValueError, match="split"):
        GraspNetScenes(FIXTURE, split="val")
    with pytest.raises(ValueError, match="scene_ids"):
        GraspNetScenes(FIXTURE, split="test_seen", scene_ids=[5])
    with pytest.raises(FileNotFoundError, match="scene_0101"):
        GraspNetScenes(FIXTURE, split="test_seen", scene_ids=[100, 101])
    with pytest.raises(ValueError, match="num_points"):
        GraspNetScenes(FIXTURE, split="test_seen", num_points=0)


def _copy_fixture(tmp_path):
    root = tmp_path / "gn"
    shutil.copytree(FIXTURE, root)
    return root, root / "scenes" / "scene_0100" / "realsense"


def test_malformed_roots_name_the_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        GraspNetScenes(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="scenes"):
        GraspNetScenes(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="kinect"):
        GraspNetScenes(FIXTURE, split="test_seen", camera="kinect")
    root, cam = _copy_fixture(tmp_path)
    (cam / "camera_poses.npy").unlink()
    with pytest.raises(FileNotFoundError, match="camera_poses.npy"):
        GraspNetScenes(str(root), split="test_seen")
    root, cam = _copy_fixture(tmp_path / "b")
    (cam / "depth" / "0001.png").unlink()
    ds = GraspNetScenes(str(root), split="test_seen")
    ds.frame(100, 0)
    with pytest.raises(FileNotFoundError, match=r"depth.0001\.png"):
        ds.frame(100, 1)
    with pytest.raises(IndexError, match="ann_id"):
        ds.frame(100, 2)
    scipy.io.savemat(cam / "meta" / "0000.mat", {"poses": np.zeros((3, 4, 1))})
    with pytest.raises(ValueError, match=r"0000\.mat.*cls_indexes"):
        ds.frame(100, 0)
    np.save(cam / "cam0_wrt_table.npy", np.eye(3))
    with pytest.raises(ValueError, match="cam0_wrt_table"):
        GraspNetScenes(str(root), split="test_seen")
    root, cam = _copy_fixture(tmp_path / "c")
    (root / "scenes" / "scene_0100" / "object_id_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="object_id_list.txt"):
        GraspNetScenes(str(root), split="test_seen").object_ids(100)


# ---------------------------------------------------------------- frame pairs

def brute_force_match(p1, p2, T1, T2, eps):
    w1 = p1.astype(np.float64) @ T1[:3, :3].T + T1[:3, 3]
    w2 = p2.astype(np.float64) @ T2[:3, :3].T + T2[:3, 3]
    d2 = ((w1[:, None] - w2[None]) ** 2).sum(-1)
    j = d2.argmin(1)
    best = d2[np.arange(len(w1)), j]
    return np.where(best < eps * eps, j, -1), best


def test_frame_pairs_overlap_and_correspondences_against_brute_force():
    ds = GraspNetScenes(FIXTURE, split="test_seen", num_points=None)
    pairs = FramePairs(ds, min_overlap=0.0, epsilon=0.02, num_points=300, overlap_points=200, seed=4)
    assert len(pairs) == 1
    s, a, b, ov = pairs.pairs[0]
    assert (s, a, b) == (100, 0, 1)
    fa = ds.frame(100, 0, num_points=200, rng=np.random.default_rng([4, 100, 0]))
    fb = ds.frame(100, 1, num_points=200, rng=np.random.default_rng([4, 100, 1]))
    ia, _ = brute_force_match(fa["points"], fb["points"], fa["camera_pose"], fb["camera_pose"], 0.02)
    ib, _ = brute_force_match(fb["points"], fa["points"], fb["camera_pose"], fa["camera_pose"], 0.02)
    assert ov == pytest.approx(min((ia >= 0).mean(), (ib >= 0).mean()))
    assert 0.05 < ov < 1
    p = pairs[0]
    assert p["points1"].shape == (300, 3) and p["points1"].dtype == np.float32
    ref, d2 = brute_force_match(p["points1"], p["points2"], p["transform1"], p["transform2"], 0.02)
    got = p["match"]
    assert (got >= 0).any() and (got < 0).any()
    np.testing.assert_array_equal(got < 0, ref < 0)
    # ties between duplicated points may pick another index at the same distance
    m = got >= 0
    w1 = p["points1"][m].astype(np.float64) @ p["transform1"][:3, :3].T + p["transform1"][:3, 3]
    w2 = p["points2"][got[m]].astype(np.float64) @ p["transform2"][:3, :3].T + p["transform2"][:3, 3]
    np.testing.assert_allclose(((w1 - w2) ** 2).sum(1), d2[m], rtol=1e-4, atol=1e-9)
    # the transforms undo the augmentations: the points land on the fixture's table and box
    for k in ("1", "2"):
        T = p["transform" + k]
        world = p["points" + k].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        assert dist_to_fixture_geometry(world).max() < 1.5e-3
        A = p["augmentation" + k]
        np.testing.assert_allclose(A[:3, :3] @ A[:3, :3].T, np.eye(3), atol=1e-12)
        F = np.diag([np.sign(np.linalg.det(A[:3, :3])), 1, 1])
        up = p["camera_pose" + k][:3, :3].T @ [0, 0, 1.0]
        np.testing.assert_allclose(A[:3, :3] @ F @ up, up, atol=1e-12)  # a rotation about the table normal
        np.testing.assert_allclose(T, p["camera_pose" + k] @ np.linalg.inv(A), atol=1e-12)
    again = pairs[0]
    np.testing.assert_array_equal(again["points1"], p["points1"])
    np.testing.assert_array_equal(again["match"], p["match"])


def test_frame_pairs_threshold_augment_switch_and_errors():
    ds = GraspNetScenes(FIXTURE, split="test_seen", num_points=None)
    assert len(FramePairs(ds, min_overlap=0.99, overlap_points=100)) == 0
    plain = FramePairs(ds, min_overlap=0.0, num_points=None, augment=False)[0]
    np.testing.assert_array_equal(plain["augmentation1"], np.eye(4))
    np.testing.assert_array_equal(plain["points1"], ds.frame(100, 0)["points"])
    with pytest.raises(ValueError, match="min_overlap"):
        FramePairs(ds, min_overlap=1.0)
    with pytest.raises(ValueError, match="epsilon"):
        FramePairs(ds, epsilon=0)
    with pytest.raises(IndexError, match="pair index"):
        FramePairs(ds, min_overlap=0.0, overlap_points=50).pair(1)


# ---------------------------------------------------------------- synthetic round trip

@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    pytest.importorskip("trimesh")  # the scene generator needs it: without it these tests skip
    from pcgrasp.data.synthetic.scenes import generate_scenes

    root = str(tmp_path_factory.mktemp("gn_synth"))
    generate_scenes(root, scenes="3", views=4, width=128, height=72, objects_per_scene=(3, 5), seed=2,
                    progress=False)
    return root


@pytest.mark.pipeline
def test_generated_scenes_load_and_views_agree(synthetic_root):
    import trimesh

    ds = GraspNetScenes(synthetic_root, split="train", num_points=None)
    assert ds.scene_ids == [3] and len(ds) == 4
    frames = [ds.frame(3, a) for a in range(4)]
    for f in frames:
        assert len(f["points"]) > 200 and (f["labels"] > 0).any()
        assert f["object_ids"].tolist() == ds.object_ids(3)
        for oid, P in zip(f["object_ids"], f["object_poses"]):
            sel = f["labels"] == oid + 1
            if sel.any():
                m = trimesh.load(os.path.join(synthetic_root, "models", f"{oid:03d}", "nontextured.ply"),
                                 process=False)
                _, dist, _ = trimesh.proximity.closest_point(m.apply_transform(P), f["points"][sel])
                assert dist.max() < 1e-3
    # every frame's table points lie on the table plane of the table frame
    for f in frames:
        w = f["points"].astype(np.float64) @ f["camera_pose"][:3, :3].T + f["camera_pose"][:3, 3]
        assert np.abs(w[f["labels"] == 0, 2]).max() < 1e-3
    # a point seen in two frames maps to the same table point: the nearest
    # neighbours across frames are about one pixel footprint away (5-8 mm here),
    # and a camera pose off by 3 degrees is clearly worse
    from scipy.spatial import cKDTree

    def median_gap(fa, fb, Tb):
        wa = fa["points"].astype(np.float64) @ fa["camera_pose"][:3, :3].T + fa["camera_pose"][:3, 3]
        wb = fb["points"].astype(np.float64) @ Tb[:3, :3].T + Tb[:3, 3]
        return np.median(cKDTree(wb).query(wa)[0])

    tilt = trimesh.transformations.rotation_matrix(np.radians(3.0), [1, 0, 0])
    for a, b in [(0, 1), (1, 3), (2, 0)]:
        good = median_gap(frames[a], frames[b], frames[b]["camera_pose"])
        bad = median_gap(frames[a], frames[b], frames[b]["camera_pose"] @ tilt)
        assert good < 0.01 and bad > 2.5 * good, (a, b, good, bad)


@pytest.mark.pipeline
def test_frame_pairs_on_generated_scenes(synthetic_root):
    ds = GraspNetScenes(synthetic_root, split="train", num_points=None)
    pairs = FramePairs(ds, min_overlap=0.3, num_points=1500, overlap_points=600, seed=1)
    assert len(pairs) >= 1
    assert all(ov > 0.3 for *_, ov in pairs.pairs)
    for i in range(min(2, len(pairs))):
        p = pairs[i]
        ref, _ = brute_force_match(p["points1"], p["points2"], p["transform1"], p["transform2"], 0.0075)
        np.testing.assert_array_equal(p["match"] < 0, ref < 0)
        assert (p["match"] >= 0).mean() > 0.2
        # matched points belong to the same object (or both to the table)
        m = p["match"] >= 0
        same = p["labels1"][m] == p["labels2"][p["match"][m]]
        assert same.mean() > 0.95
