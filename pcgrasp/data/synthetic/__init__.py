"""Built-in synthetic generators. Each writes the on-disk layout of a real
dataset, so the same loader serves both: ``grasps`` (the DLR-Hand II grasp
layout of the Point-JEPA code and ShapeNet-style pretraining folders)."""
from .grasps import CATEGORIES, SYNSETS, generate_dataset, joints_for_pose, make_mesh, sample_pose

__all__ = ["CATEGORIES", "SYNSETS", "generate_dataset", "joints_for_pose", "make_mesh", "sample_pose"]
