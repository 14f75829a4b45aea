"""Point-JEPA regression targets: the normalisations, the average of the last
k blocks, the EMA schedule, and configs written before these options."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from pcgrasp.cli.common import config_path
from pcgrasp.models import PointJEPA, ema_momentum, normalise_targets, sample_blocks
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


# ---------------------------------------------------------------- two-view targets and masking
def _rotation(seed):
    """A proper rotation from a QR decomposition (independent of data.augment's quaternion draw)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _view(B, seed, per_axis):
    rng = np.random.default_rng(seed + 100)
    R = np.stack([_rotation(seed + b) for b in range(B)])
    s = rng.uniform(0.7, 1.4, (B, 3)) if per_axis else np.repeat(rng.uniform(0.7, 1.4, (B, 1)), 3, 1)
    t = rng.uniform(-0.02, 0.02, (B, 3))
    return R, s, t


def _moved(seed, **kw):
    torch.manual_seed(seed)
    m = PointJEPA(**{**TINY, **kw}).double()
    for p in m.target.parameters():  # off the init, so that every layer matters
        p.data.add_(0.1 * torch.randn_like(p))
    return m


def test_tokenizer_embed_of_group_is_forward():
    torch.manual_seed(0)
    m = PointJEPA(**TINY)
    pts = torch.rand(2, 200, 3)
    c1, t1 = m.target.tokenizer(pts)
    c2, t2 = m.target.tokenizer.embed(*m.target.tokenizer.group(pts))
    assert torch.equal(c1, c2) and torch.equal(t1, t2)


@pytest.mark.parametrize("input_scale", [1.0, 12.5])
def test_target_view_equals_the_targets_of_the_moved_cloud(input_scale):
    """A rotation, a uniform scale and a translation keep the FPS centres and the kNN groups (the
    sequencer's start, the centre of least x + y + z, moves), and the encoder is permutation-
    equivariant, so the view's targets must equal the targets of the cloud moved point by point
    (NumPy), patch for patch once the moved cloud's patches are matched to the view's by centre."""
    m = _moved(2, input_scale=input_scale)
    B = 3
    pts = torch.rand(B, 300, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 0.16 - 0.08
    R, s, t = _view(B, 4, per_axis=False)
    moved = torch.from_numpy(np.einsum("bij,bnj->bni", R, pts.numpy()) * s[:, None, :] + t[:, None, :])
    view = tuple(torch.from_numpy(a) for a in (R, s, t))
    got = m.targets(pts, view)
    c_view, _ = m.target.tokenize(pts, view)
    c_moved, _ = m.target.tokenize(moved)
    d = torch.cdist(c_view, c_moved)
    match = d.argmin(2)  # the moved cloud's patch at each of the view's patches
    assert float(d.min(2).values.max()) < 1e-9  # the same centres
    assert all(len(set(r.tolist())) == r.numel() for r in match)  # a permutation
    expect = torch.gather(m.targets(moved), 1, match[..., None].expand_as(got))
    torch.testing.assert_close(got, expect, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(got, m.targets(pts), atol=1e-3)  # the view matters


def test_target_view_with_per_axis_scale_keeps_the_patches_of_the_given_cloud():
    """Per-axis scaling changes distances (and so the grouping of the moved cloud); the view's patch g
    must still hold the images of the given cloud's patch g: checked against the patches of the given
    cloud, listed point by point (brute-force kNN in NumPy) and moved by hand."""
    m = _moved(5)
    enc = m.target
    B, N, k = 2, 200, TINY["group_size"]
    pts = torch.rand(B, N, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    R, s, t = _view(B, 7, per_axis=True)
    centres, _ = enc.tokenizer.group(pts)  # the FPS + sequencer centres (tested elsewhere)
    c, p = centres.numpy(), pts.numpy()
    d = ((c[:, :, None, :] - p[:, None, :, :]) ** 2).sum(-1)
    nbr = np.argsort(d, axis=-1, kind="stable")[..., :k]
    rel = np.stack([p[b][nbr[b]] for b in range(B)]) - c[:, :, None, :]
    c2 = np.einsum("bij,bgj->bgi", R, c) * s[:, None, :] + t[:, None, :]
    rel2 = np.einsum("bij,bgkj->bgki", R, rel) * s[:, None, None, :]
    cc, tok = enc.tokenizer.embed(torch.from_numpy(c2), torch.from_numpy(rel2))
    out = enc.encode_tokens(tok, cc)
    expect = F.layer_norm(out, out.shape[-1:])
    torch.testing.assert_close(m.targets(pts, tuple(torch.from_numpy(a) for a in (R, s, t))), expect,
                               rtol=1e-9, atol=1e-9)


def test_identity_view_is_no_view_and_the_loss_trains_only_the_context():
    m = _moved(8)
    pts = torch.rand(2, 256, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    eye = (torch.eye(3, dtype=torch.float64).expand(2, 3, 3), torch.ones(2, 3, dtype=torch.float64),
           torch.zeros(2, 3, dtype=torch.float64))
    torch.testing.assert_close(m.targets(pts, eye), m.targets(pts), rtol=0, atol=1e-12)
    R, s, t = _view(2, 10, per_axis=True)
    g = torch.Generator().manual_seed(0)
    loss = m(pts, g, target_view=tuple(torch.from_numpy(a) for a in (R, s, t)))
    plain = m(pts, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and abs(float(loss.detach()) - float(plain.detach())) > 1e-6
    loss.backward()
    assert all(p.grad is None for p in m.target.parameters())
    assert all(p.grad is not None for p in m.context.encoder.parameters())


@pytest.mark.parametrize("kw, key", [
    ({"n_targets": 0}, "n_targets"), ({"n_targets": 2.0}, "n_targets"), ({"n_targets": True}, "n_targets"),
    ({"target_ratio": (0.3, 0.2)}, "target_ratio"), ({"target_ratio": (0.0, 0.2)}, "target_ratio"),
    ({"context_ratio": (0.5, 1.5)}, "context_ratio"), ({"context_ratio": 0.5}, "context_ratio")])
def test_bad_masking_is_refused_naming_the_key(kw, key):
    with pytest.raises(ValueError, match=f"masking.{key}"):
        PointJEPA(**TINY, **kw)


def test_masking_config_reaches_the_block_sampler(monkeypatch):
    import pcgrasp.models.jepa as jepa_mod

    cfg = load_config(config_path("demo"), ["pretrain.masking.n_targets=2", "pretrain.masking.target_ratio=[0.3,0.3]"])
    cfg["model"].update(dim=16, depth=1, heads=2, pred_dim=8, pred_depth=1, pred_heads=2, centers=20,
                        group_size=8, token_width=8)
    m = build_jepa(cfg)
    assert (m.n_targets, m.target_ratio, m.context_ratio) == (2, (0.3, 0.3), (0.40, 0.75))
    seen = []

    def spy(G, generator=None, *args):
        out = sample_blocks(G, generator, *args)
        seen.append(out)
        return out

    monkeypatch.setattr(jepa_mod, "sample_blocks", spy)
    m(torch.rand(2, 128, 3), torch.Generator().manual_seed(0))
    targets, _ = seen[0]
    assert len(targets) == 2 and all(len(t) == 6 for t in targets)  # 0.3 of 20 patches
    for bad, key in (("pretrain.masking.n_targets=-1", "n_targets"), ("pretrain.masking.ratio=[0.1,0.2]", "ratio"),
                     ("pretrain.masking=[1,2]", "pretrain.masking")):
        with pytest.raises(ValueError, match=key):
            build_jepa(load_config(config_path("demo"), [bad]))


def test_masking_defaults_are_point_jepas_everywhere():
    """One default (Point-JEPA's 4 targets of 15-20 %, context 40-75 %) for
    the sampler, the model and a config without (or with an empty)
    pretrain.masking section."""
    import inspect

    from pcgrasp.models.jepa import MASKING_DEFAULTS
    from pcgrasp.train.jepa import masking_kwargs

    paper = {"n_targets": 4, "target_ratio": (0.15, 0.2), "context_ratio": (0.4, 0.75)}
    assert MASKING_DEFAULTS == paper
    sig = inspect.signature(sample_blocks).parameters
    assert {k: sig[k].default for k in paper} == paper
    m = PointJEPA(**TINY)
    assert (m.n_targets, m.target_ratio, m.context_ratio) == tuple(paper.values())
    assert masking_kwargs({}) == {} and masking_kwargs({"masking": {}}) == paper
    assert masking_kwargs({"masking": {"n_targets": 2}}) == dict(paper, n_targets=2)
    with pytest.raises(TypeError):  # read-only: a caller cannot change every later default
        MASKING_DEFAULTS["n_targets"] = 2
    assert MASKING_DEFAULTS == paper


def test_pretraining_refuses_a_bad_target_view_before_any_work(tmp_path):
    from pcgrasp.train.jepa import pretrain

    for bad, key in (("pretrain.target_view.rotate=x", "pretrain.target_view.rotate"),
                     ("pretrain.masking.context_ratio=[0.9,0.1]", "pretrain.masking.context_ratio")):
        cfg = load_config(config_path("demo"), [f"data.root={tmp_path}/nothing", bad])
        with pytest.raises(ValueError, match=key):
            pretrain(cfg, progress=False)
        assert not (tmp_path / "nothing").exists()
