"""Frozen-feature probes: toy features with known answers, a brute-force kNN
oracle, elongation against an SVD, input checks."""
import numpy as np
import pytest

from pcgrasp.eval.probe import elongation, knn_accuracy, linear_accuracy, ridge_r2, split_halves

pytestmark = pytest.mark.pipeline  # pure NumPy / trimesh: nothing for the sanitizer run


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
