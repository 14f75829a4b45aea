"""GSNet's on-the-fly grasp labels (``utils/label_generation.py``), batched in torch.

``process_grasp_labels(end_points)``: for every seed (``xyz_graspable`` [B, M, 3]) the
nearest label point of the frame's objects (model-frame label points moved by the object
poses; ``pcgrasp.ops.knn``, ties to the lower index, objects concatenated in list order);
its grasp scores / widths over the 300 camera-frame template views, where template view j
takes the label view i of that object whose direction, rotated by the object pose, is
nearest to view j (``ops.knn`` again), and its rotation ``R_pose @ R(view i, angle 0)``.
Then GSNet's view graspness (per view the fraction of the A x D grasps with 0 < mu <= 0.6,
min-max normalised over the views with +1e-5) and the score mask (mu > 0 and width <= 0.1,
else 0). Writes ``batch_grasp_point`` [B, M, 3], ``batch_grasp_view_rot`` [B, M, V, 3, 3],
``batch_grasp_score`` / ``batch_grasp_width`` [B, M, V, A, D] and
``batch_grasp_view_graspness`` [B, M, V] (V = num_view, 300).

``match_grasp_view_and_label(end_points) -> (rot [B, M, 3, 3], end_points)``: the labels of
each seed's ``grasp_top_view_inds`` view; friction mu -> score
log(mu_max / mu) / (log(mu_max / mu_min) + 1e-6) for mu > 0 (mu_max / mu_min over the whole
batch's positive top-view labels, as GSNet), 0 elsewhere. Overwrites ``batch_grasp_score``
and ``batch_grasp_width`` with [B, M, A, D].

View subsets: ``grasp_views_list`` (our addition) names the views a label file holds (indices
into the 300); the template views are matched among those only, so a subset gives coarser
labels for every view. Without it every object must hold all ``num_view`` views.

Deviations: a frame without any label object (or label point) gets zero scores, widths and
view graspness and the template rotations (GSNet fails there); labels are computed without
gradients, in the seeds' dtype.
"""
import contextlib
import functools

import torch

from ... import ops
from ...geometry.gripper import GRASP_MAX_WIDTH
from ...geometry.views import batch_viewpoint_params_to_matrix, grasp_views

__all__ = ["process_grasp_labels", "match_grasp_view_and_label", "VIEW_MU_THRESHOLD"]

VIEW_MU_THRESHOLD = 0.6  # GSNet's view_u_threshold


def _objects(end_points, B):
    keys = ("object_poses_list", "grasp_points_list", "grasp_scores_list", "grasp_widths_list")
    for k in keys:
        if k not in end_points:
            raise ValueError(f"end_points lacks {k!r}: training-mode label assignment needs the batch's label keys")
        if len(end_points[k]) != B:
            raise ValueError(f"{k} must have one entry per cloud ({B}), got {len(end_points[k])}")
    views_list = end_points.get("grasp_views_list")
    if views_list is not None and len(views_list) != B:
        raise ValueError(f"grasp_views_list must have one entry per cloud ({B}), got {len(views_list)}")
    out = []
    for b in range(B):
        poses = end_points["object_poses_list"][b]
        n = len(poses)
        for k in keys[1:]:
            if len(end_points[k][b]) != n:
                raise ValueError(f"{k}[{b}] has {len(end_points[k][b])} objects but object_poses_list[{b}] has {n}")
        if views_list is not None and len(views_list[b]) != n:
            raise ValueError(f"grasp_views_list[{b}] has {len(views_list[b])} objects but object_poses_list[{b}] "
                             f"has {n}")
        for o in range(n):
            pose = torch.as_tensor(poses[o])
            pts = end_points["grasp_points_list"][b][o]
            sc = end_points["grasp_scores_list"][b][o]
            wd = end_points["grasp_widths_list"][b][o]
            if pose.shape[-2:] != (3, 4) and pose.shape[-2:] != (4, 4):
                raise ValueError(f"object_poses_list[{b}][{o}] must be [3, 4] or [4, 4], got {tuple(pose.shape)}")
            if pts.dim() != 2 or pts.shape[1] != 3:
                raise ValueError(f"grasp_points_list[{b}][{o}] must be [Np, 3], got {tuple(pts.shape)}")
            if sc.dim() != 4 or sc.shape[0] != pts.shape[0] or wd.shape != sc.shape:
                raise ValueError(f"grasp_scores_list[{b}][{o}] and grasp_widths_list[{b}][{o}] must both be "
                                 f"[{pts.shape[0]}, V, A, D], got {tuple(sc.shape)} and {tuple(wd.shape)}")
            views = None if views_list is None else torch.as_tensor(views_list[b][o]).reshape(-1).long()
            out.append((b, pose, pts, sc, wd, views))
    return out


def _outside_autocast(fn):
    """Runs ``fn`` with autocast off: label assignment transforms label points and
    matches views with matmuls, which autocast would run in bf16 (~1 mm label error on a
    GPU, none on the CPU); labels must not depend on the training precision."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.autocast("cpu", enabled=False))
            if torch.cuda.is_available():
                stack.enter_context(torch.autocast("cuda", enabled=False))
            return fn(*args, **kwargs)
    return run


@_outside_autocast
@torch.no_grad()
def process_grasp_labels(end_points, num_view=300):
    """Assigns each seed its nearest label point's grasps in the 300 camera-frame views (see
    the module docstring)."""
    seeds = end_points.get("xyz_graspable")
    if not isinstance(seeds, torch.Tensor) or seeds.dim() != 3 or seeds.shape[2] != 3:
        raise ValueError("end_points['xyz_graspable'] must be a [B, M, 3] tensor")
    seeds = seeds.detach()
    B, M, _ = seeds.shape
    dev, dt = seeds.device, seeds.dtype
    objs = _objects(end_points, B)
    A = D = None
    for _, _, _, sc, _, _ in objs:
        if A is None:
            A, D = sc.shape[2], sc.shape[3]
        elif sc.shape[2:] != (A, D):
            raise ValueError(f"every object's labels must share A x D = {A} x {D}, got {tuple(sc.shape[2:])}")
    if A is None:
        A, D = 12, 4
    templ = grasp_views(num_view, dev, dt)                                            # [V, 3]
    templ_rot = batch_viewpoint_params_to_matrix(-templ, torch.zeros(num_view, dtype=dt, device=dev))
    O = len(objs)

    # 1) view matching for every object at once: template view j <- the object's label view
    #    whose rotated direction is nearest (ops.knn among the object's views)
    vcounts = [o[3].shape[1] for o in objs]
    vcount = ops.host_to_device(vcounts, dev, torch.int64)
    Vmax = max(vcounts) if O else 1
    obj_views = torch.zeros((O, Vmax), dtype=torch.int64, device=dev)      # label view slot -> template index
    rotated = torch.zeros((O, Vmax, 3), dtype=dt, device=dev)
    R = torch.zeros((O, 3, 3), dtype=dt, device=dev)
    t = torch.zeros((O, 3), dtype=dt, device=dev)
    all_views = []
    for g, (b, pose, pts, sc, wd, views) in enumerate(objs):
        V = sc.shape[1]
        if views is None:
            if V != num_view:
                raise ValueError(f"object {g} of the batch has labels for {V} views but no grasp_views_list entry "
                                 f"names them (expected all {num_view})")
        elif views.numel() != V:
            raise ValueError(f"grasp_views_list entry of object {g} must hold {V} indices in [0, {num_view})")
        else:
            all_views.append(views.to(dev))
    # the values, with one host read for the whole batch (not two per object): every view index
    # in range, the seeds, poses and label points finite (the knn calls below skip their own checks)
    flags = [~torch.isfinite(seeds).all()]
    if O:
        given = torch.cat([torch.cat([o[1].to(device=dev, dtype=dt).reshape(-1), o[2].to(device=dev, dtype=dt).reshape(-1)])
                           for o in objs])
        flags.append(~given.isfinite().all())
    if all_views:
        cat = torch.cat(all_views)
        flags.append(((cat < 0) | (cat >= num_view)).any())
    flags = torch.stack(flags).tolist()
    if flags[0]:
        raise ValueError("end_points['xyz_graspable'] must be finite")
    if O and flags[1]:
        raise ValueError("object_poses_list and grasp_points_list must be finite")
    if all_views and flags[-1]:
        per = [bool(((v < 0) | (v >= num_view)).any()) for v in all_views]  # only to name the object
        g = [i for i, o in enumerate(objs) if o[5] is not None][per.index(True)]
        raise ValueError(f"grasp_views_list entry of object {g} must hold {vcounts[g]} indices in [0, {num_view})")
    for g, (b, pose, pts, sc, wd, views) in enumerate(objs):
        V = sc.shape[1]
        views = torch.arange(num_view, device=dev) if views is None else views.to(dev)
        pose = pose.to(device=dev, dtype=dt)
        R[g], t[g] = pose[:3, :3], pose[:3, 3]
        obj_views[g, :V] = views
        rotated[g, :V] = templ[views] @ R[g].T
    if O:
        with ops.data_checks(False):  # checked above; lengths from the host
            _, vi = ops.knn(templ.expand(O, -1, -1).contiguous(), rotated, 1, lengths=vcount)
        view_slot = vi[..., 0]                                                         # [O, V] into the object's views
    else:
        view_slot = torch.zeros((0, num_view), dtype=torch.int64, device=dev)

    # 2) nearest label point per seed among the frame's objects (camera frame, padded per cloud)
    count_list = [0] * B
    for b, _, pts, _, _, _ in objs:
        count_list[b] += pts.shape[0]
    L = max(max(count_list), 1) if B else 1
    label_pts = torch.zeros((B, L, 3), dtype=dt, device=dev)
    label_obj = torch.zeros((B, L), dtype=torch.int64, device=dev)     # global object index
    label_row = torch.zeros((B, L), dtype=torch.int64, device=dev)     # row in that object's labels
    flat_start = [0] * O                                               # offset of object g in the packed labels
    fill = [0] * B
    offset = 0
    packed_s, packed_w = [], []
    for g, (b, pose, pts, sc, wd, _) in enumerate(objs):
        n, V = pts.shape[0], sc.shape[1]
        s = fill[b]
        label_pts[b, s:s + n] = pts.to(device=dev, dtype=dt) @ R[g].T + t[g]
        label_obj[b, s:s + n] = g
        label_row[b, s:s + n] = torch.arange(n, device=dev)
        fill[b] += n
        flat_start[g] = offset
        offset += n * V
        packed_s.append(sc.to(device=dev, dtype=dt).reshape(n * V, A, D))
        packed_w.append(wd.to(device=dev, dtype=dt).reshape(n * V, A, D))
    with ops.data_checks(False):
        _, nn = ops.knn(seeds.contiguous(), label_pts, 1, lengths=ops.host_to_device(count_list, dev, torch.int64))
    nn = nn[..., 0]                                                                    # [B, M], -1 without labels
    has = nn >= 0
    nn = nn.clamp_min(0)
    g = label_obj.gather(1, nn)                                                         # [B, M]
    row = label_row.gather(1, nn)
    point = label_pts.gather(1, nn.unsqueeze(-1).expand(-1, -1, 3))

    # 3) gather the seeds' grasps in every template view
    if O:
        slot = view_slot[g]                                                             # [B, M, V]
        V_g = vcount[g]
        flat = ops.host_to_device(flat_start, dev, torch.int64)[g].unsqueeze(-1) + row.unsqueeze(-1) * V_g.unsqueeze(-1) + slot
        # a seed without labels reads an appended row of zeros: its scores and widths are 0 without
        # a masking pass over the [B, M, V, A, D] results
        flat = torch.where(has.unsqueeze(-1), flat, offset).reshape(-1)
        zero = torch.zeros((1, A, D), dtype=dt, device=dev)
        scores = torch.cat(packed_s + [zero]).index_select(0, flat).view(B, M, num_view, A, D)
        widths = torch.cat(packed_w + [zero]).index_select(0, flat).view(B, M, num_view, A, D)
        label_view = obj_views.gather(1, view_slot)                                    # [O, V] template index
        rot = R[g].unsqueeze(2) @ templ_rot[label_view[g]]                              # [B, M, V, 3, 3]
        rot = torch.where(has.view(B, M, 1, 1, 1), rot, templ_rot.expand(B, M, -1, -1, -1))
    else:
        scores = torch.zeros((B, M, num_view, A, D), dtype=dt, device=dev)
        widths = torch.zeros_like(scores)
        rot = templ_rot.expand(B, M, -1, -1, -1).clone()
        point = torch.zeros_like(seeds)

    # 4) view graspness and the score mask (GSNet)
    positive = scores > 0
    ok = (scores <= VIEW_MU_THRESHOLD) & positive
    vg = ok.to(dt).sum((-1, -2)) / (A * D)                                              # [B, M, V]
    lo, hi = vg.min(-1, keepdim=True).values, vg.max(-1, keepdim=True).values
    vg = (vg - lo) / (hi - lo + 1e-5)
    scores.masked_fill_(~(positive & (widths <= GRASP_MAX_WIDTH)), 0)  # fresh from the gather: in place

    end_points["batch_grasp_point"] = point
    end_points["batch_grasp_view_rot"] = rot
    end_points["batch_grasp_score"] = scores
    end_points["batch_grasp_width"] = widths
    end_points["batch_grasp_view_graspness"] = vg
    return end_points


@_outside_autocast
@torch.no_grad()
def match_grasp_view_and_label(end_points):
    """The labels of each seed's chosen view (``grasp_top_view_inds`` [B, M]); returns
    (rotations [B, M, 3, 3], end_points) with ``batch_grasp_score`` mapped from mu to GSNet's
    score and ``batch_grasp_score`` / ``batch_grasp_width`` now [B, M, A, D]."""
    for k in ("grasp_top_view_inds", "batch_grasp_view_rot", "batch_grasp_score", "batch_grasp_width"):
        if k not in end_points:
            raise ValueError(f"end_points lacks {k!r} (process_grasp_labels and the approach net first)")
    top = end_points["grasp_top_view_inds"]
    rot_all = end_points["batch_grasp_view_rot"]
    scores = end_points["batch_grasp_score"]
    widths = end_points["batch_grasp_width"]
    if scores.dim() != 5:
        raise ValueError(f"batch_grasp_score must be [B, M, V, A, D], got {tuple(scores.shape)}")
    B, M, V, A, D = scores.shape
    if top.shape != (B, M) or top.dtype != torch.int64:
        raise ValueError(f"grasp_top_view_inds must be an int64 [{B}, {M}] tensor, got {top.dtype} "
                         f"{tuple(top.shape)}")
    if B * M and bool(((top < 0) | (top >= V)).any()):  # one host read
        raise ValueError(f"grasp_top_view_inds must be in [0, {V})")
    i = top.view(B, M, 1, 1, 1)
    rot = rot_all.gather(2, i.expand(-1, -1, -1, 3, 3)).squeeze(2)
    s = scores.gather(2, i.expand(-1, -1, -1, A, D)).squeeze(2)
    w = widths.gather(2, i.expand(-1, -1, -1, A, D)).squeeze(2)
    pos = s > 0
    if s.numel():  # no host read: without positives every score is 0 and the mapping is never taken
        tiny = torch.finfo(s.dtype).tiny
        u_max = s.max().clamp_min(tiny)
        u_min = torch.where(pos, s, torch.full_like(s, torch.finfo(s.dtype).max)).min().clamp_min(tiny)
        mapped = torch.log(u_max / s.clamp_min(tiny)) / (torch.log(u_max / u_min) + 1e-6)
        s = torch.where(pos, mapped, torch.zeros_like(s))
    end_points["batch_grasp_score"] = s
    end_points["batch_grasp_width"] = w
    return rot, end_points
