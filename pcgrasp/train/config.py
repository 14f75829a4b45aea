"""YAML configs with dotted command-line overrides (``train.epochs=5``)."""
import copy

import yaml


def load_config(path=None, overrides=()):
    cfg = {}
    if path:
        with open(path) as f:
            cfg = yaml.safe_load(f) or {}
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg, overrides):
    cfg = copy.deepcopy(cfg)
    for o in overrides:
        if "=" not in o:
            raise ValueError(f"override must look like key.sub=value, got {o!r}")
        key, value = o.split("=", 1)
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return cfg
