"""Grasp geometry shared by every layer above the ops: the gripper's dimensions
(``gripper``), GraspNet's view grid and rotations (``views``), grasp arrays
(``grasps``), closing the jaws and the antipodal test (``jaws``), gripper-vs-points
and gripper-vs-mesh collisions (``collision``), and chunked ray casting (``rays``).

Layering: imports NumPy, torch, trimesh (lazily, through the meshes it is given)
and ``pcgrasp.ops`` only; data, labels, eval and models import it."""
from .collision import (approach_collision, finger_collision, gripper_reach, model_free_collision, near_points,
                        shared_center_finger_collision,
                        table_collision)
from .grasps import GRASP_ARRAY_COLUMNS, check_grasp_array, grasp_array, rotations_of, translations_of
from .gripper import GRASP_MAX_WIDTH, GRIPPER, GraspNetGripper, ParallelJawGripper
from .jaws import antipodal, close_jaws, grasp_success, jaw_contacts, required_friction
from .rays import first_hits
from .views import (ANGLES, DEPTHS, FRICTIONS, NUM_ANGLES, NUM_DEPTHS, NUM_VIEWS, batch_viewpoint_params_to_matrix,
                    generate_views, grasp_rotations, grasp_views, viewpoint_params_to_matrix)

__all__ = ["approach_collision", "finger_collision", "gripper_reach", "model_free_collision", "near_points",
           "shared_center_finger_collision",
           "table_collision", "GRASP_ARRAY_COLUMNS", "check_grasp_array", "grasp_array", "rotations_of",
           "translations_of", "GRASP_MAX_WIDTH", "GRIPPER", "GraspNetGripper", "ParallelJawGripper", "antipodal",
           "close_jaws", "grasp_success", "jaw_contacts", "required_friction", "first_hits", "ANGLES", "DEPTHS",
           "FRICTIONS", "NUM_ANGLES", "NUM_DEPTHS", "NUM_VIEWS", "batch_viewpoint_params_to_matrix",
           "generate_views", "grasp_rotations", "grasp_views", "viewpoint_params_to_matrix"]
