"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Full pre-activation units (BN-ReLU-conv, the shortcut a clean identity) and
a final BN-ReLU before pooling. They are the ResNet specs of `resnet.py`
with `unit="full_preactivation"`, built by the same `build_resnet`.
"""

from __future__ import annotations

import dataclasses

from keras_resnets.models.registry import register_model
from keras_resnets.models.resnet import ResNetSpec, _imagenet, _make_builder, cifar_spec

HE2016 = "He et al. 2016"
PREACT = "full_preactivation"

__all__ = [
    "PreActResNet110",
    "PreActResNet164",
    "PreActResNet1001",
    "ResNet50V2",
    "ResNet101V2",
    "ResNet152V2",
    "ResNet200V2",
]


def _v2(depths) -> ResNetSpec:
    return dataclasses.replace(_imagenet("bottleneck", depths), unit=PREACT)


def _define(model_name, spec, title, summary, num_params, slow=False):
    builder = _make_builder(model_name, spec, title, summary)
    return register_model(
        family="ResNet v2 (pre-activation)",
        input_size=spec.default_size,
        num_params=num_params,
        paper=HE2016,
        slow=slow,
    )(builder)


_IMAGENET_SUMMARY = (
    "Pre-activation ImageNet ResNet: full pre-activation bottleneck units "
    "(BN-ReLU-conv, identity shortcuts kept clean, projection where the shape changes), "
    "stride on the 3x3 convolution, a final BN-ReLU (`post_bn`, `post_relu`) before "
    "pooling. The 7x7 stem keeps its BN-ReLU before max pooling and the first unit "
    "skips its pre-activation, as in fb.resnet.torch's `preresnet`. No convolution "
    "has a bias."
)
_CIFAR_SUMMARY = (
    "Pre-activation CIFAR ResNet (He et al. 2016): a 3x3 stem convolution, three stages "
    "of {n} full pre-activation {block} units ({widths}), a final BN-ReLU and global "
    'average pooling. The same network as `{v1}(unit="full_preactivation")`.'
)

ResNet50V2 = _define(
    "ResNet50V2", _v2((3, 4, 6, 3)), "Pre-activation ResNet-50", _IMAGENET_SUMMARY, 25_549_352
)
ResNet101V2 = _define(
    "ResNet101V2", _v2((3, 4, 23, 3)), "Pre-activation ResNet-101", _IMAGENET_SUMMARY, 44_541_480
)
ResNet152V2 = _define(
    "ResNet152V2",
    _v2((3, 8, 36, 3)),
    "Pre-activation ResNet-152",
    _IMAGENET_SUMMARY,
    60_185_128,
    slow=True,
)
ResNet200V2 = _define(
    "ResNet200V2",
    _v2((3, 24, 36, 3)),
    "Pre-activation ResNet-200",
    _IMAGENET_SUMMARY,
    64_666_152,
    slow=True,
)

PreActResNet110 = _define(
    "PreActResNet110",
    cifar_spec(110, unit=PREACT),
    "Pre-activation CIFAR ResNet-110",
    _CIFAR_SUMMARY.format(
        n=18, block="basic", widths="widths 16/32/64, option A shortcuts", v1="ResNet110"
    ),
    1_727_962,
)
PreActResNet164 = _define(
    "PreActResNet164",
    cifar_spec(164, block="bottleneck", unit=PREACT),
    "Pre-activation CIFAR ResNet-164",
    _CIFAR_SUMMARY.format(
        n=18,
        block="bottleneck",
        widths="outputs 64/128/256, projection shortcuts where the shape changes",
        v1='CifarResNet(164, block="bottleneck")',
    ),
    1_703_258,
)
PreActResNet1001 = _define(
    "PreActResNet1001",
    cifar_spec(1001, block="bottleneck", unit=PREACT),
    "Pre-activation CIFAR ResNet-1001",
    _CIFAR_SUMMARY.format(
        n=111,
        block="bottleneck",
        widths="outputs 64/128/256, projection shortcuts where the shape changes",
        v1='CifarResNet(1001, block="bottleneck")',
    ),
    10_327_706,
    slow=True,
)
