"""GSNet (graspness_implementation's ``GraspNet``) on pcgrasp's sparse backbone, one module
per job:

- ``network``: the detector (``GraspNet`` / ``GSNet``) and its heads;
- ``labels``: on-the-fly label assignment in training (``process_grasp_labels``,
  ``match_grasp_view_and_label``);
- ``loss``: GSNet's training loss (``get_loss``);
- ``decode``: outputs -> graspnetAPI grasp arrays (``pred_decode``);
- ``checkpoint``: strict loaders for backbone and GSNet checkpoints.

The view grid and rotations (``grasp_views``, ``batch_viewpoint_params_to_matrix``) and
``GRASP_MAX_WIDTH`` live in ``pcgrasp.geometry`` and are re-exported here under GSNet's names.
"""
from ...geometry.gripper import GRASP_MAX_WIDTH
from ...geometry.views import batch_viewpoint_params_to_matrix, grasp_views
from .checkpoint import load_backbone_checkpoint, load_gsnet_checkpoint
from .decode import pred_decode
from .labels import VIEW_MU_THRESHOLD, match_grasp_view_and_label, process_grasp_labels
from .loss import LOSS_WEIGHTS, get_loss
from .network import (ApproachNet, CloudCrop, GraspableNet, GraspNet, GSNet, SharedMLP, SWADNet, graspable_seeds,
                      sample_views)

__all__ = ["GraspNet", "GSNet", "GraspableNet", "ApproachNet", "CloudCrop", "SWADNet", "SharedMLP",
           "batch_viewpoint_params_to_matrix", "grasp_views", "graspable_seeds", "sample_views", "pred_decode",
           "load_backbone_checkpoint", "load_gsnet_checkpoint", "GRASP_MAX_WIDTH", "process_grasp_labels",
           "match_grasp_view_and_label", "VIEW_MU_THRESHOLD", "get_loss", "LOSS_WEIGHTS"]
