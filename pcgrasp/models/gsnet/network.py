"""GSNet (graspness_implementation's ``GraspNet``): a 6-DoF grasp detector on the sparse
MinkUNet14D, with the public code's module and parameter names, so a released GSNet
checkpoint's ``model_state_dict`` loads with ``strict=True`` (no MinkowskiEngine,
pointnet2 or knn builds needed).

Pipeline (``GraspNet.forward``):

1. backbone: ``MinkUNet14D(3, seed_feat_dim)`` on 5 mm voxels of the cloud (coordinates
   floor(xyz / voxel_size), input features all ones), per-point features through the
   voxelize inverse map.
2. graspable: a 1x1 conv ``seed_feat_dim -> 3``: objectness logits (2) and graspness (1).
   Graspable points: objectness argmax = 1 and graspness > ``graspness_threshold``.
3. seeds: ``num_seed`` per cloud by farthest point sampling among each cloud's graspable
   points, for the whole batch in one call (``ops.masked_to_padded`` + ragged
   ``ops.farthest_point_sample``, index-0 start as pointnet2's FPS).
4. rotation (ApproachNet): ``conv1`` (C -> C, ReLU, added back to the seed features as a
   residual) and ``conv2`` (C -> num_view view scores). Training: a view per seed sampled
   from the min-max normalised scores; inference: the argmax. Approach rotation
   ``batch_viewpoint_params_to_matrix(-view, 0)``.
5. crop (CloudCrop): ``ops.cylinder_query`` among the seeds (radius 0.05, hmin -0.02,
   hmax 0.04, 16 samples, first hits in index order, padded by repeating the first hit),
   relative coordinates divided by the radius and rotated into the grasp frame,
   concatenated with the neighbours' features, shared MLP [3 + C, 256, 256] with BatchNorm
   and ReLU, max pool over the samples.
6. swad (SWADNet): 256 -> 256 (ReLU) -> 2 x num_angle x num_depth: grasp score and
   width (x 10) per angle and depth.

As the public code: a cloud with k < ``num_seed`` graspable points gets its k FPS picks and
then its first pick (FPS's start, index 0 among the graspable points) repeated for the
remaining ``num_seed - k`` seeds, as pointnet2's CUDA FPS returns once every point is taken.

Which flag decides training behaviour: training-mode view sampling and label assignment
run only when the model was built with ``is_training=True`` (GSNet's constructor flag)
AND is in ``train()`` mode (``GraspNet.assigns_labels``). ``model.eval()`` therefore gives
inference (argmax views, no labels needed) whatever ``is_training`` says, so a training
model can be validated without rebuilding it; GSNet's public code looks at ``is_training``
alone (its ``eval()`` only switches BatchNorm), so there a training model under ``eval()``
still samples views and needs labels. ``is_training=False`` never assigns labels.

Deviations from the public code (behaviour only, names and shapes are the same):

- A cloud with no graspable point samples its seeds from all of its points (GSNet's
  pointnet2 FPS reads out of range / crashes there).
  ``graspable_count_stage1`` counts the real graspable points.
- Training-mode view sampling: a seed whose view scores are all equal samples uniformly
  (the min-max normalisation gives all zeros there and ``torch.multinomial`` fails).
- In training mode ``grasp_top_view_xyz`` / ``grasp_top_view_rot`` are also written: the
  sampled template view and the label-matched rotation the crop uses (GSNet only writes
  them at inference).
- An empty cylinder (impossible with hmin < 0 < hmax: a seed holds itself) groups the
  seed itself; pointnet2 groups point 0.
"""
import math

import torch
import torch.nn as tnn
import torch.nn.functional as F

from ... import nn as snn
from ... import ops
from ...geometry.views import batch_viewpoint_params_to_matrix, grasp_views  # noqa: F401  (re-exported)
from ..minkunet import GSNET_PLANES, MinkUNet14D
from .labels import match_grasp_view_and_label, process_grasp_labels

__all__ = ["GraspNet", "GSNet", "GraspableNet", "ApproachNet", "CloudCrop", "SWADNet", "SharedMLP",
           "graspable_seeds", "sample_views"]

def sample_views(view_score, generator=None):
    """GSNet's training-time view choice: per seed one view index drawn with probability
    proportional to its min-max normalised score (s - min) / (max - min + 1e-8), so the
    lowest-scored view is never drawn; a seed whose scores are all equal draws uniformly.
    view_score [B, M, V] -> [B, M] int64 (one ``torch.multinomial`` call for the batch)."""
    if not isinstance(view_score, torch.Tensor) or view_score.dim() != 3 or view_score.shape[2] < 1:
        raise ValueError("view_score must be a [B, M, V] tensor with V >= 1")
    B, M, V = view_score.shape
    if B * M == 0:
        return torch.zeros((B, M), dtype=torch.int64, device=view_score.device)
    s = view_score.detach().float()
    lo, hi = s.min(-1, keepdim=True).values, s.max(-1, keepdim=True).values
    p = ((s - lo) / (hi - lo + 1e-8)).reshape(B * M, V)
    p = torch.where(p.sum(-1, keepdim=True) > 0, p, torch.ones_like(p))
    return torch.multinomial(p, 1, generator=generator).view(B, M)


# --------------------------------------------------------------------------- heads

class GraspableNet(tnn.Module):
    """``conv_graspable``: 1x1 conv C -> 3: objectness logits [B, 2, N], graspness [B, N]."""

    def __init__(self, seed_feature_dim):
        super().__init__()
        self.in_dim = seed_feature_dim
        self.conv_graspable = tnn.Conv1d(self.in_dim, 3, 1)

    def forward(self, seed_features, end_points):
        out = self.conv_graspable(seed_features)
        end_points["objectness_score"] = out[:, :2]
        end_points["graspness_score"] = out[:, 2]
        return end_points


class ApproachNet(tnn.Module):
    """View scores [B, M, num_view] and the chosen view per seed.

    ``forward(seed_features [B, C, M], end_points) -> (end_points, res_features [B, C, M])``;
    writes ``view_score`` and ``grasp_top_view_inds`` [B, M] (sampled from the min-max
    normalised scores when training, the argmax otherwise), and ``grasp_top_view_xyz``
    [B, M, 3] / ``grasp_top_view_rot`` [B, M, 3, 3] (approach -view, angle 0) at inference.
    ``generator``: optional torch.Generator for the training-mode sampling."""

    def __init__(self, num_view, seed_feature_dim, is_training=True):
        super().__init__()
        self.num_view = num_view
        self.in_dim = seed_feature_dim
        self.is_training = is_training
        self.conv1 = tnn.Conv1d(self.in_dim, self.in_dim, 1)
        self.conv2 = tnn.Conv1d(self.in_dim, self.num_view, 1)
        self.generator = None

    def forward(self, seed_features, end_points):
        res_features = F.relu(self.conv1(seed_features))
        view_score = self.conv2(res_features).transpose(1, 2).contiguous()  # [B, M, V]
        end_points["view_score"] = view_score
        if self.is_training and self.training:
            top = sample_views(view_score, self.generator)
        else:
            top = view_score.argmax(-1)
            dt = torch.promote_types(view_score.dtype, torch.float32)
            views = grasp_views(self.num_view, view_score.device, dt)
            xyz = views[top]
            end_points["grasp_top_view_xyz"] = xyz
            end_points["grasp_top_view_rot"] = batch_viewpoint_params_to_matrix(-xyz, torch.zeros_like(xyz[..., 0]))
        end_points["grasp_top_view_inds"] = top
        return end_points, res_features


class _BatchNorm2d(tnn.Sequential):
    """pointnet2 pytorch_utils' BatchNorm2d wrapper: the BatchNorm sits at ``.bn``."""

    def __init__(self, size):
        super().__init__()
        self.add_module("bn", tnn.BatchNorm2d(size))
        tnn.init.constant_(self.bn.weight, 1.0)
        tnn.init.constant_(self.bn.bias, 0.0)


class _Conv2dBNReLU(tnn.Sequential):
    """pointnet2 pytorch_utils' Conv2d with bn=True: ``conv`` (1x1, no bias), ``bn``, ReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.add_module("conv", tnn.Conv2d(cin, cout, 1, bias=False))
        tnn.init.kaiming_normal_(self.conv.weight)
        self.add_module("bn", _BatchNorm2d(cout))
        self.add_module("activation", tnn.ReLU())


class SharedMLP(tnn.Sequential):
    """pointnet2's SharedMLP(widths, bn=True): ``layer{i}`` = 1x1 Conv2d + BatchNorm2d + ReLU."""

    def __init__(self, widths):
        super().__init__()
        for i in range(len(widths) - 1):
            self.add_module(f"layer{i}", _Conv2dBNReLU(widths[i], widths[i + 1]))


class CloudCrop(tnn.Module):
    """Cylinder grouping among the seeds and a shared MLP with max pooling.

    ``forward(seed_xyz [B, M, 3], seed_features [B, C, M], rot [B, M, 3, 3]) -> [B, 256, M]``.
    Neighbours: ``ops.cylinder_query`` (first ``nsample`` seeds inside, index order,
    padded by repeating the first), grouped xyz (p - c) / radius rotated into the grasp
    frame (``R^T (p - c) / radius``), concatenated with their features."""

    def __init__(self, nsample, seed_feature_dim, cylinder_radius=0.05, hmin=-0.02, hmax=0.04):
        super().__init__()
        self.nsample = nsample
        self.in_dim = seed_feature_dim
        self.cylinder_radius = cylinder_radius
        self.hmin, self.hmax = hmin, hmax
        self.mlps = SharedMLP([3 + self.in_dim, 256, 256])

    def group(self, seed_xyz, rot):
        """Neighbour indices [B, M, nsample] into the seeds (never -1)."""
        idx, count = ops.cylinder_query(seed_xyz, rot, seed_xyz, self.cylinder_radius, self.hmin, self.hmax,
                                        self.nsample, order="first", pad="first")
        own = torch.arange(seed_xyz.shape[1], device=idx.device).view(1, -1, 1).expand_as(idx)
        return torch.where(idx < 0, own, idx)

    def forward(self, seed_xyz, seed_features, rot):
        idx = self.group(seed_xyz, rot)
        grouped_xyz = ops.gather_points(seed_xyz, idx) - seed_xyz.unsqueeze(2)      # [B, M, K, 3]
        grouped_xyz = torch.matmul(grouped_xyz / self.cylinder_radius, rot)          # rows R^T v
        grouped_feat = ops.gather_points(seed_features.transpose(1, 2).contiguous(), idx)  # [B, M, K, C]
        x = torch.cat([grouped_xyz, grouped_feat], -1).permute(0, 3, 1, 2)            # [B, 3 + C, M, K]
        x = self.mlps(x)
        return x.max(dim=3).values                                                    # [B, 256, M]


class SWADNet(tnn.Module):
    """Score and width per angle and depth: ``grasp_score_pred``, ``grasp_width_pred`` [B, M, A, D]."""

    def __init__(self, num_angle, num_depth):
        super().__init__()
        self.num_angle, self.num_depth = num_angle, num_depth
        self.conv1 = tnn.Conv1d(256, 256, 1)
        self.conv_swad = tnn.Conv1d(256, 2 * num_angle * num_depth, 1)

    def forward(self, vp_features, end_points):
        B, _, M = vp_features.shape
        x = self.conv_swad(F.relu(self.conv1(vp_features)))
        x = x.view(B, 2, self.num_angle, self.num_depth, M).permute(0, 1, 4, 2, 3)
        end_points["grasp_score_pred"] = x[:, 0]
        end_points["grasp_width_pred"] = x[:, 1]
        return end_points


# --------------------------------------------------------------------------- seeds

def graspable_seeds(xyz, graspable, num_seed):
    """Seed indices [B, num_seed] into dimension 1 of ``xyz`` [B, N, 3]: FPS (index-0
    start) among each cloud's ``graspable`` [B, N] points, one ragged call for the batch.

    A cloud with k < num_seed graspable points gets its k FPS picks followed by its first
    pick repeated (GSNet: pointnet2's FPS returns index 0 once every point is taken); a
    cloud with none samples among all of its points. N must be >= 1."""
    if not isinstance(xyz, torch.Tensor) or xyz.dim() != 3 or xyz.shape[2] != 3:
        raise ValueError(f"xyz must be a [B, N, 3] tensor, got "
                         f"{tuple(xyz.shape) if isinstance(xyz, torch.Tensor) else type(xyz).__name__}")
    if not isinstance(graspable, torch.Tensor) or graspable.dtype != torch.bool or \
            graspable.shape != xyz.shape[:2]:
        raise ValueError(f"graspable must be a bool tensor of shape {tuple(xyz.shape[:2])}")
    if isinstance(num_seed, bool) or not isinstance(num_seed, int) or num_seed < 1:
        raise ValueError(f"num_seed must be a positive int, got {num_seed!r}")
    B, N, _ = xyz.shape
    if N == 0:
        raise ValueError("xyz must hold at least one point per cloud (N >= 1)")
    mask = graspable | ~graspable.any(1, keepdim=True)           # no graspable point: all points
    padded, lengths, index = ops.masked_to_padded(xyz, mask, return_index=True)
    fps = ops.farthest_point_sample(padded, num_seed, lengths=lengths)   # [B, num_seed], -1 past the count
    fps = torch.where(fps >= 0, fps, fps[:, :1])                         # past the count: the first pick
    return index.gather(1, fps)


# --------------------------------------------------------------------------- model

class GraspNet(tnn.Module):
    """GSNet. Submodules ``backbone, graspable, rotation, crop, swad`` (the public code's names).

    Args (the public defaults): cylinder_radius 0.05, seed_feat_dim 512, is_training True,
    num_view 300, num_angle 12, num_depth 4, num_seed 1024 (GSNet's M_POINT), voxel_size
    0.005, graspness_threshold 0.1, hmin -0.02, hmax 0.04, nsample 16, planes None
    (GSNet's MinkUNet14D planes; any 8 widths for small CPU models).

    ``forward(end_points)`` needs ``point_clouds`` [B, N, 3] (camera frame, metres); when
    ``is_training`` and the module is in training mode it also assigns labels
    (``gsnet.labels``) and needs the batch's label keys. Writes GSNet's keys (see the
    module docstring and ``pcgrasp/models/gsnet/labels.py``)."""

    def __init__(self, cylinder_radius=0.05, seed_feat_dim=512, is_training=True, num_view=300, num_angle=12,
                 num_depth=4, num_seed=1024, voxel_size=0.005, graspness_threshold=0.1, hmin=-0.02, hmax=0.04,
                 nsample=16, planes=None):
        super().__init__()
        for name, v in (("seed_feat_dim", seed_feat_dim), ("num_view", num_view), ("num_angle", num_angle),
                        ("num_depth", num_depth), ("num_seed", num_seed), ("nsample", nsample)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name, v in (("cylinder_radius", cylinder_radius), ("voxel_size", voxel_size)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if not (math.isfinite(hmin) and math.isfinite(hmax) and hmin < hmax):
            raise ValueError(f"hmin < hmax must be finite, got hmin={hmin!r}, hmax={hmax!r}")
        self.is_training = bool(is_training)
        self.seed_feature_dim = seed_feat_dim
        self.num_view, self.num_angle, self.num_depth = num_view, num_angle, num_depth
        self.M_points = num_seed
        self.voxel_size = float(voxel_size)
        self.graspness_threshold = float(graspness_threshold)
        self.backbone = MinkUNet14D(3, seed_feat_dim, GSNET_PLANES if planes is None else tuple(planes))
        self.graspable = GraspableNet(seed_feature_dim=seed_feat_dim)
        self.rotation = ApproachNet(num_view, seed_feature_dim=seed_feat_dim, is_training=self.is_training)
        self.crop = CloudCrop(nsample=nsample, seed_feature_dim=seed_feat_dim, cylinder_radius=cylinder_radius,
                              hmin=hmin, hmax=hmax)
        self.swad = SWADNet(num_angle=num_angle, num_depth=num_depth)

    @property
    def assigns_labels(self):
        """True when forward samples views and assigns labels: built with ``is_training``
        and in ``train()`` mode (see the module docstring)."""
        return self.is_training and self.training

    def point_features(self, points):
        """Backbone features per point [B, C, N] of clouds [B, N, 3]."""
        B, N, _ = points.shape
        x, inverse = snn.sparse_tensor_from_points(points, torch.ones_like(points), self.voxel_size)
        feats = snn.features_at_points(self.backbone(x), inverse)
        return feats.view(B, N, -1).transpose(1, 2)

    def forward(self, end_points):
        if not isinstance(end_points, dict) or "point_clouds" not in end_points:
            raise ValueError("end_points must be a dict holding 'point_clouds' [B, N, 3]")
        xyz = end_points["point_clouds"]
        if not isinstance(xyz, torch.Tensor) or xyz.dim() != 3 or xyz.shape[2] != 3 or not xyz.is_floating_point():
            raise ValueError(f"point_clouds must be a float [B, N, 3] tensor, got "
                             f"{tuple(xyz.shape) if isinstance(xyz, torch.Tensor) else type(xyz).__name__}")
        B, N, _ = xyz.shape
        if B == 0 or N == 0:
            raise ValueError(f"point_clouds must hold at least one cloud of at least one point, got {tuple(xyz.shape)}")
        seed_features = self.point_features(xyz)                               # [B, C, N]
        end_points = self.graspable(seed_features, end_points)
        objectness = end_points["objectness_score"].argmax(1) == 1
        graspable = objectness & (end_points["graspness_score"] > self.graspness_threshold)
        end_points["graspable_count_stage1"] = graspable.sum().to(xyz.dtype) / B

        seed_idx = graspable_seeds(xyz.detach(), graspable, self.M_points)     # [B, M]
        seed_xyz = ops.gather_points(xyz, seed_idx)                            # [B, M, 3]
        seed_feat = ops.gather_points(seed_features.transpose(1, 2).contiguous(), seed_idx).transpose(1, 2)
        end_points["xyz_graspable"] = seed_xyz
        end_points["graspable_inds"] = seed_idx

        end_points, res_feat = self.rotation(seed_feat, end_points)
        seed_feat = seed_feat + res_feat
        if self.assigns_labels:
            end_points = process_grasp_labels(end_points)
            rot, end_points = match_grasp_view_and_label(end_points)
            views = grasp_views(self.num_view, xyz.device, xyz.dtype)
            end_points["grasp_top_view_xyz"] = views[end_points["grasp_top_view_inds"]]
            end_points["grasp_top_view_rot"] = rot
        else:
            rot = end_points["grasp_top_view_rot"]
        group_features = self.crop(seed_xyz.contiguous(), seed_feat.contiguous(), rot.to(seed_xyz.dtype))
        return self.swad(group_features, end_points)


GSNet = GraspNet
