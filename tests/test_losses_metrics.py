"""wta_loss and grasp_joint_metrics: hand-computed values and an independent NumPy version."""
import math

import numpy as np
import pytest
import torch

from pcgrasp.losses import LOG_ALPHA_RANGE, clamped_alpha, wta_loss
from pcgrasp.metrics import grasp_joint_metrics


def np_wta(pred, logits, target, alpha):
    out = []
    for p, l, t in zip(pred, logits, target):
        e = ((p - t) ** 2).sum(-1)
        k = int(np.argmin(e))
        lse = np.log(np.exp(l - l.max()).sum()) + l.max()
        out.append(e[k] + alpha * (lse - l[k]))
    return float(np.mean(out))


def test_wta_loss_hand_computed():
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])  # K = 2, J = 2
    target = torch.tensor([[1.0, 0.0]])
    logits = torch.tensor([[0.0, 0.0]])
    # errors: 1 and 1 -> tie, argmin takes k* = 0; CE with equal logits = log 2
    assert wta_loss(pred, logits, target, 0.5).item() == pytest.approx(1.0 + 0.5 * math.log(2))
    target = torch.tensor([[1.0, 1.0]])  # hypothesis 1 exact
    logits = torch.tensor([[0.0, 2.0]])
    assert wta_loss(pred, logits, target, 1.0).item() == pytest.approx(math.log(1 + math.exp(-2)))


def test_wta_loss_matches_numpy_and_only_winner_gets_gradient():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(6, 5, 12, generator=g, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64)
    target = torch.randn(6, 12, generator=g, dtype=torch.float64)
    loss = wta_loss(pred, logits, target, 0.3)
    assert loss.item() == pytest.approx(np_wta(pred.detach().numpy(), logits.numpy(), target.numpy(), 0.3))
    loss.backward()
    winners = ((pred.detach() - target[:, None]) ** 2).sum(-1).argmin(1)
    for b in range(6):
        for k in range(5):
            assert (pred.grad[b, k].abs().sum() > 0) == (k == winners[b])


def test_alpha_is_clamped():
    assert clamped_alpha(torch.tensor(100.0)).item() == pytest.approx(math.exp(LOG_ALPHA_RANGE[1]))
    assert clamped_alpha(torch.tensor(-100.0)).item() == pytest.approx(math.exp(LOG_ALPHA_RANGE[0]))


def np_metrics(pred, logits, target):
    B, K, J = pred.shape
    per = ((pred - target[:, None]) ** 2).mean(-1)
    top = per[np.arange(B), logits.argmax(1)]
    best = per.min(1)
    out = {"top_logit_rmse": np.sqrt(top.mean()), "best_of_k_rmse": np.sqrt(best.mean())}
    out["selection_gap"] = out["top_logit_rmse"] - out["best_of_k_rmse"]
    for t in (10, 15, 20):
        out[f"coverage@{t}"] = np.mean(np.sqrt(best) < np.radians(t))
    pairs = [np.sqrt(((pred[:, i] - pred[:, j]) ** 2).mean(-1)) for i in range(K) for j in range(i + 1, K)]
    out["diversity"] = float(np.mean(pairs)) if pairs else 0.0
    return out


def test_metrics_hand_computed():
    target = torch.zeros(2, 4)
    pred = torch.zeros(2, 2, 4)
    pred[0, 1] = math.radians(12)  # sample 0: hyp 0 exact, hyp 1 off by 12 deg on every joint
    pred[1, 0] = math.radians(30)
    pred[1, 1] = math.radians(18)  # sample 1: best 18 deg
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # top picks 12 deg and 30 deg
    m = grasp_joint_metrics(pred, logits, target)
    assert m["top_logit_rmse"] == pytest.approx(math.radians(math.sqrt((12 ** 2 + 30 ** 2) / 2)))
    assert m["best_of_k_rmse"] == pytest.approx(math.radians(math.sqrt((0 + 18 ** 2) / 2)))
    assert m["coverage@10"] == 0.5 and m["coverage@15"] == 0.5 and m["coverage@20"] == 1.0
    assert m["diversity"] == pytest.approx(math.radians((12 + 12) / 2))


def test_metrics_match_numpy_and_k1():
    g = torch.Generator().manual_seed(1)
    pred = 0.3 * torch.randn(50, 5, 12, generator=g, dtype=torch.float64)
    logits = torch.randn(50, 5, generator=g, dtype=torch.float64)
    target = 0.3 * torch.randn(50, 12, generator=g, dtype=torch.float64)
    got, want = grasp_joint_metrics(pred, logits, target), np_metrics(pred.numpy(), logits.numpy(), target.numpy())
    for k in want:
        assert got[k] == pytest.approx(want[k]), k
    one = grasp_joint_metrics(pred[:, :1], logits[:, :1], target)
    assert one["selection_gap"] == 0 and one["diversity"] == 0
