"""Grasp-joint prediction: encoder -> attention pooling -> [pooled, pose] -> head."""
import torch
from torch import nn

from ..losses import clamped_alpha, mse_loss, wta_loss
from .jepa import PointEncoder


class AttentionPool(nn.Module):
    """One learned query attending over the tokens."""

    def __init__(self, dim, heads=4):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens):
        q = self.query.expand(tokens.shape[0], -1, -1)
        return self.norm(self.attn(q, tokens, tokens, need_weights=False)[0].squeeze(1))


def mlp(i, h, o):
    return nn.Sequential(nn.Linear(i, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, o))


class WTAHead(nn.Module):
    """K hypotheses of the J joints plus K logits."""

    def __init__(self, in_dim, joints=12, k=5, hidden=256):
        super().__init__()
        self.k, self.joints = k, joints
        self.net = mlp(in_dim, hidden, k * joints + k)

    def forward(self, x):
        out = self.net(x)
        return out[:, : self.k * self.joints].view(-1, self.k, self.joints), out[:, self.k * self.joints:]


class MSEHead(nn.Module):
    """Single-output baseline, shaped like a K = 1 head (logit 0)."""

    def __init__(self, in_dim, joints=12, hidden=256):
        super().__init__()
        self.k, self.joints = 1, joints
        self.net = mlp(in_dim, hidden, joints)

    def forward(self, x):
        return self.net(x).unsqueeze(1), x.new_zeros(x.shape[0], 1)


class GraspModel(nn.Module):
    def __init__(self, encoder: PointEncoder, head="wta", k=5, joints=12, pose_dim=7, hidden=256, pool_heads=4):
        super().__init__()
        self.encoder = encoder
        self.pool = AttentionPool(encoder.dim, pool_heads)
        in_dim = encoder.dim + pose_dim
        self.head = WTAHead(in_dim, joints, k, hidden) if head == "wta" else MSEHead(in_dim, joints, hidden)
        self.log_alpha = nn.Parameter(torch.zeros(()))  # WTA's classification weight, learned as a log

    def backbone_parameters(self):
        return list(self.encoder.parameters())

    def head_parameters(self):
        enc = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in enc]

    def forward(self, points, pose, joints=None):
        """(pred [B, K, J], logits [B, K]); with ``joints`` the training loss
        instead (WTA with the learned, clamped alpha, or MSE), computed inside
        forward so that DDP sees every parameter it uses."""
        _, tokens = self.encoder(points)
        pred, logits = self.head(torch.cat([self.pool(tokens), pose], -1))
        if joints is None:
            return pred, logits
        if pred.shape[1] == 1:
            return mse_loss(pred, joints)
        return wta_loss(pred, logits, joints, clamped_alpha(self.log_alpha))

    @torch.no_grad()
    def predict(self, points, pose):
        """The top-logit hypothesis [B, J]."""
        pred, logits = self(points, pose)
        return pred[torch.arange(len(pred)), logits.argmax(1)]
