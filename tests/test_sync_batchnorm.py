"""pcgrasp.nn.SyncBatchNorm / sync_batch_norm / convert_sync_batchnorm against torch's plain
BatchNorm: one process (the functional form and the module), and two gloo processes holding
unequal numbers of rows (one of them none) against plain BatchNorm on the concatenated batch:
outputs, input / weight / bias gradients and running statistics."""
import os

import pytest
import torch

from conftest import end_process_group, free_port
from pcgrasp import nn as snn
from pcgrasp.nn import SyncBatchNorm, convert_sync_batchnorm, sync_batch_norm


def _batch(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).mul(1.7).add(0.4).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(23, 5), (6, 4, 3, 2), (2, 3, 7)])
def test_single_process_functional_equals_batch_norm(dtype, shape):
    c = shape[1]
    x = _batch(shape, dtype, 0).requires_grad_()
    xr = x.detach().clone().requires_grad_()
    w = (_batch((c,), dtype, 1) + 1).requires_grad_()
    b = _batch((c,), dtype, 2).requires_grad_()
    wr, br = (t.detach().clone().requires_grad_() for t in (w, b))
    rm, rv = _batch((c,), dtype, 3), _batch((c,), dtype, 4).abs() + 0.5
    rmr, rvr = rm.clone(), rv.clone()
    y = sync_batch_norm(x, rm, rv, w, b, momentum=0.3, eps=1e-4)
    yr = torch.nn.functional.batch_norm(xr, rmr, rvr, wr, br, training=True, momentum=0.3, eps=1e-4)
    up = _batch(shape, dtype, 5)
    (y * up).sum().backward()
    (yr * up).sum().backward()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y, yr, **tol)
    for a, r in ((x.grad, xr.grad), (w.grad, wr.grad), (b.grad, br.grad), (rm, rmr), (rv, rvr)):
        torch.testing.assert_close(a, r, **tol)


def test_single_process_gradcheck_without_affine_or_running_stats():
    x = _batch((9, 3), torch.float64, 6).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: sync_batch_norm(t, None, None), (x,))
    w = (_batch((3,), torch.float64, 7) + 1).requires_grad_()
    b = _batch((3,), torch.float64, 8).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, u, v: sync_batch_norm(t, None, None, u, v), (x, w, b))


def test_module_and_conversion_keep_parameters_keys_and_outputs():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6, momentum=None),
                              torch.nn.Sequential(torch.nn.Unflatten(1, (3, 2, 1)), torch.nn.BatchNorm2d(3)))
    sparse = snn.SparseBatchNorm(5)
    keys, sparse_keys = list(net.state_dict()), list(sparse.state_dict())
    ref = torch.nn.Sequential(*[m for m in __import__("copy").deepcopy(net)])
    w_before = net[1].weight
    out = convert_sync_batchnorm(net)
    assert out is net and type(net[1]) is SyncBatchNorm and type(net[2][1]) is SyncBatchNorm
    assert net[1].weight is w_before and net[1].momentum is None   # shared parameters, same settings
    assert list(net.state_dict()) == keys
    convert_sync_batchnorm(sparse)
    assert type(sparse.bn) is SyncBatchNorm and list(sparse.state_dict()) == sparse_keys
    bare = convert_sync_batchnorm(torch.nn.BatchNorm1d(2))
    assert type(bare) is SyncBatchNorm
    x = _batch((10, 4), torch.float32, 9)
    for _ in range(3):                                   # training mode: batch statistics, running averages
        torch.testing.assert_close(net(x), ref(x), rtol=0, atol=0)
    for a, r in zip(net.state_dict().values(), ref.state_dict().values()):
        torch.testing.assert_close(a, r, rtol=0, atol=0)
    net.eval(), ref.eval()
    torch.testing.assert_close(net(x), ref(x), rtol=0, atol=0)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="x must"):
        sync_batch_norm(torch.ones(4), None, None)
    with pytest.raises(ValueError, match="x must"):
        sync_batch_norm(torch.ones(4, 2, dtype=torch.int64), None, None)
    with pytest.raises(ValueError, match="weight"):
        sync_batch_norm(torch.ones(4, 2), None, None, torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="running_mean"):
        sync_batch_norm(torch.ones(4, 2), torch.zeros(2), None)
    with pytest.raises(ValueError, match="more than 1 value"):
        sync_batch_norm(torch.ones(1, 2), None, None)
    with pytest.raises(ValueError, match="dimensions"):
        SyncBatchNorm(2)(torch.ones(2))


# ---------------------------------------------------------------- two gloo processes
# (rows of rank 0, rows of rank 1): unequal, and one process without rows
CASES = [((13, 4), (5, 4)), ((0, 3), (11, 3)), ((3, 2, 4, 2), (1, 2, 4, 2))]


def _inputs(case):
    parts = [_batch(s, torch.float64, 20 + r) for r, s in enumerate(case)]
    ups = [_batch(s, torch.float64, 40 + r) for r, s in enumerate(case)]
    return parts, ups


VARIANTS = (0.1, None, "bare")   # momentum 0.1, cumulative average, no affine / running stats (eval mode)


def _module(case, variant):
    c = case[0][1]
    torch.manual_seed(c)
    cls = torch.nn.BatchNorm2d if len(case[0]) == 4 else torch.nn.BatchNorm1d
    if variant == "bare":                       # batch statistics in eval mode too: synchronised as well
        return cls(c, affine=False, track_running_stats=False).double().eval()
    m = cls(c, momentum=variant).double()
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
    return m


def _worker(rank, port, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    res = []
    for case in CASES:
        for variant in VARIANTS:
            parts, ups = _inputs(case)
            m = convert_sync_batchnorm(_module(case, variant))
            x = parts[rank].clone().requires_grad_()
            for _ in range(2):                               # two steps: running statistics accumulate
                y = m(x)
            (y * ups[rank]).sum().backward()
            res.append({"y": y.detach(), "gx": x.grad, "gw": m.weight.grad if m.affine else None,
                        "gb": m.bias.grad if m.affine else None,
                        "state": {k: v.clone() for k, v in m.state_dict().items()}})
    torch.save(res, os.path.join(out, f"rank{rank}.pt"))
    end_process_group()


@pytest.mark.pipeline   # two processes (like the DDP tests): not run under the sanitizers
def test_two_gloo_processes_equal_batch_norm_on_the_concatenated_batch(tmp_path):
    port = free_port()
    torch.multiprocessing.spawn(_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    k = 0
    for case in CASES:
        for variant in VARIANTS:
            parts, ups = _inputs(case)
            m = _module(case, variant)
            x = torch.cat(parts).requires_grad_()
            for _ in range(2):
                y = m(x)
            (y * torch.cat(ups)).sum().backward()               # the sum of both processes' losses
            n0 = len(parts[0])
            tol = dict(rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(torch.cat([got[0][k]["y"], got[1][k]["y"]]), y.detach(), **tol)
            torch.testing.assert_close(got[0][k]["gx"], x.grad[:n0], **tol)
            torch.testing.assert_close(got[1][k]["gx"], x.grad[n0:], **tol)
            # weight / bias gradients stay per process (DDP averages them): their sum is the full one
            if m.affine:
                torch.testing.assert_close(got[0][k]["gw"] + got[1][k]["gw"], m.weight.grad, **tol)
                torch.testing.assert_close(got[0][k]["gb"] + got[1][k]["gb"], m.bias.grad, **tol)
            for r in range(2):
                assert got[r][k]["state"].keys() == m.state_dict().keys()
                for name, v in m.state_dict().items():
                    torch.testing.assert_close(got[r][k]["state"][name], v, **tol, msg=name)
            k += 1
