"""End-to-end training: loss goes down, resume continues the same run, DDP
equals a single process, and the CLI (demo, evaluate, sweep) runs at the
smallest size."""
import csv
import os
import subprocess
import sys

import pytest
import torch

from conftest import deviation, end_process_group, free_port, learning_seed, needs_trimesh
from pcgrasp.models import GraspModel, PointEncoder
from pcgrasp.train.config import load_config
from pcgrasp.train.engine import fit
from pcgrasp.train.jepa import finetune, grasp_loss

pytestmark = pytest.mark.pipeline  # end to end: the sanitizer run skips these

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_cfg(tmp, **extra):
    over = [f"data.root={tmp}/grasps", f"data.pretrain_root={tmp}/pretrain", f"data.splits={tmp}/splits",
            "data.points=256", "data.generate.objects_per_category=4", "data.generate.scenes_per_object=1",
            "data.generate.grasps_per_scene=12", "data.generate.pretrain_per_category=1",
            "data.pretrain_shapes=12", f"data.pretrain_cache={tmp}/shapes", "probe.shapes=24",
            "model.dim=16", "model.depth=1", "model.heads=2", "model.pred_dim=8", "model.pred_depth=1",
            "model.pred_heads=2", "model.centers=16", "model.group_size=8", "model.token_width=8", "model.hidden=32",
            f"pretrain.out={tmp}/pre", f"train.pretrained={tmp}/pre/encoder.pt", f"train.out={tmp}/train",
            "pretrain.epochs=1", "train.epochs=2", "train.batch_size=16", "train.init=scratch",
            "train.lr_backbone=0.001", "train.lr_head=0.003", "sweep.budgets=[0.25,1.0]", "sweep.seeds=[0,1]",
            f"sweep.out={tmp}/sweep",
            "device=cpu"]  # logic tests: the bit-exact resume check needs deterministic CPU kernels
    over += [f"{k}={v}" for k, v in extra.items()]
    return load_config(os.path.join(ROOT, "pcgrasp", "configs", "demo.yaml"), over)


def read_log(run_dir):
    with open(os.path.join(run_dir, "log.csv")) as f:
        return list(csv.DictReader(f))


@needs_trimesh
def test_tiny_training_reduces_the_loss(tmp_path, learning_margin):
    cfg = tiny_cfg(tmp_path, **{"train.epochs": 8, "seed": learning_seed()})
    run, metrics = finetune(cfg, progress=False)
    log = read_log(run)
    assert len(log) == 8
    learning_margin("last / first epoch loss", float(log[-1]["loss"]) / float(log[0]["loss"]), 0.7, above=False)
    assert set(metrics) >= {"top_logit_rmse", "best_of_k_rmse", "coverage@15", "diversity"}
    assert os.path.exists(os.path.join(run, "model.pt")) and os.path.exists(os.path.join(run, "test_metrics.json"))
    assert os.path.isdir(os.path.join(run, "tb"))  # TensorBoard events


@needs_trimesh
def test_resume_continues_the_same_run(tmp_path):
    straight = tiny_cfg(tmp_path, **{"train.epochs": 3})
    run_a, _ = finetune(straight, run_dir=str(tmp_path / "a"), progress=False)
    stopped = tiny_cfg(tmp_path, **{"train.epochs": 3, "train.stop_after_epochs": 1})
    finetune(stopped, run_dir=str(tmp_path / "b"), progress=False)
    assert len(read_log(tmp_path / "b")) == 1
    resumed = tiny_cfg(tmp_path, **{"train.epochs": 3})
    finetune(resumed, run_dir=str(tmp_path / "b"), resume=True, progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)
    assert [r["loss"] for r in read_log(tmp_path / "a")] == [r["loss"] for r in read_log(tmp_path / "b")]


@needs_trimesh
@pytest.mark.parametrize("augment", [False, "augment", "target_view", "canonical"])
def test_pretrain_resume_continues_the_same_masks(tmp_path, augment):
    """Point-JEPA draws its block masks (and, with ``pretrain.augment`` / ``pretrain.target_view``, its
    augmentations / target views) from its own generators: a resumed pretraining must draw what the
    uninterrupted one drew (the generators' states are in the checkpoint). Each option changes what
    is learned (``pretrain.canonical`` too)."""
    from pcgrasp.train.jepa import pretrain

    aug = {f"pretrain.{augment}.scale": "[0.8,1.25]", f"pretrain.{augment}.translate": 0.01,
           f"pretrain.{augment}.rotate": "so3"} if augment else {}
    plain = {f"pretrain.{augment}": "null"}
    if augment == "canonical":  # pretraining clouds in their principal-axis frame (no generator of its own)
        aug, plain = {"pretrain.canonical": "pose+size"}, {"pretrain.canonical": "none"}
    runs = (("a", [dict()]), ("b", [{"pretrain.stop_after_epochs": 1}, dict()]))
    outs = {}
    for name, stages in runs + ((("plain", [plain]),) if augment else ()):
        for i, extra in enumerate(stages):
            cfg = tiny_cfg(tmp_path, **{"pretrain.epochs": 3, "pretrain.out": f"{tmp_path}/pre_{name}",
                                        "probe.shapes": 0, **aug, **extra})
            path = pretrain(cfg, resume=i > 0, progress=False)
        outs[name] = torch.load(path, weights_only=False)["encoder"]
    assert read_log(tmp_path / "pre_b")[-1]["epoch"] == "3"
    for k in outs["a"]:
        torch.testing.assert_close(outs["a"][k], outs["b"][k], rtol=0, atol=0, msg=k)
    if augment:  # the augmentation / the target view changed what was learned
        assert any(not torch.equal(outs["a"][k], outs["plain"][k]) for k in outs["a"])


# ---------------------------------------------------------------- DDP
# The equivalence check runs in float64. Some parameters have a gradient that is
# zero in exact arithmetic (e.g. attention key biases: softmax ignores a shift
# shared by all keys), so in float32 their computed gradient is rounding noise of
# the order of Adam's eps, which Adam turns into updates of up to ±lr: two
# summation orders (all-reduce vs one batch) then differ by ~lr after a few
# steps, whatever the machine. In float64 that noise is ~1e-17, far below eps,
# and the two runs agree to ~1e-12.
def _ddp_data():
    g = torch.Generator().manual_seed(5 + learning_seed())
    return torch.utils.data.TensorDataset(*(t.double() for t in (
        torch.rand(32, 128, 3, generator=g), torch.rand(32, 7, generator=g), torch.rand(32, 12, generator=g))))


def _ddp_model():
    torch.manual_seed(11 + learning_seed())
    model = GraspModel(PointEncoder(dim=16, depth=1, heads=2, centers=8, group_size=8, token_width=8), k=3, hidden=16)
    return model.double()


def _run(out, per_rank_batch):
    """Gradient of the first batch, then two epochs of fit; saved by rank 0."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from pcgrasp.train.engine import world

    rank, ws = world(torch.device("cpu"))
    model, data = _ddp_model(), _ddp_data()
    net = DDP(model) if ws > 1 else model
    idx = list(range(rank, ws * per_rank_batch, ws))  # DistributedSampler order (no shuffle)
    batch = [t[idx] for t in data.tensors]
    grasp_loss(net, batch).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    stage = {"epochs": 2, "batch_size": per_rank_batch, "shuffle": False, "clip": 1.0, "warmup_epochs": 1}
    groups = [{"params": model.backbone_parameters(), "lr": 1e-3}, {"params": model.head_parameters(), "lr": 1e-2}]
    fit(model, grasp_loss, data, stage, os.path.join(out, f"run{ws}"), groups, 0, torch.device("cpu"), progress=False)
    if rank == 0:
        torch.save({"grads": grads, "model": model.state_dict()}, os.path.join(out, f"result{ws}.pt"))


def _ddp_worker(rank, out, port):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    _run(out, per_rank_batch=4)
    end_process_group()


def test_ddp_two_gloo_processes_equal_one_process(tmp_path, learning_margin):
    port = free_port()
    torch.multiprocessing.spawn(_ddp_worker, args=(str(tmp_path), port), nprocs=2, join=True)
    _run(str(tmp_path), per_rank_batch=8)  # one process, the same global batches
    two, one = torch.load(tmp_path / "result2.pt"), torch.load(tmp_path / "result1.pt")
    assert two["grads"].keys() == one["grads"].keys() and two["model"].keys() == one["model"].keys()
    learning_margin("gradients: max deviation / tolerance (rtol 1e-9, atol 1e-11)",
                    max(deviation(two["grads"][k], one["grads"][k], 1e-9, 1e-11) for k in one["grads"]), 1,
                    above=False)
    learning_margin("weights after 2 epochs: max deviation / tolerance (rtol 1e-8, atol 1e-9)",
                    max(deviation(two["model"][k], one["model"][k], 1e-8, 1e-9) for k in one["model"]), 1,
                    above=False)


# ---------------------------------------------------------------- CLI
def pcgrasp_cli(*args, cwd):
    r = subprocess.run([sys.executable, "-m", "pcgrasp", *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@needs_trimesh
def test_cli_demo_evaluate_sweep_smallest_size(tmp_path):
    cfg = tiny_cfg(tmp_path)
    over = []

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                flat(v, f"{prefix}{k}.")
            else:
                over.append(f"{prefix}{k}={v}".replace(" ", ""))
    flat(cfg)
    out = pcgrasp_cli("demo", "--quiet", *over, cwd=tmp_path)
    rows = [l for l in out.splitlines() if l.startswith("| jepa") or l.startswith("| scratch")]
    assert len(rows) == 4, out
    ckpt = tmp_path / "train" / "jepa_wta_b100_A_s0" / "model.pt"
    assert "top_logit_rmse" in pcgrasp_cli("evaluate", "--checkpoint", str(ckpt), "--split", "val", cwd=tmp_path)
    out = pcgrasp_cli("sweep", "--config", "demo", "--quiet", *over, cwd=tmp_path)
    assert "Δ (jepa vs scratch)" in out and "Floors from the generator's truth" in out and "probe" in out
    assert (tmp_path / "sweep" / "rmse_vs_budget.png").exists() and (tmp_path / "sweep" / "table.md").exists()
    out = pcgrasp_cli("split", "--root", str(tmp_path / "grasps"), "--out", str(tmp_path / "s2"), cwd=tmp_path)
    assert "pack B budget" in out


def test_logger_starts_fresh_and_a_resume_keeps_only_the_checkpointed_epochs(tmp_path):
    from pcgrasp.train.engine import Logger

    run = str(tmp_path)
    log = Logger(run)
    for step in (3, 6, 9):
        log.log(step, loss=1.0 / step, epoch=step // 3)
    assert [int(r["step"]) for r in read_log(run)] == [3, 6, 9]
    Logger(run, keep_until_step=6).log(9, loss=0.5, epoch=3)      # resumed from the step-6 checkpoint
    assert [(int(r["step"]), float(r["loss"])) for r in read_log(run)] == [(3, 1 / 3), (6, 1 / 6), (9, 0.5)]
    Logger(run).log(3, loss=2.0, epoch=1)                          # a fresh run into the same directory
    assert [(int(r["step"]), float(r["loss"])) for r in read_log(run)] == [(3, 2.0)]
    Logger(run, keep_until_step=1)                                 # nothing at or before step 1: no log left
    assert not os.path.exists(os.path.join(run, "log.csv"))


def _rank_zero_first_worker(rank, out, port, use_context):
    import time

    from pcgrasp.train.engine import barrier, rank_zero_first

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    marker = os.path.join(out, "prepared")

    def prepare():  # what ensure_data does: make a missing file (slowly), else find it
        if not os.path.exists(marker):
            time.sleep(0.5)
            with open(os.path.join(out, f"wrote{rank}"), "w"):
                pass
            with open(marker, "w"):
                pass

    from pcgrasp.train.engine import world
    world(torch.device("cpu"))  # initialises the gloo group from the environment, as under torchrun
    if use_context:
        with rank_zero_first():
            prepare()
    else:
        prepare()
    barrier()
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("use_context", [True, False])
def test_rank_zero_first_prepares_once_under_two_gloo_processes(tmp_path, use_context):
    port = free_port()
    torch.multiprocessing.spawn(_rank_zero_first_worker, args=(str(tmp_path), port, use_context), nprocs=2,
                                join=True)
    wrote = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("wrote"))
    # with the context only rank 0 prepares; without it both ranks race (the bug it prevents)
    assert wrote == (["wrote0"] if use_context else ["wrote0", "wrote1"])


def test_rank_zero_first_outside_ddp_just_runs_the_block():
    from pcgrasp.train.engine import rank_zero_first

    ran = []
    with rank_zero_first():
        ran.append(1)
    assert ran == [1]
