"""Loading backbone and GSNet checkpoints with strict key / shape checks."""
import torch

from .network import GraspNet

__all__ = ["load_backbone_checkpoint", "load_gsnet_checkpoint"]


def _check_state(own, state, path, what, hint):
    """ValueError naming missing / unexpected keys or the first shape mismatch of ``state``
    against the module's ``own`` state_dict."""
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path}: not a {what} state_dict for this model: missing {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{'...' if len(unexpected) > 5 else ''}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"{path}: {k} has shape {tuple(state[k].shape)} but the model expects "
                             f"{tuple(v.shape)} ({hint})")


def _load(path, map_location):
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the loader raises, the file is unreadable
        raise ValueError(f"{path} is not a readable checkpoint ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a state_dict or checkpoint dict, got {type(ckpt).__name__}")
    return ckpt


def load_backbone_checkpoint(model, path, map_location="cpu"):
    """Loads a ``backbone.pt`` (a MinkUNet14D 3 -> C state_dict, as ``pcgrasp contrast-pretrain``
    writes; or a full GSNet checkpoint, whose ``backbone.*`` is taken) into ``model.backbone``
    with strict=True. Raises ValueError naming the mismatch (missing / unexpected keys, or the
    first parameter whose shape differs: another C or other planes) before touching the model."""
    if not isinstance(model, GraspNet):
        raise ValueError(f"model must be a GraspNet, got {type(model).__name__}")
    state = _load(path, map_location)
    if "model_state_dict" in state:
        state = {k[len("backbone."):]: v for k, v in state["model_state_dict"].items() if k.startswith("backbone.")}
    _check_state(model.backbone.state_dict(), state, path, "MinkUNet14D",
                 "a different seed_feat_dim (output channels) or planes?")
    model.backbone.load_state_dict(state, strict=True)
    return model


def load_gsnet_checkpoint(model, path, map_location="cpu"):
    """Loads a GSNet checkpoint (graspness_implementation's ``{"model_state_dict": ...,
    "epoch": ..., "optimizer_state_dict": ...}``, or a bare state_dict) into ``model`` with
    strict=True; returns the checkpoint's epoch (None when it has none). Raises ValueError
    naming missing / unexpected keys or the first shape mismatch."""
    if not isinstance(model, GraspNet):
        raise ValueError(f"model must be a GraspNet, got {type(model).__name__}")
    ckpt = _load(path, map_location)
    state = ckpt.get("model_state_dict", ckpt)
    _check_state(model.state_dict(), state, path, "GSNet",
                 "other seed_feat_dim, num_view, num_angle, num_depth or planes?")
    model.load_state_dict(state, strict=True)
    return ckpt.get("epoch") if "model_state_dict" in ckpt else None
