"""Energy-based grasp model: a scalar energy E(x, y) of a depth crop x and a
planar grasp y (low energy = successful grasp)."""
import torch
from torch import nn

GRASP_DIM = 4  # (row, col, depth, angle): pixels, pixels, metres, radians (the Dex-Net 2.0 hand_poses columns 0-3)


def _conv(cin, cout, k, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class GraspEnergyModel(nn.Module):
    """E_w(x, y) for a depth crop x [B, 1, S, S] and a grasp vector y [B, 4].

    Network (the EBM report's): conv encoder 16 5x5 (stride 1), then 32, 64, 64
    3x3 with stride 2, each ReLU + BatchNorm; the flattened features
    (64 x S/8 x S/8 = 1024 for S = 32) concatenated with the grasp vector
    repeated ``repeat`` (256) times (4 x 256 = 1024); an MLP 2048-512-128-1 with
    dropout on the hidden layers.

    Inputs are standardised inside the model by buffers (``set_normalization``,
    stored in the state_dict, like GQ-CNN's im/pose mean and std). With
    ``relative_depth`` (default) the crop is taken relative to the grasp depth
    y[:, 2] first, so the encoder sees the surface height around the jaws.
    """

    def __init__(self, crop_size=32, repeat=256, hidden=(512, 128), dropout=0.2, relative_depth=True):
        super().__init__()
        if crop_size % 8:
            raise ValueError(f"crop_size must be a multiple of 8, got {crop_size}")
        self.crop_size, self.relative_depth, self.repeat = crop_size, relative_depth, repeat
        self.encoder = nn.Sequential(_conv(1, 16, 5, 1), _conv(16, 32, 3, 2), _conv(32, 64, 3, 2), _conv(64, 64, 3, 2))
        feat = 64 * (crop_size // 8) ** 2
        dims = [feat + GRASP_DIM * repeat, *hidden]  # 2048, 512, 128 at the defaults
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        self.mlp = nn.Sequential(*layers, nn.Linear(dims[-1], 1))
        self.register_buffer("im_mean", torch.zeros(()))
        self.register_buffer("im_std", torch.ones(()))
        self.register_buffer("pose_mean", torch.zeros(GRASP_DIM))
        self.register_buffer("pose_std", torch.ones(GRASP_DIM))

    @torch.no_grad()
    def set_normalization(self, crops, grasps):
        """Input statistics from training data: crops [N, 1, S, S], grasps [N, 4]."""
        x = self._relative(crops.float(), grasps.float())
        self.im_mean.copy_(x.mean())
        self.im_std.copy_(x.std().clamp_min(1e-6))
        self.pose_mean.copy_(grasps.float().mean(0))
        self.pose_std.copy_(grasps.float().std(0).nan_to_num(1.0).clamp_min(1e-6))

    def _relative(self, x, y):
        return x - y[:, 2].view(-1, 1, 1, 1) if self.relative_depth else x

    def forward(self, x, y):
        """x [B, 1, S, S] (or [B, S, S]) depth crops in metres, y [B, 4] grasps -> energies [B]."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1:] != (1, self.crop_size, self.crop_size):
            raise ValueError(f"x must be [B, 1, {self.crop_size}, {self.crop_size}] depth crops, got {tuple(x.shape)}")
        if y.dim() != 2 or y.shape != (x.shape[0], GRASP_DIM):
            raise ValueError(f"y must be [B, {GRASP_DIM}] grasps with B = {x.shape[0]}, got {tuple(y.shape)}")
        x = (self._relative(x, y) - self.im_mean) / self.im_std
        f = self.encoder(x).flatten(1)
        g = ((y - self.pose_mean) / self.pose_std).repeat(1, self.repeat)
        return self.mlp(torch.cat([f, g], 1)).squeeze(1)
