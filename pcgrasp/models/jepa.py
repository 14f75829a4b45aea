"""Point-JEPA: context encoder, EMA target encoder, predictor, block masking."""
import copy
from types import MappingProxyType

import torch
from torch import nn
from torch.nn import functional as F

from ..data.augment import apply_augmentation
from .tokenizer import PatchTokenizer
from .transformer import TransformerEncoder, positional_mlp


class PointEncoder(nn.Module):
    """Tokenizer + positional embedding + transformer. ``forward(points)``
    encodes every patch; ``encode_tokens`` encodes a subset (the context).

    ``input_scale`` multiplies the points first (``radius`` is in the scaled
    units): e.g. 12.5 maps objects of ~8 cm radius in metres to the unit
    sphere that ShapeNet-style pretraining assumes. At metre scale a randomly
    initialised encoder's layer-normed features hardly vary between inputs
    (SD ~0.007), which lets the JEPA loss collapse to ~0 at once."""

    def __init__(self, dim=384, depth=12, heads=6, centers=64, group_size=32, grouping="knn", radius=0.05,
                 token_width=128, input_scale=1.0):
        super().__init__()
        if not (isinstance(input_scale, (int, float)) and input_scale > 0):
            raise ValueError(f"input_scale must be a positive number, got {input_scale!r}")
        self.dim, self.input_scale = dim, float(input_scale)
        self.tokenizer = PatchTokenizer(dim, centers, group_size, grouping, radius, sequence=True, width=token_width)
        self.pos = positional_mlp(dim)
        self.encoder = TransformerEncoder(dim, depth, heads)

    def encode_tokens(self, tokens, centres, return_blocks=False):
        """Encoded tokens; with ``return_blocks`` also every block's output
        (before the final norm) as a list."""
        return self.encoder(tokens + self.pos(centres), return_blocks=return_blocks)

    def tokenize(self, points, view=None):
        """(centres, tokens) of the scaled points. ``view`` = (R [B, 3, 3],
        s [B, 3], t [B, 3]) tokenizes the view p -> s * (R p) + t of each
        cloud (``data.augment.apply_augmentation``, in the points' units)
        with the patches grouped on ``points``: patch g of the view holds the
        images of patch g's points, whatever the map does to distances."""
        x = points * self.input_scale if self.input_scale != 1.0 else points
        if view is None:
            return self.tokenizer(x)
        R, s, t = (v.to(device=points.device, dtype=points.dtype) for v in view)
        centres, rel = self.tokenizer.group(x)
        B, G, k, _ = rel.shape
        centres = apply_augmentation(centres, R, s, t * self.input_scale)
        rel = apply_augmentation(rel.reshape(B, G * k, 3), R, s, torch.zeros_like(t)).reshape(B, G, k, 3)
        return self.tokenizer.embed(centres, rel)

    def forward(self, points):
        centres, tokens = self.tokenize(points)
        return centres, self.encode_tokens(tokens, centres)


# Point-JEPA's block masking: 4 target blocks of 15-20 % of the patches each,
# one context block of 40-75 % of the rest (the defaults of sample_blocks,
# PointJEPA and the ``pretrain.masking`` config section). Read-only: copy it
# with dict(MASKING_DEFAULTS) to change a value.
MASKING_DEFAULTS = MappingProxyType(
    {"n_targets": 4, "target_ratio": (0.15, 0.2), "context_ratio": (0.40, 0.75)})


def check_masking(n_targets, target_ratio, context_ratio, name="pretrain.masking"):
    """ValueError naming the key unless n_targets is an integer >= 1 and each
    ratio is [lo, hi] with 0 < lo <= hi <= 1."""
    if isinstance(n_targets, bool) or not isinstance(n_targets, int) or n_targets < 1:
        raise ValueError(f"{name}.n_targets must be an integer >= 1, got {n_targets!r}")
    for key, r in (("target_ratio", target_ratio), ("context_ratio", context_ratio)):
        ok = (isinstance(r, (list, tuple)) and len(r) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r))
        if not ok or not 0 < r[0] <= r[1] <= 1:
            raise ValueError(f"{name}.{key} must be [lo, hi] with 0 < lo <= hi <= 1, got {r!r}")


def sample_blocks(G, generator=None, n_targets=MASKING_DEFAULTS["n_targets"],
                  target_ratio=MASKING_DEFAULTS["target_ratio"], context_ratio=MASKING_DEFAULTS["context_ratio"]):
    """Point-JEPA block masking over a sequence of G ordered patches.

    Returns (targets: list of n_targets LongTensors, each a contiguous window
    of round(r * G) positions with one ratio r per call; context: a LongTensor,
    one contiguous window of the remaining (non-target) positions, in sequence
    order, covering a fraction in context_ratio of them; at least one token).
    """
    def uniform(lo, hi):
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    size = max(1, round(uniform(*target_ratio) * G))
    targets, covered = [], torch.zeros(G, dtype=torch.bool)
    for _ in range(n_targets):
        s = int(torch.randint(0, G - size + 1, (), generator=generator))
        targets.append(torch.arange(s, s + size))
        covered[s:s + size] = True
    remaining = torch.nonzero(~covered).squeeze(1)
    if len(remaining) == 0:  # targets cover everything: keep the first position as context
        remaining = torch.arange(1)
    n = max(1, round(uniform(*context_ratio) * len(remaining)))
    s = int(torch.randint(0, len(remaining) - n + 1, (), generator=generator))
    return targets, remaining[s:s + n]


TARGET_NORMS = ("token_ln", "instance", "batch", "none")


def normalise_targets(x, how="token_ln", eps=1e-5):
    """Normalises target tokens x [B, G, D]:

    - ``token_ln``: layer norm of each token over its D features (no affine);
    - ``instance``: each feature standardised over the G tokens of its cloud
      (instance norm over the token axis, as data2vec / Point2Vec normalise
      each target layer);
    - ``batch``: each feature standardised over all B x G tokens of the batch;
    - ``none``: unchanged.

    ``"a+b"`` applies a, then b (e.g. ``instance+token_ln``). Variances are the
    biased ones (divide by the count), ``eps`` is added to them."""
    for h in how.split("+"):
        if h == "token_ln":
            x = F.layer_norm(x, x.shape[-1:], eps=eps)
        elif h in ("instance", "batch"):
            dims = (1,) if h == "instance" else (0, 1)
            mu = x.mean(dims, keepdim=True)
            var = x.var(dims, unbiased=False, keepdim=True)
            x = (x - mu) / torch.sqrt(var + eps)
        elif h != "none":
            raise ValueError(f"target_norm must be one of {TARGET_NORMS} or 'a+b' of them, got {how!r}")
    return x


def ema_momentum(step, total, start=0.9995, end=0.99999):
    """tau rising linearly from start to end over training."""
    return start + (end - start) * min(1.0, step / max(1, total))


@torch.no_grad()
def ema_update(target, online, tau):
    """target <- tau * target + (1 - tau) * online, parameter by parameter."""
    for pt, po in zip(target.parameters(), online.parameters()):
        pt.mul_(tau).add_(po.detach(), alpha=1 - tau)


class PointJEPA(nn.Module):
    def __init__(self, dim=384, depth=12, heads=6, pred_dim=192, pred_depth=6, pred_heads=6, centers=64,
                 group_size=32, grouping="knn", radius=0.05, n_targets=MASKING_DEFAULTS["n_targets"],
                 token_width=128, input_scale=1.0, target_norm="token_ln", target_layers=1,
                 target_ratio=MASKING_DEFAULTS["target_ratio"], context_ratio=MASKING_DEFAULTS["context_ratio"]):
        """``target_norm`` (see ``normalise_targets``) and ``target_layers``
        (k) set the regression targets: the mean over the target encoder's
        last k blocks of each block's normalised output, where the last
        block's output is the encoder's (after its final LayerNorm) and earlier
        blocks' are their residual streams. The defaults (``token_ln``, 1) are
        the layer-normed last output. ``n_targets``, ``target_ratio`` and
        ``context_ratio`` set the block masking (``sample_blocks``; the
        defaults, ``MASKING_DEFAULTS``, are Point-JEPA's)."""
        super().__init__()
        check_masking(n_targets, target_ratio, context_ratio, "masking")
        normalise_targets(torch.zeros(1, 2, 2), target_norm)  # validates the name
        if not (isinstance(target_layers, int) and 1 <= target_layers <= depth):
            raise ValueError(f"target_layers must be an integer in [1, depth={depth}], got {target_layers!r}")
        self.target_norm, self.target_layers = target_norm, target_layers
        self.context = PointEncoder(dim, depth, heads, centers, group_size, grouping, radius, token_width,
                                    input_scale)
        self.target = copy.deepcopy(self.context)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.n_targets, self.target_ratio, self.context_ratio = n_targets, tuple(target_ratio), tuple(context_ratio)
        self.to_pred = nn.Linear(dim, pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.pred_pos = positional_mlp(pred_dim)
        self.predictor = TransformerEncoder(pred_dim, pred_depth, pred_heads)
        self.from_pred = nn.Linear(pred_dim, dim)

    def forward(self, points, generator=None, target_view=None):
        """Returns the SmoothL1 (beta = 2) JEPA loss for a batch of clouds.
        ``target_view`` (R, s, t) computes the targets on that view of each
        cloud (``targets``), patch for patch, while the context encoder and
        the predictor's positions see the cloud as given: a two-view target
        that asks the features to be invariant to the view's transform."""
        centres, tokens = self.context.tokenize(points)  # ordered by the sequencer
        B, G, _ = tokens.shape
        tgt = self.targets(points, target_view)
        targets, ctx = sample_blocks(G, generator, self.n_targets, self.target_ratio, self.context_ratio)
        ctx = ctx.to(points.device)
        z = self.context.encode_tokens(tokens[:, ctx], centres[:, ctx])  # [B, Nc, dim]
        zc = self.to_pred(z) + self.pred_pos(centres[:, ctx])
        loss = 0.0
        for t in targets:
            t = t.to(points.device)
            m = self.mask_token.expand(B, len(t), -1) + self.pred_pos(centres[:, t])
            out = self.predictor(torch.cat([zc, m], 1))[:, -len(t):]
            loss = loss + F.smooth_l1_loss(self.from_pred(out), tgt[:, t], beta=2.0)
        return loss / len(targets)

    @torch.no_grad()
    def targets(self, points, view=None):
        """[B, G, dim] regression targets of every patch (see ``__init__``),
        of ``view`` (R, s, t) of the clouds when given (``PointEncoder.tokenize``)."""
        centres, tokens = self.target.tokenize(points, view)
        out, blocks = self.target.encode_tokens(tokens, centres, return_blocks=True)
        layers = blocks[len(blocks) - self.target_layers:-1] + [out]
        tgt = normalise_targets(layers[0], self.target_norm)
        for x in layers[1:]:
            tgt = tgt + normalise_targets(x, self.target_norm)
        return tgt / len(layers)

    def update_target(self, tau):
        ema_update(self.target, self.context, tau)


__all__ = ["PointEncoder", "PointJEPA", "sample_blocks", "check_masking", "ema_update", "ema_momentum", "normalise_targets",
           "TARGET_NORMS"]
