"""Pictures of what pcgrasp produces: grasps on scene clouds, grasp labels, graspness,
EBM planar grasps and Point-JEPA hand hypotheses (``pcgrasp show``).

Every kind is first built into a ``Picture`` (coloured points, coloured triangle meshes, a
camera; ``pcgrasp.vis.picture``) by a builder of ``pcgrasp.vis.build``, then drawn as a PNG
(``render_png``; ``render_image`` gives the array; a NumPy z-buffer: ``pcgrasp.vis.render``) or served to a browser
(``pcgrasp.vis.viewer.serve``, needs viser; not imported here, so ``import pcgrasp.vis``
works without it).

Builders (all return a ``Picture``):

- ``grasps_picture(points, colors, grasps [N, 17], ...)``: any cloud + GraspGroup array;
- ``scene_grasps_picture(root, scene, ann, dump_dir=...)``: a GraspNet-1B-layout frame with
  the detector's dumped (or the labelled) grasps;
- ``object_labels_picture(labels_npz)``: an object's grasp labels by friction coefficient;
- ``graspness_picture(root, scene, ann)``: graspness as a heat map;
- ``ebm_picture(depth, K, camera_pose, grasps [N, 4], energies [N])``: planar grasps;
- ``jepa_picture(points, pose [7], joints [K, 12], logits [K])``: hand hypotheses.
"""
from .picture import Camera, Mesh, Picture

_LAZY = {
    "render_png": "render", "render_image": "render", "project": "render",
    "grasps_picture": "build", "scene_grasps_picture": "build", "object_labels_picture": "build",
    "graspness_picture": "build", "ebm_picture": "build", "jepa_picture": "build", "select_grasps": "build",
    "grasp_meshes": "build", "colormap": "build", "look_at_camera": "build", "image_camera": "build",
    "label_grasps": "build", "scene_frame": "build", "dump_path": "build",
    "graspnet_gripper_mesh": "gripper_mesh", "planar_jaw_mesh": "gripper_mesh", "hand_mesh": "gripper_mesh",
}

__all__ = ["Camera", "Mesh", "Picture", *_LAZY]


def __getattr__(name):
    """Builders and the renderer are imported on first use (they pull in matplotlib, the data
    loaders and Pillow)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
