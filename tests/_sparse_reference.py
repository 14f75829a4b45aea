"""Naive float64 references for pcgrasp.nn, written with Python dictionaries and loops,
independent of pcgrasp's kernel maps. A sparse tensor here is (coords list of (b, x, y, z)
tuples, features [V, C] float64 tensor, tensor stride int)."""
import torch


def offsets(ks, dil, ts):
    """ME's kernel region: x fastest, then y, then z; odd sizes centred, even ones not."""
    def axis(k):
        return [(a - k // 2) * dil * ts for a in range(k)] if k % 2 else [a * ts for a in range(k)]
    return [(x, y, z) for z in axis(ks) for y in axis(ks) for x in axis(ks)]


def downsample(coords, step):
    return sorted({(b, x // step * step, y // step * step, z // step * step) for b, x, y, z in coords})


def conv(coords, F, W, ts, ks, stride=1, dil=1, bias=None):
    """out[u] = sum_k F[u + offset_k] @ W[k] on the output map."""
    W = W.reshape(-1, *W.shape[-2:])
    out_coords = list(coords) if stride == 1 else downsample(coords, ts * stride)
    row = {c: i for i, c in enumerate(coords)}
    out = torch.zeros(len(out_coords), W.shape[-1], dtype=F.dtype)
    for o, (b, x, y, z) in enumerate(out_coords):
        for k, (dx, dy, dz) in enumerate(offsets(ks, dil, ts)):
            i = row.get((b, x + dx, y + dy, z + dz))
            if i is not None:
                out[o] += F[i] @ W[k]
    if bias is not None:
        out = out + bias.reshape(1, -1)
    return out_coords, out


def conv_transpose(coarse, F, W, fine, fine_ts, ks, bias=None):
    """out[v] = sum over coarse u, offset k with v = u + offset_k (fine stride) of F[u] @ W[k]."""
    W = W.reshape(-1, *W.shape[-2:])
    row = {c: i for i, c in enumerate(fine)}
    out = torch.zeros(len(fine), W.shape[-1], dtype=F.dtype)
    for u, (b, x, y, z) in enumerate(coarse):
        for k, (dx, dy, dz) in enumerate(offsets(ks, 1, fine_ts)):
            v = row.get((b, x + dx, y + dy, z + dz))
            if v is not None:
                out[v] += F[u] @ W[k]
    if bias is not None:
        out = out + bias.reshape(1, -1)
    return out


def batch_norm(F, sd, prefix, train, eps=1e-5):
    w, b = sd[prefix + "weight"], sd[prefix + "bias"]
    if train:
        mean, var = F.mean(0), F.var(0, unbiased=False)
    else:
        mean, var = sd[prefix + "running_mean"], sd[prefix + "running_var"]
    return (F - mean) / torch.sqrt(var + eps) * w + b


def basic_block(coords, F, sd, p, ts, train):
    _, h = conv(coords, F, sd[p + "conv1.kernel"], ts, 3)
    h = torch.relu(batch_norm(h, sd, p + "norm1.bn.", train))
    _, h = conv(coords, h, sd[p + "conv2.kernel"], ts, 3)
    h = batch_norm(h, sd, p + "norm2.bn.", train)
    if p + "downsample.0.kernel" in sd:
        F = batch_norm(F @ sd[p + "downsample.0.kernel"], sd, p + "downsample.1.bn.", train)
    return torch.relu(h + F)


def minkunet14d(coords, F, sd, train):
    """GSNet's MinkUNet14D forward, driven by a state_dict (float64)."""
    relu = torch.relu
    h = relu(batch_norm(conv(coords, F, sd["conv0p1s1.kernel"], 1, 5)[1], sd, "bn0.bn.", train))
    maps, skips = [coords], [h]
    enc = ["conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2"]
    for i, name in enumerate(enc):
        ts = 2 ** i
        c2, h = conv(maps[-1], h, sd[name + ".kernel"], ts, 2, stride=2)
        h = relu(batch_norm(h, sd, f"bn{i + 1}.bn.", train))
        h = basic_block(c2, h, sd, f"block{i + 1}.0.", ts * 2, train)
        maps.append(c2)
        skips.append(h)
    dec = ["convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2"]
    for j, name in enumerate(dec):
        fine_ts = 2 ** (3 - j)
        h = conv_transpose(maps[4 - j], h, sd[name + ".kernel"], maps[3 - j], fine_ts, 2)
        h = relu(batch_norm(h, sd, f"bntr{4 + j}.bn.", train))
        h = torch.cat([h, skips[3 - j]], 1)
        h = basic_block(maps[3 - j], h, sd, f"block{5 + j}.0.", fine_ts, train)
    return h @ sd["final.kernel"] + sd["final.bias"]
