"""The frozen probe of one finished pretraining on pose-normalised probe clouds: a test of the
size / pose hypothesis (README). The same 600 held-out shapes as the probe, read three ways —
as generated (the probe's own clouds), pose-normalised (`data.augment.canonical_pose`: centred
on the mean, rotated into the principal axes, largest variance first, each axis's sign set by
the third moment along it) and pose + size normalised (the same, then scaled to an RMS radius of
5 cm, `train.jepa.CANONICAL_RMS`) — for the pretrained context encoder and the random encoder of
the same seed, mean + max pooled as the probe pools.

    python results/jepa_targets/probe_canonical.py RUN_DIR SEED [key=value ...]   # >> probe_canonical.txt

RUN_DIR is a `pcgrasp pretrain --config study_small` output (last.pt); the overrides are the
run's own, so that the model is built as it was trained.
"""
import sys

import torch

from pcgrasp.data.augment import canonical_pose
from pcgrasp.train.jepa import CANONICAL_RMS, encoder_features
from probe_variants import load_run, write


def main(run, seed, *overrides):
    seed = int(seed)
    _, ds, clouds, prop, model, rand = load_run(run, seed, [*overrides, "pretrain.canonical=none"])
    sets = {"as_generated": clouds, "pose": canonical_pose(clouds), "pose+size": canonical_pose(clouds, CANONICAL_RMS)}
    rows = []
    for clouds_name, x_clouds in sets.items():
        for name, enc in (("jepa", model.context), ("random", rand)):
            with torch.no_grad():
                rows.append(((clouds_name, name), encoder_features(enc, x_clouds, "cpu")))
    write("probe_canonical.txt", run, rows, ds, prop, seed)


if __name__ == "__main__":
    main(*sys.argv[1:])
