"""The synthetic grasp generator: geometry-dependent mode probabilities
(against binomial counts), local features of known shapes, and the Bayes
floors against Monte-Carlo."""
import math

import numpy as np
import pytest

from conftest import needs_trimesh
from pcgrasp.data.meshes import sample_surface
from pcgrasp.data.synthetic.grasps import (NOISE_SD, bayes_floor, draw_joints, grasp_truth, joints_for_pose,
                                           local_features, make_mesh, mode_probability, sample_pose)

pytestmark = pytest.mark.pipeline  # pure NumPy / trimesh: nothing for the sanitizer run


def _poses(n_objects=6, poses_per_object=6, seed=0):
    """(surface points, pose, R) for random objects of every category."""
    from pcgrasp.data.synthetic.grasps import CATEGORIES

    rng = np.random.default_rng(seed)
    out = []
    for o in range(n_objects):
        mesh = make_mesh(CATEGORIES[o % len(CATEGORIES)], rng)
        pts = sample_surface(mesh, 2048, seed=o)
        for _ in range(poses_per_object):
            pose, R = sample_pose(pts, rng)
            out.append((pts, pose, R))
    return out


# ---------------------------------------------------------------- generator
@needs_trimesh
def test_mode_frequencies_follow_the_documented_probability():
    rng = np.random.default_rng(123)
    cases = _poses()
    draws = 400
    observed, expected, variance = [], [], []
    for pts, pose, R in cases:
        p, _ = grasp_truth(pts, pose, R)
        modes = [joints_for_pose(pts, None, pose, R, rng, return_mode=True)[1] for _ in range(draws)]
        observed.append(sum(modes))
        expected.append(draws * p)
        variance.append(draws * p * (1 - p))
        z = (observed[-1] - expected[-1]) / math.sqrt(variance[-1])
        assert abs(z) < 4.5, (p, observed[-1], draws)  # each pose's binomial count
    z_all = (sum(observed) - sum(expected)) / math.sqrt(sum(variance))
    assert abs(z_all) < 4
    # the probability really depends on the pose: not one value for all
    ps = [grasp_truth(*c)[0] for c in cases]
    assert max(ps) - min(ps) > 0.5


@needs_trimesh
def test_pinch_likelier_on_thin_parts_than_on_wide_round_bodies():
    from trimesh import creation

    rng = np.random.default_rng(0)
    thin = sample_surface(creation.cylinder(radius=0.012, height=0.15, sections=32), 2048, seed=1)
    wide = sample_surface(creation.icosphere(subdivisions=3, radius=0.06), 2048, seed=2)
    p_thin = np.mean([grasp_truth(thin, *sample_pose(thin, rng))[0] for _ in range(30)])
    p_wide = np.mean([grasp_truth(wide, *sample_pose(wide, rng))[0] for _ in range(30)])
    assert p_thin > 0.6 and p_wide < 0.2


@needs_trimesh
def test_local_features_of_known_shapes():
    from trimesh import creation

    # a box 4 x 6 x 10 cm approached along -x onto its 6 x 10 face, closing along world y
    box = sample_surface(creation.box(extents=[0.04, 0.06, 0.10]), 20000, seed=0)
    R = np.stack([[-1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]], 1)  # columns: approach, closing, approach x closing
    pose = np.array([0.07, 0, 0, 1, 0, 0, 0])
    f = local_features(box, pose, R)
    assert f["width"] == pytest.approx(0.06, abs=0.002)
    assert f["curvature"] < 0.05  # a flat face
    assert f["front"] == pytest.approx(0.07 - 0.02, abs=1e-6)
    np.testing.assert_allclose(f["widths"], 0.06, atol=0.003)  # every finger slab sees the full face
    # a cylinder (r = 3 cm, axis z) approached across its axis: width 2r, a round profile
    cyl = sample_surface(creation.cylinder(radius=0.03, height=0.12, sections=64), 20000, seed=1)
    f = local_features(cyl, pose, R)
    assert f["width"] == pytest.approx(0.06, abs=0.003)
    assert f["curvature"] > 0.3
    # the finger slabs past the end of a short object miss it (width 0)
    short = sample_surface(creation.box(extents=[0.04, 0.06, 0.02]), 20000, seed=2)
    f = local_features(short, pose, R)
    assert f["widths"][0] == 0.0 and f["widths"][3] == 0.0 and f["widths"][1] > 0.05


def test_mode_probability_formula():
    feat = {"width": 0.075, "variation": 0.15, "curvature": 0.3}
    assert mode_probability(feat) == pytest.approx(0.5)
    # thinner -> pinch likelier; rounder -> power likelier
    assert mode_probability({**feat, "width": 0.03}) > 0.9
    assert mode_probability({**feat, "curvature": 1.0}) < mode_probability(feat)


def _monte_carlo(p, means, rule, draws, rng):
    """Empirical top-logit MSE of a predictor: rule(p, means) -> prediction [n, J]."""
    pred = rule(p, means)
    total, count = 0.0, 0
    for _ in range(draws):
        for i in range(len(p)):
            j, _ = draw_joints(p[i], means[i], rng)
            total += float(((j - pred[i]) ** 2).sum())
            count += len(j)
    return math.sqrt(total / count)


@needs_trimesh
def test_bayes_floor_equals_monte_carlo():
    rng = np.random.default_rng(7)
    truth = [grasp_truth(*c) for c in _poses(4, 5, seed=1)]
    p = np.array([t[0] for t in truth])
    means = np.stack([t[1] for t in truth])
    floors = bayes_floor(p, means)
    likelier = lambda p, m: m[np.arange(len(p)), (p > 0.5).astype(int)]
    average = lambda p, m: (1 - p)[:, None] * m[:, 0] + p[:, None] * m[:, 1]
    one = int(p.mean() >= 0.5)
    blind = lambda p, m: m[:, one]
    for rule, key in ((likelier, "mode"), (average, "mean"), (blind, "blind")):
        mc = _monte_carlo(p, means, rule, 1500, rng)
        assert mc == pytest.approx(floors[key], rel=0.03), key
    # the floors are floors: the opposite mode choice and a coin flip do worse
    worse = lambda p, m: m[np.arange(len(p)), (p <= 0.5).astype(int)]
    assert _monte_carlo(p, means, worse, 300, rng) > floors["mode"]
    assert floors["noise"] == pytest.approx(NOISE_SD) and floors["noise"] < floors["mean"] <= floors["mode"]


def test_bayes_floor_rejects_bad_input():
    with pytest.raises(ValueError, match="p_pinch"):
        bayes_floor(np.zeros(3), np.zeros((3, 3, 12)))
    with pytest.raises(ValueError, match="empty"):
        bayes_floor(np.zeros(0), np.zeros((0, 2, 12)))


@needs_trimesh
def test_recordings_carry_the_truth(tmp_path):
    from pcgrasp.data import generate_dataset, load_recordings

    generate_dataset(str(tmp_path / "g"), objects_per_category=1, scenes_per_object=1, grasps_per_scene=10,
                     pretrain_per_category=0, seed=4)
    ids, _, rows, truth = load_recordings(str(tmp_path / "g"), truth=True)
    p, means, sd = truth
    assert len(p) == len(rows) == len(means) and sd == NOISE_SD
    for (_, _, joints), m in zip(rows, means):
        # each recorded grasp is one of its two modes plus the joint noise
        assert min(np.abs(joints - m[0]).max(), np.abs(joints - m[1]).max()) < 6 * NOISE_SD
