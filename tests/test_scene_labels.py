"""Scene collision labels and per-frame graspness on a tiny synthetic scene,
against per-grasp loops and a NumPy re-implementation of GSNet's graspness
(brute-force nearest label point, chunks of 10,000 points as GSNet)."""
import os

import numpy as np
import pytest

from pcgrasp.data.graspnet import GraspNetScenes
from pcgrasp.data.synthetic.scenes import generate_scenes
from pcgrasp.labels.grasp_labels import write_object_labels
from pcgrasp.labels.scene_labels import (collision_label_path, graspness_path, load_grasp_labels, point_graspness,
                                         scene_cloud, scene_object_poses, transfer_graspness,
                                         write_scene_collision_labels, write_scene_graspness)
from pcgrasp.geometry.views import viewpoint_params_to_matrix, generate_views

VIEWS = [0, 60, 120, 180, 240, 290]
SMALL = dict(views=2, width=96, height=54, objects_per_scene=(2, 3), progress=False)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    pytest.importorskip("trimesh")  # the scene generator needs it: without it these tests skip
    root = str(tmp_path_factory.mktemp("labels") / "gn")
    generate_scenes(root, scenes="0", seed=3, **SMALL)
    ids = GraspNetScenes(root, split="all", num_points=None, scene_ids=[0]).object_ids(0)
    for o in ids:
        assert write_object_labels(root, o, num_points=8, views=VIEWS)
    assert write_scene_collision_labels(root, 0)
    assert write_scene_graspness(root, 0) == 2
    return root, ids


def test_collision_labels_match_a_per_grasp_loop(labelled):
    root, ids = labelled
    scenes = GraspNetScenes(root, split="all", num_points=None, scene_ids=[0])
    ids2, poses = scene_object_poses(scenes, 0)
    assert ids2 == ids
    cloud = scene_cloud(root, ids, poses)
    rng = np.random.default_rng(0)
    with np.load(collision_label_path(root, 0)) as f:
        assert sorted(f.files) == [f"arr_{i}" for i in range(len(ids))]
        labels = [f[k] for k in f.files]
    any_coll = []
    for i, (o, T) in enumerate(zip(ids, poses)):
        points, offsets, _, _, views = load_grasp_labels(root, o)
        np.testing.assert_array_equal(views, VIEWS)
        assert labels[i].shape == offsets.shape[:4] and labels[i].dtype == bool
        for _ in range(60):
            p, v, a, d = (rng.integers(n) for n in offsets.shape[:4])
            angle, depth, width = offsets[p, v, a, d]
            R = T[:3, :3] @ viewpoint_params_to_matrix(-generate_views(300)[VIEWS[v]], angle)
            t = T[:3, :3] @ points[p] + T[:3, 3]
            q = (cloud - t) @ R  # every cloud point, no neighbourhood filter
            x, y, z = q.T
            span = (np.abs(z) < 0.01) & (np.abs(y) < width / 2 + 0.01)
            finger = span & (x > depth - 0.06) & (x < depth) & (np.abs(y) > width / 2)
            rest = span & (x <= depth - 0.06) & (x > depth - 0.06 - 0.01 - 0.05)
            want = bool((finger | rest).any())
            assert labels[i][p, v, a, d] == want, (o, p, v, a, d)
            any_coll.append(want)
    assert 0 < np.mean(any_coll) < 1


def numpy_graspness(root, scene_id, ann_id, camera="realsense"):
    """GSNet's generate_graspness.py definition, written here with NumPy."""
    ds = GraspNetScenes(root, split="all", camera=camera, num_points=None, scene_ids=[scene_id])
    f = ds.frame(scene_id, ann_id)
    ids = ds.object_ids(scene_id)
    coll = np.load(collision_label_path(root, scene_id))
    pts, gr = [], []
    for i, o in enumerate(ids):
        lab = np.load(os.path.join(root, "grasp_label", f"{o:03d}_labels.npz"))
        pose = f["object_poses"][list(f["object_ids"]).index(o)]
        valid = (lab["scores"] <= 0.8) & (lab["scores"] > 0) & ~coll[f"arr_{i}"]
        gr.append(valid.reshape(len(valid), -1).sum(1) / np.prod(valid.shape[1:]))
        pts.append(lab["points"].astype(np.float64) @ pose[:3, :3].T + pose[:3, 3])
    pts, gr = np.concatenate(pts).astype(np.float32), np.concatenate(gr)
    cloud = f["points"]
    out = np.zeros(len(cloud))
    for s in range(0, len(cloud), 10000):
        c = cloud[s:s + 10000]
        d2 = ((c[:, None, :].astype(np.float64) - pts[None].astype(np.float64)) ** 2).sum(-1)
        out[s:s + 10000] = gr[d2.argmin(1)]
    return (out - out.min()) / (out.max() - out.min())


def test_graspness_matches_numpy_definition(labelled):
    root, _ = labelled
    for ann in (0, 1):
        g = np.load(graspness_path(root, 0, "realsense", ann))
        assert g.shape[1] == 1 and g.dtype == np.float32
        want = numpy_graspness(root, 0, ann)
        assert len(want) == len(g) > 100
        np.testing.assert_allclose(g[:, 0], want, atol=1e-6)
        assert g.min() == 0 and g.max() == pytest.approx(1)


def test_rerun_skips_and_leaves_no_temporary_files(labelled):
    root, ids = labelled
    path = graspness_path(root, 0, "realsense", 0)
    mtime = os.stat(path).st_mtime_ns
    assert write_scene_graspness(root, 0) == 0
    assert not write_scene_collision_labels(root, 0)
    assert not write_object_labels(root, ids[0], num_points=8, views=VIEWS)
    assert os.stat(path).st_mtime_ns == mtime
    leftovers = [n for _, _, fs in os.walk(root) for n in fs if ".tmp" in n]
    assert leftovers == []


def test_graspness_helpers_edge_cases():
    rng = np.random.default_rng(0)
    scores = rng.choice([-1, 0.1, 0.5, 0.9, 1.0], size=(5, 3, 12, 4)).astype(np.float32)
    coll = rng.random((5, 3, 12, 4)) < 0.3
    want = np.array([((s <= 0.8) & (s > 0) & ~c).mean() for s, c in zip(scores, coll)])
    np.testing.assert_allclose(point_graspness(scores, coll), want)
    with pytest.raises(ValueError, match="scores and collision"):
        point_graspness(scores, coll[:2])
    # duplicates and ties: the lower label index wins, constant graspness gives zeros
    lp = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0]], np.float32)
    cloud = np.array([[0.1, 0, 0], [0.9, 0, 0], [0.5, 0, 0]], np.float32)
    np.testing.assert_allclose(transfer_graspness(cloud, lp, [0.2, 0.7, 0.6]), [0, 1, 0])
    np.testing.assert_allclose(transfer_graspness(cloud, lp, [0.5, 0.5, 0.5]), [0, 0, 0])
    assert transfer_graspness(np.zeros((0, 3)), lp, [1, 2, 3]).shape == (0,)
    with pytest.raises(ValueError, match="label_graspness"):
        transfer_graspness(cloud, lp, [1, 2])
    with pytest.raises(ValueError, match="label_points is empty"):
        transfer_graspness(cloud, np.zeros((0, 3)), [])
    with pytest.raises(FileNotFoundError, match="grasp labels"):
        load_grasp_labels("/nonexistent", 3)
