"""Parity cases shared by tools/make_minkowski_fixtures.py (runs MinkowskiEngine) and
tests/test_minkunet.py (runs pcgrasp on the committed fixtures, or on both live when ME imports).

Every case: random unique coordinates (2 ragged batches, negative values), float64 features,
parameters drawn from NumPy with a per-name seed (so the fixture need not store them), an
upstream gradient G on the output rows sorted by coordinate. Outputs are compared by coordinate
(ME orders rows its own way): out_coords (sorted), out_feats, and the gradients of the input
features and of every parameter under loss = sum(out_sorted * G)."""
import zlib

import numpy as np
import torch

# (type, in, out, kernel, stride, dilation, bias) chains
LAYER_CASES = {
    "conv3_bias": [("conv", 3, 4, 3, 1, 1, True)],
    "conv5": [("conv", 3, 4, 5, 1, 1, False)],
    "conv3_dil2": [("conv", 3, 4, 3, 1, 2, False)],
    "conv1_bias": [("conv", 3, 4, 1, 1, 1, True)],
    "conv2s2_conv3s2": [("conv", 3, 4, 2, 2, 1, False), ("conv", 4, 5, 3, 2, 1, False)],
    "down_up_k2": [("conv", 3, 4, 2, 2, 1, False), ("convtr", 4, 5, 2, 2, 1, True)],
    "down_up_k3": [("conv", 3, 4, 3, 2, 1, False), ("conv", 4, 4, 3, 2, 1, False),
                   ("convtr", 4, 5, 3, 2, 1, False), ("convtr", 5, 2, 3, 2, 1, False)],
}
UNET_PLANES = (4, 6, 8, 10, 6, 6, 4, 4)
UNET_IN, UNET_OUT = 1, 3
CASES = list(LAYER_CASES) + ["minkunet14d"]


def make_inputs(name, seed):
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    n, span = (400, 9) if name == "minkunet14d" else (150, 5)
    c = np.concatenate([rng.integers(0, 2, (n, 1)), rng.integers(-span, span, (n, 3))], 1)
    c = np.unique(c, axis=0)
    c = c[rng.permutation(len(c))].astype(np.int32)
    cin = UNET_IN if name == "minkunet14d" else LAYER_CASES[name][0][1]
    return {"coords": c, "feats": rng.normal(size=(len(c), cin)), "param_seed": np.array(seed)}


def fill_parameters(module, seed):
    """Deterministic values for every parameter / BN buffer, by name."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
            if name.endswith(("bn.weight", "running_var")):
                v = rng.uniform(0.5, 1.5, t.shape)
            elif name.endswith(("bn.bias", "running_mean")):
                v = rng.normal(0, 0.1, t.shape)
            else:
                fan_in = int(np.prod(t.shape[:-1])) if t.dim() > 1 else 1
                v = rng.normal(0, 1.0 / np.sqrt(fan_in), t.shape)
            t.copy_(torch.as_tensor(v, dtype=t.dtype))


def sort_rows(coords, feats):
    order = torch.as_tensor(np.lexsort(coords.cpu().numpy().T[::-1]).copy())
    return coords[order], feats[order]


def upstream(name, n, c):
    rng = np.random.default_rng([7, zlib.crc32(name.encode())])
    return torch.as_tensor(rng.normal(size=(n, c)))


def _collect(name, module, feats, out_coords, out_feats, prefix=""):
    oc, of = sort_rows(out_coords, out_feats)
    G = upstream(name, *of.shape)
    (of * G).sum().backward()
    res = {prefix + "out_coords": oc.to(torch.int32), prefix + "out_feats": of.detach()}
    if not prefix:
        res["grad.feats"] = feats.grad.clone()
        for pname, p in module.named_parameters():
            res["grad." + pname] = p.grad.clone()
    return res


def _run(name, fx, backend):
    """backend: 'pcgrasp' or 'me'; returns the outputs dict."""
    torch.manual_seed(0)
    coords = torch.as_tensor(np.asarray(fx["coords"]), dtype=torch.int32)
    feats = torch.as_tensor(np.asarray(fx["feats"]), dtype=torch.float64)
    seed = int(np.asarray(fx["param_seed"]))
    if backend == "me":
        import MinkowskiEngine as ME

        def tensor(f):
            return ME.SparseTensor(f, coordinates=coords)
    else:
        import pcgrasp.nn as snn

        def tensor(f):
            return snn.SparseTensor(f, coords)
    module = build(name, backend).double()
    fill_parameters(module, seed)
    out = {}
    modes = [True] if name != "minkunet14d" else [True, False]
    for train in modes:
        module.train(train)
        module.zero_grad()
        f = feats.clone().requires_grad_()
        y = module(tensor(f))
        out.update(_collect(name, module, f, y.C, y.F, prefix="" if train else "eval."))
        if name == "minkunet14d" and train:
            fill_parameters(module, seed)  # reset the running statistics the train pass updated
    return out


def run_pcgrasp(name, fx):
    return _run(name, fx, "pcgrasp")


def run_me(name, fx):
    return _run(name, fx, "me")


def build(name, backend):
    if backend == "pcgrasp":
        import pcgrasp.nn as snn
        from pcgrasp.models import MinkUNet14D
        if name == "minkunet14d":
            return MinkUNet14D(UNET_IN, UNET_OUT, UNET_PLANES)
        mods = [(snn.SparseConv3d if t == "conv" else snn.SparseConvTranspose3d)(i, o, k, stride=s, dilation=d, bias=b)
                for t, i, o, k, s, d, b in LAYER_CASES[name]]
        return torch.nn.Sequential(*mods)
    import MinkowskiEngine as ME
    if name == "minkunet14d":
        from _minkowski_unet import MEMinkUNet14D
        return MEMinkUNet14D(UNET_IN, UNET_OUT, UNET_PLANES)
    mods = [(ME.MinkowskiConvolution if t == "conv" else ME.MinkowskiConvolutionTranspose)(
        i, o, kernel_size=k, stride=s, dilation=d, bias=b, dimension=3) for t, i, o, k, s, d, b in LAYER_CASES[name]]
    return torch.nn.Sequential(*mods)
