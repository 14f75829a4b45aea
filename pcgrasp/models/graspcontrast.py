"""GraspContrast: a dual-branch, shared-weight sparse ResUNet14 for two-view
contrastive pretraining (GraspContrast Sec. III; PointContrast's setting).

Both views go through the *same* ``ResUNet14`` (one set of weights: the two
"branches" are two calls of one module, as PointContrast's trainer does).
Each cloud is voxelized at ``voxel_size`` (5 mm) with constant input features
(ones, as GSNet feeds MinkowskiEngine), and every point takes its voxel's
feature through the voxelize inverse map.

Choices (stated, since the paper's text leaves them open):

- Features are L2-normalised per point, as PointContrast / FCGF's ResUNet
  (``normalize_feature=True``) do, so ``f_i . f_j`` is a cosine similarity.
- No projection head by default (``projection=None``): the contrastive loss
  acts on the backbone's C = 512 features that the detector later uses. An
  optional MLP head (``projection=[hidden, out]``, per-point linear layers
  with ReLU between) is available for ablations; it is not part of
  ``backbone.pt``.
"""
import torch

from .. import nn as snn
from .minkunet import GSNET_PLANES, ResUNet14

__all__ = ["GraspContrast"]


class GraspContrast(torch.nn.Module):
    """Shared-weight two-view sparse backbone.

    Args:
        out_channels: C, the per-point feature width (512 in GraspContrast).
        planes: the 8 stage widths of the MinkUNet14D (GSNet's by default;
            smaller ones for CPU demos).
        in_channels: width of the constant input features (3, as GSNet).
        voxel_size: metres per voxel (0.005).
        projection: None, or a list of MLP widths applied per point after the
            backbone (ablation only).
        normalize: L2-normalise the output features (default True).

    ``forward(points1, points2)``: two [B, N, 3] float batches of clouds (one
    scene pair per row; the two views may have different N). Returns
    (feats1 [B, N1, C'], feats2 [B, N2, C']), C' = out_channels or the last
    projection width.
    """

    def __init__(self, out_channels=512, planes=GSNET_PLANES, in_channels=3, voxel_size=0.005, projection=None,
                 normalize=True):
        super().__init__()
        if not (isinstance(voxel_size, (int, float)) and not isinstance(voxel_size, bool) and voxel_size > 0):
            raise ValueError(f"voxel_size must be a number > 0, got {voxel_size!r}")
        self.voxel_size, self.in_channels, self.normalize = float(voxel_size), int(in_channels), bool(normalize)
        self.backbone = ResUNet14(in_channels, out_channels, planes)
        layers, width = [], out_channels
        for i, w in enumerate(projection or []):
            if isinstance(w, bool) or not isinstance(w, int) or w < 1:
                raise ValueError(f"projection widths must be positive ints, got {projection!r}")
            if i:
                layers.append(torch.nn.ReLU())
            layers.append(torch.nn.Linear(width, w))
            width = w
        self.projection = torch.nn.Sequential(*layers) if layers else None
        self.out_channels = width

    def encode(self, points):
        """Per-point features of one batch of clouds: [B, N, 3] -> [B, N, C']."""
        if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[2] != 3:
            raise ValueError("points must be a [B, N, 3] float tensor, got "
                             f"{tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
        if not points.is_floating_point():
            raise TypeError(f"points must be floating point, got {points.dtype}")
        B, N, _ = points.shape
        dtype = next(self.backbone.parameters()).dtype
        ones = points.new_ones((B, N, self.in_channels), dtype=dtype)
        x, inverse = snn.sparse_tensor_from_points(points, ones, self.voxel_size)
        y = self.backbone(x)
        f = snn.features_at_points(y, inverse).reshape(B, N, -1)
        if self.projection is not None:
            f = self.projection(f)
        if self.normalize:
            f = torch.nn.functional.normalize(f.float(), dim=-1).to(f.dtype)
        return f

    def forward(self, points1, points2):
        # two calls of one module: the branches share every weight (and BN's running statistics)
        return self.encode(points1), self.encode(points2)

    def backbone_state_dict(self):
        """The backbone's weights, a MinkUNet14D / ResUNet14 state_dict (ME / GSNet names)."""
        return self.backbone.state_dict()
