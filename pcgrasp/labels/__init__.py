"""Grasp labels: analytic tests of grasps against meshes (antipodal force
closure, gripper collisions, re-exported from ``pcgrasp.geometry``) and GraspNet-1B's label files (per-object grasp
labels, per-scene collision labels, per-frame graspness; ``pipeline`` runs
them for a dataset root, serially or as Ray tasks)."""
from ..geometry import (ANGLES, DEPTHS, GRIPPER, ParallelJawGripper, antipodal, approach_collision, close_jaws,
                        finger_collision, generate_views, grasp_rotations, grasp_success, model_free_collision,
                        required_friction, table_collision, viewpoint_params_to_matrix)
from .detection import DetectionFrames, collate_detection, gsnet_augmentation
from .grasp_labels import friction_score, grasp_grid, label_points, object_grasp_labels, write_object_labels
from .scene_labels import (point_graspness, scene_label_grasps, transfer_graspness, write_scene_collision_labels,
                           write_scene_graspness)

__all__ = ["DetectionFrames", "collate_detection", "gsnet_augmentation", "ParallelJawGripper", "antipodal", "approach_collision", "close_jaws", "grasp_success",
           "required_friction", "table_collision", "finger_collision", "model_free_collision", "friction_score",
           "grasp_grid", "label_points", "object_grasp_labels", "write_object_labels", "point_graspness",
           "scene_label_grasps", "transfer_graspness", "write_scene_collision_labels", "write_scene_graspness",
           "ANGLES", "DEPTHS", "GRIPPER", "generate_views", "grasp_rotations", "viewpoint_params_to_matrix"]
