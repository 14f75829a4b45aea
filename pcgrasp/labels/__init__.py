"""Grasp labels: analytic tests of grasps against meshes (antipodal force
closure, gripper collisions)."""
from .antipodal import (ParallelJawGripper, antipodal, approach_collision, close_jaws, grasp_success,
                        required_friction, table_collision)

__all__ = ["ParallelJawGripper", "antipodal", "approach_collision", "close_jaws", "grasp_success",
           "required_friction", "table_collision"]
