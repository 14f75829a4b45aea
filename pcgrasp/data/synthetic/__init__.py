"""Built-in synthetic generators. Each writes the on-disk layout of a real
dataset, so the same loader serves both: ``grasps`` (the DLR-Hand II grasp
layout of the Point-JEPA code and ShapeNet-style pretraining folders);
``objects`` (the procedural tabletop object pool) and ``render`` (depth by ray
casting) for the cluttered GraspNet-1B-layout scenes."""
from .grasps import CATEGORIES, SYNSETS, generate_dataset, joints_for_pose, make_mesh, sample_pose
from .objects import NOVEL_CATEGORIES, OBJECT_CATEGORIES, make_object, object_pool
from .render import DepthRenderer, add_depth_noise, camera_intrinsics, look_at, render_depth

__all__ = ["CATEGORIES", "SYNSETS", "generate_dataset", "joints_for_pose", "make_mesh", "sample_pose",
           "NOVEL_CATEGORIES", "OBJECT_CATEGORIES", "make_object", "object_pool",
           "DepthRenderer", "add_depth_noise", "camera_intrinsics", "look_at", "render_depth"]
