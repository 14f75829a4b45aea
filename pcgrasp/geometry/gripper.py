"""Parallel-jaw gripper dimensions (metres) shared by labels, evaluation, models and data.

- ``GraspNetGripper`` / ``GRIPPER``: graspnetAPI's gripper (GraspNet-1Billion labels and AP,
  GSNet): fingers 0.01 m thick along the closing axis, 0.02 m high, reaching back to the
  depth base 0.02 m behind the grasp point (evaluation) or 0.06 m behind the fingertips
  (GSNet's model-free collision detector); opening at most 0.1 m.
- ``ParallelJawGripper``: the planar Dex-Net gripper of ``data.synthetic.dexnet``
  (an 85 mm opening, 4 cm fingers).
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class GraspNetGripper:
    """graspnetAPI's parallel-jaw gripper (metres)."""
    height: float = 0.02         # extent along z
    finger_width: float = 0.01   # thickness along the closing axis y
    depth_base: float = 0.02     # fingers reach back to x = -depth_base (graspnetAPI's evaluation)
    finger_length: float = 0.06  # GSNet ModelFreeCollisionDetector: fingers span x in (depth - 0.06, depth)
    max_width: float = 0.1


GRIPPER = GraspNetGripper()
GRASP_MAX_WIDTH = GRIPPER.max_width  # GSNet's name


@dataclass(frozen=True)
class ParallelJawGripper:
    """Dimensions in metres (defaults: a Robotiq 2F-85-like opening, graspnetAPI's finger sizes)."""
    max_width: float = 0.085     # largest opening
    finger_width: float = 0.01   # thickness of a finger along the closing axis
    finger_height: float = 0.02  # extent of a finger along z
    finger_length: float = 0.04  # from the fingertip back towards the palm along -x
    tip_depth: float = 0.0       # fingertips this far past the contact line along +x
