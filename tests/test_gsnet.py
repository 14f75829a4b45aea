"""GSNet (pcgrasp.models.gsnet): checkpoint names and shapes against the list read from the
public code, the heads' shapes and masks, batched graspable-seed FPS against a per-cloud
NumPy FPS, CloudCrop against a brute-force cylinder grouping, view sampling, pred_decode
against a NumPy decode, the loss on hand values, the backbone checkpoint loader and bad
inputs."""
import json
import math
import os

import numpy as np
import pytest
import torch

from pcgrasp.geometry.views import generate_views, viewpoint_params_to_matrix
from pcgrasp.models.gsnet import get_loss
from pcgrasp.models import (GraspContrast, GraspNet, GSNet, MinkUNet14D, load_backbone_checkpoint, load_gsnet_checkpoint,
                            pred_decode)
from pcgrasp.models.gsnet import CloudCrop, batch_viewpoint_params_to_matrix, graspable_seeds, sample_views

KEYS = os.path.join(os.path.dirname(__file__), "fixtures", "gsnet_state_dict_keys.json")
SMALL = dict(seed_feat_dim=16, num_seed=32, planes=(8,) * 8)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny BatchNorms on 2 OpenMP threads of a loaded 2-core machine take ~0.1 s each."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_model(**kw):
    torch.manual_seed(0)
    return GraspNet(**{**SMALL, **kw})


def scene(rng, B=2, N=400, dtype=torch.float32):
    pts = rng.random((B, N, 3)) * 0.2 + np.array([0.0, 0.0, 0.5])
    return torch.as_tensor(pts, dtype=dtype)


# ------------------------------------------------------------------ checkpoint compatibility

def gsnet_keys():
    with open(KEYS) as f:
        return {k: tuple(v["shape"]) for k, v in json.load(f)["keys"].items()}


def test_state_dict_has_exactly_gsnets_keys_and_shapes():
    want = gsnet_keys()
    got = {k: tuple(v.shape) for k, v in GraspNet().state_dict().items()}
    assert sorted(set(want) - set(got)) == [] and sorted(set(got) - set(want)) == []
    assert {k: got[k] for k in want if got[k] != want[k]} == {}
    assert [n for n, _ in GraspNet().named_children()] == ["backbone", "graspable", "rotation", "crop", "swad"]
    assert GSNet is GraspNet


def test_state_dict_built_from_the_list_loads_strict_and_runs(tmp_path):
    g = torch.Generator().manual_seed(1)
    state = {}
    for k, shape in gsnet_keys().items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g) * 0.05
    model = GraspNet(is_training=False)
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.crop.mlps.layer1.bn.bn.running_var, state["crop.mlps.layer1.bn.bn.running_var"])
    # the released checkpoints' layout (graspness_implementation's train.py)
    path = str(tmp_path / "checkpoint.tar")
    torch.save({"epoch": 10, "model_state_dict": state, "optimizer_state_dict": {}}, path)
    fresh = GraspNet(is_training=False)
    assert load_gsnet_checkpoint(fresh, path) == 10
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(ValueError, match="swad.conv_swad.weight"):
        load_gsnet_checkpoint(GraspNet(num_depth=5), path)
    with pytest.raises(ValueError, match="missing"):
        torch.save({"model_state_dict": {}}, path)
        load_gsnet_checkpoint(fresh, path)
    model.eval()
    with torch.no_grad():
        out = model({"point_clouds": scene(np.random.default_rng(0), B=1, N=300)})
    assert out["grasp_score_pred"].shape == (1, 1024, 12, 4)
    assert out["view_score"].shape == (1, 1024, 300)
    assert all(torch.isfinite(out[k]).all() for k in ("grasp_score_pred", "grasp_width_pred", "view_score"))
    assert pred_decode(out)[0].shape == (1024, 17)


# ------------------------------------------------------------------ forward: shapes and masks

def label_batch(rng, pts, n_obj=(2, 1), V=300):
    B = len(pts)
    ep = {"point_clouds": pts, "object_poses_list": [], "grasp_points_list": [], "grasp_scores_list": [],
          "grasp_widths_list": []}
    for b in range(B):
        poses = np.tile(np.eye(4)[:3], (n_obj[b], 1, 1)).astype(np.float32)
        ep["object_poses_list"].append(torch.as_tensor(poses))
        P = [torch.as_tensor(rng.random((6, 3)) * 0.2 + [0, 0, 0.5], dtype=torch.float32) for _ in range(n_obj[b])]
        ep["grasp_points_list"].append(P)
        ep["grasp_scores_list"].append([torch.as_tensor(rng.choice([0.0, 0.2, 0.5, 1.0], (6, V, 12, 4)),
                                                        dtype=torch.float32) for _ in P])
        ep["grasp_widths_list"].append([torch.as_tensor(rng.random((6, V, 12, 4)) * 0.12, dtype=torch.float32)
                                        for _ in P])
    ep["objectness_label"] = torch.as_tensor(rng.integers(0, 2, pts.shape[:2]))
    ep["graspness_label"] = torch.as_tensor(rng.random(pts.shape[:2]), dtype=torch.float32)
    return ep


def test_training_forward_shapes_masks_and_loss_backward():
    rng = np.random.default_rng(0)
    model = small_model().train()
    B, N, M = 2, 400, 32
    ep = model(label_batch(rng, scene(rng, B, N)))
    shapes = {"objectness_score": (B, 2, N), "graspness_score": (B, N), "xyz_graspable": (B, M, 3),
              "view_score": (B, M, 300), "grasp_top_view_inds": (B, M), "grasp_top_view_xyz": (B, M, 3),
              "grasp_top_view_rot": (B, M, 3, 3), "grasp_score_pred": (B, M, 12, 4),
              "grasp_width_pred": (B, M, 12, 4), "batch_grasp_score": (B, M, 12, 4),
              "batch_grasp_width": (B, M, 12, 4), "batch_grasp_view_graspness": (B, M, 300),
              "batch_grasp_view_rot": (B, M, 300, 3, 3), "batch_grasp_point": (B, M, 3)}
    assert {k: tuple(ep[k].shape) for k in shapes} == shapes
    # the seeds are graspable points (objectness argmax 1 and graspness > 0.1) when there are any
    graspable = (ep["objectness_score"].argmax(1) == 1) & (ep["graspness_score"] > 0.1)
    for b in range(B):
        idx = ep["graspable_inds"][b]
        if graspable[b].any():
            assert graspable[b, idx].all()
        assert torch.equal(ep["xyz_graspable"][b], ep["point_clouds"][b, idx])
    assert float(ep["graspable_count_stage1"]) == pytest.approx(graspable.sum().item() / B)
    # training: the crop's rotation is the label rotation of the sampled view
    i = ep["grasp_top_view_inds"]
    want = ep["batch_grasp_view_rot"].gather(2, i[:, :, None, None, None].expand(-1, -1, 1, 3, 3)).squeeze(2)
    assert torch.equal(ep["grasp_top_view_rot"], want)
    loss, ep = get_loss(ep)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.backbone.conv0p1s1.kernel.grad.abs().sum() > 0
    assert model.crop.mlps.layer0.conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inference_forward_argmax_views_and_dtype(dtype):
    rng = np.random.default_rng(1)
    model = small_model(is_training=False).to(dtype).eval()
    with torch.no_grad():
        ep = model({"point_clouds": scene(rng, 2, 300, dtype)})
    assert ep["grasp_score_pred"].dtype == dtype
    top = ep["view_score"].argmax(-1)
    assert torch.equal(ep["grasp_top_view_inds"], top)
    views = generate_views(300)[top.numpy()]
    np.testing.assert_allclose(ep["grasp_top_view_xyz"].numpy(), views, atol=1e-6)
    R = viewpoint_params_to_matrix(-views, np.zeros(views.shape[:-1]))
    np.testing.assert_allclose(ep["grasp_top_view_rot"].numpy(), R, atol=1e-5)


def test_eval_mode_of_a_training_model_needs_no_labels():
    model = small_model().eval()
    assert not model.assigns_labels and model.train().assigns_labels
    model.eval()
    with torch.no_grad():
        ep = model({"point_clouds": scene(np.random.default_rng(2), 1, 200)})
    assert "batch_grasp_score" not in ep and ep["grasp_top_view_rot"].shape == (1, 32, 3, 3)
    # the same weights built for inference give the same outputs
    infer = small_model(is_training=False)
    infer.load_state_dict(model.state_dict())
    with torch.no_grad():
        ep2 = infer.eval()({"point_clouds": scene(np.random.default_rng(2), 1, 200)})
    for k in ("grasp_score_pred", "grasp_width_pred", "grasp_top_view_inds", "xyz_graspable"):
        assert torch.equal(ep[k], ep2[k]), k
    # and an inference model in train() mode does not assign labels either
    assert not infer.train().assigns_labels


def test_fewer_graspable_points_than_seeds_repeat_the_first_pick():
    """GSNet's sampler on a cloud with k < num_seed graspable points: k FPS picks, then pick 0."""
    rng = np.random.default_rng(7)
    pts = torch.as_tensor(rng.random((1, 50, 3)))
    mask = torch.zeros(1, 50, dtype=torch.bool)
    mask[0, [3, 17, 40]] = True
    got = graspable_seeds(pts, mask, 8)[0].tolist()
    assert sorted(got[:3]) == [3, 17, 40] and got[0] == 3 and got[3:] == [3] * 5


@pytest.mark.parametrize("bias", [(5.0, -5.0, 1.0), (-5.0, 5.0, 1.0), (-5.0, 5.0, -1.0)])
def test_no_or_all_graspable_points(bias):
    """Objectness forced to 0 (none graspable), to 1 with graspness 1 (all) or -1 (none)."""
    model = small_model().train()
    with torch.no_grad():
        model.graspable.conv_graspable.weight.zero_()
        model.graspable.conv_graspable.bias.copy_(torch.tensor(bias))
    rng = np.random.default_rng(3)
    ep = model(label_batch(rng, scene(rng, 2, 100)))
    none = bias[0] > bias[1] or bias[2] < 0.1
    assert float(ep["graspable_count_stage1"]) == (0.0 if none else 100.0)
    assert ep["xyz_graspable"].shape == (2, 32, 3) and torch.isfinite(get_loss(ep)[0])


def test_a_frame_without_label_objects_gets_zero_labels():
    rng = np.random.default_rng(4)
    ep = label_batch(rng, scene(rng, 2, 100), n_obj=(0, 1))
    ep = small_model().train()(ep)
    assert ep["batch_grasp_score"][0].abs().sum() == 0 and ep["batch_grasp_view_graspness"][0].abs().sum() == 0
    assert torch.isfinite(get_loss(ep)[0])


# ------------------------------------------------------------------ graspable seeds

def numpy_fps(points, k):
    """Plain FPS from index 0, ties to the lowest index."""
    n = len(points)
    if n == 0:
        return np.zeros(0, np.int64)
    sel = [0]
    d = ((points - points[0]) ** 2).sum(1)
    for _ in range(1, min(k, n)):
        d[sel] = -1.0
        nxt = int(np.argmax(d))
        sel.append(nxt)
        d = np.minimum(d, ((points - points[nxt]) ** 2).sum(1))
    return np.asarray(sel, np.int64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_graspable_fps_equals_per_cloud_fps(dtype):
    rng = np.random.default_rng(5)
    B, N, K = 6, 120, 16
    pts = rng.random((B, N, 3))
    pts[3, 60:] = pts[3, :60]                      # duplicates
    mask = rng.random((B, N)) < 0.5
    mask[0] = False                                 # none graspable -> all points
    mask[1] = False
    mask[1, [5, 9, 77]] = True                      # fewer than K -> the first pick repeated
    mask[2] = True
    got = graspable_seeds(torch.as_tensor(pts, dtype=dtype), torch.as_tensor(mask), K).numpy()
    for b in range(B):
        cand = np.flatnonzero(mask[b]) if mask[b].any() else np.arange(N)
        p = pts[b, cand].astype(np.float32 if dtype == torch.float32 else np.float64).astype(np.float64)
        sel = cand[numpy_fps(p, K)]
        want = np.concatenate([sel, np.full(K - len(sel), sel[0])])
        np.testing.assert_array_equal(got[b], want, err_msg=f"cloud {b}")


def test_graspable_seeds_bad_inputs():
    x = torch.rand(2, 10, 3)
    m = torch.ones(2, 10, dtype=torch.bool)
    with pytest.raises(ValueError, match="xyz"):
        graspable_seeds(torch.rand(2, 10), m, 4)
    with pytest.raises(ValueError, match="graspable"):
        graspable_seeds(x, m.float(), 4)
    with pytest.raises(ValueError, match="num_seed"):
        graspable_seeds(x, m, 0)
    with pytest.raises(ValueError, match="N >= 1"):
        graspable_seeds(torch.rand(2, 0, 3), torch.ones(2, 0, dtype=torch.bool), 4)


# ------------------------------------------------------------------ CloudCrop

def random_rotations(rng, shape):
    q = rng.normal(size=shape + (3, 3))
    u, _, vt = np.linalg.svd(q)
    r = u @ vt
    r[np.linalg.det(r) < 0] *= -1
    return r


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cloud_crop_equals_brute_force_cylinder_grouping(dtype):
    rng = np.random.default_rng(6)
    B, M, C, K = 2, 60, 5, 8
    xyz = rng.random((B, M, 3)) * 0.12
    xyz[1, 30:40] = xyz[1, 0]                        # duplicate seeds (cyclic padding)
    feat = rng.normal(size=(B, C, M))
    rot = random_rotations(rng, (B, M))
    crop = CloudCrop(nsample=K, seed_feature_dim=C, cylinder_radius=0.05, hmin=-0.02, hmax=0.04).to(dtype).eval()
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    idx = crop.group(t(xyz), t(rot)).numpy()
    grouped = np.zeros((B, 3 + C, M, K))
    for b in range(B):
        for m in range(M):
            q = (xyz[b] - xyz[b, m]) @ rot[b, m]     # rows: R^T (p - c)
            inside = np.flatnonzero((q[:, 1] ** 2 + q[:, 2] ** 2 < 0.05 ** 2) & (q[:, 0] > -0.02) & (q[:, 0] < 0.04))
            want = inside[:K]
            want = np.concatenate([want, np.full(K - len(want), want[0])])
            np.testing.assert_array_equal(idx[b, m], want)
            grouped[b, :3, m] = (q[want] / 0.05).T
            grouped[b, 3:, m] = feat[b][:, want]
    with torch.no_grad():
        got = crop(t(xyz), t(feat), t(rot))
        want = crop.mlps(t(grouped)).max(3).values
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)


# ------------------------------------------------------------------ view sampling

def test_sample_views_follows_the_normalised_scores():
    s = torch.tensor([[0.0, 1.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    g = torch.Generator().manual_seed(0)
    draws = sample_views(s[:, None].expand(2, 3000, 4), g).T                          # [T, 2]
    freq = torch.bincount(draws[:, 0], minlength=4).double() / 3000
    want = torch.tensor([0.0, 1 / 3, 1.0, 2 / 3]) / 2.0
    assert freq[0] == 0                                       # the minimum view is never drawn
    torch.testing.assert_close(freq, want.double(), atol=0.03, rtol=0)
    flat = torch.bincount(draws[:, 1], minlength=4).double() / 3000   # equal scores: uniform
    torch.testing.assert_close(flat, torch.full((4,), 0.25, dtype=torch.float64), atol=0.03, rtol=0)
    with pytest.raises(ValueError, match="view_score"):
        sample_views(torch.zeros(3, 4))


# ------------------------------------------------------------------ decode

def numpy_decode(score, width, center, view_xyz):
    M, A, D = score.shape
    rows = []
    for m in range(M):
        flat = score[m].reshape(-1)
        i = int(np.argmax(flat))
        a, d = divmod(i, D)
        w = float(np.clip(1.2 * width[m].reshape(-1)[i] / 10, 0, 0.1))
        R = viewpoint_params_to_matrix(-view_xyz[m], a * np.pi / A)
        rows.append([flat[i], w, 0.02, (d + 1) * 0.01, *R.reshape(-1), *center[m], -1])
    return np.asarray(rows)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pred_decode_against_numpy(dtype):
    rng = np.random.default_rng(7)
    B, M = 2, 20
    views = generate_views(300)
    ep = {"grasp_score_pred": torch.as_tensor(rng.normal(size=(B, M, 12, 4)), dtype=dtype),
          "grasp_width_pred": torch.as_tensor(rng.normal(0.5, 0.5, size=(B, M, 12, 4)), dtype=dtype),
          "xyz_graspable": torch.as_tensor(rng.random((B, M, 3)), dtype=dtype),
          "grasp_top_view_xyz": torch.as_tensor(views[rng.integers(0, 300, (B, M))], dtype=dtype)}
    ep["grasp_top_view_xyz"][0, 0] = torch.tensor([0.0, 0.0, 1.0])     # vertical approach
    out = pred_decode(ep)
    assert len(out) == B
    for b in range(B):
        g = out[b].numpy()
        assert g.shape == (M, 17) and out[b].dtype == torch.float32
        want = numpy_decode(*(ep[k][b].numpy().astype(np.float64) for k in
                              ("grasp_score_pred", "grasp_width_pred", "xyz_graspable", "grasp_top_view_xyz")))
        np.testing.assert_allclose(g, want, atol=1e-5)
        R = g[:, 4:13].reshape(M, 3, 3).astype(np.float64)
        np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (M, 3, 3)), atol=1e-5)
        np.testing.assert_allclose(np.linalg.det(R), 1, atol=1e-5)
        assert (g[:, 1] >= 0).all() and (g[:, 1] <= 0.1).all() and (g[:, 16] == -1).all()
    with pytest.raises(ValueError, match="grasp_top_view_xyz"):
        pred_decode({k: v for k, v in ep.items() if k != "grasp_top_view_xyz"})


def test_batch_viewpoint_params_to_matrix_matches_numpy():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(50, 3))
    x[0] = [0, 0, -2.0]
    a = rng.uniform(-np.pi, np.pi, 50)
    got = batch_viewpoint_params_to_matrix(torch.as_tensor(x), torch.as_tensor(a)).numpy()
    np.testing.assert_allclose(got, viewpoint_params_to_matrix(x, a), atol=1e-12)
    with pytest.raises(ValueError, match="towards"):
        batch_viewpoint_params_to_matrix(torch.zeros(4, 2), torch.zeros(4))


# ------------------------------------------------------------------ loss on hand values

def smooth_l1(d):
    d = abs(d)
    return 0.5 * d * d if d < 1 else d - 0.5


def test_loss_terms_and_weights_on_hand_values():
    ep = {"objectness_score": torch.tensor([[[2.0, 0.0, 1.0], [0.0, 1.0, 1.0]]]),    # [1, 2, 3]
          "objectness_label": torch.tensor([[0, 1, 0]]),
          "graspness_score": torch.tensor([[0.9, 0.5, -3.0]]),
          "graspness_label": torch.tensor([[[0.1], [2.0], [0.0]]]),                     # [1, 3, 1]
          "view_score": torch.tensor([[[0.0, 2.0]]]), "batch_grasp_view_graspness": torch.tensor([[[0.5, 0.0]]]),
          "grasp_score_pred": torch.tensor([[[[0.2, 0.0]]]]), "batch_grasp_score": torch.tensor([[[[0.0, 0.6]]]]),
          "grasp_width_pred": torch.tensor([[[[0.9, 0.3]]]]), "batch_grasp_width": torch.tensor([[[[0.05, 0.02]]]])}
    ce = [-math.log(math.exp(2) / (math.exp(2) + 1)), -math.log(math.e / (1 + math.e)), -math.log(0.5)]
    objectness = sum(ce) / 3
    graspness = smooth_l1(0.5 - 2.0)                             # only the object point (label 1)
    view = (smooth_l1(0.5) + smooth_l1(2.0)) / 2
    score = (smooth_l1(0.2) + smooth_l1(0.6)) / 2
    width = smooth_l1(0.3 - 0.2)                                 # only where the score label > 0
    loss, out = get_loss(ep)
    for key, v in (("stage1_objectness_loss", objectness), ("stage1_graspness_loss", graspness),
                   ("stage2_view_loss", view), ("stage3_score_loss", score), ("stage3_width_loss", width)):
        assert float(out["loss/" + key]) == pytest.approx(v, rel=1e-6), key
    total = objectness + 10 * graspness + 100 * view + 15 * score + 10 * width
    assert float(loss) == pytest.approx(total, rel=1e-6) and out["loss/overall_loss"] is loss
    assert float(out["stage1_objectness_acc"]) == 1.0          # the tie [1, 1] goes to class 0


def test_loss_empty_masks_are_zero_not_nan():
    ep = {"objectness_score": torch.zeros(1, 2, 3), "objectness_label": torch.zeros(1, 3, dtype=torch.int64),
          "graspness_score": torch.zeros(1, 3), "graspness_label": torch.ones(1, 3),
          "view_score": torch.zeros(1, 2, 5), "batch_grasp_view_graspness": torch.zeros(1, 2, 5),
          "grasp_score_pred": torch.zeros(1, 2, 3, 4), "batch_grasp_score": torch.zeros(1, 2, 3, 4),
          "grasp_width_pred": torch.ones(1, 2, 3, 4), "batch_grasp_width": torch.zeros(1, 2, 3, 4)}
    loss, out = get_loss(ep)
    assert float(out["loss/stage1_graspness_loss"]) == 0 and float(out["loss/stage3_width_loss"]) == 0
    assert float(loss) == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="batch_grasp_width"):
        get_loss({k: v for k, v in ep.items() if k != "batch_grasp_width"})
    with pytest.raises(ValueError, match="view_score"):
        get_loss({**ep, "view_score": torch.zeros(1, 2, 4)})


# ------------------------------------------------------------------ backbone checkpoints

def test_load_backbone_checkpoint(tmp_path):
    planes = SMALL["planes"]
    torch.manual_seed(3)
    contrast = GraspContrast(out_channels=16, planes=planes, normalize=False).eval()
    path = str(tmp_path / "backbone.pt")
    torch.save(contrast.backbone_state_dict(), path)        # what `pcgrasp contrast-pretrain` writes
    model = small_model()
    load_backbone_checkpoint(model, path)
    for k, v in contrast.backbone_state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k
    pts = scene(np.random.default_rng(10), 2, 300)
    with torch.no_grad():                                      # the same per-point features as in pretraining
        torch.testing.assert_close(model.eval().point_features(pts).transpose(1, 2), contrast.encode(pts))
    pretrained = contrast.backbone
    torch.save(MinkUNet14D(3, 32, planes).state_dict(), path)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    with pytest.raises(ValueError, match="final.kernel.*seed_feat_dim"):
        load_backbone_checkpoint(model, path)
    torch.save(MinkUNet14D(3, 16, (8,) * 7 + (4,)).state_dict(), path)
    with pytest.raises(ValueError, match="planes"):
        load_backbone_checkpoint(model, path)
    torch.save({"conv0p1s1.kernel": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="missing"):
        load_backbone_checkpoint(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())
    with pytest.raises(ValueError, match="model"):
        load_backbone_checkpoint(pretrained, path)


# ------------------------------------------------------------------ bad inputs

def test_bad_inputs_raise_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="num_seed"):
        GraspNet(num_seed=0)
    with pytest.raises(ValueError, match="cylinder_radius"):
        GraspNet(cylinder_radius=-1.0)
    with pytest.raises(ValueError, match="hmin"):
        GraspNet(hmin=0.1, hmax=0.0)
    with pytest.raises(ValueError, match="planes"):
        GraspNet(planes=(8, 8))
    model = small_model()
    with pytest.raises(ValueError, match="point_clouds"):
        model({"point_clouds": torch.zeros(2, 10)})
    with pytest.raises(ValueError, match="point_clouds"):
        model({})
    with pytest.raises(ValueError, match="point_clouds"):
        model({"point_clouds": torch.zeros(1, 0, 3)})
    with pytest.raises(ValueError, match="object_poses_list"):
        model.train()({"point_clouds": torch.rand(1, 50, 3)})


def test_bf16_autocast_training_step_and_float32_decode():
    rng = np.random.default_rng(9)
    model = small_model().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ep = model(label_batch(rng, scene(rng, 2, 200)))
        loss, ep = get_loss(ep)
    assert ep["grasp_score_pred"].dtype == torch.bfloat16 and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ep = model({"point_clouds": scene(rng, 1, 200)})
    R = pred_decode(ep)[0][:, 4:13].reshape(-1, 3, 3).double()
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand_as(R), atol=1e-6,
                               rtol=0)
