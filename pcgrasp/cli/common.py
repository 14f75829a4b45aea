"""What every pipeline's commands share: packaged configs and the options of
config-driven commands."""
import argparse
import os

from ..train.config import load_config

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


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
