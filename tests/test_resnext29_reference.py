"""CIFAR ResNeXt-29 against a PyTorch port of the authors' Torch model.

`ReferenceCifarResNeXt` below transcribes the CIFAR branch of the authors'
`models/resnext.lua` (facebookresearch/ResNeXt), with its defaults
`bottleneckType = 'resnext_C'` and `shortcutType = 'B'`, and with the
convolution biases removed as its `ConvInit` does under cuDNN >= 4:

    stem:    3x3 conv 3->64, BN, ReLU
    stage s: n bottlenecks of width w = 64 * 2**s (s = 0, 1, 2), the first
             with stride 1/2/2 on the grouped 3x3:
             1x1 conv -> D*C, BN, ReLU, 3x3 conv D*C -> D*C in C groups, BN,
             ReLU, 1x1 conv -> 4w, BN; shortcut: 1x1 conv + BN where the
             channels change (B), else identity; add, ReLU
             (D = floor(w * baseWidth / 64), C = cardinality)
    head:    8x8 average pooling, linear 1024 -> classes

Its parameter count is the authors' network's, and the Keras model given its
weights computes the same function.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import keras_resnets
from keras_resnets.models.registry import model_info

torch = pytest.importorskip("torch")
nn = torch.nn


class _Bottleneck(nn.Module):
    def __init__(self, in_planes, width, stride, cardinality, base_width):
        super().__init__()
        inner = math.floor(width * base_width / 64) * cardinality
        out = 4 * width
        self.conv1 = nn.Conv2d(in_planes, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride, 1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = None
        if in_planes != out:
            self.shortcut = nn.Conv2d(in_planes, out, 1, stride, bias=False)
            self.shortcut_bn = nn.BatchNorm2d(out)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        s = x if self.shortcut is None else self.shortcut_bn(self.shortcut(x))
        return torch.relu(y + s)


class ReferenceCifarResNeXt(nn.Module):
    def __init__(self, depth=29, cardinality=8, base_width=64, classes=10):
        super().__init__()
        n = (depth - 2) // 9
        self.stem_conv = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(64)
        blocks, planes = {}, 64
        for stage, width in enumerate((64, 128, 256), start=1):
            for index in range(1, n + 1):
                stride = 2 if stage > 1 and index == 1 else 1
                blocks[f"stage{stage}_block{index}"] = _Bottleneck(
                    planes, width, stride, cardinality, base_width
                )
                planes = 4 * width
        self.blocks = nn.ModuleDict(blocks)
        self.fc = nn.Linear(1024, classes)

    def forward(self, x):
        x = torch.relu(self.stem_bn(self.stem_conv(x)))
        for block in self.blocks.values():
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))


def _num_params(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("cardinality, name", [(8, "ResNeXt29_8x64d"), (16, "ResNeXt29_16x64d")])
def test_counts_equal_the_authors_network(cardinality, name):
    reference = ReferenceCifarResNeXt(29, cardinality, 64)
    assert _num_params(reference) == model_info(name).num_params
    # ../shared/REFERENCE.md lists 64 fewer (34,426,634 / 68,155,146); see docs/resnext.md
    assert model_info(name).num_params - 64 == {8: 34_426_634, 16: 68_155_146}[cardinality]


def _copy_torch_to_keras(reference, model):
    def bn(layer, module):
        layer.set_weights(
            [
                module.weight.detach().numpy(),
                module.bias.detach().numpy(),
                module.running_mean.numpy(),
                module.running_var.numpy(),
            ]
        )

    def conv(layer, module):
        layer.set_weights([module.weight.detach().numpy().transpose(2, 3, 1, 0)])

    conv(model.get_layer("stem_conv"), reference.stem_conv)
    bn(model.get_layer("stem_bn"), reference.stem_bn)
    for name, block in reference.blocks.items():
        for i in (1, 2, 3):
            conv(model.get_layer(f"{name}_conv{i}"), getattr(block, f"conv{i}"))
            bn(model.get_layer(f"{name}_bn{i}"), getattr(block, f"bn{i}"))
        if block.shortcut is not None:
            conv(model.get_layer(f"{name}_shortcut"), block.shortcut)
            bn(model.get_layer(f"{name}_shortcut_bn"), block.shortcut_bn)
    model.get_layer("head_fc").set_weights(
        [reference.fc.weight.detach().numpy().T, reference.fc.bias.detach().numpy()]
    )


@pytest.mark.parametrize("implementation", ["split", "auto"])
def test_keras_model_computes_the_authors_function(implementation):
    torch.manual_seed(0)
    reference = ReferenceCifarResNeXt(depth=20, cardinality=4, base_width=8, classes=7)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    reference.eval()
    model = keras_resnets.CifarResNeXt(
        depth=20,
        cardinality=4,
        base_width=8,
        classes=7,
        classifier_activation=None,
        implementation=implementation,
    )
    assert model.count_params() - _num_params(reference) == sum(
        int(np.prod(w.shape)) for w in model.non_trainable_weights
    )
    _copy_torch_to_keras(reference, model)
    x = np.random.default_rng(0).standard_normal((3, 32, 32, 3)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = model(x, training=False).numpy()
    assert expected.std() > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
