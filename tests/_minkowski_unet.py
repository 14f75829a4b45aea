"""GSNet's MinkUNet14D layer graph written with MinkowskiEngine's own layers and BasicBlock,
the reference side of the parity cases (imported only when MinkowskiEngine is installed)."""
import MinkowskiEngine as ME
import torch
from MinkowskiEngine.modules.resnet_block import BasicBlock


class MEMinkUNet14D(torch.nn.Module):
    def __init__(self, cin, cout, planes):
        super().__init__()
        D = 3
        self.inplanes = 32
        self.conv0p1s1 = ME.MinkowskiConvolution(cin, 32, kernel_size=5, dimension=D)
        self.bn0 = ME.MinkowskiBatchNorm(32)
        for i, name in enumerate(("conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2")):
            setattr(self, name, ME.MinkowskiConvolution(self.inplanes, self.inplanes, kernel_size=2, stride=2,
                                                        dimension=D))
            setattr(self, f"bn{i + 1}", ME.MinkowskiBatchNorm(self.inplanes))
            setattr(self, f"block{i + 1}", self._layer(planes[i]))
        skips = (planes[2], planes[1], planes[0], 32)
        for j, name in enumerate(("convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2")):
            setattr(self, name, ME.MinkowskiConvolutionTranspose(self.inplanes, planes[4 + j], kernel_size=2,
                                                                 stride=2, dimension=D))
            setattr(self, f"bntr{4 + j}", ME.MinkowskiBatchNorm(planes[4 + j]))
            self.inplanes = planes[4 + j] + skips[j]
            setattr(self, f"block{5 + j}", self._layer(planes[4 + j]))
        self.final = ME.MinkowskiConvolution(planes[7], cout, kernel_size=1, bias=True, dimension=D)
        self.relu = ME.MinkowskiReLU()

    def _layer(self, planes):
        down = None
        if self.inplanes != planes:
            down = torch.nn.Sequential(ME.MinkowskiConvolution(self.inplanes, planes, kernel_size=1, dimension=3),
                                       ME.MinkowskiBatchNorm(planes))
        layer = torch.nn.Sequential(BasicBlock(self.inplanes, planes, downsample=down, dimension=3))
        self.inplanes = planes
        return layer

    def forward(self, x):
        r = self.relu
        p1 = r(self.bn0(self.conv0p1s1(x)))
        b1 = self.block1(r(self.bn1(self.conv1p1s2(p1))))
        b2 = self.block2(r(self.bn2(self.conv2p2s2(b1))))
        b3 = self.block3(r(self.bn3(self.conv3p4s2(b2))))
        out = self.block4(r(self.bn4(self.conv4p8s2(b3))))
        out = self.block5(ME.cat(r(self.bntr4(self.convtr4p16s2(out))), b3))
        out = self.block6(ME.cat(r(self.bntr5(self.convtr5p8s2(out))), b2))
        out = self.block7(ME.cat(r(self.bntr6(self.convtr6p4s2(out))), b1))
        out = self.block8(ME.cat(r(self.bntr7(self.convtr7p2s2(out))), p1))
        return self.final(out)
