"""Point-JEPA regression targets: the normalisations, the average of the last
k blocks, the EMA schedule, and configs written before these options."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from pcgrasp.cli.common import config_path
from pcgrasp.models import PointJEPA, ema_momentum, normalise_targets
from pcgrasp.train.config import load_config
from pcgrasp.train.jepa import build_jepa

TINY = dict(dim=16, depth=3, heads=2, pred_dim=8, pred_depth=1, pred_heads=2, centers=16, group_size=8,
            token_width=8)


def _x(seed=0, shape=(3, 10, 6)):
    g = torch.Generator().manual_seed(seed)
    f64 = dict(dtype=torch.float64)
    return (torch.randn(shape, generator=g, **f64) * torch.linspace(0.1, 5, shape[-1], **f64)
            + torch.linspace(-3, 3, shape[-1], **f64))


def test_instance_norm_standardises_each_feature_over_a_clouds_tokens():
    x = _x()
    y = normalise_targets(x, "instance", eps=0.0).numpy()
    a = x.numpy()
    naive = np.empty_like(a)
    for b in range(a.shape[0]):
        for j in range(a.shape[2]):
            col = a[b, :, j]
            naive[b, :, j] = (col - col.sum() / len(col)) / np.sqrt(((col - col.mean()) ** 2).sum() / len(col))
    np.testing.assert_allclose(y, naive, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y.mean(1), 0.0, atol=1e-10)  # zero mean per (cloud, feature) over tokens
    np.testing.assert_allclose(y.std(1), 1.0, atol=1e-10)   # unit variance per (cloud, feature) over tokens


def test_batch_norm_standardises_each_feature_over_the_batch():
    x = _x(1)
    y = normalise_targets(x, "batch", eps=0.0).numpy()
    flat = x.numpy().reshape(-1, x.shape[-1])
    naive = ((flat - flat.mean(0)) / flat.std(0)).reshape(x.shape)
    np.testing.assert_allclose(y, naive, rtol=1e-10, atol=1e-10)


def test_token_ln_is_the_original_target_and_composition_applies_in_order():
    x = _x(2).float()
    torch.testing.assert_close(normalise_targets(x, "token_ln"), F.layer_norm(x, x.shape[-1:]))
    torch.testing.assert_close(normalise_targets(x, "none"), x)
    torch.testing.assert_close(normalise_targets(x, "instance+token_ln"),
                               F.layer_norm(normalise_targets(x, "instance"), x.shape[-1:]))
    with pytest.raises(ValueError, match="target_norm"):
        normalise_targets(x, "group")
    with pytest.raises(ValueError, match="target_norm"):
        PointJEPA(**TINY, target_norm="layer")
    for k in (0, 4, 1.5):
        with pytest.raises(ValueError, match="target_layers"):
            PointJEPA(**TINY, target_layers=k)


def test_default_targets_are_the_layer_normed_encoder_output():
    torch.manual_seed(0)
    m = PointJEPA(**TINY)
    pts = torch.rand(2, 256, 3)
    _, out = m.target(pts)
    torch.testing.assert_close(m.targets(pts), F.layer_norm(out, out.shape[-1:]))


@pytest.mark.parametrize("norm", ["token_ln", "instance", "batch"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_last_k_blocks_average_equals_a_loop_over_the_blocks(norm, k):
    torch.manual_seed(1)
    m = PointJEPA(**TINY, target_norm=norm, target_layers=k)
    for p in m.target.parameters():  # move the target off the identity-like init so blocks differ
        p.data.add_(0.1 * torch.randn_like(p))
    pts = torch.rand(2, 256, 3)
    enc = m.target
    centres, tokens = enc.tokenize(pts)
    h = tokens + enc.pos(centres)
    outs = []
    for b in enc.encoder.blocks:  # brute force: run the blocks one by one
        h = b(h)
        outs.append(h)
    outs[-1] = enc.encoder.norm(outs[-1])  # the last block's output is the encoder's (after its final norm)
    chosen = outs[len(outs) - k:]
    expect = sum(normalise_targets(o, norm) for o in chosen) / k
    torch.testing.assert_close(m.targets(pts), expect, rtol=1e-5, atol=1e-5)


def test_ema_schedule_endpoints():
    for lo, hi in ((0.9995, 0.99999), (0.996, 1.0), (0.99, 0.999)):
        assert ema_momentum(0, 375, lo, hi) == lo
        assert abs(ema_momentum(375, 375, lo, hi) - hi) < 1e-12
        assert abs(ema_momentum(10_000, 375, lo, hi) - hi) < 1e-12  # held at the end
        assert lo < ema_momentum(100, 375, lo, hi) < hi


def test_configs_without_target_keys_keep_the_original_targets():
    cfg = load_config(config_path("default"))
    for key in ("target_norm", "target_layers"):
        cfg["pretrain"].pop(key, None)
    cfg["model"].update(dim=16, depth=2, heads=2, pred_dim=8, pred_depth=1, pred_heads=2, centers=16,
                        group_size=8, token_width=8)
    m = build_jepa(cfg)
    assert (m.target_norm, m.target_layers) == ("token_ln", 1)
    for name in ("default", "demo", "study", "study_small"):
        c = load_config(config_path(name))
        m = build_jepa(c)
        p = c["pretrain"]
        assert (m.target_norm, m.target_layers) == (p.get("target_norm", "token_ln"), p.get("target_layers", 1))
