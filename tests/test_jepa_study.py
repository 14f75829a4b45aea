"""The Point-JEPA study: the grasp generator's geometry-dependent modes and
its Bayes floors (against Monte-Carlo), the frozen-feature probes (toy cases
with known answers and a brute-force kNN), the lazily cached procedural
pretraining set, and the study tables on hand-made results."""
import math
import os
import statistics

import numpy as np
import pytest

from pcgrasp.data.meshes import sample_surface
from pcgrasp.data.synthetic.grasps import (NOISE_SD, bayes_floor, draw_joints, grasp_truth, joints_for_pose,
                                           local_features, make_mesh, mode_probability, sample_pose)
from pcgrasp.eval.probe import elongation, knn_accuracy, linear_accuracy, ridge_r2, split_halves

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


def test_pinch_likelier_on_thin_parts_than_on_wide_round_bodies():
    from trimesh import creation

    rng = np.random.default_rng(0)
    thin = sample_surface(creation.cylinder(radius=0.012, height=0.15, sections=32), 2048, seed=1)
    wide = sample_surface(creation.icosphere(subdivisions=3, radius=0.06), 2048, seed=2)
    p_thin = np.mean([grasp_truth(thin, *sample_pose(thin, rng))[0] for _ in range(30)])
    p_wide = np.mean([grasp_truth(wide, *sample_pose(wide, rng))[0] for _ in range(30)])
    assert p_thin > 0.6 and p_wide < 0.2


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


# ---------------------------------------------------------------- probes
def test_probes_on_toy_features_with_known_answers():
    rng = np.random.default_rng(0)
    n, classes = 400, 4
    y = rng.integers(0, classes, n)
    onehot = np.eye(classes)[y] + 0.05 * rng.normal(size=(n, classes))
    x_sep = np.concatenate([onehot, rng.normal(size=(n, 6))], 1).astype(np.float32)
    assert knn_accuracy(x_sep, y) == 1.0 and linear_accuracy(x_sep, y) == 1.0
    noise = rng.normal(size=(n, 10))
    for acc in (knn_accuracy(noise, y), linear_accuracy(noise, y)):
        assert abs(acc - 1 / classes) < 0.12  # chance
    w = rng.normal(size=10)
    assert ridge_r2(noise, noise @ w + 3.0, lam=1e-6) > 0.999
    assert ridge_r2(noise, rng.normal(size=n)) < 0.1


def test_knn_matches_brute_force():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(61, 5))  # odd size: unequal halves
    y = rng.integers(0, 3, 61)
    tr, te = split_halves(61, seed=2)
    mu, sd = x[tr].mean(0), x[tr].std(0)
    z = (x - mu) / sd
    correct = 0
    for i in te:
        d = [float(((z[i] - z[j]) ** 2).sum()) for j in tr]
        nearest = [tr[j] for j in sorted(range(len(tr)), key=lambda j: (d[j], j))[:5]]
        votes = {c: sum(y[j] == c for j in nearest) for c in sorted(set(y))}
        correct += max(votes, key=lambda c: (votes[c], -c)) == y[i]
    assert knn_accuracy(x, y, k=5, seed=2) == pytest.approx(correct / len(te))


def test_elongation_and_probe_input_checks():
    rng = np.random.default_rng(1)
    sphere = rng.normal(size=(5000, 3))
    needle = np.concatenate([rng.normal(size=(5000, 1)), 0.01 * rng.normal(size=(5000, 2))], 1)
    assert elongation(sphere) == pytest.approx(1.0, abs=0.1)
    assert elongation(needle) < 0.02
    sv = np.linalg.svd(needle - needle.mean(0), compute_uv=False)
    assert elongation(needle) == pytest.approx(sv[-1] / sv[0], rel=1e-6)
    with pytest.raises(ValueError, match="features"):
        knn_accuracy(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="labels"):
        linear_accuracy(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="NaN"):
        ridge_r2(np.full((10, 2), np.nan), np.zeros(10))


# ---------------------------------------------------------------- procedural pretraining set
def test_procedural_shapes_are_deterministic_cached_and_resumable(tmp_path):
    from pcgrasp.data.procedural import ProceduralShapes

    fresh = ProceduralShapes(8, points=64, seed=5)
    cached = ProceduralShapes(8, points=64, seed=5, cache=str(tmp_path / "c"))
    assert cached.fill(progress=False) == 8
    assert cached.fill(progress=False) == 0  # nothing left to do
    os.remove(tmp_path / "c" / "0000003.npy")  # an interrupted fill
    assert cached.fill(progress=False) == 1
    tail = ProceduralShapes(4, points=64, seed=5, start=4)  # any subset, any order: the same shapes
    for i in (7, 0, 3):
        np.testing.assert_array_equal(fresh[i].numpy(), cached[i].numpy())
    np.testing.assert_array_equal(fresh[5].numpy(), tail[1].numpy())
    assert list(fresh.labels[:7]) == [0, 1, 2, 3, 4, 5, 0]
    assert not np.array_equal(fresh[0].numpy(), ProceduralShapes(1, points=64, seed=6)[0].numpy())
    with pytest.raises(ValueError, match="cache"):
        ProceduralShapes(8, points=32, seed=5, cache=str(tmp_path / "c"))  # other settings
    with pytest.raises(ValueError, match="n must"):
        ProceduralShapes(0)
    with pytest.raises(IndexError):
        fresh[8]


# ---------------------------------------------------------------- study tables
def _hand_made_rows():
    rows = []
    vals = {("A", 0.1, "jepa"): [0.20, 0.22], ("A", 0.1, "scratch"): [0.30, 0.26],
            ("A", 1.0, "jepa"): [0.10, 0.12], ("A", 1.0, "scratch"): [0.11, 0.13],
            ("B", 1.0, "jepa"): [0.15, 0.15], ("B", 1.0, "scratch"): [0.10, 0.20]}
    for (pack, b, init), v in vals.items():
        for seed, x in enumerate(v):
            rows.append({"pack": pack, "budget": b, "init": init, "seed": seed, "lr_backbone": 1e-4, "lr_head": 1e-3,
                         "top_logit_rmse": x, "selection_gap": x / 2, "coverage@15": 1 - x,
                         "heldout/top_logit_rmse": 2 * x})
    return rows


def test_study_tables_on_hand_made_results(tmp_path):
    from pcgrasp.train.sweep import select_lr, study_tables, sweep_plot

    rows = _hand_made_rows()
    packs = {"A": [0.1, 1.0], "B": [1.0]}
    grid = [{"init": i, "seed": s, "lr_backbone": lb, "lr_head": 1e-3, "pack": "A", "budget": 0.1,
             "val/top_logit_rmse": v + 0.01 * s}
            for i, best in (("jepa", 3e-4), ("scratch", 1e-4)) for lb in (1e-4, 3e-4) for s in (0, 1)
            for v in [0.1 if lb == best else 0.2]]
    chosen = {i: select_lr(grid, i) for i in ("jepa", "scratch")}
    assert chosen == {"jepa": (3e-4, 1e-3), "scratch": (1e-4, 1e-3)}
    floors = {"test": {"mode": 0.1, "mean": 0.09, "blind": 0.3, "noise": 0.02}}
    probe = {"shapes": 10, "chance": 0.25, "encoders": {"jepa": {"knn_acc": 0.9, "linear_acc": 0.8, "property_r2": 0.5},
                                                          "random": {"knn_acc": 0.5, "linear_acc": 0.4,
                                                                     "property_r2": 0.1}}}
    md = study_tables(rows, packs, ["jepa", "scratch"], floors, grid, chosen, probe)
    deg = math.degrees(1)

    def cell(v, d=2):
        return f"{statistics.mean(v) * deg:.{d}f} ± {statistics.stdev(v) * deg:.{d}f}"

    lines = md.splitlines()
    row_a10 = next(ln for ln in lines if ln.startswith("| A | 10 % |") and cell([0.20, 0.22]) in ln)
    jm, sm = statistics.mean([0.20, 0.22]), statistics.mean([0.30, 0.26])
    assert cell([0.30, 0.26]) in row_a10 and f"{100 * (sm - jm) / sm:+.1f} %" in row_a10  # Δ = +25.0 %
    row_b = next(ln for ln in lines if ln.startswith("| B | 100 % |") and cell([0.15, 0.15]) in ln)
    assert "+0.0 %" in row_b  # equal means
    assert cell([0.40, 0.44]) in md  # held-out column (2x the test values)
    assert cell([0.10, 0.11]) in md  # the selection gap (x / 2)
    assert f"{1 - 0.21:.3f} ± {statistics.stdev([0.80, 0.78]):.3f}" in md  # coverage@15 of jepa at 10 %
    grid_line = next(ln for ln in lines if ln.startswith("| 0.0003 | 0.001 |"))
    assert grid_line.count("*") == 1 and cell([0.1, 0.11]) + " *" in grid_line
    assert f"{0.1 * deg:.2f} | {0.09 * deg:.2f} | {0.3 * deg:.2f}" in md
    assert "| jepa | 0.900 | 0.800 | 0.500 |" in md
    sweep_plot(rows, packs, ["jepa", "scratch"], str(tmp_path / "f.png"), floors)
    assert os.path.getsize(tmp_path / "f.png") > 1000


def test_sweep_packs_validation():
    from pcgrasp.train.sweep import sweep_packs

    assert sweep_packs({"budgets": [0.1, 1]}) == {"A": [0.1, 1.0]}
    with pytest.raises(ValueError, match="sweep.packs"):
        sweep_packs({"packs": {"C": [0.1]}})
    with pytest.raises(ValueError, match="sweep.packs"):
        sweep_packs({"packs": {"A": [0.0]}})
