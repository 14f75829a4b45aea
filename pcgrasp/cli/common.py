"""What every pipeline's commands share: packaged configs and the options of
config-driven commands."""
import argparse
import os

from ..train.config import CONFIGS, load_config


def config_path(name):
    """A YAML path, or the name of a config packaged in pcgrasp/configs."""
    if os.path.exists(name):
        return name
    packaged = os.path.join(CONFIGS, f"{name}.yaml")
    if os.path.exists(packaged):
        return packaged
    names = sorted(f[:-5] for f in os.listdir(CONFIGS) if f.endswith(".yaml"))
    raise SystemExit(f"config {name!r} is neither a file nor a packaged config ({', '.join(names)})")


def load_cfg(a):
    """The command's config with its trailing key=value overrides applied."""
    return load_config(config_path(a.config), a.overrides)


def with_config(p, default, resume=False):
    """Adds the options every config-driven command shares; ``--resume`` only
    where the command continues a run from its checkpoint (``resume=True``)."""
    p.add_argument("--config", default=default, help="YAML path or packaged config name")
    if resume:
        p.add_argument("--resume", action="store_true", help="continue the run from its last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="key.sub=value")
    return p


def existing_file(path):
    """argparse ``type`` for a file that must exist (a checkpoint): the usage error names the
    option, instead of a traceback from deep inside the loader."""
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"no such file: {path!r}")
    return path


def int_at_least(lo):
    """argparse ``type``: an integer >= lo (the usage error names the option)."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {v}")
        return v
    parse.__name__ = f"integer >= {lo}"
    return parse


def float_at_least(lo, strict=False):
    """argparse ``type``: a finite number >= lo (> lo with ``strict``)."""
    import math

    def parse(text):
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not math.isfinite(v) or v < lo or (strict and v == lo):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} {lo}, got {text!r}")
        return v
    parse.__name__ = f"number >= {lo}"
    return parse


def existing_dir(path):
    """argparse ``type`` for a folder that must exist."""
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"no such folder: {path!r}")
    return path


def torch_device(name):
    """argparse ``type``: a torch device name (cpu, cuda, cuda:1)."""
    import torch

    try:
        return str(torch.device(name))
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {name!r} (cpu, cuda, cuda:N)") from None
