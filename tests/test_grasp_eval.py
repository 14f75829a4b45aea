"""graspnetAPI-style AP evaluation on hand-made cases with known answers."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

trimesh = pytest.importorskip("trimesh")  # optional: the GPU image and lean installs lack it

from pcgrasp.eval import ap_summary, eval_frame, force_closure_mu, grasp_array, grasp_nms, precision_at_k
from pcgrasp.labels.grasp_labels import grasp_grid, object_grasp_labels

HALF = np.array([0.03, 0.03, 0.025])
BOX = trimesh.creation.box(extents=2 * HALF)
POSE = np.eye(4)
POSE[2, 3] = HALF[2]        # resting on the table top z = 0
CAMERA = np.eye(4)          # camera frame = table frame
TOP = np.array([0.0, 0.0, 2 * HALF[2]])


def _frame(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    return np.stack([x, y, np.cross(x, y)], 1)


def _g(score, R, t, width=0.08, depth=0.02):
    return grasp_array(score, width, 0.02, depth, R[None], np.asarray(t, float)[None])


def test_exactly_antipodal_grasp_passes_at_the_smallest_mu():
    g = _g(0.9, _frame([0, 0, -1], [1, 0, 0]), TOP)
    r = eval_frame(g, [BOX], POSE[None], CAMERA)
    assert r["mu"].tolist() == [0.2] and not r["collision"][0]
    acc = r["accuracy"]
    np.testing.assert_allclose(acc[:, 0], 1 / np.arange(1, 51))   # one grasp: missing ones count as failures
    np.testing.assert_allclose(acc, np.broadcast_to(acc[:, :1], acc.shape))
    s = ap_summary(acc)
    assert s["AP"] == pytest.approx(100 * np.mean(1 / np.arange(1, 51)))
    assert s["AP0.8"] == s["AP0.4"] == pytest.approx(s["AP"])


def test_slanted_grasp_fails_below_its_cone():
    a = np.radians(30)
    g = _g(0.9, _frame([0, 0, -1], [np.cos(a), np.sin(a), 0]), TOP)
    r = eval_frame(g, [BOX], POSE[None], CAMERA)
    assert r["mu"].tolist() == [0.6]                        # tan 30 = 0.577
    assert r["accuracy"][0].tolist() == [0, 0, 1, 1, 1, 1]  # fails at 0.2 and 0.4
    # steeper than atan(1.2) = 50.2 degrees, across a thin slab: fails everywhere
    slab = trimesh.creation.box(extents=[0.03, 0.2, 0.05])
    a = np.radians(55)
    g = _g(0.9, _frame([0, 0, -1], [np.cos(a), np.sin(a), 0]), TOP, width=0.1)
    assert force_closure_mu(slab.copy().apply_transform(POSE), g).tolist() == [-1]
    a = np.radians(48)  # tan 48 = 1.11: passes at 1.2 only
    g = _g(0.9, _frame([0, 0, -1], [np.cos(a), np.sin(a), 0]), TOP, width=0.1)
    assert force_closure_mu(slab.copy().apply_transform(POSE), g).tolist() == [1.2]


def test_grasp_through_the_table_collides():
    # from the side, low: the fingers reach below the table top
    g = _g(0.9, _frame([1, 0, 0], [0, 1, 0]), [-HALF[0], 0, 0.004])
    r = eval_frame(g, [BOX], POSE[None], CAMERA)
    assert r["collision"].tolist() == [True] and r["mu"].tolist() == [-1]
    # the same grasp with the table moved 1 m down passes
    far = np.eye(4)
    far[2, 3] = 1.0
    r = eval_frame(g, [BOX], POSE[None], far)
    assert r["collision"].tolist() == [False] and r["mu"].tolist() == [0.2]


def test_grasp_through_the_object_collides_and_empty_grasps_fail():
    # fingers inside the box (closing axis along x, opening narrower than the box)
    g = _g(0.9, _frame([0, 0, -1], [1, 0, 0]), TOP, width=0.03)
    assert eval_frame(g, [BOX], POSE[None], CAMERA)["collision"].tolist() == [True]
    # in the air next to the box: nothing between the fingers
    g = _g(0.9, _frame([0, 0, -1], [1, 0, 0]), [0.2, 0.2, 0.1])
    r = eval_frame(g, [BOX], POSE[None], CAMERA)
    assert r["collision"].tolist() == [True] and r["mu"].tolist() == [-1]


def _naive_nms(g, tt=0.03, rt=np.radians(30)):
    order = sorted(range(len(g)), key=lambda i: -g[i, 0])
    kept = []
    for i in order:
        Ri = g[i, 4:13].reshape(3, 3)
        if not any(np.linalg.norm(g[i, 13:16] - g[k, 13:16]) < tt and
                   Rotation.from_matrix(g[k, 4:13].reshape(3, 3).T @ Ri).magnitude() < rt for k in kept):
            kept.append(i)
    return kept


def test_nms_keeps_the_best_of_near_duplicates():
    R0 = _frame([0, 0, -1], [1, 0, 0])
    R10 = Rotation.from_rotvec([0, 0, np.radians(10)]).as_matrix() @ R0
    R90 = Rotation.from_rotvec([0, 0, np.radians(90)]).as_matrix() @ R0
    g = np.concatenate([_g(0.8, R10, TOP + [0.01, 0, 0]), _g(0.9, R0, TOP), _g(0.7, R0, TOP + [0.05, 0, 0]),
                        _g(0.6, R90, TOP)])
    assert grasp_nms(g).tolist() == [1, 2, 3]
    rng = np.random.default_rng(0)
    n = 80
    gr = grasp_array(rng.random(n), 0.05, 0.02, 0.02, Rotation.random(n, random_state=1).as_matrix(),
                     rng.uniform(-0.03, 0.03, (n, 3)))
    assert grasp_nms(gr).tolist() == _naive_nms(gr)
    assert grasp_nms(np.zeros((0, 17))).tolist() == []
    with pytest.raises(ValueError, match="17"):
        grasp_nms(np.zeros((3, 16)))


def test_precision_at_k_by_hand():
    acc = precision_at_k([0.2, -1, 0.6])
    np.testing.assert_allclose(acc[:3, 0], [1, 1 / 2, 1 / 3])
    np.testing.assert_allclose(acc[:3, 2], [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(acc[3:, 2], 2 / np.arange(4, 51))
    assert precision_at_k([]).sum() == 0


def test_top_per_object_and_widths_clipped():
    R = _frame([0, 0, -1], [1, 0, 0])
    # 12 copies far apart (no NMS), all on the one box: only the 10 best are evaluated
    t = TOP + np.stack([np.zeros(12), np.arange(12) * 0.035, np.zeros(12)], 1)
    g = grasp_array(np.linspace(1, 0.5, 12), 0.3, 0.02, 0.02, np.repeat(R[None], 12, 0), t)
    r = eval_frame(g, [BOX], POSE[None], CAMERA)
    assert len(r["grasps"]) == 10
    np.testing.assert_allclose(r["grasps"][:, 0], np.linspace(1, 0.5, 12)[:10])
    assert (r["grasps"][:, 1] == 0.1).all()
    with pytest.raises(ValueError, match="poses"):
        eval_frame(g, [BOX], np.eye(4)[None].repeat(2, 0), CAMERA)


def test_dataset_top_labels_score_near_the_top():
    lab = object_grasp_labels(BOX, num_points=30, views=np.arange(0, 300, 7), seed=0)
    t, R, d, _ = grasp_grid(lab["points"], np.arange(0, 300, 7))
    s = lab["scores"].reshape(-1)
    w = lab["offsets"][..., 2].reshape(-1)
    good = (s > 0) & (s <= 0.2) & ~lab["collision"].reshape(-1) & (R[:, 2, 0] < -0.7)  # top-down-ish: no table
    assert good.sum() >= 10
    Rw, tw = R[good], t[good] @ POSE[:3, :3].T + POSE[:3, 3]
    g = grasp_array(1 - s[good], w[good], 0.02, d[good], Rw, tw)
    r = eval_frame(g, [BOX], POSE[None], CAMERA)
    assert len(r["mu"]) >= 5
    assert np.mean((r["mu"] > 0) & (r["mu"] <= 0.4)) >= 0.8
    mu = force_closure_mu(BOX.copy().apply_transform(POSE), g)
    assert np.mean((mu > 0) & (mu <= 0.2 + 1e-9)) >= 0.9   # the labels' own mu, at the evaluator's grid


def test_bad_grasp_arrays_are_rejected():
    g = _g(0.9, _frame([0, 0, -1], [1, 0, 0]), TOP)
    bad = g.copy()
    bad[0, 5] = np.nan
    with pytest.raises(ValueError, match="finite"):
        eval_frame(bad, [BOX], POSE[None], CAMERA)
    with pytest.raises(ValueError, match="17"):
        eval_frame(g[:, :16], [BOX], POSE[None], CAMERA)
    with pytest.raises(ValueError, match="rotations"):
        grasp_array(1, 0.05, 0.02, 0.02, np.eye(3), np.zeros(3))
    r = eval_frame(np.zeros((0, 17)), [BOX], POSE[None], CAMERA)
    assert r["accuracy"].shape == (50, 6) and r["accuracy"].sum() == 0
    assert ap_summary(r["accuracy"])["AP"] == 0
