"""First ray hits on a mesh, in bounded chunks.

trimesh's ray casting (Embree through ``embreex`` when installed, else its pure
NumPy / rtree caster) holds every candidate ray-triangle pair of a call in memory.
Embree needs little per ray; trimesh's own caster treats each ray as unbounded,
so nearly every triangle is a candidate of every ray: ~46 bytes per ray and
face measured (16,384 rays on a 29,616-face mesh -> 22 GB). ``first_hits``
therefore casts at most ``chunk`` rays per call with Embree and at most
``PAIR_BUDGET`` / faces rays per call without it (~0.5 GB per call), so the peak
is bounded whatever the number of grasps and the size of the mesh.
"""
import numpy as np

RAY_CHUNK = 16384          # rays per call with Embree
PAIR_BUDGET = 10_000_000   # ray x face candidate pairs per call without Embree (~0.5 GB)


def uses_embree(mesh):
    """Whether ``mesh.ray`` is trimesh's Embree caster."""
    return "embree" in type(mesh.ray).__module__


def rays_per_call(mesh, chunk=RAY_CHUNK):
    """The rays ``first_hits`` casts per call on ``mesh``."""
    return chunk if uses_embree(mesh) else max(1, min(chunk, PAIR_BUDGET // max(len(mesh.faces), 1)))


def first_hits(mesh, origins, dirs, max_dist, chunk=RAY_CHUNK):
    """First hit of each ray (origins, unit dirs [N, 3]) within [0, max_dist [N]]
    on ``mesh``: (hit [N] bool, t [N] (inf without a hit), point [N, 3], outward
    face normal [N, 3]). At most ``chunk`` rays per call to the caster (fewer
    without Embree, see the module docstring)."""
    if not (isinstance(chunk, (int, np.integer)) and chunk >= 1):
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    origins = np.asarray(origins, dtype=np.float64)
    dirs = np.asarray(dirs, dtype=np.float64)
    max_dist = np.broadcast_to(np.asarray(max_dist, dtype=np.float64), (len(origins),))
    n = len(origins)
    chunk = rays_per_call(mesh, chunk)
    hit, t = np.zeros(n, bool), np.full(n, np.inf)
    pts, nrm = np.zeros((n, 3)), np.zeros((n, 3))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        # the nearest hit in front of each origin (Embree and trimesh's own caster alike)
        loc, ray, tri = mesh.ray.intersects_location(origins[s:e], dirs[s:e], multiple_hits=False)
        if not len(ray):
            continue
        ray = np.asarray(ray) + s
        tt = ((loc - origins[ray]) * dirs[ray]).sum(1)
        keep = (tt >= 0) & (tt <= max_dist[ray])
        loc, ray, tri, tt = loc[keep], ray[keep], tri[keep], tt[keep]
        if not len(ray):
            continue
        order = np.lexsort((tt, ray))  # per ray, nearest first
        ray, tt, loc, tri = ray[order], tt[order], loc[order], tri[order]
        first = np.r_[True, ray[1:] != ray[:-1]]
        r = ray[first]
        hit[r], t[r], pts[r], nrm[r] = True, tt[first], loc[first], mesh.face_normals[tri[first]]
    return hit, t, pts, nrm
