"""MinkUNet14D (GSNet's sparse U-Net backbone) on pcgrasp.nn, with MinkowskiEngine /
GSNet parameter names, so their state_dicts load with ``strict=True``."""
import torch

from .. import nn as snn

__all__ = ["BasicBlock", "MinkUNet14D", "ResUNet14", "GSNET_PLANES", "ME_MINKUNET14D_PLANES"]

GSNET_PLANES = (32, 64, 128, 256, 192, 192, 192, 192)         # graspness_implementation's MinkUNet14D
ME_MINKUNET14D_PLANES = (32, 64, 128, 256, 384, 384, 384, 384)  # MinkowskiEngine examples' MinkUNet14D


class BasicBlock(torch.nn.Module):
    """conv3-BN-ReLU-conv3-BN (+ optional 1x1 conv + BN downsample on the shortcut), then ReLU.
    Names as ME's ``resnet_block.BasicBlock``: conv1 norm1 conv2 norm2 downsample.0 downsample.1."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, bn_momentum=0.1):
        super().__init__()
        self.conv1 = snn.SparseConv3d(inplanes, planes, 3, stride=stride, dilation=dilation)
        self.norm1 = snn.SparseBatchNorm(planes, momentum=bn_momentum)
        self.conv2 = snn.SparseConv3d(planes, planes, 3, stride=1, dilation=dilation)
        self.norm2 = snn.SparseBatchNorm(planes, momentum=bn_momentum)
        self.relu = snn.SparseReLU(inplace=True)  # on a batch norm's output and a fresh sum only, as GSNet's blocks
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class MinkUNet14D(torch.nn.Module):
    """The MinkUNet14 layer graph (one BasicBlock per stage) used by GSNet.

    Args:
        in_channels, out_channels: feature widths of the input and the final 1x1 conv.
        planes: 8 stage widths; the default is GSNet's, ``ME_MINKUNET14D_PLANES`` gives ME's
            original MinkUNet14D.

    ``forward(x: SparseTensor) -> SparseTensor`` on x's map (tensor stride 1).
    Encoder: ``conv0p1s1`` (5^3) + ``bn0``; ``conv{1..4}p{1,2,4,8}s2`` (2^3, stride 2) + ``bn1..4``
    + ``block1..4``. Decoder: ``convtr{4..7}p{16,8,4,2}s2`` (2^3 transposed, stride 2) +
    ``bntr4..7``, concatenation with the skip of the same stride, ``block5..8``. ``final``: 1x1 with bias.
    Weights are initialised as ME's ResNetBase (kaiming normal, fan_out, BN 1/0).
    """

    BLOCK = BasicBlock
    LAYERS = (1, 1, 1, 1, 1, 1, 1, 1)
    INIT_DIM = 32

    def __init__(self, in_channels, out_channels, planes=GSNET_PLANES):
        super().__init__()
        planes = tuple(planes)
        if len(planes) != 8 or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in planes):
            raise ValueError(f"planes must be 8 positive ints, got {planes!r}")
        self.planes = planes
        B, L, exp = self.BLOCK, self.LAYERS, self.BLOCK.expansion
        self.inplanes = self.INIT_DIM
        self.conv0p1s1 = snn.SparseConv3d(in_channels, self.inplanes, 5)
        self.bn0 = snn.SparseBatchNorm(self.inplanes)
        for i, name in enumerate(("conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2")):
            setattr(self, name, snn.SparseConv3d(self.inplanes, self.inplanes, 2, stride=2))
            setattr(self, f"bn{i + 1}", snn.SparseBatchNorm(self.inplanes))
            setattr(self, f"block{i + 1}", self._make_layer(B, planes[i], L[i]))
        skips = (planes[2] * exp, planes[1] * exp, planes[0] * exp, self.INIT_DIM)
        for j, name in enumerate(("convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2")):
            setattr(self, name, snn.SparseConvTranspose3d(self.inplanes, planes[4 + j], 2, stride=2))
            setattr(self, f"bntr{4 + j}", snn.SparseBatchNorm(planes[4 + j]))
            self.inplanes = planes[4 + j] + skips[j]
            setattr(self, f"block{5 + j}", self._make_layer(B, planes[4 + j], L[4 + j]))
        self.final = snn.SparseConv3d(planes[7] * exp, out_channels, 1, bias=True)
        self.relu = snn.SparseReLU(inplace=True)
        self._init_weights()

    def _make_layer(self, block, planes, blocks, stride=1, dilation=1, bn_momentum=0.1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = torch.nn.Sequential(
                snn.SparseConv3d(self.inplanes, planes * block.expansion, 1, stride=stride),
                snn.SparseBatchNorm(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride=stride, dilation=dilation, downsample=downsample,
                        bn_momentum=bn_momentum)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=dilation, bn_momentum=bn_momentum)
                   for _ in range(1, blocks)]
        return torch.nn.Sequential(*layers)

    def _init_weights(self):
        gain = torch.nn.init.calculate_gain("relu")
        for m in self.modules():
            if isinstance(m, snn.SparseConv3d):
                k = m.kernel  # ME's fan_out: Cout * kernel volume ([Cin, Cout]: dim 0, as torch's Linear)
                fan_out = k.shape[0] if k.dim() == 2 else k.shape[2] * k.shape[0]
                with torch.no_grad():
                    k.normal_(0, gain / fan_out ** 0.5)
            elif isinstance(m, snn.SparseBatchNorm):
                torch.nn.init.ones_(m.bn.weight)
                torch.nn.init.zeros_(m.bn.bias)

    def forward(self, x):
        r = self.relu
        out_p1 = r(self.bn0(self.conv0p1s1(x)))
        out_b1p2 = self.block1(r(self.bn1(self.conv1p1s2(out_p1))))
        out_b2p4 = self.block2(r(self.bn2(self.conv2p2s2(out_b1p2))))
        out_b3p8 = self.block3(r(self.bn3(self.conv3p4s2(out_b2p4))))
        out = self.block4(r(self.bn4(self.conv4p8s2(out_b3p8))))
        out = self.block5(snn.sparse_cat(r(self.bntr4(self.convtr4p16s2(out))), out_b3p8))
        out = self.block6(snn.sparse_cat(r(self.bntr5(self.convtr5p8s2(out))), out_b2p4))
        out = self.block7(snn.sparse_cat(r(self.bntr6(self.convtr6p4s2(out))), out_b1p2))
        out = self.block8(snn.sparse_cat(r(self.bntr7(self.convtr7p2s2(out))), out_p1))
        return self.final(out)


class ResUNet14(MinkUNet14D):
    """GraspContrast's backbone configuration: GSNet's MinkUNet14D (``backbone_resunet14``)
    with C = 512 output features, so a pretrained state_dict initialises the detector."""

    def __init__(self, in_channels=3, out_channels=512, planes=GSNET_PLANES):
        super().__init__(in_channels, out_channels, planes)
