"""Depth rendering by ray casting (trimesh on Embree), with the camera
conventions of GraspNet-1B.

- Camera frame: OpenCV (x right, y down, z forward). A camera pose is the 4x4
  camera -> world transform.
- Pixel (u, v) (column, row) looks along ((u - cx) / fx, (v - cy) / fy, 1):
  pixel centres sit on integer coordinates, the convention GraspNet-1B's and
  GSNet's back-projection use (``x = (u - cx) * z / fx``), so back-projecting a
  rendered depth image gives points on the surfaces.
- Depth is the distance along the optical axis (camera z) in metres, 0 where
  the ray hits nothing.

One ray per pixel is cast with ``intersects_first`` (Embree through
``embreex`` when installed, else trimesh's pure-Python caster, about 70x
slower, with a warning). Embree works in float32; the depth is then recomputed
in float64 from the plane of the triangle it hit, so points lie on the mesh to
float64 precision.

The table is not special: pass it as one of the meshes (e.g. a thin box).
"""
import math
import warnings

import numpy as np

# GraspNet-1B's RealSense D435 intrinsics at 1280x720 (its realsense camK.npy)
D435_FX, D435_FY, D435_CX, D435_CY = 927.17, 927.37, 651.32, 349.62
D435_WIDTH, D435_HEIGHT = 1280, 720


def _check_size(width, height):
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def camera_intrinsics(width=D435_WIDTH, height=D435_HEIGHT):
    """The 3x3 intrinsic matrix of GraspNet-1B's RealSense D435 at 1280x720,
    scaled to width x height (focal lengths by the size ratio; the principal
    point so that the image edges stay fixed: c' = (c + 0.5) * s - 0.5)."""
    _check_size(width, height)
    sx, sy = width / D435_WIDTH, height / D435_HEIGHT
    return np.array([[D435_FX * sx, 0.0, (D435_CX + 0.5) * sx - 0.5],
                     [0.0, D435_FY * sy, (D435_CY + 0.5) * sy - 0.5],
                     [0.0, 0.0, 1.0]])


def _vec3(v, name):
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (3,) or not np.isfinite(a).all():
        raise ValueError(f"{name} must be 3 finite numbers, got {v!r}")
    return a


def look_at(eye, target, up=(0.0, 0.0, 1.0)):
    """The 4x4 camera -> world pose of a camera at ``eye`` looking at
    ``target`` (OpenCV convention: x right, y down, z forward), with image
    "up" (-y) as close to ``up`` as possible."""
    eye, target, up = _vec3(eye, "eye"), _vec3(target, "target"), _vec3(up, "up")
    z = target - eye
    if np.linalg.norm(z) < 1e-12:
        raise ValueError("eye and target must differ")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9 * max(1.0, np.linalg.norm(up)):
        raise ValueError("up must not be parallel to the viewing direction (target - eye)")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


def check_pose(pose, name="camera_pose"):
    """A rigid 4x4 transform as float64, else a ValueError naming ``name``."""
    T = np.asarray(pose, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"{name} must be a finite 4x4 matrix, got shape {T.shape}")
    R = T[:3, :3]
    if (np.abs(T[3] - [0, 0, 0, 1]).max() > 1e-6 or np.abs(R @ R.T - np.eye(3)).max() > 1e-4
            or np.linalg.det(R) < 0):
        raise ValueError(f"{name} must be a rigid transform (rotation + translation, last row 0 0 0 1)")
    return T


def check_intrinsics(K, name="K"):
    """A pinhole 3x3 intrinsic matrix (no skew) as float64, else a ValueError."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise ValueError(f"{name} must be a finite 3x3 matrix, got shape {K.shape}")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[0, 1] != 0 or K[1, 0] != 0 or np.any(K[2] != [0, 0, 1]):
        raise ValueError(f"{name} must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")
    return K


def pixel_rays(K, width, height):
    """Camera-frame ray directions [height, width, 3] with z = 1 (so a ray's
    parameter is its depth along the optical axis)."""
    K = check_intrinsics(K)
    _check_size(width, height)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    return np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)


_WARNED = []


def _intersector(mesh):
    import trimesh

    if trimesh.ray.has_embree:
        from trimesh.ray import ray_pyembree

        return ray_pyembree.RayMeshIntersector(mesh)
    if not _WARNED:
        warnings.warn("embreex is not installed: depth rendering falls back to trimesh's pure-Python ray "
                      "caster (much slower); `pip install embreex`", RuntimeWarning, stacklevel=3)
        _WARNED.append(True)
    from trimesh.ray import ray_triangle

    return ray_triangle.RayMeshIntersector(mesh)


class DepthRenderer:
    """Casts camera rays against a fixed list of meshes (world frame). Build it
    once per scene and call ``render`` per view: the acceleration structure is
    built in the constructor."""

    def __init__(self, meshes):
        import trimesh

        if isinstance(meshes, trimesh.Trimesh) or not hasattr(meshes, "__len__") or len(meshes) == 0:
            raise ValueError("meshes must be a non-empty list of trimesh.Trimesh")
        verts, faces, owner, off = [], [], [], 0
        for i, m in enumerate(meshes):
            if not isinstance(m, trimesh.Trimesh) or len(m.faces) == 0:
                raise ValueError(f"meshes[{i}] must be a trimesh.Trimesh with faces, got {type(m).__name__}")
            v = np.asarray(m.vertices, dtype=np.float64)
            if not np.isfinite(v).all():
                raise ValueError(f"meshes[{i}] has non-finite vertices")
            verts.append(v)
            faces.append(np.asarray(m.faces, dtype=np.int64) + off)
            owner.append(np.full(len(m.faces), i, dtype=np.int32))
            off += len(v)
        self.vertices = np.concatenate(verts)
        self.faces = np.concatenate(faces)
        self.face_owner = np.concatenate(owner)
        self.mesh = trimesh.Trimesh(self.vertices, self.faces, process=False)
        tri = self.vertices[self.faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        self.face_normals = np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)
        self.face_offsets = np.einsum("ij,ij->i", self.face_normals, tri[:, 0])  # plane: n . x = offset
        self.intersector = _intersector(self.mesh)
        self._rays = {}

    def render(self, camera_pose, K, width, height):
        """(depth [H, W] float32 metres along the optical axis, 0 = no hit;
        hit [H, W] int32 index into the meshes, -1 = none; normals [H, W, 3]
        float32 world-frame unit normals of the faces hit, 0 where none)."""
        T = check_pose(camera_pose)
        key = (np.asarray(K, dtype=np.float64).tobytes(), width, height)
        if key not in self._rays:  # the same intrinsics for every view of a scene
            self._rays = {key: pixel_rays(K, width, height).reshape(-1, 3)}
        # einsum, not matmul: a tall [N, 3] x 3x3 matmul goes to BLAS, whose
        # threads stalled it up to 0.4 s per 1280x720 frame on a busy 2-core machine
        d = np.einsum("ij,kj->ik", self._rays[key], T[:3, :3])
        o = T[:3, 3]
        tri = np.asarray(self.intersector.intersects_first(np.broadcast_to(o, d.shape), d))
        rays = np.flatnonzero(tri >= 0)
        tri = tri[rays]
        n = self.face_normals[tri]
        denom = np.einsum("ij,ij->i", n, d[rays])
        with np.errstate(divide="ignore", invalid="ignore"):
            # z_cam of d is 1, so the ray parameter is the depth
            z = (self.face_offsets[tri] - np.einsum("ij,j->i", n, o)) / denom
        ok = np.isfinite(z) & (z > 0) & (np.abs(denom) > 1e-9)
        rays, tri, z = rays[ok], tri[ok], z[ok]
        N = width * height
        depth = np.zeros(N, np.float32)
        hit = np.full(N, -1, np.int32)
        normals = np.zeros((N, 3), np.float32)
        depth[rays] = z
        hit[rays] = self.face_owner[tri]
        normals[rays] = self.face_normals[tri]
        return depth.reshape(height, width), hit.reshape(height, width), normals.reshape(height, width, 3)


def render_depth(meshes, camera_pose, K, width, height):
    """Renders one view of ``meshes`` (world frame) from ``camera_pose``
    (camera -> world, OpenCV axes) with intrinsics ``K`` at width x height.
    Returns (depth [H, W] float32 metres along the optical axis, 0 = no hit;
    hit [H, W] int32 index into ``meshes``, -1 = none; normals [H, W, 3]
    float32 world-frame unit normals of the faces hit). For many views of one
    scene build a ``DepthRenderer`` once."""
    return DepthRenderer(meshes).render(camera_pose, K, width, height)


def _view_cosines(normals, camera_pose, K):
    """|cos| of the angle between each pixel's ray and the surface normal."""
    H, W = normals.shape[:2]
    d = np.einsum("hwj,kj->hwk", pixel_rays(K, W, H), check_pose(camera_pose)[:3, :3])
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return np.abs(np.einsum("hwc,hwc->hw", normals.astype(np.float64), d))


def _check_image_pair(depth, normals):
    depth = np.asarray(depth)
    normals = np.asarray(normals)
    if depth.ndim != 2:
        raise ValueError(f"depth must be a [H, W] image, got shape {depth.shape}")
    if normals.shape != depth.shape + (3,):
        raise ValueError(f"normals must have shape {depth.shape + (3,)} (depth's plus 3), got {normals.shape}")
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise ValueError("depth must be finite and >= 0")
    return depth, normals


def add_depth_noise(depth, normals, camera_pose, K, rng, sigma=0.001, grazing_deg=80.0):
    """Sensor-like depth: pixels whose ray meets the surface more obliquely
    than ``grazing_deg`` (angle between the ray and the normal) are dropped
    (set to 0), the rest get Gaussian noise of ``sigma`` metres along the
    optical axis (a sample that would reach <= 0 is dropped too). Pixels
    without depth stay 0. Returns a new float32 image."""
    depth, normals = _check_image_pair(depth, normals)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
    if not (0 < grazing_deg <= 90):
        raise ValueError(f"grazing_deg must be in (0, 90], got {grazing_deg!r}")
    cos = _view_cosines(normals, camera_pose, K)
    valid = depth > 0
    keep = valid & (cos >= math.cos(math.radians(grazing_deg)))
    noisy = depth.astype(np.float64) + rng.normal(0.0, 1.0, size=depth.shape) * sigma
    keep &= noisy > 0
    return np.where(keep, noisy, 0.0).astype(np.float32)


def shade(depth, normals, camera_pose, K, ambient=0.25):
    """A grey [H, W, 3] uint8 image lit from the camera (Lambert): an RGB
    stand-in for the layout's rgb/ folder. Background is black."""
    depth, normals = _check_image_pair(depth, normals)
    g = ambient + (1 - ambient) * _view_cosines(normals, camera_pose, K)
    g = np.where(depth > 0, np.round(255 * np.clip(g, 0, 1)), 0).astype(np.uint8)
    return np.repeat(g[..., None], 3, -1)
