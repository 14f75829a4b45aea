"""Frozen-feature probes of a representation: kNN and linear (ridge on
one-hot targets) classification, ridge regression of a scalar property, all
closed form on a fixed train/test split (no training loop, deterministic).

Features are standardised with the training half's mean and SD before every
probe, so a probe does not depend on the features' scale.
"""
import numpy as np


def _check(features, target, name):
    x = np.asarray(features, np.float64)
    y = np.asarray(target)
    if x.ndim != 2:
        raise ValueError(f"features must be [n, d], got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"{name} must be [n] matching features' {len(x)} rows, got shape {y.shape}")
    if len(x) < 4:
        raise ValueError(f"need at least 4 samples for a train/test split, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    return x, y


def split_halves(n, seed=0):
    """(train, test) index arrays: a seeded permutation cut in half."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n // 2], perm[n // 2:]


def _standardise(x, tr):
    mu, sd = x[tr].mean(0), x[tr].std(0)
    return (x - mu) / np.where(sd > 1e-12, sd, 1.0)


def _ridge(x, y, lam):
    """Weights [d + 1, ...] of ridge regression with an unpenalised bias."""
    xb = np.concatenate([x, np.ones((len(x), 1))], 1)
    reg = lam * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xb.T @ xb + reg, xb.T @ y)


def _apply(x, w):
    return np.concatenate([x, np.ones((len(x), 1))], 1) @ w


def knn_accuracy(features, labels, k=5, seed=0):
    """Test-half accuracy of k-nearest-neighbour majority vote (Euclidean on
    standardised features; ties go to the smallest label)."""
    x, y = _check(features, labels, "labels")
    tr, te = split_halves(len(x), seed)
    x = _standardise(x, tr)
    k = min(k, len(tr))
    d = ((x[te, None, :] - x[None, tr, :]) ** 2).sum(-1)
    nn = np.argsort(d, axis=1, kind="stable")[:, :k]
    classes = np.unique(y)
    votes = (y[tr][nn][..., None] == classes).sum(1)
    pred = classes[votes.argmax(1)]
    return float((pred == y[te]).mean())


def linear_accuracy(features, labels, lam=1.0, seed=0):
    """Test-half accuracy of a ridge classifier (least squares on one-hot
    targets, arg-max)."""
    x, y = _check(features, labels, "labels")
    tr, te = split_halves(len(x), seed)
    x = _standardise(x, tr)
    classes = np.unique(y)
    w = _ridge(x[tr], (y[tr][:, None] == classes).astype(np.float64), lam)
    return float((classes[_apply(x[te], w).argmax(1)] == y[te]).mean())


def ridge_r2(features, target, lam=1.0, seed=0):
    """Test-half R^2 of ridge regression of a scalar target (1 = perfect,
    0 = no better than the training mean, negative = worse)."""
    x, y = _check(features, target, "target")
    y = y.astype(np.float64)
    tr, te = split_halves(len(x), seed)
    x = _standardise(x, tr)
    w = _ridge(x[tr], y[tr], lam)
    resid = ((y[te] - _apply(x[te], w)) ** 2).sum()
    total = ((y[te] - y[tr].mean()) ** 2).sum()
    return float(1.0 - resid / max(total, 1e-300))


def elongation(cloud):
    """sqrt(smallest / largest eigenvalue) of a cloud's [n, 3] covariance: 1 for
    a sphere, -> 0 for a needle; rotation and scale invariant."""
    c = np.asarray(cloud, np.float64)
    ev = np.linalg.eigvalsh(np.cov((c - c.mean(0)).T))
    return float(np.sqrt(max(ev[0], 0.0) / max(ev[-1], 1e-300)))


def probe_report(features, labels, prop, seed=0):
    """All three probes: {"knn_acc", "linear_acc", "property_r2"}."""
    return {"knn_acc": knn_accuracy(features, labels, seed=seed),
            "linear_acc": linear_accuracy(features, labels, seed=seed),
            "property_r2": ridge_r2(features, prop, seed=seed)}
