"""Triangle meshes of grippers and hands, for drawing (not for collision checks).

All meshes are returned as ``(vertices [V, 3] float64, faces [F, 3] int64)`` in the world
frame of the grasp (whatever frame its rotation and translation are given in: the camera
frame for a GraspNet-1B dump, the table frame for a Dex-Net view, the object frame for a
Point-JEPA grasp). Faces are wound counter-clockwise seen from outside.

- ``graspnet_gripper_mesh``: graspnetAPI's gripper in the geometry its evaluation uses
  (``pcgrasp.geometry.gripper.GraspNetGripper``). In the grasp frame (R's columns x approach,
  y closing, z height; origin the grasp point t) for a grasp of width w, depth d, height h and
  finger width f = 0.01, depth base b = 0.02:

  - two fingers: -b < x < d, w/2 < |y| < w/2 + f, |z| < h/2 (the fingertips at x = d,
    i.e. at t + d x);
  - the bottom (palm) plate: -b - f < x < -b, |y| < w/2 + f, |z| < h/2;
  - the approach tail: -b - f - ``tail`` < x < -b - f, |y| < f/2, |z| < h/2 (0.04 m long).

- ``planar_jaw_mesh``: the Dex-Net ``ParallelJawGripper`` of the EBM planner: fingers from
  ``tip_depth - finger_length`` to ``tip_depth`` along x, at w/2 < |y| < w/2 + f,
  |z| < finger_height / 2, a palm bar behind them and the same approach tail.
- ``hand_mesh``: a schematic four-finger hand for the Point-JEPA DLR-Hand II grasps (7-D wrist
  pose + 12 joint angles, 4 fingers x (MCP, PIP, DIP)); its kinematics are ours, see its
  docstring.
"""
import numpy as np

from ..geometry.gripper import GRIPPER, ParallelJawGripper

# the 12 triangles of a unit box [0, 1]^3 (vertex i = (i & 1, i >> 1 & 1, i >> 2 & 1)), outward
_BOX_FACES = np.array([
    [0, 2, 1], [1, 2, 3],   # z = 0 (normal -z)
    [4, 5, 6], [5, 7, 6],   # z = 1
    [0, 1, 4], [1, 5, 4],   # y = 0
    [2, 6, 3], [3, 6, 7],   # y = 1
    [0, 4, 2], [2, 4, 6],   # x = 0
    [1, 3, 5], [3, 7, 5],   # x = 1
], dtype=np.int64)
_UNIT = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=np.float64)

TAIL_LENGTH = 0.04  # m, the drawn approach tail behind the palm (graspnetAPI draws one too)


def box_mesh(lo, hi):
    """An axis-aligned box [lo, hi] (each [3]) as (vertices [8, 3], faces [12, 3])."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return lo + _UNIT * (hi - lo), _BOX_FACES.copy()


def boxes_mesh(boxes, rotation=np.eye(3), translation=np.zeros(3)):
    """Boxes [(lo [3], hi [3]), ...] given in a local frame, placed by ``rotation`` [3, 3]
    (local -> world, columns the local axes) and ``translation`` [3]: one (vertices, faces)."""
    R, t = np.asarray(rotation, dtype=np.float64), np.asarray(translation, dtype=np.float64)
    verts, faces = [], []
    for i, (lo, hi) in enumerate(boxes):
        v, f = box_mesh(lo, hi)
        verts.append(v @ R.T + t)
        faces.append(f + 8 * i)
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    return np.concatenate(verts), np.concatenate(faces)


def graspnet_gripper_boxes(width, depth, height=GRIPPER.height, gripper=GRIPPER, tail=TAIL_LENGTH):
    """The gripper's parts as boxes (lo [3], hi [3]) in the grasp frame (module docstring):
    [left finger (-y), right finger (+y), bottom plate, approach tail]."""
    w, d, h = float(width), float(depth), float(height)
    f, b = gripper.finger_width, gripper.depth_base
    hw, hh = w / 2, h / 2
    return [
        ((-b, -hw - f, -hh), (d, -hw, hh)),
        ((-b, hw, -hh), (d, hw + f, hh)),
        ((-b - f, -hw - f, -hh), (-b, hw + f, hh)),
        ((-b - f - tail, -f / 2, -hh), (-b - f, f / 2, hh)),
    ]


def graspnet_gripper_mesh(rotation, translation, width, depth, height=GRIPPER.height, gripper=GRIPPER):
    """graspnetAPI's gripper of one grasp (rotation [3, 3] with columns approach x, closing y,
    height z; translation [3] the grasp point; width, depth, height in metres) as
    (vertices [32, 3], faces [48, 3]) in the frame of the rotation and translation."""
    return boxes_mesh(graspnet_gripper_boxes(width, depth, height, gripper), rotation, translation)


def planar_jaw_boxes(width, gripper=ParallelJawGripper(), tail=TAIL_LENGTH):
    """The Dex-Net parallel-jaw gripper's parts (lo [3], hi [3]) in the grasp frame (origin the
    grasp centre on the contact line, x approach, y closing): [finger -y, finger +y, palm, tail]."""
    g = gripper
    w, f, hh = float(width), g.finger_width, g.finger_height / 2
    hw = w / 2
    x0, x1 = g.tip_depth - g.finger_length, g.tip_depth
    return [
        ((x0, -hw - f, -hh), (x1, -hw, hh)),
        ((x0, hw, -hh), (x1, hw + f, hh)),
        ((x0 - f, -hw - f, -hh), (x0, hw + f, hh)),
        ((x0 - f - tail, -f / 2, -hh), (x0 - f, f / 2, hh)),
    ]


def planar_jaw_mesh(rotation, translation, width=None, gripper=ParallelJawGripper()):
    """The EBM planner's gripper at a grasp frame (rotation [3, 3], translation [3]); ``width``
    the opening in metres (default: the gripper's ``max_width``, the open gripper the planar
    grasp is executed with). (vertices [32, 3], faces [48, 3])."""
    w = gripper.max_width if width is None else float(width)
    return boxes_mesh(planar_jaw_boxes(w, gripper), rotation, translation)


def quaternion_matrix(q):
    """Rotation [3, 3] of a quaternion (w, x, y, z) (normalised here)."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q)
    if q.shape != (4,) or not np.isfinite(q).all() or n == 0:
        raise ValueError(f"a wrist quaternion must be 4 finite numbers (w, x, y, z), not all 0, got {q.tolist()}")
    w, x, y, z = q / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


# schematic hand (metres): palm, and per finger its z offset, the side it closes from, phalanges
HAND_PALM = (0.06, 0.07, 0.075)                # extent along x (depth), y (width), z (height)
HAND_FINGER_Z = (-0.024, -0.008, 0.008, 0.024)  # as data.synthetic.grasps.FINGER_Z
HAND_FINGER_SIDE = (1.0, -1.0, 1.0, -1.0)      # fingers 1, 3 on +y, 2, 4 on -y: 1 and 2 oppose (the pinch)
HAND_PHALANGES = (0.045, 0.03, 0.025)          # proximal, middle, distal lengths
HAND_FINGER_THICKNESS = 0.012


def hand_mesh(pose, joints, palm=True):
    """A schematic four-finger hand of a Point-JEPA / DLR-Hand II grasp (``palm=False``: the
    fingers only, for hypotheses drawn on one shared palm).

    pose [7]: wrist position [3] and unit quaternion (w, x, y, z) whose rotation's columns are
    the hand axes x (approach), y (closing), z = x cross y (``data.synthetic.grasps``);
    joints [12]: 4 fingers x (MCP, PIP, DIP) flexion angles in radians.

    Geometry (ours, schematic; the real DLR-Hand II kinematics are not modelled): a palm box
    behind the wrist point (-0.06 < x < 0, |y| < 0.035, |z| < 0.0375); finger k sits at
    z = (-2.4, -0.8, 0.8, 2.4)[k] cm (the generator's finger slabs) on the palm's front edge at
    y = +-0.025 (fingers 1 and 3 on +y, 2 and 4 on -y, so 1 and 2 oppose as in the pinch),
    pointing along +x; its three phalanges (4.5, 3, 2.5 cm) bend about z towards y = 0 by the
    cumulative joint angles. Returns (vertices [13 * 8, 3], faces [13 * 12, 3]; 12 boxes without
    the palm) in the pose's frame."""
    p = np.asarray(pose, dtype=np.float64).reshape(-1)
    j = np.asarray(joints, dtype=np.float64).reshape(-1)
    if p.shape != (7,) or j.shape != (12,) or not (np.isfinite(p).all() and np.isfinite(j).all()):
        raise ValueError(f"a hand needs a finite pose [7] and joints [12], got {p.shape} and {j.shape}")
    R, t = quaternion_matrix(p[3:]), p[:3]
    px, py, pz = HAND_PALM
    verts, faces = [], []

    def add(lo, hi, Rl=np.eye(3), tl=np.zeros(3)):
        v, f = box_mesh(lo, hi)
        v = v @ Rl.T + tl                      # local part frame -> hand frame
        verts.append(v @ R.T + t)              # hand frame -> world
        faces.append(f + 8 * (len(verts) - 1))

    if palm:
        add((-px, -py / 2, -pz / 2), (0.0, py / 2, pz / 2))
    th = HAND_FINGER_THICKNESS
    for k in range(4):
        side = HAND_FINGER_SIDE[k]
        base = np.array([0.0, side * (py / 2 - th), HAND_FINGER_Z[k]])
        angle = 0.0
        for i, length in enumerate(HAND_PHALANGES):
            angle += j[3 * k + i]
            a = -side * angle                   # bend towards y = 0
            c, s = np.cos(a), np.sin(a)
            Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
            add((0.0, -th / 2, -th / 2), (length, th / 2, th / 2), Rz, base)
            base = base + Rz[:, 0] * length
    return np.concatenate(verts), np.concatenate(faces)
