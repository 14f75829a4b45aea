"""GraspNet-1B grasp conventions, per-object grasp labels and the gripper
collision checks, against independent constructions written here."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

trimesh = pytest.importorskip("trimesh")  # optional: the GPU image and lean installs lack it

from pcgrasp.geometry.collision import finger_collision, model_free_collision
from pcgrasp.labels.grasp_labels import friction_score, grasp_grid, label_points, object_grasp_labels
from pcgrasp.geometry.gripper import GRIPPER
from pcgrasp.geometry.views import ANGLES, DEPTHS, generate_views, grasp_rotations, viewpoint_params_to_matrix


# ------------------------------------------------------------------ views

def test_fibonacci_views():
    v = generate_views(300)
    assert v.shape == (300, 3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)
    assert np.all(np.diff(v[:, 2]) > 0)                         # rising z, evenly spaced
    np.testing.assert_allclose(np.diff(v[:, 2]), 2 / 300, atol=1e-12)
    # successive azimuths advance by 2 pi phi (the golden angle's complement)
    az = np.arctan2(v[:, 1], v[:, 0])
    step = np.mod(np.diff(az), 2 * np.pi)
    np.testing.assert_allclose(step, np.mod(2 * np.pi * (np.sqrt(5) - 1) / 2, 2 * np.pi), atol=1e-9)
    # near-uniform: each octant holds about 300 / 8 views
    octant = (v[:, 0] > 0) * 4 + (v[:, 1] > 0) * 2 + (v[:, 2] > 0)
    assert np.bincount(octant, minlength=8).min() >= 30
    with pytest.raises(ValueError, match="n"):
        generate_views(0)


def _independent_rotation(approach, angle):
    x = approach / np.linalg.norm(approach)
    y0 = np.cross([0.0, 0.0, 1.0], x)
    y0 = np.array([0.0, 1.0, 0.0]) if np.linalg.norm(y0) == 0 else y0 / np.linalg.norm(y0)
    y = Rotation.from_rotvec(angle * x).apply(y0)   # in-plane rotation about the approach axis
    return np.stack([x, y, np.cross(x, y)], 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rotation_matches_independent_construction(dtype):
    rng = np.random.default_rng(0)
    towards = rng.normal(size=(50, 3)).astype(dtype)
    towards[0] = [0, 0, -2]  # vertical: y falls back to (0, 1, 0)
    towards[1] = [0, 0, 3]
    angles = rng.uniform(-np.pi, np.pi, 50)
    R = viewpoint_params_to_matrix(towards, angles)
    for t, a, r in zip(towards, angles, R):
        np.testing.assert_allclose(r, _independent_rotation(t.astype(np.float64), a), atol=1e-6)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="towards"):
        viewpoint_params_to_matrix(np.zeros((1, 3)), 0.0)
    with pytest.raises(ValueError, match="towards"):
        viewpoint_params_to_matrix(np.ones((2, 2)), 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_grasp_array_rows_match_a_per_grasp_construction(dtype):
    from pcgrasp.labels.scene_labels import label_grasp_array

    rng = np.random.default_rng(1)
    n_pts, views = 7, np.array([0, 5, 150, 299])       # a view subset, as a label file may store
    points = rng.normal(size=(n_pts, 3)).astype(dtype)
    offsets = np.stack([rng.uniform(-np.pi, np.pi, (n_pts, 4, 12, 4)), rng.uniform(0.005, 0.04, (n_pts, 4, 12, 4)),
                        rng.uniform(0.01, 0.1, (n_pts, 4, 12, 4))], -1).astype(dtype)
    mask = rng.random((n_pts, 4, 12, 4)) < 0.05
    mask[3, 2, 0, 0] = mask[3, 2, 0, 1] = True           # two grasps of one point and view
    idx = np.nonzero(mask)
    scores = rng.uniform(0.1, 1.0, len(idx[0]))
    q = Rotation.random(random_state=2).as_matrix()
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = q, [0.1, -0.2, 0.5]
    for T, obj in ((None, -1), (pose, 17)):
        g = label_grasp_array(points, offsets, views, idx, scores, object_id=obj, pose=T)
        assert g.shape == (len(scores), 17) and g.dtype == np.float64
        for row, p, v, a, d, s in zip(g, *idx, scores):
            angle, depth, width = offsets[p, v, a, d].astype(np.float64)
            R = _independent_rotation(-generate_views(300)[views[v]], angle)
            t = points[p].astype(np.float64)
            if T is not None:
                R, t = q @ R, q @ t + T[:3, 3]
            np.testing.assert_allclose(row[:4], [s, width, 0.02, depth], rtol=1e-12)
            np.testing.assert_allclose(row[4:13].reshape(3, 3), R, atol=1e-6)
            np.testing.assert_allclose(row[13:16], t, atol=1e-6)
            assert row[16] == obj
    empty = label_grasp_array(points, offsets, views, np.nonzero(np.zeros_like(mask)), np.zeros(0))
    assert empty.shape == (0, 17)


def test_grid_rotations_approach_minus_view_and_angle_order():
    R = grasp_rotations()
    assert R.shape == (300, 12, 3, 3)
    v = generate_views(300)
    np.testing.assert_allclose(R[:, :, :, 0], np.broadcast_to(-v[:, None], (300, 12, 3)), atol=1e-12)
    np.testing.assert_allclose(ANGLES, np.arange(12) * np.pi / 12)
    # angle k turns the closing axis by k pi / 12 from angle 0's, about the approach
    cos = np.einsum("vai,vi->va", R[:, :, :, 1], R[:, 0, :, 1])
    np.testing.assert_allclose(cos, np.broadcast_to(np.cos(ANGLES), (300, 12)), atol=1e-12)
    sub = grasp_rotations([5, 7])
    np.testing.assert_array_equal(sub, R[[5, 7]])
    with pytest.raises(ValueError, match="views"):
        grasp_rotations([300])
    np.testing.assert_allclose(DEPTHS, [0.01, 0.02, 0.03, 0.04])
    assert (GRIPPER.height, GRIPPER.finger_width, GRIPPER.depth_base, GRIPPER.max_width) == (0.02, 0.01, 0.02, 0.1)


def test_friction_score_grid():
    mu = np.array([0.0, 0.1, 0.1000000001, 0.15, 0.95, 1.0, 1.01, np.inf, np.nan])
    np.testing.assert_allclose(friction_score(mu), [0.1, 0.1, 0.1, 0.2, 1.0, 1.0, -1, -1, -1])


# ------------------------------------------------------------------ labels on a box vs analytic brute force

def _box_line_contacts(half, m, y):
    """Slab method: the entry/exit parameters of the line m + s y in the box
    [-half, half] and the outward normals there (None when it misses)."""
    lo, hi, n_lo, n_hi = -np.inf, np.inf, None, None
    for k in range(3):
        if abs(y[k]) < 1e-15:
            if abs(m[k]) > half[k]:
                return None
            continue
        a, b = (-half[k] - m[k]) / y[k], (half[k] - m[k]) / y[k]
        na, nb = -np.eye(3)[k], np.eye(3)[k]
        if a > b:
            a, b, na, nb = b, a, nb, na
        if a > lo:
            lo, n_lo = a, na
        if b < hi:
            hi, n_hi = b, nb
    if lo > hi:
        return None
    return lo, hi, n_lo, n_hi


def _box_score(half, t, R, d, max_width=0.1):
    """The label of one grasp on the box [-half, half]: jaws on the fingertip line
    t + d x, opened to max_width, each moving from its open end to the centre only; a
    jaw's contact is its first crossing of the surface (an entry, or the exit when it
    starts inside); unsigned normals."""
    m = t + d * R[:, 0]
    y = R[:, 1]
    hit = _box_line_contacts(half, m, y)
    if hit is None:
        return -1.0
    lo, hi, n_lo, n_hi = hit
    w2 = max_width / 2
    # jaw 1 from s = -w/2 towards 0, jaw 2 from s = +w/2 towards 0
    c1 = (lo, n_lo) if -w2 <= lo <= 0 else (hi, n_hi) if lo < -w2 <= hi <= 0 else None
    c2 = (hi, n_hi) if 0 <= hi <= w2 else (lo, n_lo) if 0 <= lo <= w2 < hi else None
    if c1 is None or c2 is None or c2[0] - c1[0] < 1e-12:
        return -1.0
    mu = max(np.tan(np.arccos(np.clip(abs(c1[1] @ y), 0, 1))), np.tan(np.arccos(np.clip(abs(c2[1] @ y), 0, 1))))
    for f in np.arange(1, 11) / 10:
        if mu <= f + 1e-9:
            return f
    return -1.0


@pytest.fixture(scope="module")
def box_labels():
    half = np.array([0.02, 0.03, 0.04])
    mesh = trimesh.creation.box(extents=2 * half)
    views = np.arange(0, 300, 25)
    return half, mesh, views, object_grasp_labels(mesh, num_points=20, views=views, seed=3)


def test_box_labels_match_analytic_brute_force(box_labels):
    half, mesh, views, lab = box_labels
    P = lab["points"]
    assert lab["scores"].shape == (len(P), len(views), 12, 4)
    assert lab["offsets"].shape == (len(P), len(views), 12, 4, 3)
    assert lab["collision"].dtype == bool and lab["scores"].dtype == np.float32
    # label points on the surface
    assert np.abs(np.abs(P) - half).min(1).max() < 1e-6
    t, R, d, a = grasp_grid(P, views)
    want = np.array([_box_score(half, *g) for g in zip(t, R, d)])
    got = lab["scores"].reshape(-1)
    mismatch = np.abs(got - want) > 1e-6
    assert mismatch.mean() < 0.002, (mismatch.sum(), len(want))  # only lines grazing an edge may differ
    assert (want > 0).sum() > 100 and (want < 0).sum() > 100
    np.testing.assert_allclose(lab["offsets"][..., 0].reshape(-1), a, atol=1e-6)
    np.testing.assert_allclose(lab["offsets"][..., 1].reshape(-1), d, atol=1e-6)
    w = lab["offsets"][..., 2]
    assert (w > 0).all() and (w <= 0.1 + 1e-7).all()


def test_exactly_antipodal_box_grasp_scores_smallest_mu():
    half = np.array([0.02, 0.03, 0.04])
    mesh = trimesh.creation.box(extents=2 * half)
    from pcgrasp.geometry.jaws import jaw_contacts

    # top-down onto the top face, closing along x: both normals on the line
    R = viewpoint_params_to_matrix(np.array([[0.0, 0.0, -1.0]]), np.array([0.0]))
    R = R @ Rotation.from_rotvec([np.pi / 2, 0, 0]).as_matrix()  # closing axis -> world x
    t = np.array([[0.0, 0.0, half[2]]])
    mu, width = jaw_contacts(mesh, t, R, [0.02])
    assert friction_score(mu)[0] == pytest.approx(0.1)
    assert width[0] == pytest.approx(2 * half[0] + 0.01)
    # slanted by 30 degrees about the approach in the face plane: mu = tan 30 ~ 0.577 -> 0.6
    Rs = R @ Rotation.from_rotvec([np.radians(30), 0, 0]).as_matrix()
    mu, _ = jaw_contacts(mesh, t, Rs, [0.02])
    assert mu[0] == pytest.approx(np.tan(np.radians(30)), rel=1e-6)
    assert friction_score(mu)[0] == pytest.approx(0.6)


def test_labels_reject_bad_input():
    with pytest.raises(ValueError, match="num_points"):
        label_points(trimesh.creation.box(), num_points=0)
    with pytest.raises(ValueError, match="mesh"):
        object_grasp_labels(trimesh.Trimesh(), num_points=5)
    with pytest.raises(ValueError, match="points"):
        grasp_grid(np.zeros((3, 2)))


# ------------------------------------------------------------------ collision checks vs per-grasp loops

def _loop_model_free(P, t, R, w, d, h=0.02, f=0.01, L=0.06, a=0.05):
    a = max(a, f)
    out = []
    for ti, Ri, wi, di in zip(t, R, w, d):
        q = (P - ti) @ Ri
        hits = 0
        for x, y, z in q:
            if not (-h / 2 < z < h / 2 and abs(y) < wi / 2 + f):
                continue
            finger = di - L < x < di and abs(y) > wi / 2
            bottom = di - L - f < x <= di - L
            shift = di - L - f - a < x <= di - L - f
            hits += finger or bottom or shift
        out.append(hits)
    return np.array(out)


def _loop_finger(P, t, R, w, d, h=0.02, f=0.01, b=0.02):
    coll, inner = [], []
    for ti, Ri, wi, di in zip(t, R, w, d):
        q = (P - ti) @ Ri
        c = n = 0
        for x, y, z in q:
            if not (-h / 2 < z < h / 2 and abs(y) < wi / 2 + f):
                continue
            if -b < x < di:
                if abs(y) > wi / 2:
                    c += 1
                else:
                    n += 1
            elif -b - f < x < -b:     # graspnetAPI's bottom: both bounds strict
                c += 1
        coll.append(c > 0)
        inner.append(n)
    return np.array(coll), np.array(inner)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_collision_checks_match_loops(dtype):
    rng = np.random.default_rng(1)
    P = rng.uniform(-0.12, 0.12, size=(150, 3)).astype(dtype)
    P = np.concatenate([P, P[:20]])  # duplicates
    n = 60
    t = rng.uniform(-0.02, 0.02, size=(n, 3)).astype(dtype)
    R = Rotation.random(n, random_state=2).as_matrix().astype(dtype)
    w = rng.uniform(0.0, 0.1, n).astype(dtype)
    d = rng.choice(DEPTHS, n).astype(dtype)
    P64, t64, R64, w64, d64 = (np.asarray(v, np.float64) for v in (P, t, R, w, d))
    counts = _loop_model_free(P64, t64, R64, w64, d64)
    assert 0 < (counts > 0).sum() < n
    np.testing.assert_array_equal(model_free_collision(P, t, R, w, d, chunk=1000), counts > 0)
    # GSNet's threshold on points per voxel volume
    vol = (2 * 0.02 * 0.06 * 0.01 + 0.02 * (w64 + 0.02) * 0.01 + 0.02 * (w64 + 0.02) * 0.05) / 0.005 ** 3
    np.testing.assert_array_equal(model_free_collision(P, t, R, w, d, collision_thresh=0.002),
                                  counts / (vol + 1e-6) > 0.002)
    coll, inner = _loop_finger(P64, t64, R64, w64, d64)
    c2, empty = finger_collision(P, t, R, w, d, empty_thresh=3)        # NumPy path (small, CPU)
    np.testing.assert_array_equal(c2, coll)
    np.testing.assert_array_equal(empty, inner < 3)
    for kw in ({"chunk": 1000}, {}):                                       # torch path: chunked, and tensors
        args = (P, t, R, w, d) if kw else tuple(torch.as_tensor(v) for v in (P, t, R, w, d))
        c3, e3 = finger_collision(*args, empty_thresh=3, **kw)
        np.testing.assert_array_equal(c3, coll)
        np.testing.assert_array_equal(e3, inner < 3)
    for args in ((np.zeros((0, 3)), t, R, w, d), (P, t[:0], R[:0], w[:0], d[:0])):
        for tens in (False, True):
            c4, e4 = finger_collision(*(tuple(torch.as_tensor(v) for v in args) if tens else args))
            assert c4.shape == e4.shape == (len(args[1]),) and not c4.any() and e4.all()
    # empty inputs
    assert model_free_collision(np.zeros((0, 3)), t, R, w, d).sum() == 0
    assert model_free_collision(P, t[:0], R[:0], w[:0], d[:0]).shape == (0,)
    with pytest.raises(ValueError, match="rotations"):
        model_free_collision(P, t, R[:3], w, d)
    with pytest.raises(ValueError, match="widths"):
        model_free_collision(P, t, R, -w, d)
    with pytest.raises(ValueError, match="points"):
        finger_collision(P[:, :2], t, R, w, d)
    with pytest.raises(ValueError, match="centers"):
        finger_collision(P, np.full((n, 3), np.nan), R, w, d)
    with pytest.raises(ValueError, match="widths"):
        finger_collision(P, t, R, -w, d)
    with pytest.raises(ValueError, match="depths"):
        finger_collision(P, t, R, w, d[:3])
    with pytest.raises(ValueError, match="rotations"):
        finger_collision(P, t, R[:3], w, d)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shared_center_collision_matches_loops(dtype):
    """A label point's grasps (one translation, K rotations x D depths) against the loop oracle."""
    from pcgrasp.geometry.collision import shared_center_finger_collision

    rng = np.random.default_rng(4)
    P = rng.uniform(-0.1, 0.1, size=(300, 3)).astype(dtype)
    P = np.concatenate([P, P[:30]])  # duplicates
    c = rng.uniform(-0.01, 0.01, 3).astype(dtype)
    K = 40
    R = Rotation.random(K, random_state=5).as_matrix().astype(dtype)
    w = rng.uniform(0.0, 0.1, (K, len(DEPTHS))).astype(dtype)
    got = shared_center_finger_collision(P, c, R, w, DEPTHS, chunk=1000)
    assert got.shape == (K, len(DEPTHS)) and got.dtype == bool
    P64 = P.astype(np.float64)
    t = np.broadcast_to(c.astype(np.float64), (K * len(DEPTHS), 3))
    Rg = np.repeat(R.astype(np.float64), len(DEPTHS), 0)
    want, _ = _loop_finger(P64, t, Rg, w.astype(np.float64).reshape(-1), np.tile(DEPTHS, K))
    np.testing.assert_array_equal(got.reshape(-1), want)
    assert 0 < want.sum() < len(want)
    assert not shared_center_finger_collision(np.zeros((0, 3)), c, R, w, DEPTHS).any()
    with pytest.raises(ValueError, match="widths"):
        shared_center_finger_collision(P, c, R, w[:, :2], DEPTHS)
    with pytest.raises(ValueError, match="widths"):
        shared_center_finger_collision(P, c, R, -w, DEPTHS)


def test_a_subset_of_points_or_views_equals_the_same_rows_of_the_whole(box_labels):
    half, mesh, views, lab = box_labels
    sub = object_grasp_labels(mesh, num_points=20, views=views[[1, 4]], seed=3, points=[5, 0, 5], chunk_points=1)
    assert sub["point_indices"].tolist() == [5, 0, 5]
    for k in ("points",):
        np.testing.assert_array_equal(sub[k], lab[k][[5, 0, 5]])
    for k in ("scores", "collision", "offsets"):
        np.testing.assert_array_equal(sub[k], lab[k][[5, 0, 5]][:, [1, 4]], err_msg=k)
    whole = object_grasp_labels(mesh, num_points=20, views=views, seed=3, chunk_points=3)
    for k in ("points", "scores", "collision", "offsets"):
        np.testing.assert_array_equal(whole[k], lab[k], err_msg=k)   # chunking changes nothing
    empty = object_grasp_labels(mesh, num_points=20, views=views, seed=3, points=np.zeros(0, np.int64))
    assert empty["scores"].shape == (0, len(views), 12, 4)
    for bad in ([20], [-1], [0.5]):
        with pytest.raises(ValueError, match="points"):
            object_grasp_labels(mesh, num_points=20, views=views, seed=3, points=bad)
    with pytest.raises(ValueError, match="chunk_points"):
        object_grasp_labels(mesh, num_points=20, views=views, seed=3, chunk_points=0)


def test_rays_in_chunks_equal_one_call():
    from pcgrasp.geometry.rays import first_hits

    rng = np.random.default_rng(0)
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    o = rng.uniform(-0.1, 0.1, (500, 3))
    dirs = rng.normal(size=(500, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    dist = rng.uniform(0, 0.2, 500)
    one = first_hits(mesh, o, dirs, dist, chunk=10 ** 6)
    many = first_hits(mesh, o, dirs, dist, chunk=7)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)
    assert 50 < one[0].sum() < 450
    # the hit is the nearest crossing within max_dist (brute force on the sphere)
    b = (o * dirs).sum(1)
    disc = b ** 2 - ((o ** 2).sum(1) - 0.05 ** 2)
    roots = np.stack([-b - np.sqrt(np.maximum(disc, 0)), -b + np.sqrt(np.maximum(disc, 0))], 1)
    roots = np.where((disc[:, None] > 0) & (roots >= 0) & (roots <= dist[:, None]), roots, np.inf)
    near = roots.min(1)
    clear = np.abs(disc) > 1e-4          # the icosphere is a polyhedron: skip grazing rays
    assert (one[0][clear] == np.isfinite(near[clear])).mean() > 0.97
    with pytest.raises(ValueError, match="chunk"):
        first_hits(mesh, o, dirs, dist, chunk=0)


def test_rays_without_embree_are_cast_in_calls_bounded_by_faces(monkeypatch):
    """trimesh's own caster holds ~rays x faces candidate pairs per call: first_hits
    casts at most PAIR_BUDGET / faces rays per call there, with the same hits."""
    from pcgrasp.geometry import rays

    rng = np.random.default_rng(1)
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    slow = mesh.copy()
    slow.ray = trimesh.ray.ray_triangle.RayMeshIntersector(slow)
    assert not rays.uses_embree(slow)
    assert rays.rays_per_call(slow) == min(rays.RAY_CHUNK, rays.PAIR_BUDGET // len(mesh.faces))
    monkeypatch.setattr(rays, "PAIR_BUDGET", 20 * len(mesh.faces))   # 20 rays per call
    assert rays.rays_per_call(slow) == 20
    calls = []
    original = slow.ray.intersects_location

    def counted(o, d, **kw):
        calls.append(len(o))
        return original(o, d, **kw)

    monkeypatch.setattr(slow.ray, "intersects_location", counted)
    o = rng.uniform(-0.1, 0.1, (300, 3))
    dirs = rng.normal(size=(300, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    dist = rng.uniform(0, 0.2, 300)
    got = rays.first_hits(slow, o, dirs, dist)
    assert max(calls) == 20 and sum(calls) == 300
    ref = rays.first_hits(mesh, o, dirs, dist, chunk=10 ** 6)          # Embree when installed
    assert 30 < got[0].sum() < 270
    assert (got[0] == ref[0]).mean() > 0.98
    both = got[0] & ref[0]
    np.testing.assert_allclose(got[1][both], ref[1][both], atol=1e-6)
