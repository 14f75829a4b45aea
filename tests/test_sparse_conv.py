"""The fused sparse-convolution kernels (csrc/sparse_conv, ops.sparse_conv_pairs /
ops.sparse_conv_weight_grad, nn.sparse_conv) against a naive NumPy loop over the pairs and against
the pure-torch reference (nn.sparse_conv_reference), on random maps with empty offsets, a single
voxel, duplicate coordinates and large coordinates, at float32 / float64 (and half types)."""
import numpy as np
import pytest
import torch

import pcgrasp.nn as snn
from pcgrasp import ops
from conftest import DEVICES, requires_cuda


def coords(rng, n, batches=2, lo=-4, hi=4, dup=0, big=False):
    c = np.concatenate([rng.integers(0, batches, (n, 1)), rng.integers(lo, hi, (n, 3))], 1)
    c = np.unique(c, axis=0)
    if big:  # near the int32 limits: offsets that leave the range must match nothing
        c[:, 1:] += np.array([2**31 - 10, -(2**31) + 10, 2**30])[None] - np.array([0, 0, 0])[None]
        c[:, 1] = np.minimum(c[:, 1], 2**31 - 1)
    if dup:  # duplicate input rows: several pairs of one offset per output row
        c = np.concatenate([c, c[rng.integers(0, len(c), dup)]])
    return torch.as_tensor(c[rng.permutation(len(c))], dtype=torch.int32)


def make_map(rng, n=80, ks=3, dil=1, dup=0, big=False, same=True, device="cpu"):
    cin = coords(rng, n, dup=dup, big=big)
    cout = cin if same and not dup else coords(rng, n // 2 + 1, big=big)
    ii, oi, counts = ops.kernel_map(cin, cout, ks, dil)
    identity = None
    if same and not dup and ks % 2 == 1:
        identity = (ks ** 3) // 2
    km = snn.KernelMap(ii.to(device), oi.to(device), counts.tolist(), len(cin), len(cout), identity,
                       sorted_by_out=True)
    return km, ii.numpy(), oi.numpy(), counts.numpy()


def naive(x, w, ii, oi, counts, n_out):
    """float64 loop over the pairs, in NumPy."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    out = np.zeros((n_out, w.shape[2]))
    k_of = np.repeat(np.arange(len(counts)), counts)
    for i, o, k in zip(ii, oi, k_of):
        out[o] += x[i] @ w[k]
    return out


def naive_wgrad(x, g, ii, oi, counts):
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    gw = np.zeros((len(counts), x.shape[1], g.shape[1]))
    k_of = np.repeat(np.arange(len(counts)), counts)
    for i, o, k in zip(ii, oi, k_of):
        gw[k] += np.outer(x[i], g[o])
    return gw


CASES = [dict(), dict(ks=2), dict(ks=5), dict(ks=3, dil=2), dict(dup=20), dict(big=True), dict(same=False),
         dict(n=1), dict(ks=4, same=False, dup=5)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_forward_and_gradients_match_naive(rng, device, dtype, tol, case):
    km, ii, oi, counts = make_map(rng, device=device, **CASES[case])
    cin, cout = 5, 7
    x = torch.as_tensor(rng.normal(size=(km.n_in, cin)), dtype=dtype, device=device).requires_grad_()
    w = torch.as_tensor(rng.normal(size=(len(counts), cin, cout)), dtype=dtype, device=device).requires_grad_()
    y = snn.sparse_conv(x, w, km)
    want = naive(x.detach().cpu(), w.detach().cpu(), ii, oi, counts, km.n_out)
    np.testing.assert_allclose(y.detach().cpu().double().numpy(), want, rtol=tol, atol=tol)
    g = torch.as_tensor(rng.normal(size=(km.n_out, cout)), dtype=dtype, device=device)
    y.backward(g)
    gx_want = naive(g.cpu(), w.detach().cpu().transpose(1, 2), oi, ii, counts, km.n_in)
    np.testing.assert_allclose(x.grad.cpu().double().numpy(), gx_want, rtol=tol, atol=tol)
    np.testing.assert_allclose(w.grad.cpu().double().numpy(), naive_wgrad(x.detach().cpu(), g.cpu(), ii, oi, counts),
                               rtol=tol, atol=tol)
    # the pure-torch reference agrees too (it is the oracle the CUDA kernels are held to on a GPU)
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y2 = snn.sparse_conv_reference(x2, w2, km)
    y2.backward(g)
    torch.testing.assert_close(y2, y.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(x2.grad, x.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(w2.grad, w.grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_types_accumulate_in_float32(rng, device, dtype):
    km, ii, oi, counts = make_map(rng, n=150, device=device)
    cin, cout = 16, 24
    x = torch.as_tensor(rng.normal(size=(km.n_in, cin)), dtype=dtype, device=device)
    w = torch.as_tensor(rng.normal(size=(len(counts), cin, cout)) / 8, dtype=dtype, device=device)
    y = snn.sparse_conv(x, w, km)
    assert y.dtype == dtype
    want = naive(x.float().cpu(), w.float().cpu(), ii, oi, counts, km.n_out)
    # products of half inputs are exact in float32; only the final rounding to the half type remains
    eps = {torch.bfloat16: 2**-8, torch.float16: 2**-11}[dtype]
    np.testing.assert_allclose(y.float().cpu().numpy(), want, rtol=2 * eps, atol=1e-3)
    g = torch.as_tensor(rng.normal(size=(km.n_out, cout)), dtype=dtype, device=device)
    gw = ops.sparse_conv_weight_grad(x, g, *km.pairs(), km.counts, km.identity_offset)
    np.testing.assert_allclose(gw.float().cpu().numpy(), naive_wgrad(x.float().cpu(), g.float().cpu(), ii, oi, counts),
                               rtol=2 * eps, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_wide_channels_many_pairs(rng, dtype):
    """Shapes past every internal split: > 2048 output rows (several row blocks), > 2048 pairs per offset
    (several GEMM chunks, accumulated), Cout = 300 (several weight-gradient column tiles, a ragged last one)."""
    c = coords(rng, 4000, batches=1, lo=0, hi=18)
    ii, oi, counts = ops.kernel_map(c, c, 3)
    assert counts.max() > 2048 and len(c) > 2048
    counts = counts.tolist()
    cin, cout = 3, 300
    x = torch.as_tensor(rng.normal(size=(len(c), cin)), dtype=dtype)
    w = torch.as_tensor(rng.normal(size=(27, cin, cout)) / 4, dtype=dtype)
    g = torch.as_tensor(rng.normal(size=(len(c), cout)), dtype=dtype)
    want_y = naive(x.double(), w.double(), ii.numpy(), oi.numpy(), counts, len(c))
    want_gw = naive_wgrad(x.double(), g.double(), ii.numpy(), oi.numpy(), counts)
    tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 2e-2}[dtype]
    for identity in (None, 13):
        y = ops.sparse_conv_pairs(x, w, ii, oi, counts, len(c), identity)
        np.testing.assert_allclose(y.double().numpy(), want_y, rtol=tol, atol=tol * 10)
        gw = ops.sparse_conv_weight_grad(x, g, ii, oi, counts, identity)
        np.testing.assert_allclose(gw.double().numpy(), want_gw, rtol=tol, atol=tol * 100)
        # the input gradient: the transposed weights over the input-sorted pairs
        ti, to = ops.transpose_kernel_map(ii, oi, counts, len(c))
        gx = ops.sparse_conv_pairs(g, w, to, ti, counts, len(c), identity, transpose_weight=True)
        np.testing.assert_allclose(gx.double().numpy(), naive(g.double(), w.double().transpose(1, 2), to.numpy(),
                                                              ti.numpy(), counts, len(c)), rtol=tol, atol=tol * 100)


def test_gradcheck_float64(rng):
    for case in (dict(), dict(dup=10, same=False), dict(ks=2, same=False)):
        km, *_ = make_map(rng, n=30, **case)
        x = torch.as_tensor(rng.normal(size=(km.n_in, 3)), dtype=torch.float64).requires_grad_()
        w = torch.as_tensor(rng.normal(size=(len(km.counts), 3, 2)), dtype=torch.float64).requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b: snn.sparse_conv(a, b, km), (x, w))
        assert torch.autograd.gradcheck(lambda a, b: snn.sparse_conv(a, b, km.transposed()),
                                        (torch.randn(km.n_out, 3, dtype=torch.float64, requires_grad=True), w))


def test_transposed_map_is_the_same_pairs_backwards(rng):
    km, ii, oi, counts = make_map(rng, n=90, same=False, dup=8)
    t = km.transposed()
    assert (t.n_in, t.n_out) == (km.n_out, km.n_in)
    x = torch.as_tensor(rng.normal(size=(km.n_out, 4)))
    w = torch.as_tensor(rng.normal(size=(len(counts), 4, 3)))
    np.testing.assert_allclose(snn.sparse_conv(x, w, t).numpy(), naive(x, w, oi, ii, counts, km.n_in), atol=1e-12)
    # inside each offset the transposed order is sorted by the row it writes (the input row)
    r, wr = t.pairs()
    start = 0
    for c in counts:
        seg = wr[start:start + c]
        assert bool((seg[1:] >= seg[:-1]).all())
        start += c
    assert t.transposed().pairs()[0] is km.pairs()[0]


def test_empty_offsets_empty_maps_and_zero_channels(rng):
    # a map where most offsets have no pairs; an empty input; zero output rows
    c = torch.tensor([[0, 0, 0, 0], [0, 10, 10, 10]], dtype=torch.int32)
    ii, oi, counts = ops.kernel_map(c, c, 3)
    assert (counts > 0).sum() == 1  # only the centre
    km = snn.KernelMap(ii, oi, counts.tolist(), 2, 2, 13, sorted_by_out=True)
    x, w = torch.randn(2, 3, dtype=torch.float64), torch.randn(27, 3, 2, dtype=torch.float64)
    torch.testing.assert_close(snn.sparse_conv(x, w, km), x @ w[13])
    empty = snn.KernelMap(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), [0] * 27, 0, 3)
    y = snn.sparse_conv(torch.zeros(0, 3), torch.randn(27, 3, 2), empty)
    assert y.shape == (3, 2) and not y.any()
    none_out = snn.KernelMap(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), [0] * 8, 4, 0)
    assert snn.sparse_conv(torch.randn(4, 3), torch.randn(8, 3, 2), none_out).shape == (0, 2)
    gw = ops.sparse_conv_weight_grad(torch.randn(4, 3), torch.randn(0, 2), torch.zeros(0, dtype=torch.long),
                                     torch.zeros(0, dtype=torch.long), [0] * 8)
    assert gw.shape == (8, 3, 2) and not gw.any()


def test_unsorted_user_maps_are_sorted_and_checked(rng):
    km, ii, oi, counts = make_map(rng, n=60, same=False)
    perm = np.concatenate([s + rng.permutation(c) for s, c in zip(np.r_[0, np.cumsum(counts)[:-1]], counts)])
    user = snn.KernelMap(torch.as_tensor(ii[perm]), torch.as_tensor(oi[perm]), counts.tolist(), km.n_in, km.n_out)
    x, w = torch.randn(km.n_in, 3, dtype=torch.float64), torch.randn(len(counts), 3, 2, dtype=torch.float64)
    torch.testing.assert_close(snn.sparse_conv(x, w, user), snn.sparse_conv(x, w, km))
    with pytest.raises(IndexError, match="in_idx"):
        snn.KernelMap(torch.tensor([0, 7]), torch.tensor([0, 0]), [2], 5, 1)
    with pytest.raises(IndexError, match="out_idx"):
        snn.KernelMap(torch.tensor([0, 1]), torch.tensor([0, -1]), [2], 5, 1)
    with pytest.raises(ValueError, match="counts add up"):
        snn.KernelMap(torch.tensor([0, 1]), torch.tensor([0, 0]), [3], 5, 1)
    with pytest.raises(ValueError, match="cannot map every row"):
        snn.KernelMap(torch.tensor([0, 1]), torch.tensor([0, 1]), [2], 3, 3, identity_offset=0)


def test_raw_op_rejects_bad_arguments():
    x, w = torch.randn(4, 3), torch.randn(2, 3, 5)
    ii, oi = torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1])
    ok = dict(counts=[2, 1], n_out=2)
    assert ops.sparse_conv_pairs(x, w, ii, oi, **ok).shape == (2, 5)
    with pytest.raises(ValueError, match="weight must have shape"):
        ops.sparse_conv_pairs(x, torch.randn(3, 3, 5), ii, oi, **ok)
    with pytest.raises(TypeError, match="dtype of features"):
        ops.sparse_conv_pairs(x, w.double(), ii, oi, **ok)
    with pytest.raises(ValueError, match="in_idx has 3 pairs, counts add up to 4"):
        ops.sparse_conv_pairs(x, w, ii, oi, counts=[2, 2], n_out=2)
    with pytest.raises(ValueError, match="n_out"):
        ops.sparse_conv_pairs(x, w, ii, oi, counts=[2, 1], n_out=-1)
    with pytest.raises(ValueError, match="identity"):
        ops.sparse_conv_pairs(x, w, ii, oi, **ok, identity=5)
    with pytest.raises(ValueError, match="1-D int64"):
        ops.sparse_conv_pairs(x, w, ii.int(), oi, **ok)
    # the C++ checks behind a direct torch.ops call: out of range, unsorted, never a crash
    op = torch.ops.pcgrasp.sparse_conv
    with pytest.raises(RuntimeError, match="in_idx must be in"):
        op(x, w, torch.tensor([0, 9, 2]), oi, [2, 1], 2, -1, False)
    with pytest.raises(RuntimeError, match="out_idx must be in"):
        op(x, w, ii, torch.tensor([0, 0, 2]), [2, 1], 2, -1, False)
    with pytest.raises(RuntimeError, match="sorted"):
        op(x, w, ii, torch.tensor([1, 0, 1]), [2, 1], 2, -1, False)
    with pytest.raises(RuntimeError, match="counts must be >= 0"):
        op(x, w, ii, oi, [4, -1], 2, -1, False)


def test_results_do_not_depend_on_the_thread_count(rng):
    km, *_ = make_map(rng, n=400, dup=30, same=False)
    x = torch.as_tensor(rng.normal(size=(km.n_in, 32)), dtype=torch.float32)
    w = torch.as_tensor(rng.normal(size=(len(km.counts), 32, 48)), dtype=torch.float32)
    g = torch.as_tensor(rng.normal(size=(km.n_out, 48)), dtype=torch.float32)
    old = torch.get_num_threads()
    outs = []
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append((snn.sparse_conv(x, w, km), ops.sparse_conv_weight_grad(x, g, *km.pairs(), km.counts)))
    finally:
        torch.set_num_threads(old)
    for y, gw in outs[1:]:
        assert torch.equal(y, outs[0][0]) and torch.equal(gw, outs[0][1])


def test_opcheck(rng):
    km, *_ = make_map(rng, n=40, same=False, dup=4)
    x, w = torch.randn(km.n_in, 3), torch.randn(len(km.counts), 3, 4)
    r, wr = km.pairs()
    torch.library.opcheck(torch.ops.pcgrasp.sparse_conv.default, (x, w, r, wr, km.counts, km.n_out, -1, False))
    g = torch.randn(km.n_out, 4)
    torch.library.opcheck(torch.ops.pcgrasp.sparse_conv_weight_grad.default, (x, g, r, wr, km.counts, -1))


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_cuda_matches_the_reference_on_the_gpu(rng, dtype):
    """The CUDA kernels (SIMT for float / double, tensor cores for half types) against the
    pure-torch reference on the GPU, forward and both gradients, and run to run identical."""
    for case in CASES:
        km, ii, oi, counts = make_map(rng, n=300, device="cuda", **case)
        x = torch.as_tensor(rng.normal(size=(km.n_in, 40)), dtype=dtype, device="cuda").requires_grad_()
        w = torch.as_tensor(rng.normal(size=(len(counts), 40, 36)) / 6, dtype=dtype, device="cuda").requires_grad_()
        g = torch.as_tensor(rng.normal(size=(km.n_out, 36)), dtype=dtype, device="cuda")
        y = snn.sparse_conv(x, w, km)
        y.backward(g)
        x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        y2 = snn.sparse_conv_reference(x2, w2, km)
        y2.backward(g)
        tol = {torch.float64: 1e-12, torch.float32: 1e-4}.get(dtype, 2e-2)
        torch.testing.assert_close(y.float(), y2.float(), rtol=tol, atol=tol)
        torch.testing.assert_close(x.grad.float(), x2.grad.float(), rtol=tol, atol=tol * 10)
        torch.testing.assert_close(w.grad.float(), w2.grad.float(), rtol=tol, atol=tol * 10)
        gw1 = ops.sparse_conv_weight_grad(x.detach(), g, *km.pairs(), km.counts, km.identity_offset)
        assert torch.equal(gw1, w.grad)  # deterministic weight gradient


def test_the_python_map_check_flags_exactly_what_the_cpu_kernel_rejects(rng):
    """Off the CPU the map's values are checked in Python (the CUDA kernel skips bad pairs and
    trusts the order): on random maps, valid or with one index moved out of range, one group
    unsorted, or junk in the identity offset (never read), that check finds a problem exactly
    when the CPU kernel (its own C++ check, the oracle here) raises, and names what was broken."""
    from pcgrasp.ops.sparse_conv import _map_problem

    op, wop = torch.ops.pcgrasp.sparse_conv, torch.ops.pcgrasp.sparse_conv_weight_grad
    seen = set()
    for trial in range(120):
        km, ii, oi, counts = make_map(rng, n=int(rng.integers(1, 40)), same=bool(trial % 2))
        ii, oi, counts = ii.copy(), oi.copy(), counts.copy()
        n_in, n_out, identity = km.n_in, km.n_out, _identity_of(km)
        starts = np.r_[0, np.cumsum(counts)]
        read = np.flatnonzero(np.repeat(np.arange(len(counts)), counts) != identity)
        kind = trial % 5
        if kind == 1 and len(read):
            ii[rng.choice(read)] = rng.choice([-1, n_in, n_in + 5])
        elif kind == 2 and len(read):
            oi[rng.choice(read)] = rng.choice([-3, n_out])
        elif kind == 3:
            groups = [k for k in range(len(counts)) if k != identity and len(set(oi[starts[k]:starts[k + 1]])) > 1]
            if groups:
                k = groups[rng.integers(len(groups))]
                oi[starts[k]:starts[k + 1]] = oi[starts[k]:starts[k + 1]][::-1].copy()
                ii[starts[k]:starts[k + 1]] = ii[starts[k]:starts[k + 1]][::-1].copy()
        elif kind == 4 and identity >= 0:
            ii[starts[identity]:starts[identity + 1]] = -7
        x = torch.randn(n_in, 2, dtype=torch.float64)
        w, g = torch.randn(len(counts), 2, 3, dtype=torch.float64), torch.randn(n_out, 3, dtype=torch.float64)
        t_ii, t_oi, c = torch.as_tensor(ii), torch.as_tensor(oi), counts.tolist()
        for sorted_groups, call in ((True, lambda: op(x, w, t_ii, t_oi, c, n_out, identity, False)),
                                    (False, lambda: wop(x, g, t_ii, t_oi, c, identity))):
            try:
                call()
                cpu = None
            except RuntimeError as e:
                cpu = "in_idx" if "in_idx must be" in str(e) else "out_idx" if "out_idx must" in str(e) else "sorted"
            py = _map_problem(t_ii, t_oi, c, n_in, n_out, identity, sorted_groups)
            name = None if py is None else ("sorted" if "sorted" in py[1] else py[1].split()[0])
            assert (name is None) == (cpu is None), (trial, kind, py, cpu)  # rejects exactly the same maps
            if name is not None:  # and names the index the mutation broke (an out_idx moved past the
                # group's end also unsorts it, so the CPU, whose last finding wins, may say "sorted" then)
                assert name == {1: "in_idx", 2: "out_idx", 3: "sorted"}[kind], (trial, kind, py)
            seen.add(name)
    assert seen == {None, "in_idx", "out_idx", "sorted"}  # every outcome was exercised


def _identity_of(km):
    return -1 if km.identity_offset is None else km.identity_offset


def test_nn_layers_skip_the_map_check_and_direct_calls_make_it(monkeypatch, rng):
    """pcgrasp.nn passes check_map=False for the maps it built (no extra host read per layer),
    while a direct ops call checks them (off the CPU, whose kernel checks by itself; here the CPU
    plays a device without that check); value checks off skip it."""
    import pcgrasp.ops.sparse_conv as sc

    calls = []
    real = sc._map_problem
    monkeypatch.setattr(sc, "_map_problem", lambda *a: calls.append(1) or real(*a))
    km, ii, oi, counts = make_map(rng, n=30)
    x = torch.randn(km.n_in, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(len(counts), 2, 3, dtype=torch.float64, requires_grad=True)
    # as on a device whose kernel does not check the map (the CPU kernel stands in for it)
    monkeypatch.setattr(sc, "_kernel_checks_itself", lambda t: False)
    snn.sparse_conv(x, w, km).sum().backward()  # forward, input and weight gradient: no check
    assert calls == [] and x.grad is not None and w.grad is not None
    # a direct call checks, once per call, before the kernel
    y = ops.sparse_conv_pairs(x.detach(), w.detach(), *km.pairs(), km.counts, km.n_out, _identity_of(km))
    torch.testing.assert_close(y, snn.sparse_conv_reference(x.detach(), w.detach(), km))
    assert len(calls) == 1
    bad = torch.as_tensor(oi).clone()
    bad[0] = km.n_out
    with pytest.raises(IndexError, match="out_idx must be in"):
        ops.sparse_conv_weight_grad(x.detach(), torch.randn(km.n_out, 3, dtype=torch.float64),
                                    torch.as_tensor(ii), bad, km.counts, _identity_of(km))
    with ops.data_checks(False):  # value checks off: no check
        ops.sparse_conv_pairs(x.detach(), w.detach(), *km.pairs(), km.counts, km.n_out, _identity_of(km))
    assert len(calls) == 2
