"""The training engine's device, process-group and checkpoint plumbing
(pcgrasp.train.engine): one GPU per torchrun rank, the backend that fits the
tensors, and RNG states that resume exactly on any device. The CPU tests fake
CUDA where they must; the ``cuda`` tests run the real thing on a GPU."""
import os
import random

import numpy as np
import pytest
import torch
import torch.distributed as dist

from conftest import end_process_group, free_port
from pcgrasp.train.engine import dist_backend, fit, load_checkpoint, pick_device, save_checkpoint, world

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class FakeCuda:
    """torch.cuda as a machine with ``n`` GPUs would show it (device selection only)."""

    def __init__(self, monkeypatch, n):
        self.current = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "set_device", lambda d: self.current.append(torch.device(d)))


# ---------------------------------------------------------------- devices
def test_pick_device_gives_each_torchrun_rank_its_own_gpu(monkeypatch):
    fake = FakeCuda(monkeypatch, 8)
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert pick_device("auto") == torch.device("cuda", 5) and fake.current == [torch.device("cuda", 5)]
    assert pick_device("cuda") == torch.device("cuda", 5)
    assert pick_device("cuda:2") == torch.device("cuda", 2)    # an explicit index wins
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.delenv("LOCAL_RANK")
    assert pick_device("cuda") == torch.device("cuda", 0)      # outside torchrun: the current GPU


def test_pick_device_errors_name_the_problem(monkeypatch):
    FakeCuda(monkeypatch, 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(ValueError, match=r"cuda:3 is not visible: 2 CUDA device.*nproc_per_node <= 2"):
        pick_device("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="needs CUDA, which is not available"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        pick_device("gpu0")
    with pytest.raises(ValueError, match="device must be"):
        pick_device(3)


def test_backend_follows_the_tensors_not_the_machine(monkeypatch):
    FakeCuda(monkeypatch, 1)                                   # CUDA visible ...
    monkeypatch.delenv("PCGRASP_DIST_BACKEND", raising=False)
    assert dist_backend(torch.device("cpu")) == "gloo"        # ... but CPU tensors go through gloo
    assert dist_backend(torch.device("cuda", 0)) == "nccl"
    monkeypatch.setenv("PCGRASP_DIST_BACKEND", "gloo")
    assert dist_backend(torch.device("cuda", 0)) == "gloo"


def test_world_rejects_a_cpu_run_on_an_nccl_group(monkeypatch):
    store = dist.HashStore()
    dist.init_process_group("gloo", rank=0, world_size=1, store=store)
    try:
        assert world(torch.device("cpu")) == (0, 1)
        monkeypatch.setattr(dist, "get_backend", lambda *a: "nccl")
        with pytest.raises(ValueError, match="NCCL, which cannot reduce CPU tensors"):
            world(torch.device("cpu"))
    finally:
        dist.destroy_process_group()


def _gloo_with_cuda_visible_worker(rank, out, port):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.cuda.is_available = lambda: True                     # as on a GPU machine
    torch.set_num_threads(1)
    world(torch.device("cpu"))
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    torch.save({"backend": dist.get_backend(), "sum": t}, os.path.join(out, f"r{rank}.pt"))
    end_process_group()


@pytest.mark.pipeline   # two processes: not run under the sanitizers
def test_two_cpu_ranks_use_gloo_when_cuda_is_visible(tmp_path):
    torch.multiprocessing.spawn(_gloo_with_cuda_visible_worker, args=(str(tmp_path), free_port()), nprocs=2,
                                join=True)
    for r in range(2):
        got = torch.load(tmp_path / f"r{r}.pt")
        assert got["backend"] == "gloo" and got["sum"].item() == 3.0


# ---------------------------------------------------------------- checkpoints
def _tiny(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return model, opt, sched


def _draws():
    return torch.rand(4), random.random(), np.random.rand()


def test_checkpoint_restores_every_cpu_random_stream(tmp_path):
    model, opt, sched = _tiny()
    g = torch.Generator().manual_seed(7)
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    save_checkpoint(str(tmp_path / "c.pt"), model, opt, sched, 1, 5, g)
    expect, expect_g = _draws(), torch.rand(3, generator=g)
    torch.manual_seed(9), random.seed(9), np.random.seed(9)
    g2 = torch.Generator().manual_seed(0)
    assert load_checkpoint(str(tmp_path / "c.pt"), model, opt, sched, g2, torch.device("cpu")) == (1, 5)
    got = _draws()
    assert torch.equal(got[0], expect[0]) and got[1:] == expect[1:]
    assert torch.equal(torch.rand(3, generator=g2), expect_g)


def test_checkpoint_loads_its_rng_states_on_the_cpu_whatever_the_device(tmp_path):
    """The old loader mapped the whole file to the training device, so the CPU
    RNG bytes became device tensors and set_rng_state raised; 'meta' stands in
    for a GPU here."""
    model, opt, sched = _tiny()
    g = torch.Generator().manual_seed(7)
    save_checkpoint(str(tmp_path / "c.pt"), model, opt, sched, 2, 8, g)
    expect = torch.rand(4)
    model2, opt2, sched2 = _tiny(seed=1)
    assert load_checkpoint(str(tmp_path / "c.pt"), model2, opt2, sched2, torch.Generator(),
                           torch.device("meta")) == (2, 8)
    assert torch.equal(torch.rand(4), expect)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))


def test_checkpoint_saves_and_restores_the_cuda_stream_of_the_training_gpu(tmp_path, monkeypatch):
    saved, restored = torch.arange(16, dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: saved.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    model, opt, sched = _tiny()
    save_checkpoint(str(tmp_path / "c.pt"), model, opt, sched, 1, 1, torch.Generator(), torch.device("cuda", 3))
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=False)["cuda_rng"], saved)
    load_checkpoint(str(tmp_path / "c.pt"), model, opt, sched, torch.Generator(), torch.device("cuda", 3))
    assert len(restored) == 1 and torch.equal(restored[0][0], saved) and restored[0][0].device.type == "cpu"
    assert restored[0][1] == torch.device("cuda", 3)
    load_checkpoint(str(tmp_path / "c.pt"), model, opt, sched, torch.Generator(), torch.device("cpu"))
    assert len(restored) == 1                                  # a CPU run has no CUDA stream to restore


def test_a_checkpoint_without_the_new_streams_still_loads(tmp_path):
    model, opt, sched = _tiny()
    g = torch.Generator().manual_seed(3)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": 4,
                "step": 9, "loader_rng": g.get_state(), "torch_rng": torch.get_rng_state()}, tmp_path / "old.pt")
    expect = torch.rand(2)
    assert load_checkpoint(str(tmp_path / "old.pt"), model, opt, sched, torch.Generator(), "cpu") == (4, 9)
    assert torch.equal(torch.rand(2), expect)


# ---------------------------------------------------------------- resume on a GPU
def _noisy_loss(net, batch):
    """A loss that draws from the device's RNG each step (as GSNet's view sampling does)."""
    x, y = batch
    noise = torch.rand(x.shape, device=x.device, dtype=x.dtype)
    return ((net(x + 0.1 * noise) - y) ** 2).mean()


def _fit_noisy(run_dir, device, **stage):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    g = torch.Generator().manual_seed(1)
    data = torch.utils.data.TensorDataset(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g))
    stage = {"epochs": 3, "batch_size": 4, **stage}
    fit(model, _noisy_loss, data, stage, str(run_dir), [{"params": model.parameters(), "lr": 1e-2}], 0, device,
        resume=True, progress=False)
    return {k: v.cpu() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, cuda])])
def test_fit_resumes_bit_exactly_with_device_random_draws(tmp_path, device):
    straight = _fit_noisy(tmp_path / "a", torch.device(device))
    _fit_noisy(tmp_path / "b", torch.device(device), stop_after_epochs=1)
    resumed = _fit_noisy(tmp_path / "b", torch.device(device))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["epoch"] == 3


# ---------------------------------------------------------------- a loss's own generator
def _fit_own_generator(run_dir, generators_arg, **stage):
    """A loss drawing from its own torch.Generator (as Point-JEPA's masks do), which the process-wide
    streams do not cover: a fresh process re-seeds it, so only a checkpointed state resumes it."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    own = torch.Generator().manual_seed(7)

    def loss_fn(net, batch):
        x, y = batch
        keep = torch.rand(x.shape[0], generator=own) < 0.5
        return ((net(x) - y) ** 2)[keep].sum() / keep.sum().clamp_min(1)

    g = torch.Generator().manual_seed(1)
    data = torch.utils.data.TensorDataset(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g))
    stage = {"epochs": 3, "batch_size": 4, **stage}
    fit(model, loss_fn, data, stage, str(run_dir), [{"params": model.parameters(), "lr": 1e-2}], 0, "cpu",
        resume=True, progress=False, generators={"masks": own} if generators_arg else None)
    return model.state_dict()


def test_fit_checkpoints_the_loss_generators_it_is_given(tmp_path):
    straight = _fit_own_generator(tmp_path / "a", True)
    _fit_own_generator(tmp_path / "b", True, stop_after_epochs=1)
    resumed = _fit_own_generator(tmp_path / "b", True)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert set(torch.load(tmp_path / "b" / "last.pt", weights_only=False)["generators"]) == {"masks"}
    # the test can fail: without the generator in the checkpoint the resumed run draws other masks
    _fit_own_generator(tmp_path / "c", False, stop_after_epochs=1)
    unsaved = _fit_own_generator(tmp_path / "c", False)
    assert not all(torch.equal(straight[k], unsaved[k]) for k in straight)


# ---------------------------------------------------------------- early stopping
def _naive_stop(values, mode, patience, window, min_delta, min_epochs):
    """The written-down rule, spelled out with loops: smoothed[e] = mean of the last <= window values;
    improvements beyond min_delta reset the wait; stop at the first epoch >= max(min_epochs, window)
    with `patience` epochs since the last improvement."""
    smoothed = []
    for e in range(len(values)):
        lo = e - window + 1 if e - window + 1 > 0 else 0
        total, n = 0.0, 0
        for k in range(lo, e + 1):
            total += values[k]
            n += 1
        smoothed.append(total / n)
    best, last_improved = None, 0
    for e, v in enumerate(smoothed, start=1):
        if v == v:  # not NaN
            better = best is None or (v - min_delta > best if mode == "max" else v + min_delta < best)
            if better:
                best, last_improved = v, e
        if e >= min_epochs and e >= window and e - last_improved >= patience:
            return e, last_improved
    return None, last_improved


@pytest.mark.parametrize("seed", range(40))
def test_early_stop_rule_matches_a_loop(seed):
    from pcgrasp.train.engine import early_stop_epoch

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    trend = np.minimum(np.arange(n), rng.integers(1, 40)) * rng.uniform(0, 0.02)  # rises, then plateaus
    values = list(trend + rng.normal(0, rng.choice([0.0, 0.005, 0.05]), n))
    if n and rng.random() < 0.3:
        values[int(rng.integers(0, n))] = float("nan")
    if n > 4 and rng.random() < 0.3:
        values[3] = values[2] = values[1]  # ties
    kw = dict(mode=str(rng.choice(["max", "min"])), patience=int(rng.integers(1, 12)), window=int(rng.integers(1, 6)),
              min_delta=float(rng.choice([0.0, 0.001, 0.01])), min_epochs=int(rng.integers(0, 20)))
    stop, best_epoch, _ = early_stop_epoch(values, **kw)
    assert (stop, best_epoch) == _naive_stop(values, **kw)


def test_early_stop_rule_hand_cases():
    from pcgrasp.train.engine import early_stop_epoch

    # improves for 3 epochs, then flat: with patience 2 it stops 2 epochs after the last improvement
    assert early_stop_epoch([0.1, 0.2, 0.3, 0.3, 0.3, 0.3], patience=2)[:2] == (5, 3)
    # an improvement smaller than min_delta does not count
    assert early_stop_epoch([0.1, 0.2, 0.201, 0.202], patience=2, min_delta=0.01)[:2] == (4, 2)
    # min mode (a loss)
    assert early_stop_epoch([3.0, 2.0, 2.5, 2.2, 2.1], mode="min", patience=3)[:2] == (5, 2)
    # a single spike inside a window of 3 is averaged away: no stop where the raw values would stop
    assert early_stop_epoch([0.5, 0.5, 0.9, 0.5, 0.5, 0.5], patience=3, window=1)[0] == 6
    assert early_stop_epoch([0.5, 0.5, 0.9, 0.5, 0.5, 0.5], patience=4, window=3)[0] is None
    # min_epochs holds the stop back; all-NaN never improves
    assert early_stop_epoch([1.0, 1.0, 1.0, 1.0], patience=1, min_epochs=4)[0] == 4
    assert early_stop_epoch([float("nan")] * 3, patience=2)[:2] == (2, 0)
    assert early_stop_epoch([], patience=1) == (None, 0, None)


@pytest.mark.parametrize("spec, key", [
    ({"mode": "max"}, "metric"), ({"metric": "a", "mode": "up"}, "mode"), ({"metric": "a", "patience": 0}, "patience"),
    ({"metric": "a", "window": 1.5}, "window"), ({"metric": "a", "min_delta": -1}, "min_delta"),
    ({"metric": "a", "min_epochs": True}, "min_epochs"), ({"metric": "a", "wait": 3}, "wait"), ([3], "mapping"),
    ({"metric": "a", "restore_best": "yes"}, "restore_best")])
def test_early_stop_config_errors_name_the_key(spec, key):
    from pcgrasp.train.engine import check_early_stop

    with pytest.raises(ValueError, match=key):
        check_early_stop(spec)


def _fit_scripted(run_dir, scores, snapshots=None, final=None, **stage):
    """A tiny fit whose evaluation returns the next of ``scores`` (read from the log on resume).
    ``snapshots``: a dict that gets epoch -> the weights evaluated after it; ``final``: a list that
    gets the model's weights when fit returns."""
    import csv as _csv

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = torch.utils.data.TensorDataset(torch.randn(8, 3), torch.randn(8, 1))
    log = os.path.join(run_dir, "log.csv")

    def eval_fn():
        done = sum(1 for _ in _csv.DictReader(open(log))) if os.path.exists(log) else 0
        if snapshots is not None:
            snapshots[done + 1] = torch.cat([model.weight.detach().flatten(), model.bias.detach()]).clone()
        return {"score": scores[done], "other": 0.0}

    stage = {"epochs": len(scores), "batch_size": 4, **stage}
    fit(model, lambda net, b: ((net(b[0]) - b[1]) ** 2).mean(), data, stage, str(run_dir),
        [{"params": model.parameters(), "lr": 1e-2}], 0, "cpu", resume=True, progress=False, eval_fn=eval_fn)
    if final is not None:
        final.append(torch.cat([model.weight.detach().flatten(), model.bias.detach()]).clone())
    with open(log) as f:
        return len(list(_csv.DictReader(f)))


def test_restore_best_keeps_the_model_of_the_best_epoch(tmp_path):
    """early_stop.restore_best: fit ends with the weights that were evaluated at the rule's best
    epoch (the last epoch of the best moving-average window), not the last epoch's, whether the
    rule stopped the run or the epochs ran out, and after an interrupted, resumed run too."""
    from pcgrasp.train.engine import early_stop_epoch

    scores = [0.1, 0.3, 0.5, 0.62, 0.61, 0.6, 0.59, 0.55, 0.5, 0.5, 0.5, 0.5]
    rule = {"metric": "score", "patience": 3, "window": 2, "min_delta": 0.0, "restore_best": True}
    stop, best_epoch, _ = early_stop_epoch(scores, **rule)
    assert best_epoch == 5 and stop == 8  # (0.62 + 0.61) / 2 is the best window
    snaps, final = {}, []
    assert _fit_scripted(tmp_path / "a", scores, snaps, final, early_stop=rule) == stop
    assert torch.equal(final[0], snaps[best_epoch]) and not torch.equal(final[0], snaps[stop])
    assert torch.load(tmp_path / "a" / "best.pt", weights_only=False)["epoch"] == best_epoch
    final = []  # resuming the stopped run restores it again
    _fit_scripted(tmp_path / "a", scores, None, final, early_stop=rule)
    assert torch.equal(final[0], snaps[best_epoch])
    # interrupted after 6 epochs (best so far: 5), resumed: the same best
    final = []
    assert _fit_scripted(tmp_path / "b", scores, None, early_stop=rule, stop_after_epochs=6) == 6
    assert _fit_scripted(tmp_path / "b", scores, None, final, early_stop=rule) == stop
    assert torch.equal(final[0], snaps[best_epoch])
    # no stop before the epochs run out (patience too long): still the best epoch's weights
    final, snaps2 = [], {}
    _fit_scripted(tmp_path / "c", scores, snaps2, final, early_stop={**rule, "patience": 50})
    assert torch.equal(final[0], snaps2[best_epoch]) and torch.equal(snaps2[best_epoch], snaps[best_epoch])
    # without restore_best the last epoch's model stays, and a fresh run removes an old best.pt
    final = []
    (tmp_path / "d").mkdir()
    torch.save({"model": {}, "epoch": 1}, tmp_path / "d" / "best.pt")
    _fit_scripted(tmp_path / "d", scores, None, final, early_stop={**rule, "restore_best": False})
    assert torch.equal(final[0], snaps[stop]) and not (tmp_path / "d" / "best.pt").exists()


def test_fit_stops_early_resumes_and_stays_stopped(tmp_path):
    import json

    from pcgrasp.train.engine import early_stop_epoch

    scores = [0.1, 0.3, 0.5, 0.6, 0.58, 0.61, 0.6, 0.59, 0.6, 0.6, 0.6, 0.6, 0.9, 0.9, 0.9]
    rule = {"metric": "score", "patience": 3, "window": 2, "min_delta": 0.02}
    want = early_stop_epoch(scores, **rule)[0]
    assert want is not None and want < len(scores)  # the script plateaus before its late jump
    assert _fit_scripted(tmp_path / "a", scores, early_stop=rule) == want
    info = json.loads((tmp_path / "a" / "early_stop.json").read_text())
    assert info["stopped_after_epoch"] == want and info["rule"]["patience"] == 3
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=False)["epoch"] == want
    # resuming a run that stopped trains no further
    assert _fit_scripted(tmp_path / "a", scores, early_stop=rule) == want
    # interrupted before the stop, then resumed: stops at the same epoch (history read back from log.csv)
    assert _fit_scripted(tmp_path / "b", scores, early_stop=rule, stop_after_epochs=2) == 2
    assert _fit_scripted(tmp_path / "b", scores, early_stop=rule) == want
    # without the rule every epoch runs; a metric the evaluation lacks is an error naming it
    assert _fit_scripted(tmp_path / "c", scores) == len(scores)
    with pytest.raises(ValueError, match="'nope'.*other, score"):
        _fit_scripted(tmp_path / "d", scores, early_stop={"metric": "nope"})
    with pytest.raises(ValueError, match="needs a validation"):
        fit(torch.nn.Linear(1, 1), None, [], {"epochs": 1, "batch_size": 1, "early_stop": {"metric": "x"}},
            str(tmp_path / "e"), [{"params": [torch.zeros(1, requires_grad=True)], "lr": 1.0}], 0, "cpu")


def _early_stop_ddp_worker(rank, out, port, scores, rule):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    world(torch.device("cpu"))
    # rank 0 alone evaluates; rank 1 must stop at the same epoch or the next collective hangs
    final = []
    n = _fit_scripted(os.path.join(out, "run"), scores, None, final, early_stop=rule, batch_size=2) if rank == 0 else None
    if rank == 1:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        data = torch.utils.data.TensorDataset(torch.randn(8, 3), torch.randn(8, 1))
        steps = fit(model, lambda net, b: ((net(b[0]) - b[1]) ** 2).mean(), data,
                    {"epochs": len(scores), "batch_size": 2, "early_stop": rule}, os.path.join(out, "run"),
                    [{"params": model.parameters(), "lr": 1e-2}], 0, "cpu", resume=True, progress=False,
                    eval_fn=lambda: {"score": 0.0})
        n = steps // 2  # 8 samples over 2 ranks, batch 2: 2 steps per epoch
        final.append(torch.cat([model.weight.detach().flatten(), model.bias.detach()]))
    torch.save(n, os.path.join(out, f"epochs{rank}.pt"))
    torch.save(final[0], os.path.join(out, f"weights{rank}.pt"))
    end_process_group()


@pytest.mark.pipeline   # two processes: not run under the sanitizers
def test_early_stop_under_ddp_stops_every_rank_together(tmp_path):
    from pcgrasp.train.engine import early_stop_epoch

    scores = [0.1, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.9]
    rule = {"metric": "score", "patience": 2, "restore_best": True}
    want, best_epoch, _ = early_stop_epoch(scores, **rule)
    torch.multiprocessing.spawn(_early_stop_ddp_worker, args=(str(tmp_path), free_port(), scores, rule), nprocs=2,
                                join=True)
    assert torch.load(tmp_path / "epochs0.pt") == torch.load(tmp_path / "epochs1.pt") == want < len(scores)
    # restore_best: both ranks end on the best epoch's weights (DDP kept them equal), not the last epoch's
    assert best_epoch < want and torch.load(tmp_path / "run" / "best.pt", weights_only=False)["epoch"] == best_epoch
    assert torch.equal(torch.load(tmp_path / "weights0.pt"), torch.load(tmp_path / "weights1.pt"))
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    assert not torch.equal(torch.load(tmp_path / "weights0.pt"), torch.cat([last["weight"].flatten(), last["bias"]]))
