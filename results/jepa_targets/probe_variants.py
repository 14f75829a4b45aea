"""The frozen probe of one finished pretraining, read three ways: which encoder (the context
encoder that `pcgrasp pretrain` probes and exports, the EMA target encoder that I-JEPA
evaluates, a random one seeded as the probe's) and which pooling (the probe's mean + max over
tokens, or the mean alone). Same 600 held-out shapes, same probes (pcgrasp.eval.probe).

    python results/jepa_targets/probe_variants.py RUN_DIR SEED [key=value ...]   # >> probe_variants.txt

RUN_DIR is a `pcgrasp pretrain --config study_small` output (last.pt, log.csv); the overrides
are the run's own, so that the model is built as it was trained.
"""
import os
import sys

import numpy as np
import torch

from pcgrasp.cli.common import config_path
from pcgrasp.eval.probe import elongation, probe_report
from pcgrasp.models.jepa import PointEncoder
from pcgrasp.train.config import load_config
from pcgrasp.train.jepa import build_jepa, encoder_features, encoder_kwargs, probe_clouds

HERE = os.path.dirname(os.path.abspath(__file__))


@torch.no_grad()
def pooled(encoder, clouds):
    x = encoder_features(encoder, clouds, "cpu")  # the probe's own features: [mean, max] over tokens
    return {"mean+max": x, "mean": x[:, :encoder.dim]}


def load_run(run, seed, overrides):
    """(cfg, the probe's shapes, their clouds in the run's frame, elongations, the trained PointJEPA,
    the random encoder of the seed) of a finished `pcgrasp pretrain --config study_small` run."""
    cfg = load_config(config_path("study_small"), [f"seed={seed}", *overrides])
    ds, clouds = probe_clouds(cfg, int(cfg["probe"]["shapes"]))
    prop = np.array([elongation(c.numpy()) for c in clouds])
    model = build_jepa(cfg)
    model.load_state_dict(torch.load(os.path.join(run, "last.pt"), map_location="cpu", weights_only=False)["model"])
    torch.manual_seed(seed)
    return cfg, ds, clouds, prop, model, PointEncoder(**encoder_kwargs(cfg["model"]))


def write(name, run, rows, ds, prop, seed):
    """Probes each (labels, features) of ``rows``; prints and appends one line each to ``name``."""
    lines = []
    for labels, x in rows:
        r = probe_report(x, ds.labels, prop, seed)
        lines.append(f"{os.path.basename(run.rstrip('/')):<22} " + " ".join(f"{a:<8}" for a in labels)
                     + f" knn {r['knn_acc']:.3f} linear {r['linear_acc']:.3f} elong_r2 {r['property_r2']:.3f}")
    with open(os.path.join(HERE, name), "a") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(run, seed, *overrides):
    seed = int(seed)
    _, ds, clouds, prop, model, rand = load_run(run, seed, overrides)
    rows = [((name, pool), x) for name, enc in (("context", model.context), ("target", model.target), ("random", rand))
            for pool, x in pooled(enc, clouds).items()]
    write("probe_variants.txt", run, rows, ds, prop, seed)


if __name__ == "__main__":
    main(*sys.argv[1:])
