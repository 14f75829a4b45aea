"""What a picture holds, independent of how it is drawn.

Every kind of data ``pcgrasp show`` knows (a scene frame with grasps, an object's labels,
graspness, an EBM depth crop, a Point-JEPA hand set) is first turned into a ``Picture``:
coloured points, coloured triangle meshes (grippers, objects) and a camera. The PNG renderer
(``pcgrasp.vis.render``) and the web viewer (``pcgrasp.vis.viewer``) both draw a ``Picture``,
so they always show the same thing.

Frames: everything is in one world frame, metres. The camera looks along its own +z with +y
down in the image (the OpenCV / GraspNet-1B camera convention); ``Camera`` gives the projection.
"""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Mesh:
    """One triangle mesh: vertices [V, 3] float (world frame), faces [F, 3] int, one RGB colour
    (uint8 [3]) and a name (the viewer shows it; e.g. ``grasp 3 score 0.91``)."""
    vertices: np.ndarray
    faces: np.ndarray
    color: np.ndarray
    name: str = ""


@dataclass
class Camera:
    """A pinhole camera. ``extrinsic`` is the 4x4 camera-to-world pose (columns: the camera's x
    (image right), y (image down), z (viewing direction) and its position, world frame);
    ``intrinsic`` the 3x3 K (fx, fy, cx, cy in pixels) for an image of ``width`` x ``height``.
    A world point p projects to pixel (u, v) = (K @ q)[:2] / q[2] with
    q = extrinsic[:3, :3].T @ (p - extrinsic[:3, 3]); it is in front when q[2] > 0."""
    extrinsic: np.ndarray
    intrinsic: np.ndarray
    width: int
    height: int


@dataclass
class Picture:
    """Coloured points (points [N, 3] float, colors [N, 3] uint8), meshes, a camera and a title.
    ``legend`` maps a label to an RGB colour (e.g. the score colour bar's ends) for the PNG."""
    points: np.ndarray
    colors: np.ndarray
    meshes: list = field(default_factory=list)
    camera: Camera = None
    title: str = ""
    legend: dict = field(default_factory=dict)
