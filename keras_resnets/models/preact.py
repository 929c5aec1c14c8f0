"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Full pre-activation units (BN-ReLU-conv, the shortcut a clean identity) and
a final BN-ReLU before pooling. They are the ResNet specs of `resnet.py`
with `unit="full_preactivation"`, built by the same `build_resnet`.
"""

from __future__ import annotations

import dataclasses

from keras_resnets.models.registry import Row, register_rows
from keras_resnets.models.resnet import CIFAR_RESNET, RESNET

HE2016 = "He et al. 2016"
PREACT = "full_preactivation"

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
_BOTTLENECK_WIDTHS = "outputs 64/128/256, projection shortcuts where the shape changes"


def _v2(name: str, depths, depth: int, num_params: int, slow: bool = False) -> Row:
    arguments = {"depths": depths, "block": "bottleneck", "unit": PREACT}
    title = f"Pre-activation ResNet-{depth}"
    return Row(name, arguments, num_params, title, _IMAGENET_SUMMARY, slow=slow)


def _cifar(name: str, depth: int, block: str, num_params: int, slow: bool = False) -> Row:
    if block == "basic":
        arguments = {"depth": depth, "unit": PREACT}
        n, widths, v1 = (depth - 2) // 6, "widths 16/32/64, option A shortcuts", f"ResNet{depth}"
    else:
        arguments = {"depth": depth, "block": block, "unit": PREACT}
        n, widths, v1 = (
            (depth - 2) // 9,
            _BOTTLENECK_WIDTHS,
            f'CifarResNet({depth}, block="{block}")',
        )
    summary = _CIFAR_SUMMARY.format(n=n, block=block, widths=widths, v1=v1)
    return Row(
        name, arguments, num_params, f"Pre-activation CIFAR ResNet-{depth}", summary, slow=slow
    )


# Each row: name, the arguments of `ResNet` (`CifarResNet`) that make it, its trainable count.
PREACT_ROWS = (
    _v2("ResNet50V2", (3, 4, 6, 3), 50, 25_549_352),
    _v2("ResNet101V2", (3, 4, 23, 3), 101, 44_541_480),
    _v2("ResNet152V2", (3, 8, 36, 3), 152, 60_185_128, slow=True),
    _v2("ResNet200V2", (3, 24, 36, 3), 200, 64_666_152, slow=True),
)
CIFAR_PREACT_ROWS = (
    _cifar("PreActResNet110", 110, "basic", 1_727_962),
    _cifar("PreActResNet164", 164, "bottleneck", 1_703_258),
    _cifar("PreActResNet1001", 1001, "bottleneck", 10_327_706, slow=True),
)

_LABEL = {"label": "ResNet v2 (pre-activation)", "paper": HE2016}
BUILDERS = {
    **register_rows(dataclasses.replace(RESNET, **_LABEL), PREACT_ROWS),
    **register_rows(dataclasses.replace(CIFAR_RESNET, **_LABEL), CIFAR_PREACT_ROWS),
}
globals().update(BUILDERS)  # ResNet50V2, ..., PreActResNet1001: the rows' builders

__all__ = list(BUILDERS)
