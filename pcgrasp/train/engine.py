"""The one training engine, shared by every pipeline (train/jepa.py, train/ebm.py, ...).

``fit`` runs the generic loop: an optimiser over the pipeline's parameter groups
(AdamW by default, or the one the pipeline builds), linear warm-up + cosine
decay per step (or a constant rate), gradient clipping, bf16 autocast on GPU,
tqdm progress, CSV + TensorBoard logs (a fresh run starts a new log.csv, a
resume keeps the rows up to its checkpoint), a checkpoint after every epoch
(``last.pt``) that ``resume=True`` continues exactly (model, optimiser,
schedule, loader and torch RNG state), ``stop_after_epochs`` to end a process
early, an optional per-epoch evaluation hook, and DDP when launched by torchrun
(WORLD_SIZE > 1; DistributedSampler, rank 0 writes; batch norms synchronised
over the processes unless ``sync_bn: false``). It knows nothing about
models, data or losses: the pipeline passes a ``loss_fn(net, batch)``.
"""
import contextlib
import csv
import json
import math
import os
import random

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


# ---------------------------------------------------------------- setup
def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_device(batch, device):
    """``batch`` (a tensor, or dicts / lists / tuples of them, nested; other
    values kept as they are) on ``device``."""
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def pick_device(name="auto"):
    """The device this process trains on.

    ``auto`` is CUDA when it is available, else the CPU. Under torchrun
    (``LOCAL_RANK`` set), ``auto`` and a bare ``cuda`` mean ``cuda:LOCAL_RANK``,
    so ``torchrun --nproc_per_node 8`` puts each rank on its own GPU; the chosen
    GPU is made the current one (``torch.cuda.set_device``), as NCCL and every
    ``.cuda()`` call expect. Raises ValueError when CUDA is asked for and is
    not there, or when ``LOCAL_RANK`` names a GPU that is not visible."""
    if not isinstance(name, (str, torch.device)):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from e
    if dev.type != "cuda":
        return dev
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} needs CUDA, which is not available here (use device=cpu or auto)")
    n = torch.cuda.device_count()
    if dev.index is None:
        local = os.environ.get("LOCAL_RANK")
        dev = torch.device("cuda", int(local) if local is not None else torch.cuda.current_device())
    if dev.index >= n:
        raise ValueError(f"device {dev} is not visible: {n} CUDA device(s) (LOCAL_RANK="
                         f"{os.environ.get('LOCAL_RANK')}; under torchrun use --nproc_per_node <= {n})")
    torch.cuda.set_device(dev)
    return dev


def dist_backend(device):
    """The process-group backend for tensors on ``device``: NCCL for CUDA,
    gloo for the CPU (also when CUDA is visible: NCCL cannot reduce CPU
    tensors). ``PCGRASP_DIST_BACKEND`` overrides it."""
    forced = os.environ.get("PCGRASP_DIST_BACKEND")
    if forced:
        return forced
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def world(device=None):
    """(rank, world_size), initialising the process group under torchrun.

    ``device``: the device this process trains on (default: ``pick_device('auto')``);
    it picks the backend (:func:`dist_backend`) when the group is created. A
    group that already exists with a backend that cannot carry ``device``'s
    tensors (NCCL for a CPU run) raises ValueError instead of failing inside a
    collective."""
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n > 1 and not dist.is_initialized():
        dev = pick_device("auto") if device is None else torch.device(device)
        dist.init_process_group(dist_backend(dev))
    if not dist.is_initialized():
        return 0, 1
    if device is not None and torch.device(device).type == "cpu" and dist.get_backend() == "nccl":
        raise ValueError("the process group uses NCCL, which cannot reduce CPU tensors: train on the GPU "
                         "(device=cuda) or create the group for the CPU (world(torch.device('cpu')), gloo)")
    return dist.get_rank(), dist.get_world_size()


def barrier():
    """Waits for every process of the default group (nothing outside DDP)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def rank_zero_first(device=None):
    """Under torchrun, rank 0 runs the block first (e.g. writes data or a
    checkpoint that is missing) while the other ranks wait, then they run it
    (and find the files there). Outside DDP it just runs the block. The block
    must not itself start collectives (no DDP training inside). ``device``:
    as for :func:`world` (it may create the process group)."""
    rank, ws = world(device)
    if ws > 1 and rank != 0:
        barrier()
    try:
        yield
    finally:
        if ws > 1 and rank == 0:
            barrier()


def cosine_with_warmup(total, warmup):
    def f(step):
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return f


class Logger:
    """CSV + TensorBoard (when installed), rank 0 only."""

    def __init__(self, run_dir, enabled=True, keep_until_step=0):
        """``keep_until_step``: rows of an existing log.csv up to that step are
        kept (a resumed run's past epochs), later ones dropped (0: a fresh log)."""
        self.enabled, self.path, self.tb = enabled, os.path.join(run_dir, "log.csv"), None
        if enabled:
            os.makedirs(run_dir, exist_ok=True)
            self._truncate(keep_until_step)
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(os.path.join(run_dir, "tb"))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def _truncate(self, step):
        if not os.path.exists(self.path):
            return
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        keep = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step] if step > 0 else []
        if len(keep) <= 1:
            os.remove(self.path)
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(keep)
        os.replace(tmp, self.path)

    def log(self, step, **values):
        if not self.enabled:
            return
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["step"] + sorted(values))
            if new:
                w.writeheader()
            w.writerow({"step": step, **values})
        if self.tb:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()


def distributed_model(model, sync_bn=True):
    """What ``fit`` trains under a multi-process group: ``model`` with its batch
    norms (torch's BatchNorm*d, ``pcgrasp.nn.SparseBatchNorm``) turned into
    ``pcgrasp.nn.SyncBatchNorm`` in place when ``sync_bn`` (every layer then
    normalises with the statistics of the whole global batch, as one process
    would; state_dict keys unchanged), wrapped in DistributedDataParallel.
    Without a multi-process group: ``model`` itself. ``model`` must not itself
    be a BatchNorm (it is converted in place)."""
    if not isinstance(sync_bn, bool):
        raise ValueError(f"sync_bn must be true or false, got {sync_bn!r}")
    if world()[1] == 1:
        return model
    if sync_bn:
        from ..nn import convert_sync_batchnorm

        if convert_sync_batchnorm(model) is not model:
            raise ValueError("distributed_model converts batch norms in place: wrap a bare BatchNorm in a module")
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    # one GPU per process: DDP must be told which (its buckets live there)
    return nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


# ---------------------------------------------------------------- checkpoints
def rng_states(device=None):
    """Every random stream a training step may draw from: torch's CPU generator,
    the CUDA generator of ``device`` (when it is a GPU: GSNet's view sampling
    draws there), Python's and NumPy's. All as CPU objects, so a checkpoint
    loads on any machine."""
    states = {"torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
              "numpy_rng": np.random.get_state()}
    if device is not None and torch.device(device).type == "cuda":
        states["cuda_rng"] = torch.cuda.get_rng_state(torch.device(device)).cpu()
    return states


def set_rng_states(states, device=None):
    """Restores what :func:`rng_states` saved (older checkpoints hold only
    ``torch_rng``). The CUDA stream is restored on ``device`` when both the
    checkpoint and the run are on a GPU."""
    torch.set_rng_state(states["torch_rng"].cpu())
    if "python_rng" in states:
        random.setstate(states["python_rng"])
    if "numpy_rng" in states:
        np.random.set_state(states["numpy_rng"])
    if "cuda_rng" in states and device is not None and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(states["cuda_rng"].cpu(), torch.device(device))


def save_checkpoint(path, model, opt, sched, epoch, step, loader_rng, device=None, generators=None):
    """Everything ``load_checkpoint`` needs to continue the run bit-exactly
    (written to a temporary file, then renamed). ``device``: the training
    device, whose CUDA random stream is saved too; ``generators``: the loss's
    own named ``torch.Generator`` streams (e.g. Point-JEPA's masks)."""
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "epoch": epoch, "step": step, "loader_rng": loader_rng.get_state(), **rng_states(device),
                "generators": {k: g.get_state() for k, g in (generators or {}).items()}}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path, keys=(), what="pcgrasp checkpoint", map_location="cpu", weights_only=False):
    """``torch.load(path)``, a dict holding ``keys``. A missing file is an OSError; a file that is
    not such a checkpoint (empty, truncated, another format, other keys) a ValueError naming the
    path, instead of an unpickling traceback."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=weights_only)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the loader raises, the file is unreadable
        why = " ".join(f"{type(e).__name__}: {e}".split())
        raise ValueError(f"{path} is not a readable {what} ({why[:200]})") from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path} is not a {what}: it lacks {', '.join(map(repr, missing))}")
    return state


def load_checkpoint(path, model, opt, sched, loader_rng, device, generators=None):
    """Restores a ``save_checkpoint`` file in place (``generators`` too, by
    name; a checkpoint without one leaves it as it is); returns (epoch, step).

    The file is read onto the CPU: the RNG states must stay CPU byte tensors
    (``set_rng_state`` rejects device tensors), and ``load_state_dict`` copies
    weights and optimiser state onto the parameters' device itself."""
    state = read_checkpoint(path, ("model", "opt", "sched", "loader_rng"), "training checkpoint (last.pt)")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    loader_rng.set_state(state["loader_rng"])
    set_rng_states(state, device)
    saved = state.get("generators", {})
    for name, g in (generators or {}).items():
        if name in saved:
            g.set_state(saved[name])
    return state["epoch"], state["step"]


def make_schedule(name, total, warmup, steps_per_epoch=1, decay=0.95):
    """Per-step multiplier of the learning rate: ``cosine`` (linear warm-up then
    cosine decay to 0), ``constant``, or ``exponential`` (x ``decay`` after
    every epoch, GraspContrast's 0.95)."""
    if name == "cosine":
        return cosine_with_warmup(total, warmup)
    if name == "constant":
        return lambda step: 1.0
    if name == "exponential":
        if not 0 < decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {decay!r}")
        return lambda step: decay ** (step // max(1, steps_per_epoch))
    raise ValueError(f"schedule must be 'cosine', 'constant' or 'exponential', got {name!r}")


# ---------------------------------------------------------------- early stopping
EARLY_STOP_KEYS = {"metric", "mode", "patience", "window", "min_delta", "min_epochs", "restore_best"}
BEST = "best.pt"  # restore_best: the model at the best epoch of the rule, in the run folder


# The settings every training stage may hold, checked before any data are made or loaded.
_STAGE_RULES = {
    "epochs": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "steps": (lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1 (or null)"),
    "warmup_epochs": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "weight_decay": (lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, "a number >= 0"),
    "clip": (lambda v: v is None or (isinstance(v, (int, float)) and math.isfinite(v) and v > 0),
             "a number > 0 (or null)"),
    "tau": (lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v > 0, "a number > 0"),
}


def check_stage(cfg, section):
    """ValueError naming ``section.key`` unless the section is a mapping whose epochs, batch size,
    steps, warm-up, weight decay, clip, tau and learning rates (``lr``, ``lr_*``) are in range."""
    st = cfg.get(section)
    if not isinstance(st, dict):
        raise ValueError(f"config needs a '{section}' section")
    for key, v in st.items():
        rule = _STAGE_RULES.get(key)
        if rule is None and (key == "lr" or key.startswith("lr_")):
            rule = (lambda x: isinstance(x, (int, float)) and math.isfinite(x) and x >= 0, "a number >= 0")
        if rule is not None and (isinstance(v, bool) or not rule[0](v)):
            raise ValueError(f"{section}.{key} must be {rule[1]}, got {v!r}")


def check_early_stop(spec, name="train.early_stop"):
    """The validated ``early_stop`` section as a dict with every key
    (``metric`` required; ``mode`` max, ``patience`` 10, ``window`` 1,
    ``min_delta`` 0, ``min_epochs`` 0, ``restore_best`` False), or None when
    ``spec`` is None."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"{name} must be a mapping (metric, mode, patience, window, min_delta, min_epochs, restore_best), "
                         f"got {spec!r}")
    unknown = set(spec) - EARLY_STOP_KEYS
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(EARLY_STOP_KEYS))})")
    out = {"mode": "max", "patience": 10, "window": 1, "min_delta": 0.0, "min_epochs": 0, "restore_best": False, **spec}
    if not isinstance(out.get("metric"), str) or not out["metric"]:
        raise ValueError(f"{name}.metric must name a key of the evaluation (e.g. alignment), got {out.get('metric')!r}")
    if out["mode"] not in ("max", "min"):
        raise ValueError(f"{name}.mode must be max or min, got {out['mode']!r}")
    for key, lo in (("patience", 1), ("window", 1), ("min_epochs", 0)):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}.{key} must be an integer >= {lo}, got {v!r}")
    v = out["min_delta"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name}.min_delta must be a finite number >= 0, got {v!r}")
    if not isinstance(out["restore_best"], bool):
        raise ValueError(f"{name}.restore_best must be true or false, got {out['restore_best']!r}")
    return out


def early_stop_epoch(values, mode="max", patience=10, window=1, min_delta=0.0, min_epochs=0, **_):
    """The early-stopping rule, on a run's per-epoch validation values
    (``values[e - 1]`` after epoch e). Returns (stop_epoch or None,
    best_epoch, best_smoothed).

    s_e = the mean of the last ``min(window, e)`` values (a trailing moving
    average: single epochs of a noisy metric do not decide). s_e improves
    when it beats the best earlier s by more than ``min_delta`` (larger for
    ``mode`` max, smaller for min); NaN never improves. Training stops after
    the first epoch e >= max(min_epochs, window) that is ``patience`` epochs
    past the last improvement."""
    best, best_epoch = None, 0
    for e in range(1, len(values) + 1):
        w = values[max(0, e - window):e]
        s_e = float(np.mean(w)) if w else float("nan")
        if not math.isnan(s_e) and (best is None or (s_e > best + min_delta if mode == "max"
                                                     else s_e < best - min_delta)):
            best, best_epoch = s_e, e
        if e >= max(min_epochs, window) and e - best_epoch >= patience:
            return e, best_epoch, best
    return None, best_epoch, best


def logged_values(path, key):
    """The column ``key`` of a log.csv, one float per row (NaN where empty)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [float(r[key]) if r.get(key) not in (None, "") else float("nan") for r in csv.DictReader(f)]


# ---------------------------------------------------------------- the loop
def fit(model, loss_fn, dataset, cfg_stage, run_dir, param_groups, seed, device, resume=False,
        after_step=None, eval_fn=None, desc="train", progress=True, make_optimizer=None, collate_fn=None,
        generators=None):
    """Trains ``model`` for ``cfg_stage["epochs"]``; returns the number of steps taken.

    Args:
        loss_fn: ``loss_fn(net, batch) -> scalar loss``; ``net`` is the model
            (DDP-wrapped under torchrun); a batch is what the DataLoader yields,
            moved to ``device``.
        dataset: a map-style dataset; its ``set_epoch(epoch)``, when it has
            one, is called before every epoch.
        cfg_stage: dict with ``epochs``, ``batch_size`` and optionally
            ``shuffle`` (True), ``sync_bn`` (True: synchronised batch
            norm under DDP, see ``distributed_model``), ``weight_decay`` (0.05, AdamW only), ``schedule``
            (``cosine`` | ``constant`` | ``exponential`` with ``lr_decay`` per
            epoch), ``warmup_epochs`` (0), ``clip``
            (max gradient norm), ``stop_after_epochs``, ``early_stop`` (a
            mapping, see :func:`early_stop_epoch`: training ends once
            ``eval_fn``'s ``metric`` has stopped improving; the decision and
            its numbers are written to ``run_dir/early_stop.json``, and a
            resumed run that had stopped does not train further; with
            ``restore_best`` the model of the rule's best epoch, the last
            epoch of the best moving-average window, is kept in
            ``run_dir/best.pt`` and loaded into ``model`` when training ends,
            early or at ``epochs``).
        param_groups: the optimiser's parameter groups (each with its ``lr``).
        make_optimizer: ``make_optimizer(param_groups) -> torch.optim.Optimizer``;
            default AdamW with ``cfg_stage["weight_decay"]``.
        after_step: ``after_step(step, total_steps)`` after every optimiser step.
        eval_fn: ``eval_fn() -> dict of floats`` after every epoch (rank 0),
            logged with a ``val/`` prefix.
        collate_fn: the DataLoader's (default: torch's); a batch may be a
            tensor or nested dicts / lists / tuples of tensors.
        generators: name -> ``torch.Generator`` that ``loss_fn`` draws from;
            checkpointed and restored on resume, so a resumed run draws what
            the uninterrupted one would have.
    """
    es = check_early_stop(cfg_stage.get("early_stop"))
    if es is not None and eval_fn is None:
        raise ValueError("train.early_stop needs a validation evaluation (this stage has none)")
    device = torch.device(device)
    rank, ws = world(device)
    model.to(device)
    ddp = ws > 1
    net = distributed_model(model, cfg_stage.get("sync_bn", True))
    bs = cfg_stage["batch_size"]
    g = torch.Generator().manual_seed(seed)
    if ddp:
        sampler = torch.utils.data.distributed.DistributedSampler(dataset, ws, rank, shuffle=cfg_stage.get("shuffle", True),
                                                                  seed=seed, drop_last=True)
        loader = torch.utils.data.DataLoader(dataset, batch_size=bs, sampler=sampler, drop_last=True,
                                             collate_fn=collate_fn)
    else:
        sampler = None
        loader = torch.utils.data.DataLoader(dataset, batch_size=bs, shuffle=cfg_stage.get("shuffle", True),
                                             generator=g, drop_last=len(dataset) > bs, collate_fn=collate_fn)
    epochs = cfg_stage["epochs"]
    total = max(1, epochs * len(loader))
    if make_optimizer is None:
        opt = torch.optim.AdamW(param_groups, weight_decay=cfg_stage.get("weight_decay", 0.05))
    else:
        opt = make_optimizer(param_groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, make_schedule(cfg_stage.get("schedule", "cosine"), total,
                                                                 cfg_stage.get("warmup_epochs", 0) * len(loader),
                                                                 len(loader), cfg_stage.get("lr_decay", 0.95)))
    start_epoch, step = 0, 0
    ckpt = os.path.join(run_dir, "last.pt")
    if resume and os.path.exists(ckpt):
        start_epoch, step = load_checkpoint(ckpt, model, opt, sched, g, device, generators)
    logger = Logger(run_dir, rank == 0, keep_until_step=step)  # a fresh run starts a fresh log.csv
    amp = device.type == "cuda"
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    # stop_after_epochs: end this process early (a preemption), resume later
    stop = min(epochs, start_epoch + cfg_stage["stop_after_epochs"]) if cfg_stage.get("stop_after_epochs") else epochs
    history = logged_values(logger.path, f"val/{es['metric']}") if es is not None and rank == 0 else []
    if rank == 0 and start_epoch == 0:
        for stale in ("early_stop.json", BEST):  # a fresh run: an earlier run's decision and best model are stale
            if os.path.exists(os.path.join(run_dir, stale)):
                os.remove(os.path.join(run_dir, stale))

    def should_stop():
        """Rank 0 decides (it alone evaluates); every rank gets the answer."""
        flag = 0
        if rank == 0:
            e, best_epoch, best = early_stop_epoch(history, **es)
            if e is not None:
                flag = 1
                with open(os.path.join(run_dir, "early_stop.json"), "w") as f:
                    json.dump({"stopped_after_epoch": e, "best_epoch": best_epoch, "best_smoothed": best,
                               "rule": es}, f, indent=1)
        if ddp:
            t = torch.tensor([flag], device=device if dist.get_backend() == "nccl" else "cpu")
            dist.broadcast(t, 0)
            flag = int(t.item())
        return bool(flag)

    def restore_best():
        if es is None or not es["restore_best"]:
            return
        if ddp:
            barrier()  # rank 0 wrote best.pt
        path = os.path.join(run_dir, BEST)
        if os.path.exists(path):
            model.load_state_dict(read_checkpoint(path, ("model",), "best-epoch checkpoint", device)["model"])

    if es is not None and should_stop():  # a resumed run that had already stopped
        restore_best()
        return step
    for epoch in range(start_epoch, stop):
        if sampler is not None:
            sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):  # per-epoch random streams of the dataset (restored on resume)
            dataset.set_epoch(epoch)
        model.train()
        it = loader
        if tqdm and progress and rank == 0:
            it = tqdm(loader, desc=f"{desc} {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)
        run_loss, n = 0.0, 0
        for batch in it:
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(net, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg_stage.get("clip"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg_stage["clip"])
            opt.step()
            sched.step()
            step += 1
            if after_step:
                after_step(step, total)
            run_loss += loss.item()
            n += 1
        values = {"loss": run_loss / max(1, n), "lr": sched.get_last_lr()[-1], "epoch": epoch + 1}
        if eval_fn and rank == 0:
            values.update({f"val/{k}": v for k, v in eval_fn().items()})
        logger.log(step, **values)
        if es is not None and rank == 0:
            if f"val/{es['metric']}" not in values:
                raise ValueError(f"train.early_stop.metric {es['metric']!r} is not among the evaluation's keys "
                                 f"({', '.join(sorted(k[4:] for k in values if k.startswith('val/')))})")
            history.append(values[f"val/{es['metric']}"])
            if es["restore_best"]:
                _, best_epoch, best = early_stop_epoch(history, **es)
                if best_epoch == epoch + 1:  # written before last.pt: a resumed run never lacks its best
                    tmp = os.path.join(run_dir, BEST + ".tmp")
                    torch.save({"model": model.state_dict(), "epoch": best_epoch, "smoothed": best,
                                "metric": es["metric"]}, tmp)
                    os.replace(tmp, os.path.join(run_dir, BEST))
        if rank == 0:
            save_checkpoint(ckpt, model, opt, sched, epoch + 1, step, g, device, generators)
        if es is not None and should_stop():
            break
    restore_best()
    return step
