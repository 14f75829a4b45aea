"""Energy-based grasp planner: NCE loss and alignment against independent
NumPy oracles, the energy model, differentiable crops, refinement by energy
descent on a trained toy model, and a tiny end-to-end CLI run."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import learning_seed, needs_trimesh
from pcgrasp.data.dexnet import grasp_crops
from pcgrasp.losses import energy_nce_loss
from pcgrasp.metrics import energy_alignment
from pcgrasp.models import GraspEnergyModel
from pcgrasp.planning import grasp_energy, refine_grasps


# ---------------------------------------------------------------- oracles
def nce_numpy(e_pos, e_neg, tau):
    """l_i = e_i/tau + log(exp(-e_i/tau) + sum_j exp(-e_ij/tau)), mean over i;
    the log-sum of exponentials by shifting with the largest exponent."""
    e_pos = np.asarray(e_pos, np.float64)
    e_neg = np.asarray(e_neg, np.float64)
    if e_neg.ndim == 1:
        e_neg = np.tile(e_neg, (len(e_pos), 1))
    out = []
    for i in range(len(e_pos)):
        a = np.concatenate([[-e_pos[i] / tau], -e_neg[i] / tau])
        m = a.max()
        out.append(e_pos[i] / tau + m + math.log(sum(math.exp(v - m) for v in a)))
    return float(np.mean(out))


def alignment_numpy(e_pos, e_neg):
    return float(np.mean([all(p < n for n in e_neg) for p in e_pos]))


# ---------------------------------------------------------------- loss
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau", [1, 10, 100, 1000])
def test_nce_loss_matches_numpy(rng, dtype, tau):
    for P, Q, shared in [(1, 0, True), (1, 1, False), (5, 7, True), (6, 3, False), (4, 1, True)]:
        scale = rng.choice([0.1, 10.0, 300.0])
        e_pos = rng.normal(0, scale, P)
        e_neg = rng.normal(0, scale, Q if shared else (P, Q))
        got = energy_nce_loss(torch.tensor(e_pos, dtype=dtype), torch.tensor(e_neg, dtype=dtype), tau)
        assert got.dtype == dtype
        want = nce_numpy(e_pos, e_neg, tau)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert abs(float(got) - want) <= tol * max(1.0, abs(want)), (P, Q, shared, float(got), want)


def test_nce_loss_extreme_energies_do_not_overflow():
    # exp(1e6) overflows any float: the loss must stay finite and exact
    cases = [([-1e6], [1e6, 1e6], 1, 0.0),           # positive far below: l = log(1 + 2 e^{-2e6}) = 0
             ([1e6], [-1e6], 1, 2e6),                 # far above: l = 2e6 + log(1 + e^{-2e6})
             ([3e5, 3e5], [3e5, 3e5, 3e5], 10, math.log(4.0)),  # ties: log(1 + Q)
             ([-1e30], [1e30], 1000, 0.0)]
    for e_pos, e_neg, tau, want in cases:
        for dtype in (torch.float32, torch.float64):
            ep = torch.tensor(e_pos, dtype=dtype, requires_grad=True)
            got = energy_nce_loss(ep, torch.tensor(e_neg, dtype=dtype), tau)
            assert torch.isfinite(got)
            assert float(got.detach()) == pytest.approx(want, rel=1e-6, abs=1e-6)
            got.backward()
            assert torch.isfinite(ep.grad).all()
    assert nce_numpy([1e6], [-1e6], 1) == pytest.approx(2e6)  # the oracle survives it too


def test_nce_loss_gradient(rng):
    e_pos = torch.tensor(rng.normal(0, 3, 4), requires_grad=True)
    e_neg = torch.tensor(rng.normal(0, 3, (4, 5)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: energy_nce_loss(a, b, 2.0), (e_pos, e_neg))
    e_neg = torch.tensor(rng.normal(0, 3, 6), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: energy_nce_loss(a, b, 7.0), (e_pos, e_neg))
    # lowering a positive's energy lowers the loss; lowering a negative's raises it
    e_pos.grad = None
    energy_nce_loss(e_pos, e_neg, 1.0).backward()
    assert (e_pos.grad > 0).all() and (e_neg.grad < 0).all()


def test_nce_loss_bad_inputs():
    ok = torch.zeros(3)
    with pytest.raises(ValueError, match="e_pos"):
        energy_nce_loss(torch.zeros(3, 1), ok, 1.0)
    with pytest.raises(ValueError, match="e_pos"):
        energy_nce_loss(torch.zeros(0), ok, 1.0)
    with pytest.raises(ValueError, match="e_neg"):
        energy_nce_loss(ok, torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="e_neg"):
        energy_nce_loss(ok, torch.zeros(3, 4, 1), 1.0)
    with pytest.raises(TypeError, match="e_pos"):
        energy_nce_loss(torch.zeros(3, dtype=torch.int64), ok, 1.0)
    with pytest.raises(TypeError, match="e_neg"):
        energy_nce_loss(ok, [0.0, 1.0], 1.0)
    for tau in (0, -1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="tau"):
            energy_nce_loss(ok, ok, tau)


# ---------------------------------------------------------------- alignment
def test_alignment_hand_cases():
    t = torch.tensor
    assert energy_alignment(t([1.0, 2.0, 3.0]), t([2.5, 4.0])) == pytest.approx(2 / 3)
    assert energy_alignment(t([2.0]), t([2.0, 5.0])) == 0.0     # a tie is not below
    assert energy_alignment(t([-5.0, -4.0]), t([])) == 1.0       # no negatives
    assert energy_alignment(t([9.0, 9.0]), t([1.0])) == 0.0
    assert energy_alignment(t([0.0, 0.0, 0.5]), t([0.5, 0.7])) == pytest.approx(2 / 3)  # duplicates


def test_alignment_matches_brute_force(rng):
    for _ in range(20):
        e_pos = rng.integers(-5, 5, rng.integers(1, 12)).astype(np.float64)  # integers: many ties
        e_neg = rng.integers(-5, 5, rng.integers(0, 12)).astype(np.float64)
        for dtype in (torch.float32, torch.float64):
            got = energy_alignment(torch.tensor(e_pos, dtype=dtype), torch.tensor(e_neg, dtype=dtype))
            assert 0.0 <= got <= 1.0
            assert got == pytest.approx(alignment_numpy(e_pos, e_neg))


def test_alignment_bad_inputs():
    with pytest.raises(ValueError, match="e_pos"):
        energy_alignment(torch.zeros(0), torch.zeros(3))
    with pytest.raises(ValueError, match="e_pos"):
        energy_alignment(torch.zeros(2, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="e_neg"):
        energy_alignment(torch.zeros(2), [1.0])
    with pytest.raises(ValueError, match="e_neg"):
        energy_alignment(torch.zeros(2), torch.tensor([1.0, float("nan")]))


# ---------------------------------------------------------------- crops
def bilinear_numpy(img, r, c):
    H, W = img.shape
    r, c = min(max(r, 0.0), H - 1.0), min(max(c, 0.0), W - 1.0)
    r0, c0 = min(int(math.floor(r)), H - 2), min(int(math.floor(c)), W - 2)
    fr, fc = r - r0, c - c0
    return ((1 - fr) * (1 - fc) * img[r0, c0] + (1 - fr) * fc * img[r0, c0 + 1]
            + fr * (1 - fc) * img[r0 + 1, c0] + fr * fc * img[r0 + 1, c0 + 1])


def test_grasp_crops_match_rotated_bilinear_sampling(rng):
    img = rng.random((23, 31))
    grasps = np.array([[11.0, 15.0, 0.5, 0.0], [7.3, 20.6, 0.5, 0.7], [2.0, 29.5, 0.5, 2.9], [20.0, 3.0, 0.5, 1.5]])
    size, window = 8, 12
    got = grasp_crops(torch.tensor(img), torch.tensor(grasps), size, window).numpy()
    assert got.shape == (4, 1, size, size)
    s = window / size
    for n, (row, col, _, a) in enumerate(grasps):
        for i in range(size):
            for j in range(size):
                u, v = (j - (size - 1) / 2) * s, (i - (size - 1) / 2) * s  # along / across the closing axis
                want = bilinear_numpy(img, row + u * math.sin(a) + v * math.cos(a),
                                      col + u * math.cos(a) - v * math.sin(a))
                assert got[n, 0, i, j] == pytest.approx(want, abs=1e-9)
    # angle 0, window = size, integer-aligned centre: a plain slice
    crop = grasp_crops(torch.tensor(img), torch.tensor([[11.5, 15.5, 0.0, 0.0]]), 8, 8)[0, 0].numpy()
    np.testing.assert_allclose(crop, img[8:16, 12:20], atol=1e-12)


def test_grasp_crops_bad_inputs():
    with pytest.raises(ValueError, match="depth"):
        grasp_crops(torch.zeros(1, 4, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="grasps"):
        grasp_crops(torch.zeros(4, 4), torch.zeros(4))


# ---------------------------------------------------------------- model
def test_energy_model_shapes_gradients_and_errors():
    torch.manual_seed(0)
    m = GraspEnergyModel()
    assert m.mlp[0].in_features == 2048  # 64 x 4 x 4 features + 4 x 256 grasp copies
    assert [l.out_features for l in m.mlp if isinstance(l, torch.nn.Linear)] == [512, 128, 1]
    x, y = torch.rand(5, 1, 32, 32), torch.rand(5, 4).requires_grad_(True)
    m.eval()
    e = m(x, y)
    assert e.shape == (5,)
    (g,) = torch.autograd.grad(e.sum(), y)
    assert torch.isfinite(g).all() and (g.abs().sum(0) > 0).all()
    assert m(x[:, 0], y).shape == (5,)  # [B, S, S] accepted
    with pytest.raises(ValueError, match="x must be"):
        m(torch.rand(5, 1, 16, 16), y)
    with pytest.raises(ValueError, match="y must be"):
        m(x, torch.rand(4, 4))
    with pytest.raises(ValueError, match="crop_size"):
        GraspEnergyModel(crop_size=30)


def _toy_scene():
    """A flat table at 0.6 m with a 6 x 6 px block 3 cm high at (20, 28)."""
    depth = torch.full((48, 48), 0.6)
    depth[17:23, 25:31] = 0.57
    return depth


@pytest.fixture
def one_thread():
    # small convolutions on a loaded 2-core machine run several times faster
    # on one thread than on oversubscribed OpenMP threads
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _toy_trained_model():
    """Good grasps: centre within 2 px of the block's centre (20, 28)."""
    torch.manual_seed(learning_seed())
    g = torch.Generator().manual_seed(1 + learning_seed())
    depth = _toy_scene()
    n = 512
    y = torch.stack([torch.rand(n, generator=g) * 47, torch.rand(n, generator=g) * 47,
                     torch.full((n,), 0.58), torch.rand(n, generator=g) * math.pi], 1)
    y[: n // 2, :2] = torch.tensor([20.0, 28.0]) + (torch.rand(n // 2, 2, generator=g) - 0.5) * 8
    label = ((y[:, 0] - 20).abs() <= 2) & ((y[:, 1] - 28).abs() <= 2)
    crops = grasp_crops(depth, y, 16, 24)
    model = GraspEnergyModel(crop_size=16, repeat=16, hidden=(64, 32), dropout=0.0)
    model.set_normalization(crops, y)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(80):
        idx = torch.randint(0, n, (128,), generator=g)
        e = model(crops[idx], y[idx])
        pos = label[idx]
        loss = energy_nce_loss(e[pos], e[~pos], 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), depth


def test_descent_lowers_energy_on_a_trained_toy_model(one_thread, learning_margin):
    model, depth = _toy_trained_model()
    g = torch.Generator().manual_seed(3 + learning_seed())
    y0 = torch.stack([12 + torch.rand(16, generator=g) * 16, 20 + torch.rand(16, generator=g) * 16,
                      torch.full((16,), 0.58), torch.rand(16, generator=g) * math.pi], 1)
    bounds = [[0, 47], [0, 47], [0.58, 0.58], [0, math.pi]]
    traj, energies = refine_grasps(model, depth, y0, steps=40, lr=0.2, bounds=bounds, crop_size=16, crop_window=24)
    assert traj.shape == (41, 16, 4) and energies.shape == (41, 16)
    torch.testing.assert_close(traj[0], y0)
    # the reported energies are those of the reported grasps
    torch.testing.assert_close(energies[-1], grasp_energy(model, depth, traj[-1], 16, 24), atol=1e-4, rtol=1e-5)
    learning_margin("mean energy drop", energies[0].mean() - energies[-1].mean(), 1.0)
    learning_margin("fraction of grasps whose energy fell", (energies[-1] < energies[0]).float().mean(), 0.74)
    # where the grasps end up is not a robust check of an 80-step toy model: the mean distance to the good
    # region dropped 2.8 px at seed 0 but rose 3.1 px at seed 1 (tools/perturb-learning.py, AMD EPYC,
    # 2026-12-05), so it is reported, not asserted; the energy drop above (6.9-18 against 1) is the check
    dist = lambda t: ((t[:, 0] - 20) ** 2 + (t[:, 1] - 28) ** 2).sqrt()
    learning_margin("mean distance to the good region: drop (px; reported only)",
                    dist(traj[0]).mean() - dist(traj[-1]).mean(), -float("inf"))
    # projection: inside the bounds, angles wrapped into [0, pi)
    assert (traj[..., 0] >= 0).all() and (traj[..., 0] <= 47).all() and (traj[..., 2] == 0.58).all()
    assert (traj[..., 3] >= 0).all() and (traj[..., 3] < math.pi).all()
    assert all(p.requires_grad for p in model.parameters())  # restored


def test_refine_bad_inputs():
    model = GraspEnergyModel(repeat=2, hidden=(8,))
    depth, y0 = _toy_scene(), torch.zeros(2, 4)
    with pytest.raises(ValueError, match="depth"):
        refine_grasps(model, depth[None], y0)
    with pytest.raises(ValueError, match="y0"):
        refine_grasps(model, depth, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="steps"):
        refine_grasps(model, depth, y0, steps=-1)
    with pytest.raises(ValueError, match="lr"):
        refine_grasps(model, depth, y0, lr=float("nan"))
    with pytest.raises(ValueError, match="bounds"):
        refine_grasps(model, depth, y0, bounds=[[0, 1], [0, 1], [1, 0], [0, 3]])
    traj, e = refine_grasps(model, depth, y0, steps=0)
    assert traj.shape == (1, 2, 4) and e.shape == (1, 2)


# ---------------------------------------------------------------- end to end
@pytest.mark.pipeline
@needs_trimesh
def test_cli_ebm_train_resume_sweep_refine(tmp_path):
    over = [f"data.root={tmp_path}/dexnet", "data.generate.images=6", "data.generate.grasps_per_image=20",
            "data.generate.candidates=120", "data.generate.perturbations=2", "data.val_fraction=0.34",
            "model.repeat=32", "model.hidden=[64,32]", "train.epochs=2", "train.batch_size=32",
            f"train.out={tmp_path}/train", "sweep.taus=[1,100]", f"sweep.out={tmp_path}/sweep", "refine.images=1",
            "refine.steps=3", "refine.grasps_per_image=6", f"refine.out={tmp_path}/refine", "device=cpu"]

    def cli(cmd, *args):  # options first: the key=value overrides are one trailing group
        opts = [a for a in args if a.startswith("--")]
        r = subprocess.run([sys.executable, "-m", "pcgrasp", "ebm", cmd, "--quiet", *opts, *over,
                            *(a for a in args if not a.startswith("--"))], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return r.stdout

    cli("train", "train.stop_after_epochs=1")
    log = (tmp_path / "train" / "tau_100" / "log.csv").read_text().splitlines()
    assert len(log) == 2 and "val/alignment" in log[0] + "val/ranking_accuracy"
    cli("train", "--resume")
    assert len((tmp_path / "train" / "tau_100" / "log.csv").read_text().splitlines()) == 3
    out = cli("sweep")
    assert "| 1 |" in out and "| 100 |" in out
    assert (tmp_path / "sweep" / "alignment_vs_tau.png").stat().st_size > 0
    cli("refine")
    res = json.loads((tmp_path / "refine" / "results.json").read_text())["summary"]
    assert 0 <= res["initial_success"] <= 1 and 0 <= res["refined_success"] <= 1
    assert (tmp_path / "refine" / "energy_contour.png").stat().st_size > 0
    assert os.path.exists(tmp_path / "dexnet" / "robust_ferrari_canny_00000.npz")


def test_refine_command_bad_config():
    from pcgrasp.train import ebm

    for key, value in (("images", 0), ("grasps_per_image", 2.5)):
        r = {"images": 1, "grasps_per_image": 4, key: value}
        with pytest.raises(ValueError, match=f"refine.{key}"):
            ebm.refine({"refine": r, "data": {}})


@pytest.mark.pipeline
@needs_trimesh
def test_sweep_over_seeds_with_early_stopping_skips_finished_runs(tmp_path):
    """sweep.seeds: one run per (tau, seed), mean ± SD in the table, error bars in the plot; with
    train.early_stop a run ends once validation alignment stops improving (the rule in
    engine.early_stop_epoch, applied to the run's own log); a rerun skips finished runs."""
    import csv

    from pcgrasp.cli.common import config_path
    from pcgrasp.train import ebm
    from pcgrasp.train.config import load_config
    from pcgrasp.train.engine import early_stop_epoch

    over = [f"data.root={tmp_path}/dexnet", "data.generate.images=6", "data.generate.grasps_per_image=20",
            "data.generate.candidates=120", "data.generate.perturbations=2", "data.val_fraction=0.34",
            "model.repeat=32", "model.hidden=[64,32]", "train.epochs=12", "train.batch_size=32",
            "train.early_stop.metric=alignment", "train.early_stop.patience=2", "train.early_stop.min_delta=1.0",
            f"train.out={tmp_path}/train", "sweep.taus=[1,100]", "sweep.seeds=[0,1]", f"sweep.out={tmp_path}/sweep",
            "device=cpu"]
    cfg = load_config(config_path("ebm_demo"), over)
    rows, table = ebm.sweep(cfg, progress=False, log=lambda *a: None)
    assert [(r["tau"], r["seed"]) for r in rows] == [(1, 0), (100, 0), (1, 1), (100, 1)]  # seed-major
    for r in rows:
        assert os.path.basename(r["run"]) == f"tau_{r['tau']:g}_s{r['seed']}"
        with open(os.path.join(r["run"], "log.csv")) as f:
            align = [float(x["val/alignment"]) for x in csv.DictReader(f)]
        # min_delta 1.0 of alignment in [0, 1]: nothing after epoch 1 counts, so every run stops at epoch 3
        assert early_stop_epoch(align, patience=2, min_delta=1.0)[0] == len(align) == 3 == r["epochs_trained"]
        assert r["early_stop"]["stopped_after_epoch"] == 3
    assert "| 1 | 2 |" in table and "| 100 | 2 |" in table and " ± " in table
    assert (tmp_path / "sweep" / "alignment_vs_tau.png").stat().st_size > 0
    logs = {r["run"]: os.path.getmtime(os.path.join(r["run"], "log.csv")) for r in rows}
    again, _ = ebm.sweep(cfg, progress=False, log=lambda *a: None)  # finished runs are skipped
    assert {r["run"]: os.path.getmtime(os.path.join(r["run"], "log.csv")) for r in again} == logs
    assert [r["alignment"] for r in again] == [r["alignment"] for r in rows]
    for bad in ("[]", "[0,-1]", "1", "[true]"):
        with pytest.raises(ValueError, match="sweep.seeds"):
            ebm.sweep(load_config(config_path("ebm_demo"), over + [f"sweep.seeds={bad}"]), progress=False)
    with pytest.raises(ValueError, match="train.early_stop.patience"):
        ebm.sweep(load_config(config_path("ebm_demo"), over + ["train.early_stop.patience=0"]), progress=False)


def _write_fake_dexnet(root, images, per_image, rng):
    from pcgrasp.data.dexnet import write_chunk

    n = images * per_image
    write_chunk(str(root), 0, {"depth_ims_tf_table": rng.random((n, 32, 32, 1)).astype(np.float32),
                               "hand_poses": np.concatenate([rng.random((n, 4)), np.zeros((n, 3))], 1).astype(np.float32),
                               "robust_ferrari_canny": (0.004 * rng.random(n)).astype(np.float32),  # ~half succeed
                               "image_labels": np.repeat(np.arange(images), per_image).astype(np.int64)})


def test_three_way_image_split(tmp_path, rng):
    """data.test_fraction: train / val / test are disjoint image sets covering every image, in the
    asked shares; the test images do not depend on val_fraction; 0 (the default) gives no test set
    and the old two-way split; bad fractions are errors naming the key."""
    from pcgrasp.train import ebm

    _write_fake_dexnet(tmp_path, 50, 3, rng)
    cfg = {"seed": 4, "data": {"root": str(tmp_path), "val_fraction": 0.2, "test_fraction": 0.1}}
    tr, va, te = ebm.datasets(cfg, test=True)
    sets = [set(d.image_ids.tolist()) for d in (tr, va, te)]
    assert [len(x) for x in sets] == [35, 10, 5] and set.union(*sets) == set(range(50))
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert all(len(d) == 3 * len(x) for d, x in zip((tr, va, te), sets))  # every datapoint of an image goes along
    te2 = ebm.datasets({**cfg, "data": {**cfg["data"], "val_fraction": 0.4}}, test=True)[2]
    assert set(te2.image_ids.tolist()) == sets[2]
    two = ebm.datasets({"seed": 4, "data": {"root": str(tmp_path), "val_fraction": 0.2}}, test=True)
    assert two[2] is None and len(ebm.datasets({"seed": 4, "data": {"root": str(tmp_path)}})) == 2
    for key, bad in (("test_fraction", 1.0), ("test_fraction", -0.1), ("val_fraction", "x"), ("test_fraction", True)):
        with pytest.raises(ValueError, match=key):
            ebm.datasets({"seed": 0, "data": {"root": str(tmp_path), key: bad}}, test=True)
    with pytest.raises(ValueError, match="val_fraction \\+ data.test_fraction"):
        ebm.datasets({"seed": 0, "data": {"root": str(tmp_path), "val_fraction": 0.5, "test_fraction": 0.5}})


def test_split_seed_fixes_the_split_across_run_seeds(tmp_path, rng):
    """data.split_seed: the image-wise split no longer follows the run's seed (so a sweep's seeds
    vary only initialisation and batch order); null keeps the run's seed; bad values name the key."""
    from pcgrasp.train import ebm

    _write_fake_dexnet(tmp_path, 60, 2, rng)

    def split(seed, **data):
        out = ebm.datasets({"seed": seed, "data": {"root": str(tmp_path), "val_fraction": 0.2,
                                                   "test_fraction": 0.2, **data}}, test=True)
        return [sorted(x.image_ids.tolist()) for x in out]

    by_seed = [split(s) for s in range(4)]
    assert any(b != by_seed[0] for b in by_seed[1:])  # without split_seed the split follows the seed
    fixed = [split(s, split_seed=7) for s in range(4)]
    assert all(f == fixed[0] for f in fixed) and fixed[0] == split(7)
    assert split(2, split_seed=None) == by_seed[2]
    for bad in (-1, 1.5, "x", True):
        with pytest.raises(ValueError, match="data.split_seed"):
            split(0, split_seed=bad)


def test_sweep_with_restore_best_reports_the_best_epochs_model_on_test_images(tmp_path):
    """ebm_converge's reporting: early_stop.restore_best keeps the model of the best validation
    epoch (model.pt = best.pt's weights, restored_epoch in val_metrics.json), and with
    data.test_fraction the reported numbers are that model's on the test images, recomputed here
    independently with evaluate(); the table says so."""
    from pcgrasp.cli.common import config_path
    from pcgrasp.train import ebm
    from pcgrasp.train.config import load_config
    from pcgrasp.train.engine import early_stop_epoch

    over = [f"data.root={tmp_path}/dexnet", "data.val_fraction=0.3", "data.test_fraction=0.3",
            "model.repeat=8", "model.hidden=[32,16]", "model.crop_size=32", "train.epochs=12", "train.batch_size=16",
            "train.early_stop.metric=nce_loss", "train.early_stop.mode=min", "train.early_stop.patience=3",
            "train.early_stop.restore_best=true", f"train.out={tmp_path}/train", "sweep.taus=[10]",
            "sweep.seeds=[0]", f"sweep.out={tmp_path}/sweep", "device=cpu"]
    _write_fake_dexnet(tmp_path / "dexnet", 12, 10, np.random.default_rng(0))
    (tmp_path / "dexnet" / ebm.GENERATED).write_text(json.dumps({"complete": True}))
    cfg = load_config(config_path("ebm_demo"), over)
    rows, table = ebm.sweep(cfg, progress=False, log=lambda *a: None)
    r = rows[0]
    with open(os.path.join(r["run"], "log.csv")) as f:
        import csv
        nce = [float(x["val/nce_loss"]) for x in csv.DictReader(f)]
    _, best_epoch, _ = early_stop_epoch(nce, mode="min", patience=3)
    assert r["restored_epoch"] == best_epoch and r["reported_split"] == "test" and r["test"] == 40
    best = torch.load(os.path.join(r["run"], "best.pt"), weights_only=False)["model"]
    model, mcfg = ebm.load_model(os.path.join(r["run"], "model.pt"))
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    c = {**mcfg, "seed": 0}
    _, val_ds, test_ds = ebm.datasets(c, test=True)
    want = ebm.evaluate(model, test_ds, "cpu", 16, 10, 0)
    assert r["alignment"] == pytest.approx(want["alignment"]) and r["nce_loss"] == pytest.approx(want["nce_loss"])
    assert r["val_metrics"]["nce_loss"] == pytest.approx(ebm.evaluate(model, val_ds, "cpu", 16, 10, 0)["nce_loss"])
    assert "| test NCE loss |" in table and "Test split" in table


@needs_trimesh
def test_interrupted_data_generation_is_completed_not_used_half_done(tmp_path, monkeypatch):
    """ebm.ensure_data: a generation cut short (here: after 2 of 4 chunks) is completed by the next
    call, keeping the finished chunks; a complete root is left alone; a real Dex-Net folder (data,
    no marker) is used as it is."""
    import pcgrasp.data.synthetic.dexnet as gen
    from pcgrasp.data.dexnet import list_chunks
    from pcgrasp.train import ebm

    cfg = {"seed": 0, "data": {"root": str(tmp_path / "d"), "generate": {
        "images": 4, "images_per_chunk": 1, "image_size": 48, "grasps_per_image": 4, "candidates": 40,
        "perturbations": 1}}}
    real, calls = gen.write_chunk, []

    def flaky(root, index, arrays):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(index)
        real(root, index, arrays)
    monkeypatch.setattr(gen, "write_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        ebm.ensure_data(cfg, progress=False)
    assert list_chunks(cfg["data"]["root"]) == [0, 1]
    assert json.loads((tmp_path / "d" / ebm.GENERATED).read_text())["complete"] is False
    first = os.path.getmtime(tmp_path / "d" / "depth_ims_tf_table_00000.npz")
    monkeypatch.setattr(gen, "write_chunk", real)
    ebm.ensure_data(cfg, progress=False)
    assert list_chunks(cfg["data"]["root"]) == [0, 1, 2, 3]
    assert os.path.getmtime(tmp_path / "d" / "depth_ims_tf_table_00000.npz") == first  # kept, not redone
    marker = json.loads((tmp_path / "d" / ebm.GENERATED).read_text())
    assert marker["complete"] is True and marker["summary"]["chunks"] == 4
    monkeypatch.setattr(gen, "generate_dexnet", lambda *a, **k: pytest.fail("regenerated a complete root"))
    ebm.ensure_data(cfg, progress=False)
    (tmp_path / "d" / ebm.GENERATED).unlink()  # data without the marker: a real Dex-Net folder
    ebm.ensure_data(cfg, progress=False)


def test_ebm_converge_is_the_demo_at_10x_data_with_the_reports_batch_and_a_stopping_rule():
    from pcgrasp.cli.common import config_path
    from pcgrasp.train.config import load_config
    from pcgrasp.train.engine import check_early_stop

    demo, conv = load_config(config_path("ebm_demo")), load_config(config_path("ebm_converge"))
    assert conv["data"]["generate"]["images"] == 10 * demo["data"]["generate"]["images"]
    assert conv["train"]["batch_size"] == 512 and conv["train"]["lr"] == 1e-4
    assert sorted(conv["sweep"]["taus"]) == [1, 10, 100, 1000] and conv["sweep"]["seeds"] == [0, 1, 2]
    rule = check_early_stop(conv["train"]["early_stop"])
    assert rule["metric"] == "alignment" and rule["mode"] == "max" and conv["train"]["epochs"] >= 200
    assert rule["restore_best"] and conv["data"]["test_fraction"] > 0  # chosen on val, reported on test
    for c in (demo, conv):  # otherwise the same
        c["data"].pop("root"), c["data"]["generate"].pop("images"), c["sweep"].pop("seeds", None)
        c["data"].pop("val_fraction"), c["data"].pop("test_fraction", None)
        for k in ("epochs", "batch_size", "early_stop", "out"):
            c["train"].pop(k, None)
        for sec in ("sweep", "refine"):
            c[sec].pop("out")
    assert demo == conv
