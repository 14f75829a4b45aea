"""Object-level, category-stratified splits written as JSON manifests.

- val and test: 10 % each of every category's objects (at least one each when
  a category has >= 3 objects), chosen by ``split_seed``; fixed across
  budgets and packs.
- training budgets 1/10/25/100 % of the remaining objects, at least one object
  per category; nested (a smaller budget is a subset of a larger one).
- packs A and B: the same budgets drawn with different manifest seeds.
- optional held-out category: all its objects go to "heldout" only.
"""
import json
import math
import os

import numpy as np

BUDGETS = (0.01, 0.10, 0.25, 1.0)


def _by_category(object_ids):
    cats = {}
    for oid in sorted(object_ids):
        cats.setdefault(oid.split("/")[0], []).append(oid)
    return cats


def make_splits(object_ids, out_dir=None, split_seed=0, pack_seeds=None, budgets=BUDGETS, heldout_category=None):
    """Returns {(pack, budget): manifest dict}; writes <out_dir>/<pack>_<budget>.json."""
    pack_seeds = pack_seeds or {"A": 1, "B": 2}
    cats = _by_category(object_ids)
    if not cats:
        raise ValueError("no objects to split (the grasp root holds no recordings)")
    if heldout_category is not None and heldout_category not in cats:
        raise ValueError(f"heldout_category {heldout_category!r} is not a category of the objects "
                         f"({', '.join(sorted(map(str, cats)))})")
    rng = np.random.default_rng(split_seed)
    val, test, pool, heldout = [], [], {}, []
    for cat, objs in cats.items():
        if cat == heldout_category:
            heldout += objs
            continue
        objs = list(rng.permutation(objs))
        n = len(objs)
        k = max(1, round(0.1 * n)) if n >= 3 else 0
        val += objs[:k]
        test += objs[k:2 * k]
        pool[cat] = objs[2 * k:]
    manifests = {}
    for pack, pseed in pack_seeds.items():
        prng = np.random.default_rng(pseed)
        order = {cat: list(prng.permutation(objs)) for cat, objs in pool.items()}
        for b in budgets:
            train = []
            for cat, objs in order.items():
                if objs:
                    train += objs[:max(1, math.ceil(b * len(objs)))]
            m = {"pack": pack, "budget": b, "split_seed": split_seed, "pack_seed": pseed,
                 "train": sorted(str(x) for x in train), "val": sorted(str(x) for x in val),
                 "test": sorted(str(x) for x in test), "heldout": sorted(str(x) for x in heldout)}
            manifests[(pack, b)] = m
            if out_dir:
                os.makedirs(out_dir, exist_ok=True)
                with open(os.path.join(out_dir, manifest_name(pack, b)), "w") as f:
                    json.dump(m, f, indent=1)
    return manifests


def manifest_name(pack, budget):
    return f"{pack}_{int(round(budget * 100)):03d}.json"


def load_manifest(split_dir, pack, budget):
    with open(os.path.join(split_dir, manifest_name(pack, budget))) as f:
        return json.load(f)
