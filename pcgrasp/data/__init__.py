"""Data for the Point-JEPA grasp-joint pipeline: meshes, the DLR-Hand II grasp
layout, ShapeNet-style pretraining folders, splits and the built-in synthetic
generator; GraspNet-1B scenes (real or synthetic) and their frame pairs."""
from .meshes import MESH_EXTENSIONS, find_mesh, load_mesh, sample_surface
from .grasps import GraspDataset, load_recordings
from .shapenet import ShapeNetPointClouds
from .procedural import ProceduralShapes
from .splits import make_splits, load_manifest
from .synthetic import CATEGORIES, generate_dataset
from .graspnet import FramePairs, GraspNetScenes

__all__ = [
    "MESH_EXTENSIONS", "find_mesh", "load_mesh", "sample_surface",
    "GraspDataset", "load_recordings", "ShapeNetPointClouds", "ProceduralShapes",
    "make_splits", "load_manifest", "CATEGORIES", "generate_dataset",
    "FramePairs", "GraspNetScenes",
]
