"""Models: Point-JEPA grasp-joint models, the energy-based grasp model, the sparse
MinkUNet14D, GraspContrast and GSNet
(GraspNet). Depend only on the public pcgrasp.ops / pcgrasp.nn APIs."""
from .tokenizer import PatchTokenizer
from .transformer import TransformerEncoder
from .jepa import PointEncoder, PointJEPA, sample_blocks, ema_update, ema_momentum, normalise_targets, TARGET_NORMS
from .grasp import AttentionPool, GraspModel, WTAHead, MSEHead
from .ebm import GraspEnergyModel
from .minkunet import MinkUNet14D, ResUNet14
from .graspcontrast import GraspContrast
from .gsnet import (GraspNet, GSNet, load_backbone_checkpoint, load_gsnet_checkpoint, match_grasp_view_and_label,
                    pred_decode, process_grasp_labels)

__all__ = ["PatchTokenizer", "TransformerEncoder", "PointEncoder", "PointJEPA", "sample_blocks", "ema_update",
           "ema_momentum", "normalise_targets", "TARGET_NORMS", "AttentionPool", "GraspModel", "WTAHead", "MSEHead", "GraspEnergyModel",
           "MinkUNet14D", "ResUNet14", "GraspContrast", "GraspNet", "GSNet", "load_backbone_checkpoint",
           "load_gsnet_checkpoint", "pred_decode", "process_grasp_labels", "match_grasp_view_and_label"]
