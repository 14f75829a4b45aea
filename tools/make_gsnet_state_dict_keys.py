"""Writes tests/fixtures/gsnet_state_dict_keys.json: every parameter / buffer key and shape of
the public GSNet model (github.com/rhett-chen/graspness_implementation, ``GraspNet()`` at its
defaults: seed_feat_dim 512, NUM_VIEW 300, NUM_ANGLE 12, NUM_DEPTH 4, nsample 16), written
down from reading its code, NOT from pcgrasp's model (the test compares the two).

Where each key comes from (files of graspness_implementation, MinkowskiEngine 0.5.4,
torch):

- ``backbone.*``: models/backbone_resunet14.py ``MinkUNet14D`` (MinkUNetBase with
  BasicBlock, LAYERS all 1, PLANES (32, 64, 128, 256, 192, 192, 192, 192), INIT_DIM 32),
  built in ``network_initialization``; ``_make_layer`` from models/resnet.py adds
  ``downsample`` (1x1 MinkowskiConvolution + MinkowskiBatchNorm) when in != out planes.
  MinkowskiConvolution(Transpose) 0.5.4 holds ``kernel`` [kernel_volume, in, out]
  ([in, out] when the volume is 1) and ``bias`` [1, out] when bias=True;
  MinkowskiBatchNorm wraps torch BatchNorm1d as ``bn`` (weight, bias, running_mean,
  running_var, num_batches_tracked); ME's resnet_block.BasicBlock: conv1 norm1 conv2 norm2
  downsample.
- ``graspable.conv_graspable``: models/modules.py GraspableNet, nn.Conv1d(512, 3, 1).
- ``rotation.conv1`` / ``conv2``: ApproachNet, nn.Conv1d(512, 512, 1), nn.Conv1d(512, 300, 1).
- ``crop.mlps.layer{0,1}``: CloudCrop's pointnet2 pytorch_utils.SharedMLP([515, 256, 256],
  bn=True): each layer a Conv2d wrapper (Sequential) with ``conv`` (1x1 nn.Conv2d, bias
  off because bn) and ``bn`` (pytorch_utils.BatchNorm2d, itself a Sequential holding
  nn.BatchNorm2d as ``bn``); the ReLU has no state. CylinderQueryAndGroup has none.
- ``swad.conv1`` / ``conv_swad``: SWADNet, nn.Conv1d(256, 256, 1), nn.Conv1d(256, 2*12*4, 1).

Run: python tools/make_gsnet_state_dict_keys.py (rewrites the fixture).
"""
import json
import os

SEED_FEAT = 512
NUM_VIEW, NUM_ANGLE, NUM_DEPTH = 300, 12, 4
PLANES = (32, 64, 128, 256, 192, 192, 192, 192)
INIT_DIM = 32


def backbone(keys, source):
    src = "models/backbone_resunet14.py MinkUNet14D"

    def conv(name, volume, cin, cout, bias=False):
        keys[name + ".kernel"] = [volume, cin, cout] if volume > 1 else [cin, cout]
        source[name + ".kernel"] = src + " (MinkowskiConvolution.kernel)"
        if bias:
            keys[name + ".bias"] = [1, cout]
            source[name + ".bias"] = src + " (MinkowskiConvolution.bias)"

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.bn.{p}"] = [c]
            source[f"{name}.bn.{p}"] = src + " (MinkowskiBatchNorm.bn = BatchNorm1d)"
        keys[f"{name}.bn.num_batches_tracked"] = []
        source[f"{name}.bn.num_batches_tracked"] = src + " (MinkowskiBatchNorm.bn = BatchNorm1d)"

    def basic_block(name, inplanes, planes):  # _make_layer with one BasicBlock
        conv(f"{name}.0.conv1", 27, inplanes, planes)
        bn(f"{name}.0.norm1", planes)
        conv(f"{name}.0.conv2", 27, planes, planes)
        bn(f"{name}.0.norm2", planes)
        if inplanes != planes:
            conv(f"{name}.0.downsample.0", 1, inplanes, planes)
            bn(f"{name}.0.downsample.1", planes)
        return planes

    p = "backbone."
    inplanes = INIT_DIM
    conv(p + "conv0p1s1", 125, 3, inplanes)
    bn(p + "bn0", inplanes)
    for i, name in enumerate(("conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2")):
        conv(p + name, 8, inplanes, inplanes)
        bn(p + f"bn{i + 1}", inplanes)
        inplanes = basic_block(p + f"block{i + 1}", inplanes, PLANES[i])
    skip = (PLANES[2], PLANES[1], PLANES[0], INIT_DIM)
    for j, name in enumerate(("convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2")):
        conv(p + name, 8, inplanes, PLANES[4 + j])
        bn(p + f"bntr{4 + j}", PLANES[4 + j])
        inplanes = basic_block(p + f"block{5 + j}", PLANES[4 + j] + skip[j], PLANES[4 + j])
    conv(p + "final", 1, PLANES[7], SEED_FEAT, bias=True)


def heads(keys, source):
    def conv1d(name, cin, cout, src):
        keys[name + ".weight"] = [cout, cin, 1]
        keys[name + ".bias"] = [cout]
        source[name + ".weight"] = source[name + ".bias"] = src

    conv1d("graspable.conv_graspable", SEED_FEAT, 3, "models/modules.py GraspableNet nn.Conv1d(512, 3, 1)")
    conv1d("rotation.conv1", SEED_FEAT, SEED_FEAT, "models/modules.py ApproachNet nn.Conv1d(512, 512, 1)")
    conv1d("rotation.conv2", SEED_FEAT, NUM_VIEW, "models/modules.py ApproachNet nn.Conv1d(512, 300, 1)")
    widths = [3 + SEED_FEAT, 256, 256]
    for i in range(2):
        name = f"crop.mlps.layer{i}"
        src = f"models/modules.py CloudCrop pointnet2/pytorch_utils.py SharedMLP({widths}, bn=True) layer{i}"
        keys[name + ".conv.weight"] = [widths[i + 1], widths[i], 1, 1]
        source[name + ".conv.weight"] = src + " Conv2d (bias off with bn)"
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.bn.bn.{p}"] = [widths[i + 1]]
            source[f"{name}.bn.bn.{p}"] = src + " BatchNorm2d wrapper .bn"
        keys[f"{name}.bn.bn.num_batches_tracked"] = []
        source[f"{name}.bn.bn.num_batches_tracked"] = src + " BatchNorm2d wrapper .bn"
    conv1d("swad.conv1", 256, 256, "models/modules.py SWADNet nn.Conv1d(256, 256, 1)")
    conv1d("swad.conv_swad", 256, 2 * NUM_ANGLE * NUM_DEPTH, "models/modules.py SWADNet nn.Conv1d(256, 96, 1)")


def main():
    keys, source = {}, {}
    backbone(keys, source)
    heads(keys, source)
    out = {"model": "graspness_implementation models/graspnet.py GraspNet() defaults (commit ff33da1)",
           "keys": {k: {"shape": keys[k], "from": source[k]} for k in keys}}
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gsnet_state_dict_keys.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"{len(keys)} keys -> {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
