"""Grasp evaluation with geometry: graspnetAPI's AP (``grasp_ap``)."""
from .grasp_ap import (FRICTIONS, ap_summary, check_grasp_array, eval_frame, evaluate_scenes, force_closure_mu,
                       grasp_array, grasp_nms, model_points, precision_at_k, table_points)

__all__ = ["FRICTIONS", "ap_summary", "check_grasp_array", "eval_frame", "evaluate_scenes", "force_closure_mu",
           "grasp_array", "grasp_nms", "model_points", "precision_at_k", "table_points"]
