"""Tokenizer, block sampler and EMA invariants."""
import torch

from pcgrasp import ops
from pcgrasp.models import PatchTokenizer, PointJEPA, ema_momentum, ema_update, sample_blocks


def test_tokenizer_shapes_knn_and_ball():
    pts = torch.rand(3, 512, 3)
    for grouping in ("knn", "ball"):
        tok = PatchTokenizer(dim=32, centers=16, group_size=8, grouping=grouping, radius=0.2, width=8)
        centres, tokens = tok(pts)
        assert centres.shape == (3, 16, 3) and tokens.shape == (3, 16, 32)
        c2, rel = tok.group(pts)
        assert rel.shape == (3, 16, 8, 3)
        if grouping == "ball":
            assert (rel.norm(dim=-1) < 0.2 + 1e-6).all()  # relative coordinates inside the ball


def test_tokenizer_centres_follow_the_sequencer():
    pts = torch.rand(2, 300, 3)
    tok = PatchTokenizer(dim=16, centers=20, group_size=4, width=8)
    centres, _ = tok.group(pts)
    raw = ops.gather_points(pts, ops.farthest_point_sample(pts, 20))
    assert torch.equal(ops.nearest_neighbor_order(centres), torch.arange(20).expand(2, 20))  # already in order
    assert torch.equal(centres, ops.gather_points(raw, ops.nearest_neighbor_order(raw)))


def test_block_sampler_invariants():
    g = torch.Generator().manual_seed(0)
    for G in (16, 64, 100):
        for _ in range(50):
            targets, ctx = sample_blocks(G, g)
            sizes = {len(t) for t in targets}
            assert len(targets) == 4 and len(sizes) == 1  # one ratio per step
            size = sizes.pop()
            assert round(0.15 * G) - 1 <= size <= round(0.2 * G) + 1
            for t in targets:
                assert torch.equal(t, torch.arange(int(t[0]), int(t[0]) + len(t)))  # contiguous
            covered = torch.cat(targets).unique()
            assert not set(ctx.tolist()) & set(covered.tolist())  # context disjoint from targets
            remaining = sorted(set(range(G)) - set(covered.tolist()))
            pos = [remaining.index(i) for i in ctx.tolist()]
            assert pos == list(range(pos[0], pos[0] + len(pos)))  # contiguous among the remaining tokens
            assert 0.40 * len(remaining) - 1 <= len(ctx) <= 0.75 * len(remaining) + 1


def test_ema_update_math_and_schedule():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    ema_update(a, b, 0.9)
    torch.testing.assert_close(a.weight, 0.9 * wa + 0.1 * wb)
    assert ema_momentum(0, 100) == 0.9995 and abs(ema_momentum(100, 100) - 0.99999) < 1e-12
    assert abs(ema_momentum(50, 100) - (0.9995 + 0.99999) / 2) < 1e-12


def test_jepa_target_encoder_is_not_trained_directly():
    m = PointJEPA(dim=16, depth=1, heads=2, pred_dim=8, pred_depth=1, pred_heads=2, centers=16, group_size=8,
                  token_width=8)
    loss = m(torch.rand(2, 256, 3), torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in m.target.parameters())
    assert any(p.grad is not None for p in m.context.parameters())


def test_tokenizer_checks_its_input_once(monkeypatch):
    # value checks cost a device sync each on CUDA: the input cloud is checked
    # (by FPS), the steps that consume the kernels' own outputs are not
    from pcgrasp.ops import _checks

    ran = []
    real = _checks.data_checks_enabled

    def counting(x=None):
        on = real(x)
        ran.append(on)
        return on

    monkeypatch.setattr(_checks, "data_checks_enabled", counting)
    pts = torch.rand(2, 256, 3)
    for grouping in ("knn", "ball"):
        ran.clear()
        PatchTokenizer(dim=16, centers=8, group_size=8, grouping=grouping, radius=0.3, width=8)(pts)
        assert sum(ran) == 1, ran
    # the public API still checks what a user passes
    bad = pts.clone()
    bad[0, 3, 1] = float("nan")
    import pytest

    with pytest.raises(ValueError, match="non-finite"):
        PatchTokenizer(dim=16, centers=8, group_size=8, width=8)(bad)
    assert _checks._data_checks  # the context manager restored the setting


def test_encoder_input_scale_equals_scaling_the_points():
    import pytest

    from pcgrasp.models import PointEncoder

    pts = torch.rand(2, 200, 3, dtype=torch.float64) * 0.1
    torch.manual_seed(0)
    scaled = PointEncoder(dim=16, depth=1, heads=2, centers=8, group_size=4, token_width=8, input_scale=12.5).double()
    torch.manual_seed(0)
    plain = PointEncoder(dim=16, depth=1, heads=2, centers=8, group_size=4, token_width=8).double()
    c1, t1 = scaled(pts)
    c2, t2 = plain(pts * 12.5)
    torch.testing.assert_close(c1, c2)
    torch.testing.assert_close(t1, t2)
    with pytest.raises(ValueError, match="input_scale"):
        PointEncoder(dim=16, depth=1, heads=2, centers=8, group_size=4, token_width=8, input_scale=0)
