"""pcgrasp.nn layers against naive dictionary-based float64 references (tests/_sparse_reference.py)."""
import collections

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import pcgrasp.nn as snn
from pcgrasp import ops
import _sparse_reference as ref
from conftest import DEVICES, requires_cuda


def random_map(rng, n=120, batches=3, lo=-5, hi=5):
    """Unique rows, ragged batches (random sizes), negative coordinates, shuffled."""
    c = np.concatenate([rng.integers(0, batches, (n, 1)), rng.integers(lo, hi, (n, 3))], 1)
    c = np.unique(c, axis=0)
    c = c[rng.permutation(len(c))]
    return torch.as_tensor(c, dtype=torch.int32)


def tuples(c):
    return [tuple(r) for r in c.tolist()]


def sparse(rng, C=3, dtype=torch.float64, device="cpu", **kw):
    c = random_map(rng, **kw)
    return snn.SparseTensor(torch.as_tensor(rng.normal(size=(len(c), C)), dtype=dtype, device=device), c.to(device))


@pytest.fixture(params=["fused", "reference"])
def conv_impl(request, monkeypatch):
    """The layers run on the fused kernels (csrc/sparse_conv); the pure-torch reference
    (snn.sparse_conv_reference) runs the same layers too: both are held to the dictionary oracle."""
    from pcgrasp.nn import modules
    if request.param == "reference":
        monkeypatch.setattr(modules, "sparse_conv", snn.sparse_conv_reference)
    return request.param


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ks,dil,bias", [(3, 1, False), (5, 1, True), (2, 1, False), (3, 2, True), (1, 1, True),
                                         (4, 1, False)])
def test_conv_stride1_matches_reference(rng, device, ks, dil, bias, conv_impl):
    x = sparse(rng, device=device)
    conv = snn.SparseConv3d(3, 4, ks, dilation=dil, bias=bias).double().to(device)
    assert conv.kernel.shape == ((3, 4) if ks == 1 else (ks ** 3, 3, 4))
    if bias:
        assert conv.bias.shape == (1, 4)
    y = conv(x)
    assert y.tensor_stride == 1 and y.C is x.C  # submanifold: same map, same row order
    _, want = ref.conv(tuples(x.C.cpu()), x.F.cpu(), conv.kernel.detach().cpu(), 1, ks, dil=dil,
                       bias=None if not bias else conv.bias.detach().cpu())
    torch.testing.assert_close(y.F.cpu(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ks", [2, 3])
def test_strided_conv_and_transpose_match_reference(rng, device, ks, conv_impl):
    x = sparse(rng, device=device, lo=-9, hi=9, n=200)
    down1 = snn.SparseConv3d(3, 4, ks, stride=2).double().to(device)
    down2 = snn.SparseConv3d(4, 5, ks, stride=2).double().to(device)
    up2 = snn.SparseConvTranspose3d(5, 4, ks, stride=2, bias=True).double().to(device)
    up1 = snn.SparseConvTranspose3d(4, 2, ks, stride=2).double().to(device)
    y1 = down1(x)
    y2 = down2(y1)
    z1 = up2(y2)
    z0 = up1(z1)
    c0 = tuples(x.C.cpu())
    W = lambda m: m.kernel.detach().cpu()  # noqa: E731
    c1, r1 = ref.conv(c0, x.F.cpu(), W(down1), 1, ks, stride=2)
    c2, r2 = ref.conv(c1, r1, W(down2), 2, ks, stride=2)
    assert y1.tensor_stride == 2 and y2.tensor_stride == 4 and z1.tensor_stride == 2 and z0.tensor_stride == 1
    assert tuples(y1.C.cpu()) == c1 and tuples(y2.C.cpu()) == c2  # floor, sorted
    torch.testing.assert_close(y1.F.cpu(), r1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y2.F.cpu(), r2, rtol=1e-12, atol=1e-12)
    q1 = ref.conv_transpose(c2, r2, W(up2), c1, 2, ks, bias=up2.bias.detach().cpu())
    q0 = ref.conv_transpose(c1, q1, W(up1), c0, 1, ks)
    assert z1.C is y1.C and z0.C is x.C  # back onto the maps the strided convs came from
    torch.testing.assert_close(z1.F.cpu(), q1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z0.F.cpu(), q0, rtol=1e-12, atol=1e-12)


def test_offset_order_and_correlation():
    """One input voxel at (1, 0, 0), one output at the origin: only offset k = 14 (+x) connects,
    and the result is F @ W[14] (a correlation: out[u] += F[u + offset])."""
    c = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.int32)
    F = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    conv = snn.SparseConv3d(1, 1, 3).double()
    with torch.no_grad():
        conv.kernel.copy_(torch.arange(27, dtype=torch.float64).reshape(27, 1, 1))
    y = conv(snn.SparseTensor(F, c))
    assert y.F[:, 0].tolist() == [14.0, 13.0]  # origin sees +x (k=14); (1,0,0) sees itself (k=13)


def test_gradcheck_conv_layers(rng, conv_impl):
    """Gradients of features, kernel and bias through the modules (functional_call swaps in
    the differentiated parameters)."""
    x = sparse(rng, C=2, n=40, lo=-3, hi=3)
    down = snn.SparseConv3d(2, 2, 2, stride=2).double()
    y = down(x)
    for layer, inp in [(snn.SparseConv3d(2, 3, 3, bias=True), x), (snn.SparseConv3d(2, 3, 2, stride=2, bias=True), x),
                       (snn.SparseConv3d(2, 3, 1, bias=True), x),
                       (snn.SparseConvTranspose3d(2, 3, 2, stride=2, bias=True), y)]:
        layer = layer.double()

        def f(F, W, b, layer=layer, inp=inp):
            return torch.func.functional_call(layer, {"kernel": W, "bias": b}, (inp.replace_features(F),)).F
        args = (inp.F.detach().clone().requires_grad_(), layer.kernel.detach().clone().requires_grad_(),
                layer.bias.detach().clone().requires_grad_())
        assert torch.autograd.gradcheck(f, args)


def test_module_gradients_match_reference(rng, conv_impl):
    x = sparse(rng, C=3, n=80)
    F = x.F.clone().requires_grad_()
    conv = snn.SparseConv3d(3, 2, 3).double()
    y = conv(x.replace_features(F))
    (y.F ** 2).sum().backward()
    W = conv.kernel.detach().clone().requires_grad_()
    F2 = x.F.clone().requires_grad_()
    _, r = ref.conv(tuples(x.C), F2, W, 1, 3)
    (r ** 2).sum().backward()
    torch.testing.assert_close(F.grad, F2.grad)
    torch.testing.assert_close(conv.kernel.grad, W.grad)


def test_batchnorm_relu_cat_add(rng):
    x = sparse(rng, C=4)
    bn = snn.SparseBatchNorm(4).double()
    assert set(bn.state_dict()) == {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                    "bn.num_batches_tracked"}
    with torch.no_grad():
        bn.bn.weight.uniform_(0.5, 2)
        bn.bn.bias.normal_()
    y = bn(x)
    sd = {k: v for k, v in bn.state_dict().items()}
    torch.testing.assert_close(y.F, ref.batch_norm(x.F, {"bn." + k[3:]: v for k, v in sd.items()}, "bn.", True))
    bn.eval()
    torch.testing.assert_close(bn(x).F, ref.batch_norm(x.F, bn.state_dict(), "bn.", False))
    r = snn.SparseReLU()(x)
    assert torch.equal(r.F, x.F.clamp_min(0)) and bool((x.F < 0).any())  # input untouched
    x2 = x.replace_features(x.F.clone())
    r2 = snn.SparseReLU(inplace=True)(x2)
    assert torch.equal(r2.F, r.F) and torch.equal(x2.F, r.F) and r2.F.data_ptr() == x2.F.data_ptr()  # overwritten
    # in place after a batch norm (as in the MinkUNet blocks): same values and gradients as out of place
    bn.train()
    grads = []
    for inplace in (False, True):
        xi = x.F.detach().clone().requires_grad_()
        out = snn.SparseReLU(inplace=inplace)(bn(x.replace_features(xi)))
        out.F.square().sum().backward()
        grads.append((out.F.detach(), xi.grad))
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="in-place"):  # a leaf that requires grad: torch's rule
        snn.SparseReLU(inplace=True)(x.replace_features(x.F.detach().clone().requires_grad_()))
    cat = snn.sparse_cat(x, r)
    assert torch.equal(cat.F, torch.cat([x.F, r.F], 1)) and cat.C is x.C
    assert torch.equal((x + r).F, x.F + r.F)
    other = sparse(rng, C=4)
    with pytest.raises(ValueError, match="same coordinate map"):
        snn.sparse_cat(x, other)
    with pytest.raises(ValueError, match="same coordinate map"):
        x + other


def test_coordinate_manager_caches_maps(rng):
    x = sparse(rng, C=2, lo=-8, hi=8)
    cm = x.coordinate_manager
    a, b = snn.SparseConv3d(2, 2, 3), snn.SparseConv3d(2, 2, 3)
    a(x.replace_features(x.F.float()))
    n = len(cm._kernel_maps)
    b(x.replace_features(x.F.float()))
    assert len(cm._kernel_maps) == n  # built once per (map, kernel, stride)
    d = snn.SparseConv3d(2, 2, 2, stride=2)
    y = d(x.replace_features(x.F.float()))
    n = len(cm._kernel_maps)
    u = snn.SparseConvTranspose3d(2, 2, 2, stride=2)(y)
    assert len(cm._kernel_maps) == n and u.C is x.C  # the transposed conv reuses the strided conv's map


def test_from_points_and_back(rng):
    B, N = 3, 60
    pts = torch.as_tensor(rng.normal(size=(B, N, 3)) * 0.05)
    feats = torch.as_tensor(rng.normal(size=(B, N, 2)))
    lengths = torch.tensor([0, 17, 60])
    for reduce in ("first", "mean"):
        x, inverse = snn.sparse_tensor_from_points(pts, feats, 0.02, lengths, reduce=reduce)
        groups = {}
        for b in range(B):
            for i in range(int(lengths[b])):
                key = (b, *np.floor(pts[b, i].numpy() / 0.02).astype(int).tolist())
                groups.setdefault(key, []).append(feats[b, i])
        assert tuples(x.C) == sorted(groups)
        want = torch.stack([g[0] if reduce == "first" else torch.stack(g).mean(0) for _, g in sorted(groups.items())])
        torch.testing.assert_close(x.F, want)
        back = snn.features_at_points(x, inverse).reshape(B, N, 2)
        assert bool((back[0] == 0).all()) and bool((back[1, 17:] == 0).all())
        c = x.C.tolist()
        for b, i in [(1, 0), (1, 16), (2, 59)]:
            key = [b, *np.floor(pts[b, i].numpy() / 0.02).astype(int).tolist()]
            assert torch.equal(back[b, i], x.F[c.index(key)])


def test_empty_tensor():
    x = snn.SparseTensor(torch.zeros(0, 3), torch.zeros(0, 4, dtype=torch.int32))
    y = snn.SparseConv3d(3, 5, 3)(x)
    z = snn.SparseConv3d(5, 5, 2, stride=2)(y)
    assert y.F.shape == (0, 5) and z.F.shape == (0, 5)
    assert snn.SparseConvTranspose3d(5, 1, 2, stride=2)(z).F.shape == (0, 1)


def test_malformed_inputs(rng):
    c = random_map(rng, 20)
    F = torch.zeros(len(c), 3)
    with pytest.raises(TypeError, match="coordinates must be int32"):
        snn.SparseTensor(F, c.long())
    with pytest.raises(ValueError, match="coordinates must be a"):
        snn.SparseTensor(F, c[:, :3])
    with pytest.raises(ValueError, match="features"):
        snn.SparseTensor(F[:-1], c)
    with pytest.raises(ValueError, match="unique"):
        snn.SparseTensor(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="multiples of tensor_stride"):
        snn.SparseTensor(torch.zeros(1, 3), torch.tensor([[0, 1, 2, 2]], dtype=torch.int32), tensor_stride=2)
    with pytest.raises(ValueError, match="tensor_stride"):
        snn.SparseTensor(F, c, tensor_stride=0)
    x = snn.SparseTensor(F, c)
    with pytest.raises(ValueError, match="input channels"):
        snn.SparseConv3d(4, 2, 3)(x)
    with pytest.raises(TypeError, match="SparseTensor"):
        snn.SparseConv3d(3, 2, 3)(F)
    with pytest.raises(KeyError, match="no coordinate map at tensor stride"):
        snn.SparseConvTranspose3d(3, 2, 2, stride=2)(snn.SparseTensor(F, c * 2, tensor_stride=2))
    with pytest.raises(ValueError, match="not divisible"):
        snn.SparseConvTranspose3d(3, 2, 2, stride=4)(snn.SparseConv3d(3, 3, 3, stride=2)(x))
    with pytest.raises(ValueError, match="kernel_size"):
        snn.SparseConv3d(3, 2, 0)
    with pytest.raises(ValueError, match="out_channels"):
        snn.SparseConv3d(3, -2, 3)
    with pytest.raises(TypeError, match="same dtype"):
        snn.SparseConv3d(3, 2, 3)(x.replace_features(F.double()))
    with pytest.raises(ValueError, match="different map at tensor stride 1"):
        snn.SparseTensor(F, c.flip(0), coordinate_manager=x.coordinate_manager)
    assert snn.SparseTensor(F * 2, coordinate_manager=x.coordinate_manager).C is x.C
    with pytest.raises(ValueError, match="coordinates are required"):
        snn.SparseTensor(F)
    with pytest.raises(IndexError, match="inverse"):
        snn.features_at_points(x, torch.tensor([0, len(c)]))


def test_cpu_autocast_bf16(rng):
    x = sparse(rng, C=8, dtype=torch.float32)
    conv = snn.SparseConv3d(8, 4, 3)
    want = conv(x).F
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.F.dtype == torch.bfloat16
    torch.testing.assert_close(y.F.float(), want, rtol=3e-2, atol=3e-2)
    y.F.float().sum().backward()
    assert conv.kernel.grad.dtype == torch.float32


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_half(rng, dtype):
    x = sparse(rng, C=16, dtype=torch.float32, device="cuda", n=400, lo=-10, hi=10)
    conv = snn.SparseConv3d(16, 8, 3).cuda()
    want = conv(x).F
    with torch.autocast("cuda", dtype=dtype):
        y = conv(x)
    assert y.F.dtype == dtype
    torch.testing.assert_close(y.F.float(), want, rtol=2e-2, atol=2e-2)
    y.F.float().sum().backward()
    assert conv.kernel.grad.dtype == torch.float32 and bool(torch.isfinite(conv.kernel.grad).all())


@requires_cuda
def test_cuda_matches_cpu(rng):
    x = sparse(rng, C=4, n=500, lo=-12, hi=12)
    layers = torch.nn.ModuleList([snn.SparseConv3d(4, 6, 3), snn.SparseConv3d(6, 6, 2, stride=2),
                                  snn.SparseConvTranspose3d(6, 3, 2, stride=2)]).double()

    def run(x):
        y = layers[2](layers[1](layers[0](x)))
        y.F.pow(2).sum().backward()
        return y.F.detach(), [p.grad.clone() for p in layers.parameters()]
    a, ga = run(x)
    layers.zero_grad()
    layers.cuda()
    b, gb = run(snn.SparseTensor(x.F.cuda(), x.C.cuda()))
    torch.testing.assert_close(a, b.cpu())
    for p, q in zip(ga, gb):
        torch.testing.assert_close(p, q.cpu())


class _HostReads(TorchDispatchMode):
    """Counts what makes a GPU wait for the host: scalar reads (.item(), bool(), int()),
    torch.equal, and the pcgrasp ops whose output size depends on the data."""
    SYNC = {"aten._local_scalar_dense.default", "aten.equal.default", "aten.is_nonzero.default"}

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name in self.SYNC or name.startswith("pcgrasp."):
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def test_a_network_reads_the_host_once_per_kernel_map_not_per_layer(monkeypatch):
    """MinkUNet14D has ~30 convolutions over 10 distinct kernel maps: each map is built once
    (one kernel_map op, one read of its per-offset sizes), every layer with the same key reuses
    it, and a second pass over the same coordinate manager reads nothing at all."""
    from pcgrasp.models import MinkUNet14D

    tolist = []
    real = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: tolist.append(1) or real(self))
    g = torch.Generator().manual_seed(0)
    pts, feats = torch.rand(2, 2000, 3, generator=g), torch.rand(2, 2000, 3, generator=g)
    x, _ = snn.sparse_tensor_from_points(pts, feats, 0.02)
    net = MinkUNet14D(3, 8, (8,) * 8).eval()
    convs = sum(isinstance(m, (snn.SparseConv3d, snn.SparseConvTranspose3d)) for m in net.modules())
    with _HostReads() as reads, torch.no_grad():
        net(x)
    maps = len(x.coordinate_manager._kernel_maps)
    assert convs >= 25 and maps == 10
    sized = {k: v for k, v in reads.counts.items() if "sparse_conv" not in k}
    assert sized == {"pcgrasp.kernel_map.default": maps, "pcgrasp.downsample_coords.default": 4}
    assert reads.counts["pcgrasp.sparse_conv.default"] == sum(
        isinstance(m, (snn.SparseConv3d, snn.SparseConvTranspose3d)) and not m.use_mm for m in net.modules())
    assert len(tolist) == maps
    with _HostReads() as again, torch.no_grad():
        net(x.replace_features(x.F + 1))
    assert {k for k in again.counts if "sparse_conv" not in k} == set() and len(tolist) == maps
    # training: forward + backward on the same maps, the fused kernels and no host read at all
    net.train()
    with _HostReads() as step:
        net(x.replace_features(x.F.requires_grad_())).F.square().sum().backward()
    assert set(step.counts) == {"pcgrasp.sparse_conv.default", "pcgrasp.sparse_conv_weight_grad.default"}
    assert len(tolist) == maps


@requires_cuda
def test_cuda_training_step_on_built_maps_never_syncs():
    """Once the kernel maps exist, a forward + backward step on CUDA queues work without waiting for
    the GPU: torch's sync debug mode raises on any synchronizing call (a .item(), a pageable copy)."""
    from pcgrasp.models import MinkUNet14D

    g = torch.Generator().manual_seed(0)
    pts, feats = torch.rand(2, 3000, 3, generator=g).cuda(), torch.rand(2, 3000, 3, generator=g).cuda()
    x, _ = snn.sparse_tensor_from_points(pts, feats, 0.02)
    net = MinkUNet14D(3, 16, (16,) * 8).cuda().train()
    net(x).F.square().sum().backward()  # builds and caches the maps (one host read each)
    torch.cuda.synchronize()
    for dtype in (None, torch.bfloat16):
        torch.cuda.set_sync_debug_mode("error")
        try:
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                y = net(x.replace_features(x.F + 1))
            y.F.float().square().sum().backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
