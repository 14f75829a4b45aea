"""Point patches -> tokens: FPS centres, kNN or ball-query groups, relative
coordinates, a small PointNet per group, optionally ordered by the Point-JEPA
sequencer."""
import torch
from torch import nn

from pcgrasp import ops


class PatchTokenizer(nn.Module):
    """points [B, N, 3] -> (centres [B, G, 3], tokens [B, G, dim]).

    grouping="knn": the ``group_size`` nearest points of each centre;
    grouping="ball": up to ``group_size`` points within ``radius`` (pointnet2
    order, padded by repeating the first hit). ``sequence=True`` reorders the
    patches with ``ops.nearest_neighbor_order`` (Point-JEPA's sequencer).
    LayerNorm rather than BatchNorm, so DDP and single-process runs agree.
    """

    def __init__(self, dim=384, centers=64, group_size=32, grouping="knn", radius=0.05, sequence=True, width=128):
        super().__init__()
        if grouping not in ("knn", "ball"):
            raise ValueError(f"grouping must be 'knn' or 'ball', got {grouping!r}")
        self.centers, self.group_size, self.grouping, self.radius, self.sequence = (
            centers, group_size, grouping, radius, sequence)
        w = width  # Point-MAE's widths are 128 / 256 / 512 (width=128)
        self.first = nn.Sequential(nn.Linear(3, w), nn.LayerNorm(w), nn.GELU(), nn.Linear(w, 2 * w))
        self.second = nn.Sequential(nn.Linear(4 * w, 4 * w), nn.LayerNorm(4 * w), nn.GELU(), nn.Linear(4 * w, dim))

    def group(self, points):
        # FPS checks the input cloud; every later step consumes what the kernels
        # just returned, so its value checks (each a device sync) are skipped
        with torch.no_grad():
            idx = ops.farthest_point_sample(points, self.centers)
            with ops.data_checks(False):
                centres = ops.gather_points(points, idx)
                if self.sequence:
                    order = ops.nearest_neighbor_order(centres)
                    centres = ops.gather_points(centres, order)
                if self.grouping == "knn":
                    _, nbr = ops.knn(centres, points, self.group_size)
                else:
                    # a centre is a cloud point, so its ball is never empty: pad="first" fills every slot
                    nbr, _, _ = ops.ball_query(centres, points, self.radius, self.group_size, order="first",
                                               pad="first")
        with ops.data_checks(False):
            rel = ops.gather_points(points, nbr) - centres.unsqueeze(2)  # [B, G, k, 3]
        return centres, rel

    def forward(self, points):
        return self.embed(*self.group(points))

    def embed(self, centres, rel):
        """(centres, tokens) of grouped patches: ``centres`` [B, G, 3] and
        ``rel`` [B, G, k, 3], the patch points relative to their centre, as
        ``group`` returns them (``forward`` = ``embed(*group(points))``)."""
        f = self.first(rel)  # [B, G, k, 256]
        g = f.amax(2, keepdim=True).expand_as(f)
        tokens = self.second(torch.cat([f, g], -1)).amax(2)
        return centres, tokens
