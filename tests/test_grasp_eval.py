"""graspnetAPI-style AP evaluation on hand-made cases with known answers."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

trimesh = pytest.importorskip("trimesh")  # optional: the GPU image and lean installs lack it

from pcgrasp.eval import (ap_summary, eval_frame, force_closure_mu, grasp_array, grasp_nms, model_points,
                          precision_at_k, table_points)
from pcgrasp.labels.grasp_labels import grasp_grid, object_grasp_labels

HALF = np.array([0.03, 0.03, 0.025])


def dense(mesh, edge=0.004):
    """The same surface with vertices at most ``edge`` apart, as a scanned model's PLY
    (graspnetAPI takes its model points from the vertices)."""
    v, f = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, edge)
    return trimesh.Trimesh(v, f, process=False)


BOX = dense(trimesh.creation.box(extents=2 * HALF))
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
    # ties, exact duplicates and clusters (many close pairs), float32 as well as float64
    for seed, dtype in ((2, np.float64), (3, np.float32)):
        rng = np.random.default_rng(seed)
        n = 300
        t = rng.uniform(-0.05, 0.05, (n, 3))
        Rr = Rotation.random(n, random_state=seed).as_matrix()
        base = rng.integers(0, n, n // 4)                         # near copies of other rows
        t[:n // 4] = t[base] + rng.normal(0, 0.01, (n // 4, 3))
        Rr[:n // 4] = Rotation.from_rotvec(rng.normal(0, 0.3, (n // 4, 3))).as_matrix() @ Rr[base]
        t[n // 4:n // 4 + 10], Rr[n // 4:n // 4 + 10] = t[:10], Rr[:10]  # exact duplicates
        gr = grasp_array(np.round(rng.random(n), 1), 0.05, 0.02, 0.02, Rr, t).astype(dtype)
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


# ------------------------------------------------------------------ graspnetAPI's scene model, against naive versions

def _naive_model_points(v, voxel):
    cells = {}
    anchor = v.min(0) - voxel / 2
    for p in v:
        cells.setdefault(tuple(int(k) for k in np.floor((p - anchor) / voxel)), []).append(p)
    return np.array([np.mean(cells[c], 0) for c in sorted(cells)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_points_are_voxel_means_of_the_vertices(dtype):
    rng = np.random.default_rng(0)
    v = rng.uniform(-0.05, 0.05, (400, 3)).astype(dtype)
    v[300:] = v[:100]                                   # duplicate vertices
    got = model_points(v, 0.008)
    want = _naive_model_points(v.astype(np.float64), 0.008)
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert model_points(np.zeros((0, 3))).shape == (0, 3)
    np.testing.assert_allclose(model_points(np.ones((5, 3))), np.ones((1, 3)))
    with pytest.raises(ValueError, match="vertices"):
        model_points(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="voxel_size"):
        model_points(v, 0.0)


def test_table_is_graspnetapis_grid_around_the_table_origin():
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec([0.3, -0.2, 1.0]).as_matrix()
    T[:3, 3] = [0.1, -0.2, 0.6]                        # camera -> table
    P = table_points(T)
    assert P.shape == (125 * 125 * 6, 3)
    local = P @ T[:3, :3].T + T[:3, 3]                 # back in the table frame
    for k, (lo, hi, n) in enumerate([(-0.5, 0.5, 125), (-0.5, 0.5, 125), (-0.05, 0.0, 6)]):
        u = np.unique(np.round(local[:, k], 9))
        assert len(u) == n and u[0] == pytest.approx(lo) and u[-1] == pytest.approx(hi)


def test_table_points_near_spheres_are_the_cropped_full_table():
    """table_points_near: every point of the whole grid that is inside the box and
    within a radius of a centre, and nothing outside the box (oracle: the whole
    125 x 125 x 6 grid, cropped and measured by brute force), for tilted cameras,
    centres above, inside, under and beside the table, and boxes that cut it."""
    from scipy.spatial import cKDTree

    from pcgrasp.eval.grasp_ap import table_points_near

    rng = np.random.default_rng(4)
    seen = 0
    for trial in range(12):
        T = np.eye(4)
        T[:3, :3] = Rotation.random(random_state=trial).as_matrix()
        T[:3, 3] = rng.uniform(-0.3, 0.3, 3)
        P = table_points(T)
        local = P[rng.integers(len(P), size=4)] @ T[:3, :3].T + T[:3, 3]      # table frame
        local += rng.normal(0, 0.04, local.shape) + [0, 0, rng.choice([0.0, 0.0, 0.03, 0.2])]
        Tinv = np.linalg.inv(T)
        centres = local @ Tinv[:3, :3].T + Tinv[:3, 3]
        radii = rng.uniform(0.02, 0.08, 4)
        c = centres.mean(0)
        half = rng.uniform(0.03, 0.2 if trial < 10 else 2.0, 3)
        lo, hi = c - half, c + half
        in_box = P[((P > lo) & (P < hi)).all(1)]
        near = (np.linalg.norm(in_box[:, None] - centres[None], axis=2) < radii).any(1)
        got = table_points_near(T, centres, radii, lo, hi)
        assert ((got > lo) & (got < hi)).all()
        # got is a subset of the cropped grid ...
        if len(got):
            assert (cKDTree(in_box).query(got)[0] < 1e-12).all()
        # ... holding every cropped point near a centre
        if near.any():
            assert len(got) and (cKDTree(got).query(in_box[near])[0] < 1e-12).all()
            seen += 1
    assert seen >= 4
    assert len(table_points_near(np.eye(4), [[0, 0, 0.5]], [0.05], [-1, -1, -1], [1, 1, 1])) == 0   # above
    assert len(table_points_near(np.eye(4), [[0, 0, -0.01]], [0.05], [5, 5, 5], [6, 6, 6])) == 0   # box away


def _naive_finger_check(points, g, empty_thresh=10):
    """(collision, empty) of one grasp row against points: graspnetAPI's regions, written out."""
    R, t, w, d = g[4:13].reshape(3, 3), g[13:16], g[1], g[3]
    coll, inner = False, 0
    for p in points:
        qx, qy, qz = (p - t) @ R
        if not -0.01 < qz < 0.01:
            continue
        if -0.02 < qx < d and w / 2 < abs(qy) < w / 2 + 0.01:
            coll = True
        if -0.03 < qx < -0.02 and abs(qy) < w / 2 + 0.01:
            coll = True
        if -0.02 < qx < d and abs(qy) <= w / 2:
            inner += 1
    return coll, inner < empty_thresh


def test_collisions_use_each_objects_crop_of_the_scene():
    """Two boxes: grasps are checked against the scene points inside their own object's
    bounding box +- 5 cm (naive oracle), so a neighbour beyond that box does not count."""
    thin = dense(trimesh.creation.box(extents=[0.02, 0.06, 0.05]))
    other = dense(trimesh.creation.box(extents=[0.04, 0.06, 0.05]))
    poses = np.stack([np.eye(4), np.eye(4)])
    poses[:, 2, 3] = 0.025
    poses[1, 0, 3] = 0.083                             # spans x in [0.063, 0.103]
    far = np.eye(4)
    far[2, 3] = 1.0                                    # the table 1 m below: out of the way
    R = _frame([0, 0, -1], [1, 0, 0])
    # centred on the thin box's +x face, 0.1 m open: the +x finger spans x in (0.06, 0.07),
    # through the neighbour, but beyond the thin box's crop (x < 0.01 + 0.05)
    g = _g(0.9, R, [0.01, 0, 0.05], width=0.1, depth=0.02)
    r = eval_frame(g, [thin, other], poses, far)
    assert r["object"].tolist() == [0] and r["collision"].tolist() == [False]
    models = [model_points(m.vertices) @ T[:3, :3].T + T[:3, 3] for m, T in zip([thin, other], poses)]
    assert _naive_finger_check(np.concatenate(models), r["grasps"][0])[0]   # the whole scene would collide
    # random grasps around both boxes: collision | empty as the per-object naive oracle
    rng = np.random.default_rng(1)
    n = 60
    Rs = Rotation.random(n, random_state=2).as_matrix()
    t = rng.uniform([-0.04, -0.05, 0.0], [0.12, 0.05, 0.08], (n, 3))
    gr = grasp_array(rng.random(n), rng.uniform(0.02, 0.1, n), 0.02, rng.choice([0.01, 0.02, 0.03, 0.04], n), Rs, t)
    r = eval_frame(gr, [thin, other], poses, far, per_object=50)
    scene = np.concatenate(models)
    checked = 0
    for row, obj, c in zip(r["grasps"], r["object"], r["collision"]):
        m = models[obj]
        lo, hi = m.min(0) - 0.05, m.max(0) + 0.05
        crop = scene[((scene > lo) & (scene < hi)).all(1)]
        coll, empty = _naive_finger_check(crop, row)
        assert c == (coll or empty), row
        checked += 1
    assert checked >= 20 and 0 < r["collision"].sum() < checked


def test_a_box_on_one_jaws_half_is_not_grasped():
    """Each jaw travels from its open end to the centre line only (graspnetAPI / dex-net)."""
    bar = dense(trimesh.creation.box(extents=[0.02, 0.04, 0.04]))
    pose = np.eye(4)
    pose[2, 3] = 0.02
    R = _frame([0, 0, -1], [1, 0, 0])
    far = np.eye(4)
    far[2, 3] = 1.0
    # 0.1 m open, the centre 2.5 cm to the +x side of the bar (x in [-0.01, 0.01]): the -x jaw
    # (from x = -0.025) meets the bar, the +x jaw (from 0.075 to the centre at 0.025) meets nothing
    g = _g(0.9, R, [0.025, 0, 0.04], width=0.1)
    r = eval_frame(g, [bar], pose[None], far)
    assert r["collision"].tolist() == [False] and r["mu"].tolist() == [-1]
    g = _g(0.9, R, [0.005, 0, 0.04], width=0.1)       # the centre over the bar: grasped
    r = eval_frame(g, [bar], pose[None], far)
    assert r["collision"].tolist() == [False] and r["mu"].tolist() == [0.2]


def test_the_jaws_close_on_the_fingertip_line():
    """A step: narrow at the fingertips, wide above. The jaws meet the narrow part at
    t + depth x, not half-way up (where the wide part would be found)."""
    low = trimesh.creation.box(extents=[0.04, 0.06, 0.02])
    low.apply_translation([0, 0, 0.01])
    high = trimesh.creation.box(extents=[0.08, 0.06, 0.03])
    high.apply_translation([0, 0, 0.035])
    step = dense(trimesh.util.concatenate([low, high]))
    R = _frame([0, 0, -1], [1, 0, 0])
    t = np.array([[0.0, 0.0, 0.055]])
    from pcgrasp.geometry.jaws import jaw_contacts
    _, width = jaw_contacts(step, t, R[None], [0.04], max_width=0.1, width_margin=0.0)
    assert width[0] == pytest.approx(0.04)            # z = 0.015: the narrow part
    _, width = jaw_contacts(step, t, R[None], [0.02], max_width=0.1, width_margin=0.0)
    assert width[0] == pytest.approx(0.08)            # z = 0.035: the wide part


def test_eval_frame_does_not_depend_on_where_the_camera_is():
    """The same scene seen from another camera (a rigid change of the camera frame
    whose rotation is a signed permutation, so the axis-aligned collision crops are
    the same boxes) gives the same per-grasp results: the force closure, run in the
    model frame, and the collision test, run in the camera frame, agree."""
    rows = []
    for k, a in enumerate(np.radians([0, 40, 80, 120, 160])):
        tilt = np.radians(12 * (k % 3))
        x = np.array([np.sin(tilt), 0, -np.cos(tilt)])
        y = np.array([np.cos(a), np.sin(a), 0.0])
        y -= (y @ x) * x
        rows.append(_g(1 - 0.1 * k, _frame(x, y / np.linalg.norm(y)), TOP + [0.004 * k, -0.003 * k, 0.0],
                       width=0.1, depth=(0.01, 0.02, 0.03)[k % 3]))
    g = np.concatenate(rows)
    r0 = eval_frame(g, [BOX], POSE[None], CAMERA)
    assert len(r0["mu"]) == 5 and len(set(r0["mu"][r0["mu"] > 0])) >= 2 and r0["collision"].any()  # a real mix
    W = np.eye(4)
    W[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    W[:3, 3] = [0.1, -0.2, 0.7]
    g1 = g.copy()
    g1[:, 4:13] = (W[:3, :3] @ g[:, 4:13].reshape(-1, 3, 3)).reshape(-1, 9)
    g1[:, 13:16] = g[:, 13:16] @ W[:3, :3].T + W[:3, 3]
    r1 = eval_frame(g1, [BOX], (W @ POSE)[None], CAMERA @ np.linalg.inv(W))
    assert r1["mu"].tolist() == r0["mu"].tolist()
    assert r1["collision"].tolist() == r0["collision"].tolist()
    np.testing.assert_allclose(r1["accuracy"], r0["accuracy"])
