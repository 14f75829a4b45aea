"""The procedural object pool for synthetic tabletop scenes.

Every object is a closed (watertight) triangle mesh in metres, centred on its
bounding-box centre, 4-20 cm across like GraspNet-1B's objects. Categories:

- ``OBJECT_CATEGORIES`` (seen in training): box, cylinder, ellipsoid, cone,
  mug, bottle, bowl, l_bracket.
- ``NOVEL_CATEGORIES`` (only in the novel test split): torus, wedge, dumbbell,
  t_bar, pyramid, tube.

GraspNet-1B's three test splits are mirrored by ``variant``: ``"seen"`` draws
each proportion factor from [0.85, 1.2]; ``"similar"`` (same category,
different proportions) draws it from [0.55, 0.75] or [1.35, 1.6], outside the
seen range, so a similar object is never a resized seen one. Novel categories
take either variant (their split is given by the category).

Revolved solids (mug, bottle, bowl, dumbbell, tube) are one closed surface of
revolution; L- and T-brackets and wedges are extruded polygons. The mug's
handle is a second closed component overlapping the wall (a union without a
boolean engine): every edge still has exactly two faces, and the outer surface
that rays and collisions see is that of the union.

``object_pool`` builds a numbered pool (GraspNet-style object ids) of seen,
similar and novel objects plus any folder of user meshes
(``load_mesh_folder``).
"""
import dataclasses
import math
import os

import numpy as np

from ..meshes import MESH_EXTENSIONS, load_mesh

OBJECT_CATEGORIES = ("box", "cylinder", "ellipsoid", "cone", "mug", "bottle", "bowl", "l_bracket")
NOVEL_CATEGORIES = ("torus", "wedge", "dumbbell", "t_bar", "pyramid", "tube")
VARIANTS = ("seen", "similar")
SPLITS = ("seen", "similar", "novel")

MIN_EXTENT, MAX_EXTENT = 0.04, 0.20  # metres, largest side of the bounding box


def _factors(rng, variant, n):
    """n proportion factors: seen in [0.85, 1.2]; similar outside it."""
    if variant == "seen":
        return rng.uniform(0.85, 1.2, size=n)
    low = rng.uniform(0.55, 0.75, size=n)
    high = rng.uniform(1.35, 1.6, size=n)
    return np.where(rng.random(n) < 0.5, low, high)


def _revolve(profile, sections=32):
    """A closed solid of revolution about z from a (radius, z) polyline that
    starts and ends on the axis."""
    from trimesh import creation

    return creation.revolve(np.asarray(profile, dtype=np.float64), sections=sections)


def _extrude(polygon, triangles, depth):
    """A closed prism: a simple polygon (counter-clockwise, [n, 2]) with its
    triangulation, extruded along z by depth."""
    from trimesh import creation

    return creation.extrude_triangulation(np.asarray(polygon, dtype=np.float64), np.asarray(triangles), depth)


def _quarter_ellipse(r0, r1, z0, z1, n=8):
    """Points from (r0, z0) to (r1, z1) on a quarter ellipse bulging outwards
    (used for bowl walls)."""
    t = np.linspace(0.0, math.pi / 2, n)
    return np.stack([r0 + (r1 - r0) * np.sin(t), z0 + (z1 - z0) * (1 - np.cos(t))], 1)


def _mug(f):
    import trimesh
    from trimesh import creation

    r, h, wall, bottom = 0.035 * f[0], 0.09 * f[1], 0.006, 0.006
    body = _revolve([[0, 0], [r, 0], [r, h], [r - wall, h], [r - wall, bottom], [0, bottom]])
    major, minor = 0.022 * f[2], 0.006
    handle = creation.torus(major_radius=major, minor_radius=minor, major_sections=24, minor_sections=10)
    handle.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, [1, 0, 0]))
    # the ring's tube is centred 1 mm inside the outer wall: it is embedded in
    # the wall and pokes at most 1 mm into the cup's hollow
    handle.apply_translation([r + major - 0.001, 0, h / 2])
    return trimesh.util.concatenate([body, handle])


def _bottle(f):
    r, h = 0.032 * f[0], 0.16 * f[1]
    neck_r = max(0.008, 0.35 * r)
    body_h, shoulder_h = 0.6 * h, 0.2 * h
    return _revolve([[0, 0], [r, 0], [r, body_h], [neck_r, body_h + shoulder_h], [neck_r, h], [0, h]])


def _bowl(f):
    R, H, t = 0.07 * f[0], 0.05 * f[1], 0.005
    foot = 0.45 * R
    outer = _quarter_ellipse(foot, R, 0.0, H)
    inner = _quarter_ellipse(foot - t, R - t, t, H)[::-1]
    return _revolve([[0, 0], *outer, *inner, [0, t]])


def _dumbbell(f):
    ball, bar_r = 0.025 * f[0], 0.008 * f[1]
    length = 2 * ball + 0.08 * f[2]
    # one profile: the lower ball's arc up to where the bar leaves it, the bar,
    # the upper ball's arc from where the bar enters it
    theta0 = math.asin(min(bar_r / ball, 0.99))
    a = np.linspace(-math.pi / 2, math.pi / 2 - theta0, 8)
    lower = np.stack([ball * np.cos(a), ball + ball * np.sin(a)], 1)
    b = np.linspace(-math.pi / 2 + theta0, math.pi / 2, 8)
    upper = np.stack([ball * np.cos(b), length - ball + ball * np.sin(b)], 1)
    return _revolve([[0, 0], *lower[1:], *upper[:-1], [0, length]])


def _tube(f):
    R, h, t = 0.03 * f[0], 0.1 * f[1], 0.004 * f[2]
    # a closed annular profile (first point == last) revolves to a closed tube
    return _revolve([[R - t, 0], [R, 0], [R, h], [R - t, h], [R - t, 0]])


def _l_bracket(f):
    a, b, t, w = 0.09 * f[0], 0.06 * f[1], 0.015 * f[2], 0.04 * f[3]
    poly = [[0, 0], [a, 0], [a, t], [t, t], [t, b], [0, b]]
    tris = [[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5]]
    return _extrude(poly, tris, w)


def _t_bar(f):
    a, b, t, w = 0.1 * f[0], 0.08 * f[1], 0.015 * f[2], 0.03 * f[3]
    x0, x1 = (a - t) / 2, (a + t) / 2
    poly = [[0, b - t], [x0, b - t], [x0, 0], [x1, 0], [x1, b - t], [a, b - t], [a, b], [0, b]]
    tris = [[0, 1, 7], [1, 6, 7], [1, 4, 6], [4, 5, 6], [1, 2, 3], [1, 3, 4]]
    return _extrude(poly, tris, w)


def _wedge(f):
    a, h, w = 0.1 * f[0], 0.05 * f[1], 0.05 * f[2]
    return _extrude([[0, 0], [a, 0], [0, h]], [[0, 1, 2]], w)


def _primitive(category, f):
    import trimesh
    from trimesh import creation

    if category == "box":
        return creation.box(extents=f[:3] * np.array([0.08, 0.06, 0.1]))
    if category == "cylinder":
        return creation.cylinder(radius=0.03 * f[0], height=0.12 * f[1], sections=32)
    if category == "ellipsoid":
        m = creation.icosphere(subdivisions=3, radius=1.0)
        m.apply_scale(f[:3] * np.array([0.045, 0.035, 0.03]))
        return m
    if category == "cone":
        return creation.cone(radius=0.04 * f[0], height=0.1 * f[1], sections=32)
    if category == "torus":
        return creation.torus(major_radius=0.04 * f[0], minor_radius=0.012 * f[1], major_sections=32,
                              minor_sections=12)
    if category == "pyramid":
        m = creation.cone(radius=0.05 * f[0], height=0.08 * f[1], sections=4)
        m.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 4, [0, 0, 1]))
        return m
    return {"mug": _mug, "bottle": _bottle, "bowl": _bowl, "l_bracket": _l_bracket, "t_bar": _t_bar,
            "wedge": _wedge, "dumbbell": _dumbbell, "tube": _tube}[category](f)


def make_object(category, rng, variant="seen"):
    """One procedural object: a watertight ``trimesh.Trimesh`` in metres,
    centred on its bounding-box centre, largest side in [4, 20] cm.

    category: one of ``OBJECT_CATEGORIES`` or ``NOVEL_CATEGORIES``.
    rng: a ``numpy.random.Generator`` (the only source of randomness).
    variant: ``"seen"`` or ``"similar"`` (proportions outside the seen range).
    """
    if category not in OBJECT_CATEGORIES + NOVEL_CATEGORIES:
        raise ValueError(f"category must be one of {OBJECT_CATEGORIES + NOVEL_CATEGORIES}, got {category!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    f = _factors(rng, variant, 4)
    m = _primitive(category, f)
    m.merge_vertices()
    m.fix_normals()  # outward normals, consistent winding (positive volume)
    ext = float(m.extents.max())
    if ext > MAX_EXTENT or ext < MIN_EXTENT:
        m.apply_scale(np.clip(ext, MIN_EXTENT, MAX_EXTENT) / ext)
    m.apply_translation(-m.bounds.mean(0))
    return m


@dataclasses.dataclass
class PoolObject:
    """One object of the pool: its GraspNet-style id, category (or the user
    mesh's file stem), split ("seen", "similar" or "novel") and mesh."""
    obj_id: int
    category: str
    split: str
    mesh: object  # trimesh.Trimesh


def load_mesh_folder(folder, scale=1.0):
    """Every mesh file under ``folder`` (recursively, sorted by path) as
    ``(relative path, trimesh.Trimesh)``, scaled by ``scale`` (e.g. 0.001 for
    millimetre files) and centred on the bounding-box centre. The largest side
    must then lie in [1 cm, 50 cm], else a ValueError names the file (a wrong
    unit is the usual cause)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"mesh folder {folder!r} does not exist or is not a directory")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    paths = []
    for dirpath, _, files in os.walk(folder):
        paths += [os.path.join(dirpath, n) for n in files if n.lower().endswith(MESH_EXTENSIONS)]
    if not paths:
        raise ValueError(f"mesh folder {folder!r} holds no mesh files ({', '.join(MESH_EXTENSIONS)})")
    out = []
    for p in sorted(paths):
        m = load_mesh(p)
        m.apply_scale(scale)
        ext = float(m.extents.max())
        if not 0.01 <= ext <= 0.5:
            raise ValueError(f"{p}: largest side {ext:.4g} m after scale={scale} is outside [0.01, 0.5] m; "
                             "pass a scale that converts the file to metres")
        m.apply_translation(-m.bounds.mean(0))
        out.append((os.path.relpath(p, folder), m))
    return out


def object_pool(seed=0, per_category=2, user_meshes=None, user_scale=1.0):
    """A numbered object pool mirroring GraspNet-1B's splits.

    Ids run over: seen objects (``per_category`` of each of
    ``OBJECT_CATEGORIES``, then the meshes of ``user_meshes``, a folder, which
    count as seen), then similar ones (``per_category`` of each seen category
    with other proportions), then novel ones (``per_category`` of each of
    ``NOVEL_CATEGORIES``). Deterministic for a seed. Returns [PoolObject].
    """
    if not (isinstance(per_category, (int, np.integer)) and per_category >= 1):
        raise ValueError(f"per_category must be an integer >= 1, got {per_category!r}")
    rng = np.random.default_rng(seed)
    pool = []

    def add(category, split, mesh):
        pool.append(PoolObject(len(pool), category, split, mesh))

    for cat in OBJECT_CATEGORIES:
        for _ in range(per_category):
            add(cat, "seen", make_object(cat, rng, "seen"))
    if user_meshes is not None:
        for rel, m in load_mesh_folder(user_meshes, user_scale):
            add(os.path.splitext(rel)[0].replace(os.sep, "/"), "seen", m)
    for cat in OBJECT_CATEGORIES:
        for _ in range(per_category):
            add(cat, "similar", make_object(cat, rng, "similar"))
    for cat in NOVEL_CATEGORIES:
        for _ in range(per_category):
            add(cat, "novel", make_object(cat, rng, "seen"))
    return pool
