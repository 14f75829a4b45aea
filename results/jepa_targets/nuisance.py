"""Diagnostic: how much of a cloud's orientation and size the frozen features
encode (ridge R^2 on the probe's held-out shapes), JEPA encoder vs random.

    python results/jepa_targets/nuisance.py /tmp/jepa_exp/<run> SEED
"""
import sys

import numpy as np
import torch

from pcgrasp.data.procedural import ProceduralShapes
from pcgrasp.eval.probe import ridge_r2
from pcgrasp.models import PointEncoder
from pcgrasp.train.jepa import encoder_features, encoder_kwargs


def main(run, seed):
    state = torch.load(f"{run}/encoder.pt", weights_only=False)
    m = state["model_cfg"]
    n = 600
    ds = ProceduralShapes(n, 512, seed, start=10_000_000)
    clouds = torch.stack([ds[i] for i in range(n)])
    c = clouds.numpy().astype(np.float64)
    axes, size = [], []
    for x in c:
        x = x - x.mean(0)
        w, v = np.linalg.eigh(np.cov(x.T))
        axes.append(np.abs(v[:, -1]))        # |principal axis|, sign-free
        size.append(np.sqrt(w[-1]))
    axes, size = np.array(axes), np.array(size)
    out = {}
    for init in ("jepa", "random"):
        torch.manual_seed(seed)
        enc = PointEncoder(**encoder_kwargs(m))
        if init == "jepa":
            enc.load_state_dict(state["encoder"])
        f = encoder_features(enc, clouds, "cpu")
        out[init] = {"axis_r2": float(np.mean([ridge_r2(f, axes[:, j], seed=seed) for j in range(3)])),
                     "size_r2": ridge_r2(f, size, seed=seed)}
    print(run, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
