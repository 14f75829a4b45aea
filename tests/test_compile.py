"""torch.compile traces the ops through their fake kernels."""
import torch

from pcgrasp import ops


def group_features(points, feats):
    idx = ops.farthest_point_sample(points, 16)  # [B, 16]
    centres = ops.gather_points(points, idx)  # [B, 16, 3]
    dist2, nbr = ops.knn(centres, points, 8)  # [B, 16, 8]
    grouped = ops.gather_points(feats, nbr)  # [B, 16, 8, C]
    bidx, _, _ = ops.ball_query(centres, points, 0.3, 8, pad="first")
    return grouped.sum(2) + ops.gather_points(feats, bidx).sum(2), dist2


def test_compile_fullgraph_fps_knn_gather():
    g = torch.Generator().manual_seed(0)
    points = torch.rand(2, 200, 3, generator=g)
    feats = torch.randn(2, 200, 4, generator=g)
    eager = group_features(points, feats)
    compiled = torch.compile(group_features, fullgraph=True, backend="aot_eager")(points, feats)
    torch.testing.assert_close(compiled[0], eager[0])
    torch.testing.assert_close(compiled[1], eager[1])


def test_compile_backward_through_knn_and_interpolate():
    g = torch.Generator().manual_seed(1)
    coarse = torch.rand(2, 20, 3, generator=g)
    fine = torch.rand(2, 50, 3, generator=g)

    def f(feats):
        d, i = ops.three_nn(fine, coarse)
        return ops.three_interpolate(feats, i, ops.inverse_distance_weights(d)).square().sum()

    x = torch.randn(2, 20, 6, generator=g, requires_grad=True)
    f(x).backward()
    want = x.grad.clone()
    x.grad = None
    torch.compile(f, fullgraph=True, backend="aot_eager")(x).backward()
    torch.testing.assert_close(x.grad, want)
