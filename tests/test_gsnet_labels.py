"""GSNet's on-the-fly label assignment (pcgrasp.models.gsnet.labels) against an independent
NumPy version of utils/label_generation.py written here (per-cloud, per-object loops,
brute-force nearest neighbours), on random frames with random object poses, ragged object
counts, a frame without objects, view subsets, float32 and float64."""
import numpy as np
import pytest
import torch

from pcgrasp.geometry.views import generate_views, viewpoint_params_to_matrix
from pcgrasp.models.gsnet.labels import match_grasp_view_and_label, process_grasp_labels

A, D = 12, 4


def random_rotation(rng):
    u, _, vt = np.linalg.svd(rng.normal(size=(3, 3)))
    r = u @ vt
    return r * np.sign(np.linalg.det(r))


def fixture(rng, n_obj=(2, 0, 3), n_views=None, M=40):
    """Seeds and label lists for len(n_obj) frames; n_views: per object the label view
    subset size (None: all 300)."""
    B = len(n_obj)
    ep = {"xyz_graspable": rng.random((B, M, 3)) * 0.3, "object_poses_list": [], "grasp_points_list": [],
          "grasp_scores_list": [], "grasp_widths_list": [], "grasp_views_list": []}
    for b in range(B):
        poses, pts, sc, wd, vw = [], [], [], [], []
        for o in range(n_obj[b]):
            V = 300 if n_views is None else n_views
            views = np.arange(300) if V == 300 else np.sort(rng.choice(300, V, replace=False))
            Np = int(rng.integers(3, 9))
            T = np.zeros((3, 4))
            T[:, :3] = random_rotation(rng)
            T[:, 3] = rng.random(3) * 0.3
            poses.append(T)
            pts.append(rng.normal(0, 0.05, (Np, 3)))
            s = rng.choice([-1.0, 0.0, 0.1, 0.3, 0.6, 0.8, 1.0], (Np, V, A, D))
            sc.append(s)
            wd.append(rng.random((Np, V, A, D)) * 0.12)
            vw.append(views)
        ep["object_poses_list"].append(np.asarray(poses).reshape(-1, 3, 4))
        ep["grasp_points_list"].append(pts)
        ep["grasp_scores_list"].append(sc)
        ep["grasp_widths_list"].append(wd)
        ep["grasp_views_list"].append(vw)
    return ep


def to_torch(ep, dtype, with_views=True):
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    out = {"xyz_graspable": t(ep["xyz_graspable"]),
           "object_poses_list": [t(p) for p in ep["object_poses_list"]]}
    for k in ("grasp_points_list", "grasp_scores_list", "grasp_widths_list"):
        out[k] = [[t(x) for x in objs] for objs in ep[k]]
    if with_views:
        out["grasp_views_list"] = [[torch.as_tensor(v) for v in objs] for objs in ep["grasp_views_list"]]
    return out


def numpy_labels(ep, top_views):
    """label_generation.py for one batch, in loops (NumPy, float64)."""
    templ = generate_views(300)
    templ_rot = viewpoint_params_to_matrix(-templ, np.zeros(300))
    seeds = ep["xyz_graspable"]
    B, M, _ = seeds.shape
    out = {k: [] for k in ("score", "width", "rot", "vg", "point")}
    for b in range(B):
        pts, sc, wd, rots = [], [], [], []
        for o, T in enumerate(ep["object_poses_list"][b]):
            R, t = T[:, :3], T[:, 3]
            views = ep["grasp_views_list"][b][o]
            rotated = templ[views] @ R.T
            # camera-frame template view j <- the label view whose rotated direction is nearest
            vi = np.array([int(np.argmin(((rotated - templ[j]) ** 2).sum(1))) for j in range(300)])
            pts.append(ep["grasp_points_list"][b][o] @ R.T + t)
            sc.append(ep["grasp_scores_list"][b][o][:, vi])
            wd.append(ep["grasp_widths_list"][b][o][:, vi])
            r = np.stack([R @ templ_rot[views[vi[j]]] for j in range(300)])
            rots.append(np.broadcast_to(r, (len(pts[-1]), 300, 3, 3)))
        if not pts:
            out["score"].append(np.zeros((M, 300, A, D)))
            out["width"].append(np.zeros((M, 300, A, D)))
            out["rot"].append(np.broadcast_to(templ_rot, (M, 300, 3, 3)))
            out["point"].append(np.zeros((M, 3)))
            continue
        P, S, W, Rt = np.concatenate(pts), np.concatenate(sc), np.concatenate(wd), np.concatenate(rots)
        nn = np.array([int(np.argmin(((P - s) ** 2).sum(1))) for s in seeds[b]])
        out["score"].append(S[nn])
        out["width"].append(W[nn])
        out["rot"].append(Rt[nn])
        out["point"].append(P[nn])
    score, width = np.stack(out["score"]), np.stack(out["width"])
    vg = ((score > 0) & (score <= 0.6)).sum((-1, -2)) / 48.0
    vg = (vg - vg.min(-1, keepdims=True)) / (vg.max(-1, keepdims=True) - vg.min(-1, keepdims=True) + 1e-5)
    score = np.where((score > 0) & (width <= 0.1), score, 0.0)
    # match_grasp_view_and_label
    rot = np.stack(out["rot"])
    bi, mi = np.meshgrid(np.arange(B), np.arange(M), indexing="ij")
    top_rot = rot[bi, mi, top_views]
    ts, tw = score[bi, mi, top_views].copy(), width[bi, mi, top_views]
    pos = ts > 0
    if pos.any():
        u_max, u_min = ts.max(), ts[pos].min()
        ts[pos] = np.log(u_max / ts[pos]) / (np.log(u_max / u_min) + 1e-6)
    return {"batch_grasp_view_graspness": vg, "batch_grasp_point": np.stack(out["point"]),
            "batch_grasp_view_rot": rot, "top_rot": top_rot, "batch_grasp_score": ts, "batch_grasp_width": tw}


@pytest.mark.parametrize("dtype,n_views", [(torch.float64, None), (torch.float32, None), (torch.float64, 30)])
def test_labels_match_numpy_label_generation(dtype, n_views):
    rng = np.random.default_rng(0 if n_views is None else 1)
    ep = fixture(rng, n_views=n_views)
    B, M = ep["xyz_graspable"].shape[:2]
    top = rng.integers(0, 300, (B, M))
    want = numpy_labels(ep, top)
    got = process_grasp_labels(to_torch(ep, dtype))
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-10)
    for k in ("batch_grasp_view_graspness", "batch_grasp_point", "batch_grasp_view_rot"):
        np.testing.assert_allclose(got[k].numpy(), want[k], err_msg=k, **tol)
    got["grasp_top_view_inds"] = torch.as_tensor(top)
    rot, got = match_grasp_view_and_label(got)
    np.testing.assert_allclose(rot.numpy(), want["top_rot"], **tol)
    for k in ("batch_grasp_score", "batch_grasp_width"):
        assert got[k].shape == (B, M, A, D) and got[k].dtype == dtype
        np.testing.assert_allclose(got[k].numpy(), want[k], err_msg=k, **tol)
    assert (got["batch_grasp_score"][1] == 0).all()          # the frame without objects


def test_labels_do_not_depend_on_autocast():
    """Training runs under bf16 autocast; label assignment must not: its point transforms and view
    matching are matmuls that autocast would round to bf16 (~1 mm at scene scale). CPU autocast
    rounds those matmuls too, so the CPU shows it."""
    rng = np.random.default_rng(5)
    ep = fixture(rng, n_views=30)
    B, M = ep["xyz_graspable"].shape[:2]
    top = torch.as_tensor(rng.integers(0, 300, (B, M)))
    ref = process_grasp_labels(to_torch(ep, torch.float32))
    ref["grasp_top_view_inds"] = top
    ref_rot, ref = match_grasp_view_and_label(ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.matmul(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16   # autocast is on
        got = process_grasp_labels(to_torch(ep, torch.float32))
        got["grasp_top_view_inds"] = top
        rot, got = match_grasp_view_and_label(got)
    for k in ("batch_grasp_point", "batch_grasp_view_rot", "batch_grasp_view_graspness", "batch_grasp_score",
              "batch_grasp_width"):
        assert got[k].dtype == torch.float32 and torch.equal(got[k], ref[k]), k
    assert torch.equal(rot, ref_rot)


def test_identity_pose_full_views_keep_the_label_views():
    """With the identity pose every template view takes its own label view, so the labels of
    seed i at a label point are that point's raw grasps."""
    rng = np.random.default_rng(2)
    ep = fixture(rng, n_obj=(1,), M=5)
    ep["object_poses_list"][0][0] = np.eye(4)[:3]
    ep["xyz_graspable"][0] = ep["grasp_points_list"][0][0][:5] if len(ep["grasp_points_list"][0][0]) >= 5 else \
        ep["grasp_points_list"][0][0][np.arange(5) % len(ep["grasp_points_list"][0][0])]
    got = process_grasp_labels(to_torch(ep, torch.float64))
    raw = ep["grasp_scores_list"][0][0]
    w = ep["grasp_widths_list"][0][0]
    n = np.arange(5) % len(raw)
    np.testing.assert_allclose(got["batch_grasp_width"][0].numpy(), w[n])
    np.testing.assert_allclose(got["batch_grasp_score"][0].numpy(), np.where((raw[n] > 0) & (w[n] <= 0.1), raw[n], 0))


def test_score_mapping_on_hand_values():
    """mu -> log(mu_max / mu) / (log(mu_max / mu_min) + 1e-6) over the batch's positives."""
    s = torch.zeros(1, 2, 1, 1, 3, dtype=torch.float64)
    s[0, 0, 0, 0] = torch.tensor([0.2, 0.0, 0.8])
    s[0, 1, 0, 0] = torch.tensor([0.4, 0.0, 0.0])
    ep = {"batch_grasp_score": s, "batch_grasp_width": torch.zeros_like(s),
          "batch_grasp_view_rot": torch.eye(3, dtype=torch.float64).expand(1, 2, 1, 3, 3),
          "grasp_top_view_inds": torch.zeros(1, 2, dtype=torch.int64)}
    _, ep = match_grasp_view_and_label(ep)
    d = np.log(4.0) + 1e-6
    want = [[np.log(4.0) / d, 0, 0], [np.log(2.0) / d, 0, 0]]
    np.testing.assert_allclose(ep["batch_grasp_score"][0, :, 0].numpy(), want, atol=1e-12)


def test_bad_label_inputs():
    rng = np.random.default_rng(3)
    ep = fixture(rng, n_obj=(1, 1), M=4)
    t = to_torch(ep, torch.float32)
    with pytest.raises(ValueError, match="grasp_points_list"):
        process_grasp_labels({**t, "grasp_points_list": t["grasp_points_list"][:1]})
    with pytest.raises(ValueError, match="grasp_scores_list"):
        bad = [[x[:, :10] for x in objs] for objs in t["grasp_scores_list"]]
        process_grasp_labels({**t, "grasp_scores_list": bad})
    with pytest.raises(ValueError, match="grasp_views_list"):
        ep30 = to_torch(fixture(rng, n_obj=(1,), n_views=30, M=4), torch.float32, with_views=False)
        process_grasp_labels(ep30)
    with pytest.raises(ValueError, match="xyz_graspable"):
        process_grasp_labels({**t, "xyz_graspable": torch.zeros(2, 4)})
    got = process_grasp_labels(t)
    with pytest.raises(ValueError, match="grasp_top_view_inds"):
        match_grasp_view_and_label({**got, "grasp_top_view_inds": torch.full((2, 4), 300)})


def test_non_finite_inputs_are_refused():
    rng = np.random.default_rng(8)
    ep = fixture(rng, n_obj=(2, 1), n_views=20, M=4)
    for key, where in (("xyz_graspable", None), ("grasp_points_list", (1, 0)), ("object_poses_list", (0, 1))):
        t = to_torch(ep, torch.float64)
        if where is None:
            t[key] = t[key].clone()
            t[key][0, 1, 2] = float("nan")
        else:
            b, o = where
            if key == "object_poses_list":
                t[key][b] = t[key][b].clone()
                t[key][b][o, 0, 3] = float("inf")
            else:
                t[key][b][o] = t[key][b][o].clone()
                t[key][b][o][0, 0] = float("nan")
        with pytest.raises(ValueError, match=f"{key}.* must be finite|must be finite"):
            process_grasp_labels(t)


def test_a_view_index_out_of_range_names_its_object():
    rng = np.random.default_rng(6)
    ep = fixture(rng, n_obj=(2, 3), n_views=20, M=4)
    for g_bad, (b, o), v in ((3, (1, 1), 300), (0, (0, 0), -1)):
        t = to_torch(ep, torch.float32)
        t["grasp_views_list"][b][o] = t["grasp_views_list"][b][o].clone()
        t["grasp_views_list"][b][o][5] = v
        with pytest.raises(ValueError, match=f"grasp_views_list entry of object {g_bad} must hold 20 indices"):
            process_grasp_labels(t)


def test_label_assignment_reads_the_host_a_fixed_number_of_times(monkeypatch):
    """A GPU waits for the host at every scalar read of a device tensor. Label assignment reads two
    (the checks of all inputs at once, the range of the top views), however many objects a batch
    has; it read two per object and eight in its knn calls before."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Reads(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if str(func) in ("aten._local_scalar_dense.default", "aten.is_nonzero.default", "aten.equal.default"):
                Reads.n += 1
            return func(*args, **(kwargs or {}))

    real_tolist = torch.Tensor.tolist  # a device tensor's .tolist() copies it to the host: a read too

    def tolist(self):
        Reads.n += 1
        return real_tolist(self)
    monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    rng = np.random.default_rng(7)
    counts = []
    for n_obj in ((1, 1), (4, 5)):
        ep = to_torch(fixture(rng, n_obj=n_obj, n_views=30, M=16), torch.float32)
        Reads.n = 0
        with Reads():
            got = process_grasp_labels(ep)
            got["grasp_top_view_inds"] = torch.zeros(2, 16, dtype=torch.int64)
            match_grasp_view_and_label(got)
        counts.append(Reads.n)
    assert counts == [2, 2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_label_syncs_do_not_grow_with_the_objects():
    """On a GPU, torch's sync debug mode counts every wait for the device (scalar reads, pageable
    copies): a batch of 9 objects waits as often as one of 2, and the labels equal the CPU's."""
    import warnings

    rng = np.random.default_rng(9)
    counts = []
    for n_obj in ((1, 1), (4, 5)):
        ep = fixture(rng, n_obj=n_obj, n_views=30, M=16)
        cpu = to_torch(ep, torch.float32)
        gpu = to_torch(ep, torch.float32)
        gpu = {k: (v.cuda() if torch.is_tensor(v) else [[x.cuda() for x in o] if isinstance(o, list) else o.cuda()
                                                         for o in v]) for k, v in gpu.items()}
        top = torch.as_tensor(rng.integers(0, 300, (2, 16)))
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                got = process_grasp_labels(gpu)
                got["grasp_top_view_inds"] = top.cuda()
                _, got = match_grasp_view_and_label(got)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
        ref = process_grasp_labels(cpu)
        ref["grasp_top_view_inds"] = top
        _, ref = match_grasp_view_and_label(ref)
        for k in ("batch_grasp_score", "batch_grasp_width", "batch_grasp_point"):
            torch.testing.assert_close(got[k].cpu(), ref[k], atol=1e-5, rtol=1e-5)
    assert counts[0] == counts[1] and counts[0] <= 4, counts
