"""Antipodal force-closure test and gripper collisions against brute-force
oracles written here: the closing segment sampled densely against analytic
inside tests of a box and a cylinder, analytic surface normals, finger
footprints sampled against analytic signed distances. The synthetic Dex-Net
generator's labels are checked the same way on a box and a cylinder."""
import math

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")  # optional: the GPU image and lean installs lack it

from pcgrasp.data.synthetic.dexnet import image_intrinsics, robust_grasp_metric, sample_candidates
from pcgrasp.data.synthetic.render import look_at, render_depth
from pcgrasp.data.synthetic.scenes import table_mesh
from pcgrasp.labels import (ParallelJawGripper, antipodal, approach_collision, close_jaws, grasp_success,
                            required_friction, table_collision)

GRIPPER = ParallelJawGripper()


def rot_z(t):
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


class Box:
    def __init__(self, extents, yaw, centre):
        self.e, self.R, self.c = np.asarray(extents, float), rot_z(yaw), np.asarray(centre, float)
        self.mesh = trimesh.creation.box(extents=self.e)
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = self.R, self.c
        self.mesh.apply_transform(T)

    def local(self, p):
        return (p - self.c) @ self.R

    def sdf(self, p):
        q = np.abs(self.local(p)) - self.e / 2
        return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)

    def normal(self, p):
        q = self.local(p)
        k = np.argmax(np.abs(q) - self.e / 2)
        n = np.zeros(3)
        n[k] = np.sign(q[k])
        return self.R @ n

    def sdf_xy(self, p):  # of the vertical prism's cross-section
        q = np.abs(self.local(p))[..., :2] - self.e[:2] / 2
        return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)


class Cylinder:
    def __init__(self, radius, height, centre):
        self.r, self.h, self.c = radius, height, np.asarray(centre, float)
        self.mesh = trimesh.creation.cylinder(radius=radius, height=height, sections=256)
        self.mesh.apply_translation(self.c)
        self.e = np.array([2 * radius, 2 * radius, height])

    def sdf(self, p):
        q = p - self.c
        d = np.stack([np.linalg.norm(q[..., :2], axis=-1) - self.r, np.abs(q[..., 2]) - self.h / 2], -1)
        return np.linalg.norm(np.maximum(d, 0), axis=-1) + np.minimum(d.max(-1), 0)

    def normal(self, p):
        q = p - self.c
        rho = np.linalg.norm(q[:2])
        if abs(q[2]) - self.h / 2 > rho - self.r:
            return np.array([0, 0, np.sign(q[2])])
        return np.array([q[0] / rho, q[1] / rho, 0])

    def sdf_xy(self, p):
        return np.linalg.norm((p - self.c)[..., :2], axis=-1) - self.r


def segment_oracle(obj, c, u, w, samples=8001):
    """(contact, p1, p2, ambiguous) by sampling c + s u, s in [-w/2, w/2]: each jaw
    travels from its open end to the centre (s = 0) only, so jaw 1's contact is
    the first inside sample of s <= 0 and jaw 2's the last inside one of s >= 0."""
    s = np.linspace(-w / 2, w / 2, samples)
    pts = c + s[:, None] * u
    d = obj.sdf(pts)
    inside = d <= 0
    # near-tangent segments, jaws starting on or inside the surface (a
    # collision, not a contact: labelled by the collision checks) and
    # surfaces at the centre (where a jaw's stroke ends): skip
    ambiguous = abs(d.min()) < 1e-3 or d[0] < 1e-3 or d[-1] < 1e-3 or abs(d[samples // 2]) < 1e-3
    first, second = inside & (s <= 0), inside & (s >= 0)
    if not (first.any() and second.any()):
        return False, None, None, ambiguous
    return True, pts[np.flatnonzero(first)[0]], pts[np.flatnonzero(second)[-1]], ambiguous


def friction_oracle(obj, p1, p2, u):
    """tan of the larger angle between a contact's unsigned normal line and the contact line."""
    n1, n2 = obj.normal(p1), obj.normal(p2)
    v = p2 - p1
    if np.linalg.norm(v) <= 1e-9:
        return math.inf
    v = v / np.linalg.norm(v)
    cos = min(abs(float(n1 @ v)), abs(float(n2 @ v)))
    return math.inf if cos <= 0 else math.tan(math.acos(min(1.0, cos)))


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# ---------------------------------------------------------------- hand cases
def test_hand_cases_box():
    box = trimesh.creation.box(extents=(0.04, 0.06, 0.10))
    R0 = np.stack([[0, 0, -1.0], [1.0, 0, 0], [0, 1.0, 0]], 1)  # approach -z, close along x
    c = np.array([[0, 0, 0.03]])
    cj = close_jaws(box, c, R0[None], 0.085)
    assert cj["contact"][0] and cj["width"][0] == pytest.approx(0.04)
    assert required_friction(cj, R0[None])[0] == pytest.approx(0.0, abs=1e-9)  # exactly antipodal: any mu
    assert antipodal(box, c, R0[None], 0.085, 0.0)[0]
    # closing axis tilted by t in the xy-plane: the contact line meets the faces at t, so mu = tan t
    for t in (0.1, 0.3, 0.5):
        R = np.stack([[0, 0, -1.0], [math.cos(t), math.sin(t), 0], [-math.sin(t), math.cos(t), 0]], 1)
        mu = required_friction(close_jaws(box, c, R[None], 0.085), R[None])[0]
        assert mu == pytest.approx(math.tan(t), rel=1e-6)
        assert antipodal(box, c, R[None], 0.085, math.tan(t) + 1e-6)[0]
        assert not antipodal(box, c, R[None], 0.085, math.tan(t) - 1e-3)[0]
    # too wide for the opening (0.06 along y), or no object between the jaws
    Ry = np.stack([[0, 0, -1.0], [0, 1.0, 0], [-1.0, 0, 0]], 1)
    assert antipodal(box, c, Ry[None], 0.085, 0.5)[0] and not antipodal(box, c, Ry[None], 0.05, 0.5)[0]
    assert not close_jaws(box, c + [0.2, 0, 0], R0[None], 0.085)["contact"][0]
    # each jaw travels to the centre line only: a box lying on one jaw's half is not grasped
    off = close_jaws(box, c + [0.035, 0, 0], R0[None], 0.085)
    assert not off["contact"][0]
    assert close_jaws(box, c + [0.015, 0, 0], R0[None], 0.085)["contact"][0]   # the centre line inside the box
    # jaws opened inside the object: the faces lie beyond their strokes
    assert not close_jaws(box, c, R0[None], 0.03)["contact"][0]
    assert len(close_jaws(box, np.zeros((0, 3)), np.zeros((0, 3, 3)), 0.085)["contact"]) == 0


def test_bad_inputs():
    box = trimesh.creation.box(extents=(0.04, 0.06, 0.10))
    R = np.eye(3)[None]
    with pytest.raises(ValueError, match="centers"):
        close_jaws(box, np.zeros(3), R, 0.05)
    with pytest.raises(ValueError, match="rotations"):
        close_jaws(box, np.zeros((1, 3)), np.eye(3), 0.05)
    with pytest.raises(ValueError, match="widths"):
        close_jaws(box, np.zeros((1, 3)), R, [0.05, 0.05])
    with pytest.raises(ValueError, match="widths"):
        close_jaws(box, np.zeros((1, 3)), R, 0.0)
    with pytest.raises(ValueError, match="finite"):
        close_jaws(box, np.full((1, 3), np.nan), R, 0.05)
    with pytest.raises(ValueError, match="mu"):
        antipodal(box, np.zeros((1, 3)), R, 0.05, -0.1)
    with pytest.raises(ValueError, match="table_normal"):
        table_collision(np.zeros((1, 3)), R, 0.05, table_normal=(0, 0, 0))


# ---------------------------------------------------------------- 6-DoF vs brute force
@pytest.mark.parametrize("shape", ["box", "cylinder"])
def test_required_friction_matches_brute_force_6dof(rng, shape):
    obj = Box((0.05, 0.03, 0.07), 0.4, (0.01, -0.02, 0.035)) if shape == "box" else \
        Cylinder(0.025, 0.08, (0.0, 0.01, 0.04))
    n = 600
    R = np.stack([random_rotation(rng) for _ in range(n)])
    c = obj.c + rng.uniform(-0.035, 0.035, (n, 3))
    w = rng.uniform(0.03, 0.085, n)
    cj = close_jaws(obj.mesh, c, R, w)
    mu = required_friction(cj, R)
    checked = 0
    for i in range(n):
        contact, p1, p2, amb = segment_oracle(obj, c[i], R[i, :, 1], w[i])
        if amb:
            continue
        checked += 1
        assert cj["contact"][i] == contact, i
        if contact:
            np.testing.assert_allclose(cj["p1"][i], p1, atol=2e-5)
            np.testing.assert_allclose(cj["p2"][i], p2, atol=2e-5)
            want = friction_oracle(obj, p1, p2, R[i, :, 1])
            if math.isinf(want):
                assert mu[i] > 1e3 or math.isinf(mu[i])
            else:
                # friction-cone half-angles: the 256-gon's facet normals are off by <= pi/256
                assert math.atan(mu[i]) == pytest.approx(math.atan(want), abs=0.02 if shape == "cylinder" else 1e-6)
    assert checked > 150 and cj["contact"].sum() > 40


def test_table_collision_matches_sampled_finger_boxes(rng):
    n = 200
    R = np.stack([random_rotation(rng) for _ in range(n)])
    c = rng.uniform(-0.05, 0.05, (n, 3))
    w = rng.uniform(0.02, 0.085, n)
    got = table_collision(c, R, w, GRIPPER)
    g = GRIPPER
    t = np.linspace(0, 1, 6)
    X, Y, Z = np.meshgrid(g.tip_depth - g.finger_length + t * g.finger_length, t * g.finger_width,
                          (t - 0.5) * g.finger_height, indexing="ij")
    for i in range(n):
        lowest = math.inf
        for side in (-1, 1):
            local = np.stack([X.ravel(), side * (w[i] / 2 + Y.ravel()), Z.ravel()], 1)
            lowest = min(lowest, (c[i] + local @ R[i].T)[:, 2].min())
        assert got[i] == (lowest < 0), i
    assert 20 < got.sum() < n - 20
    # a tilted table: the normal is respected
    assert table_collision([[0, 0, 0.1]], np.eye(3)[None], 0.05, GRIPPER, (0, 0, 0), (0, 0, 1)).tolist() == [False]
    assert table_collision([[0, 0, 0.1]], np.eye(3)[None], 0.05, GRIPPER, (0, 0, 0.2), (0, 0, 1)).tolist() == [True]


# ---------------------------------------------------------------- generator labels vs brute force
@pytest.mark.parametrize("shape", ["box", "cylinder"])
def test_generator_labels_match_brute_force(rng, shape):
    """Planar grasps from the generator's candidate sampler on a rendered
    top-down view, labelled by the generator (no perturbation), against an
    oracle: the same grasp rebuilt here in the world frame, jaws closed by
    sampling, analytic normals, finger footprints swept down the approach
    axis tested against the prism's analytic cross-section, table at z = 0."""
    obj = Box((0.05, 0.035, 0.06), 0.5, (0.0, 0.0, 0.03)) if shape == "box" else \
        Cylinder(0.022, 0.07, (0.0, 0.0, 0.035))
    size, mu = 128, 0.5
    K = image_intrinsics(size)
    T = look_at((0, 0, 0.6), (0, 0, 0), up=(0, 1, 0))  # straight down: col -> +x, row -> -y
    depth, hit, normals = render_depth([obj.mesh, table_mesh()], T, K, size, size)
    cand = sample_candidates({"depth": depth, "hit": hit}, 300, rng)
    labels = robust_grasp_metric(obj.mesh, cand, K, T, perturbations=1, mu=mu) > 0.002
    g, f, cx, cy = GRIPPER, K[0, 0], K[0, 2], K[1, 2]
    w = g.max_width
    a_fw = np.linspace(0, g.finger_width, 21)
    a_fh = np.linspace(-g.finger_height / 2, g.finger_height / 2, 41)
    checked, positives = 0, 0
    for (row, col, d, a), label in zip(cand, labels):
        c = np.array([(col - cx) / f * d, -(row - cy) / f * d, 0.6 - d])
        u = np.array([math.cos(a), -math.sin(a), 0.0])
        side_ax = np.cross([0, 0, -1.0], u)  # the gripper's z (height) axis
        contact, p1, p2, amb = segment_oracle(obj, c, u, w)
        mu_req = friction_oracle(obj, p1, p2, u) if contact else math.inf
        amb |= abs(mu_req - mu) < 0.03
        # fingers swept down to the tip (z = c_z): they hit the prism iff it
        # reaches above the tip and a footprint overlaps its cross-section
        pen = -math.inf
        for side in (-1, 1):
            foot = (c + side * (w / 2 + a_fw)[:, None, None] * u + a_fh[None, :, None] * side_ax)
            pen = max(pen, -obj.sdf_xy(foot).min())
        top = obj.e[2]
        approach = pen > 0 and top > c[2]
        amb |= (0 < pen < 0.006) or abs(top - c[2]) < 1e-4 or abs(c[2]) < 1e-5  # between the 5 x 5 rays
        table = c[2] < 0
        if amb:
            continue
        checked += 1
        want = contact and mu_req <= mu and not approach and not table
        positives += want
        assert label == want, (row, col, d, a, contact, mu_req, approach, table)
    assert checked > 150 and 10 < positives < checked - 10
