"""YAML configs with dotted command-line overrides (``train.epochs=5``).

An override is checked before anything runs: it needs a key and a value; its top-level section
must be one a pcgrasp config has; and where the config already holds a number or a boolean, the
value must be one too (``train.epochs=abc`` is an error naming the key; a number written as YAML
reads a string, such as ``1e-5``, is taken as the number). A string setting keeps the text as
written (``data.root=2024`` is the folder "2024"), and ``null`` removes any setting."""
import copy
import math
import os

import yaml

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _packaged_sections():
    keys = {"threads"}  # optional everywhere (set_threads); absent from most packaged configs
    for f in sorted(os.listdir(CONFIGS)):
        if f.endswith(".yaml"):
            with open(os.path.join(CONFIGS, f)) as fh:
                keys.update((yaml.safe_load(fh) or {}).keys())
    return keys


def load_config(path=None, overrides=()):
    """The config in the YAML file ``path`` (a mapping; an error naming the file otherwise) with
    ``overrides`` applied."""
    cfg = {}
    if path:
        with open(path) as f:
            try:
                cfg = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ValueError(f"config {path} is not valid YAML: {' '.join(str(e).split())}") from None
        if cfg is None:
            raise ValueError(f"config {path} is empty")
        if not isinstance(cfg, dict):
            raise ValueError(f"config {path} must be a mapping of sections (key: value), got a "
                             f"{type(cfg).__name__}")
    return apply_overrides(cfg, overrides)


def _number(text):
    try:
        return float(text) if any(c in text for c in ".eEn") else int(text)
    except ValueError:
        return None


def apply_overrides(cfg, overrides):
    cfg = copy.deepcopy(cfg)
    known = None
    for o in overrides:
        if "=" not in o:
            raise ValueError(f"override must look like key.sub=value, got {o!r}")
        key, text = o.split("=", 1)
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ValueError(f"override {o!r} has no key (key.sub=value)")
        if not text.strip():
            raise ValueError(f"override {key}= has no value (write {key}=null to unset it)")
        if parts[0] not in cfg:
            known = known if known is not None else _packaged_sections()
            if parts[0] not in known:
                raise ValueError(f"override {key}: unknown key {parts[0]!r} (the config's keys: "
                                 f"{', '.join(sorted(map(str, cfg))) or 'none'})")
        node = cfg
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key}: {p} is not a section")
        value = yaml.safe_load(text)
        old = node.get(parts[-1])
        if value is None:
            pass  # null removes a setting, whatever it held
        elif isinstance(old, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false (as in the config), got {text!r}")
        elif isinstance(old, (int, float)):
            if isinstance(value, str):
                value = _number(value.strip())
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number (as in the config), got {text!r}")
        elif isinstance(old, str) and not isinstance(value, str) and value is not None \
                and not isinstance(value, (list, dict)):
            value = text  # a setting that holds text keeps it as written
        node[parts[-1]] = value
    return cfg
