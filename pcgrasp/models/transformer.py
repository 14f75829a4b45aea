"""A plain pre-norm ViT encoder."""
from torch import nn


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4.0):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x):
        h = self.n1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.n2(x))


class TransformerEncoder(nn.Module):
    def __init__(self, dim=384, depth=12, heads=6, mlp_ratio=4.0):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, return_blocks=False):
        """The last block's output after the final LayerNorm; with
        ``return_blocks`` also the list of every block's output (the residual
        stream before the final norm), first block first."""
        outs = []
        for b in self.blocks:
            x = b(x)
            outs.append(x)
        return (self.norm(x), outs) if return_blocks else self.norm(x)


def positional_mlp(dim):
    return nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))


__all__ = ["Block", "TransformerEncoder", "positional_mlp"]
